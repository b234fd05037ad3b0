package emitter

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/codec"
)

func TestPacerScheduleFromStart(t *testing.T) {
	p := newPacer(200) // one slot per 5 ms
	// Senders that keep up get slot k at exactly k·5 ms, however many slots pass:
	// the schedule is computed from k, never accumulated.
	for k := int64(0); k < 10000; k++ {
		if got := p.reserve(k * 5e6); got != k*5e6 {
			t.Fatalf("slot %d due at %d ns, want %d", k, got, k*5e6)
		}
	}
	// Slots can be reserved ahead: a sender asking early waits for its slot.
	if got := p.reserve(10000*5e6 - 1e9); got != 10000*5e6 {
		t.Fatalf("early reservation due at %d, want %d", got, int64(10000*5e6))
	}
}

func TestPacerNoDriftAtAwkwardRate(t *testing.T) {
	p := newPacer(3) // 333333333.33 ns per slot: summing a rounded interval would drift
	var last int64
	for k := 0; k < 3*3600; k++ {
		last = p.reserve(last)
	}
	// Slot 10799 of a 3/s schedule is due at 3599.6667 s.
	if want := int64(10799) * 1e9 / 3; last != want {
		t.Fatalf("after an hour of slots the last is due at %d, want %d", last, want)
	}
}

func TestPacerCatchesUpWithinSlackOnly(t *testing.T) {
	p := newPacer(1000) // 1 ms slots
	p.reserve(0)
	// A sender 50 ms late (inside the 100 ms slack) gets the slots it missed, due now.
	if got := p.reserve(50e6); got != 1e6 {
		t.Fatalf("late reservation got %d, want the missed slot at 1e6", got)
	}
	// After a 2 s stall the missed slots beyond the slack are gone: the next slot is
	// the first inside the slack window, not a burst of 1900 overdue ones.
	got := p.reserve(2e9)
	if want := int64(2e9 - int64(pacerSlack)); got != want {
		t.Fatalf("after a stall got slot at %d, want %d", got, want)
	}
	// Then slots within the window are handed out one per ms: 100 due at once at
	// most, and the next one in the future.
	n := 0
	for p.reserve(2e9) <= 2e9 {
		n++
	}
	if n != 100 {
		t.Fatalf("%d overdue slots released after the stall, want 100 (slack/interval)", n)
	}
}

func TestPacerConcurrentSlotsUnique(t *testing.T) {
	p := newPacer(1e6)
	const workers, per = 8, 5000
	got := make(chan []int64, workers)
	for w := 0; w < workers; w++ {
		go func() {
			ts := make([]int64, per)
			for i := range ts {
				ts[i] = p.reserve(0)
			}
			got <- ts
		}()
	}
	seen := map[int64]bool{}
	for w := 0; w < workers; w++ {
		for _, ts := range <-got {
			if seen[ts] {
				t.Fatalf("slot at %d handed out twice", ts)
			}
			seen[ts] = true
		}
	}
	// Every slot from 0 to workers·per-1 µs was handed out exactly once.
	for k := int64(0); k < workers*per; k++ {
		if !seen[k*1000] {
			t.Fatalf("slot %d never handed out", k)
		}
	}
}

func TestNoPacerForZeroRate(t *testing.T) {
	if newPacer(0) != nil {
		t.Fatal("rate 0 must mean no pacing")
	}
}

func TestBackoffFullJitterBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for retry := 1; retry <= 12; retry++ {
		ceiling := min(backoffCap, backoffBase<<(retry-1))
		var maxSeen time.Duration
		for i := 0; i < 2000; i++ {
			d := backoff(retry, 0, rng)
			if d < 0 || d >= ceiling {
				t.Fatalf("retry %d: backoff %v outside [0, %v)", retry, d, ceiling)
			}
			maxSeen = max(maxSeen, d)
		}
		// Full jitter spreads over the whole range, not just its start.
		if maxSeen < ceiling*9/10 {
			t.Fatalf("retry %d: largest of 2000 backoffs %v, want close to %v", retry, maxSeen, ceiling)
		}
	}
	if d := backoff(1000, 0, rng); d >= backoffCap {
		t.Fatalf("huge retry number: %v, want under the %v cap", d, backoffCap)
	}
}

func TestBackoffHonoursRetryAfter(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 1000; i++ {
		if d := backoff(1, 2*time.Second, rng); d != 2*time.Second {
			t.Fatalf("Retry-After 2s with a 50 ms backoff gave %v", d)
		}
		if d := backoff(8, time.Second, rng); d < time.Second || d >= backoffCap {
			t.Fatalf("Retry-After 1s with a 5 s backoff ceiling gave %v", d)
		}
	}
}

func TestRetryBudget(t *testing.T) {
	b := newRetryBudget(0.2, 4) // banks at most the floor, 10
	taken := 0
	for b.take(0) {
		taken++
	}
	if taken != retryBudgetFloor {
		t.Fatalf("fresh budget allowed %d re-sends, want %d", taken, retryBudgetFloor)
	}
	// Every first send earns 0.2 re-sends: 100 of them, spent as they come, earn 20.
	taken = 0
	for sent := uint64(1); sent <= 100; sent++ {
		for b.take(sent) {
			taken++
		}
	}
	if taken != 20 {
		t.Fatalf("100 first sends earned %d re-sends, want 20", taken)
	}
	// A long healthy stretch banks no more than the cap.
	taken = 0
	for b.take(1_000_100) {
		taken++
	}
	if taken != retryBudgetFloor {
		t.Fatalf("after a long healthy run %d re-sends allowed at once, want the cap %d", taken, retryBudgetFloor)
	}
	unlimited := newRetryBudget(-1, 1)
	for i := 0; i < 1000; i++ {
		if !unlimited.take(0) {
			t.Fatal("negative ratio must not limit re-sends")
		}
	}
}

func TestRetryAfterHeader(t *testing.T) {
	cases := []struct {
		raw  string
		want time.Duration
	}{
		{"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n", 3 * time.Second},
		{"HTTP/1.1 429 Too Many Requests\r\nretry-after:0\r\n\r\n", 0},
		{"HTTP/1.1 503 x\r\nContent-Length: 20\r\nRETRY-AFTER:  12 \r\n\r\n{\"Retry-After\": 99}", 12 * time.Second},
		{"HTTP/1.1 503 x\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n", 0},
		{"HTTP/1.1 503 x\r\nContent-Length: 15\r\n\r\nRetry-After: 7\r\n", 0}, // in the body, not a header
		{"HTTP/1.1 503 x\r\nRetry-After: 99999999999\r\n\r\n", maxRetryAfter},
		{"HTTP/1.1 503 x\r\n\r\n", 0},
	}
	for _, c := range cases {
		var p codec.ResponseParser
		var r codec.Response
		if _, err := p.Parse([]byte(c.raw), &r); err != nil {
			t.Fatalf("parse %q: %v", c.raw, err)
		}
		if got := retryAfter(r.RetryAfter); got != c.want {
			t.Errorf("retryAfter of %q = %v, want %v", c.raw, got, c.want)
		}
	}
}

func TestHistogramBucketsContinuousAndAccurate(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<20; v++ {
		b := histBucket(v)
		if b != prev && b != prev+1 {
			t.Fatalf("value %d jumps from bucket %d to %d", v, prev, b)
		}
		prev = b
		if rep := histValue(b); math.Abs(rep-float64(v)) > float64(v)/64+0.5 {
			t.Fatalf("value %d reported as %v: more than 1/64 off", v, rep)
		}
	}
	if b := histBucket(math.MaxUint64); b != histBuckets-1 {
		t.Fatalf("huge value in bucket %d, want the last, %d", b, histBuckets-1)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	// 1..10000 µs once each: p50 = 5 ms, p99 = 9.9 ms, p99.9 = 9.99 ms.
	for v := uint64(1); v <= 10000; v++ {
		h.record(v)
	}
	var s histSnapshot
	s.add(&h)
	for _, c := range []struct{ q, want float64 }{{0.5, 5}, {0.99, 9.9}, {0.999, 9.99}, {1, 10}} {
		got := s.quantileMs(c.q)
		if math.Abs(got-c.want) > c.want/64 {
			t.Errorf("q%v = %v ms, want %v ±1/64", c.q, got, c.want)
		}
	}
	var empty histSnapshot
	if empty.quantileMs(0.5) != 0 {
		t.Error("empty histogram must report 0")
	}
	// sub leaves only what came after the earlier snapshot.
	prev := s
	for i := 0; i < 100; i++ {
		h.record(50000)
	}
	s = histSnapshot{}
	s.add(&h)
	s.sub(&prev)
	if s.total() != 100 || math.Abs(s.quantileMs(0.5)-50) > 50.0/64 {
		t.Errorf("interval: %d values, p50 %v ms; want 100 values at 50 ms", s.total(), s.quantileMs(0.5))
	}
}

func TestParseDistribution(t *testing.T) {
	good := map[string]distribution{
		"5":             {distFixed, 5, 5},
		"fixed:7":       {distFixed, 7, 7},
		"uniform:1-50":  {distUniform, 1, 50},
		"skewed:2-9":    {distSkewed, 2, 9},
		"uniform:3-3":   {distUniform, 3, 3},
		"skewed:1-1000": {distSkewed, 1, 1000},
	}
	for spec, want := range good {
		got, err := parseDistribution(spec)
		if err != nil || got != want {
			t.Errorf("parseDistribution(%q) = %+v, %v; want %+v", spec, got, err, want)
		}
		if again, _ := parseDistribution(got.String()); again != got {
			t.Errorf("%q does not round-trip through String(): %q", spec, got.String())
		}
	}
	for _, spec := range []string{"", "0", "-1", "fixed:", "uniform:5", "uniform:9-3", "uniform:0-3", "skewed:1-x", "zipf:1-5", "uniform:1-10001"} {
		if _, err := parseDistribution(spec); err == nil {
			t.Errorf("parseDistribution(%q) accepted", spec)
		}
	}
}

func drawCounts(t *testing.T, spec string, n int) (counts []int, mean float64) {
	t.Helper()
	d, err := parseDistribution(spec)
	if err != nil {
		t.Fatal(err)
	}
	c := newCounter(d, rand.New(rand.NewPCG(5, 6)))
	counts = make([]int, n)
	sum := 0
	for i := range counts {
		counts[i] = c.next()
		if counts[i] < d.min || counts[i] > d.max {
			t.Fatalf("%s drew %d", spec, counts[i])
		}
		sum += counts[i]
	}
	return counts, float64(sum) / float64(n)
}

func TestDistributions(t *testing.T) {
	const n = 100000
	fixed, mean := drawCounts(t, "fixed:5", n)
	if mean != 5 || fixed[0] != 5 {
		t.Fatalf("fixed:5 mean %v", mean)
	}

	uniform, uMean := drawCounts(t, "uniform:1-50", n)
	if math.Abs(uMean-25.5) > 0.5 {
		t.Errorf("uniform:1-50 mean %.2f, want 25.5", uMean)
	}
	hist := map[int]int{}
	for _, v := range uniform {
		hist[v]++
	}
	for v := 1; v <= 50; v++ { // each value ~2000 times; 5 sigma is ~220
		if hist[v] < n/50-300 || hist[v] > n/50+300 {
			t.Errorf("uniform:1-50 drew %d %d times, want about %d", v, hist[v], n/50)
		}
	}

	skewed, sMean := drawCounts(t, "skewed:1-50", n)
	ones, fifties := 0, 0
	for _, v := range skewed {
		switch v {
		case 1:
			ones++
		case 50:
			fifties++
		}
	}
	// Zipf s=1.2 over 1..50: mean ≈ 8.8, P(1) ≈ 0.30, P(50) ≈ 0.003.
	if sMean >= uMean/2 || sMean < 6 || sMean > 12 {
		t.Errorf("skewed:1-50 mean %.2f, want about 9 (well under uniform's %.1f)", sMean, uMean)
	}
	if ones < n/4 || fifties == 0 || fifties > n/100 {
		t.Errorf("skewed:1-50: %d ones, %d fifties of %d; want many small, few large", ones, fifties, n)
	}
}

// seedPacket is the seed's packet shape, decoded strictly.
type seedPacket struct {
	EmitterID string `json:"emitter_id"`
	PacketID  string `json:"packet_id"`
	Messages  []struct {
		Timestamp *int64            `json:"timestamp"`
		Level     string            `json:"level"`
		Message   *string           `json:"message"`
		Metadata  map[string]string `json:"metadata"`
	} `json:"messages"`
}

// checkSeedPacket decodes body as the seed's packet and returns it, or an error
// message naming what is wrong.
func checkSeedPacket(body []byte) (seedPacket, string) {
	var p seedPacket
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, "not the seed's JSON shape: " + err.Error()
	}
	if dec.More() {
		return p, "trailing data after the packet"
	}
	switch {
	case p.EmitterID == "":
		return p, "empty emitter_id"
	case p.PacketID == "":
		return p, "empty packet_id"
	case len(p.Messages) == 0:
		return p, "no messages"
	}
	now := time.Now().UnixMilli()
	for _, m := range p.Messages {
		switch {
		case m.Timestamp == nil || *m.Timestamp < now-3600e3 || *m.Timestamp > now+1e3:
			return p, "timestamp missing or not now in unix ms"
		case m.Level != "INFO" && m.Level != "WARN" && m.Level != "ERROR" && m.Level != "DEBUG":
			return p, "bad level " + m.Level
		case m.Message == nil || *m.Message == "":
			return p, "empty message"
		case m.Metadata["service"] == "" || m.Metadata["host"] == "" || len(m.Metadata) != 2:
			return p, "metadata is not {service, host}"
		}
	}
	return p, ""
}

func TestGeneratorBodies(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	pool := newTextPool(DefaultMessageBytes, rng)
	d, _ := parseDistribution("uniform:1-20")
	prefix := newPacketPrefix(`odd "id"\`, time.Now().UnixNano())
	g := newGenerator(prefix, `odd "id"\`, pool, DefaultMessageBytes, d, rng)
	var buf []byte
	levels := map[string]int{}
	for seq := uint64(1); seq <= 300; seq++ {
		n := g.counts.next()
		buf = g.appendPacket(buf[:0], seq, n, time.Now().UnixMilli())
		p, bad := checkSeedPacket(buf)
		if bad != "" {
			t.Fatalf("packet %d: %s\n%s", seq, bad, buf)
		}
		if p.EmitterID != `odd "id"\` || p.PacketID != g.packetID(seq) || len(p.Messages) != n {
			t.Fatalf("packet %d: emitter %q id %q (want %q) %d messages (want %d)", seq, p.EmitterID, p.PacketID, g.packetID(seq), len(p.Messages), n)
		}
		for _, m := range p.Messages {
			levels[m.Level]++
			if len(*m.Message) != DefaultMessageBytes {
				t.Fatalf("message text %d bytes, want %d", len(*m.Message), DefaultMessageBytes)
			}
		}
	}
	if len(levels) != 4 || levels["INFO"] < levels["ERROR"] {
		t.Errorf("levels %v: want all four, mostly INFO", levels)
	}
}

func TestDefaultPacketSize(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	pool := newTextPool(DefaultMessageBytes, rng)
	d, _ := parseDistribution("5")
	prefix := newPacketPrefix(defaultEmitterID(), time.Now().UnixNano())
	g := newGenerator(prefix, defaultEmitterID(), pool, DefaultMessageBytes, d, rng)
	body := g.appendPacket(nil, 123456, g.counts.next(), time.Now().UnixMilli())
	// The brief: a default packet of 5 messages is about 1.1 KB.
	if len(body) < 1000 || len(body) > 1200 {
		t.Fatalf("default packet is %d bytes, want about 1100:\n%s", len(body), body)
	}
}

func TestPacketBodyAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	pool := newTextPool(DefaultMessageBytes, rng)
	d, _ := parseDistribution("skewed:1-50")
	g := newGenerator(newPacketPrefix("e", 1), "e", pool, DefaultMessageBytes, d, rng)
	buf := make([]byte, 0, 64<<10)
	seq := uint64(0)
	allocs := testing.AllocsPerRun(1000, func() {
		seq++
		buf = g.appendPacket(buf[:0], seq, g.counts.next(), 1700000000000)
	})
	if allocs != 0 {
		t.Fatalf("building a packet allocates %v times", allocs)
	}
}

func BenchmarkPacketBody(b *testing.B) {
	rng := rand.New(rand.NewPCG(11, 12))
	pool := newTextPool(DefaultMessageBytes, rng)
	d, _ := parseDistribution("5")
	g := newGenerator(newPacketPrefix("emitter-bench", 1), "emitter-bench", pool, DefaultMessageBytes, d, rng)
	buf := make([]byte, 0, 4<<10)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = g.appendPacket(buf[:0], uint64(i), 5, 1700000000000)
	}
	b.SetBytes(int64(len(buf)))
}

func TestResolveConfig(t *testing.T) {
	rc, err := Config{Target: "http://127.0.0.1:9000"}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if rc.addr != "127.0.0.1:9000" || rc.host != "127.0.0.1:9000" || rc.path != "/ingest" {
		t.Errorf("target resolved to addr %q host %q path %q", rc.addr, rc.host, rc.path)
	}
	if rc.Concurrency != DefaultConcurrency || rc.Retries != DefaultRetries || rc.Pipeline != 1 ||
		rc.dist != (distribution{distFixed, 5, 5}) || rc.MessageBytes != DefaultMessageBytes || rc.EmitterID == "" {
		t.Errorf("zero fields did not take defaults: %+v", rc)
	}
	if rc, _ := (Config{Retries: -1}).resolve(); rc.Retries != 0 {
		t.Errorf("Retries -1 resolved to %d, want 0 (no re-sends)", rc.Retries)
	}
	targets := map[string][3]string{
		"localhost:8080":                 {"localhost:8080", "localhost:8080", "/ingest"},
		"http://d:81/":                   {"d:81", "d:81", "/ingest"},
		"http://d/custom/ingest?x=1":     {"d:80", "d", "/custom/ingest?x=1"},
		"http://[::1]:9/ingest":          {"[::1]:9", "[::1]:9", "/ingest"},
		"http://distributor:8080/ingest": {"distributor:8080", "distributor:8080", "/ingest"},
	}
	for target, want := range targets {
		addr, host, path, err := parseTarget(target)
		if err != nil || [3]string{addr, host, path} != want {
			t.Errorf("parseTarget(%q) = %q %q %q %v; want %q", target, addr, host, path, err, want)
		}
	}
	bad := []Config{
		{Target: "https://x:1"}, {Target: "http://"}, {Rate: -1}, {Concurrency: -2}, {Count: -1},
		{Messages: "uniform:9-1"}, {Pipeline: 2000}, {MinAccept: 1.5}, {Duration: -time.Second},
	}
	for _, c := range bad {
		if _, err := c.resolve(); err == nil {
			t.Errorf("resolve(%+v) accepted", c)
		}
	}
}
