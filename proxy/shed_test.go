package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicelog/sluice/codec"
	"github.com/sluicelog/sluice/spool"
)

// levelPacket is a seed-format packet with one message per level given.
func levelPacket(id string, levels ...string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"emitter_id":"shed-test","packet_id":"` + id + `","messages":[`)
	for i, l := range levels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"timestamp":1640995200000,"level":"` + l + `","message":"m` + strconv.Itoa(i) + `"}`)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// postPacket posts body and returns the status, Retry-After and the answer body.
func postPacket(t *testing.T, c *http.Client, url string, body []byte) (int, string, string) {
	t.Helper()
	resp, err := c.Post(url+"/ingest", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

func TestShedSettings(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		name string
	}{
		{map[string]string{"SHED_BELOW": "LOUD"}, "SHED_BELOW"},
		{map[string]string{"SHED_BELOW": "OTHER"}, "SHED_BELOW"},
		{map[string]string{"SHED_AT": "0"}, "SHED_AT"},
		{map[string]string{"SHED_AT": "1.5"}, "SHED_AT"},
		{map[string]string{"SHED_AT": "NaN"}, "SHED_AT"},
		{map[string]string{"SHED_AT": "most"}, "SHED_AT"},
	} {
		c.env["ANALYZERS"] = "http://a:1=1"
		_, err := LoadConfig(nil, env(c.env), io.Discard)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Name != c.name {
			t.Errorf("env %v: error %v, want a ConfigError naming %s", c.env, err, c.name)
		}
	}
	cfg, err := LoadConfig([]string{"--shed-below", "warning", "--shed-at", "0.5"}, env(map[string]string{"ANALYZERS": "http://a:1=1"}), io.Discard)
	if err != nil || cfg.ShedBelow != shedLevelOf(codec.LevelWarn) || cfg.ShedAt != 0.5 {
		t.Fatalf("--shed-below warning --shed-at 0.5: %v, %v %v", err, cfg.ShedBelow, cfg.ShedAt)
	}
	if d := DefaultConfig(); d.ShedBelow != ShedOff || d.ShedAt != 0.8 || d.ShedBelow.String() != "" {
		t.Fatalf("defaults: SHED_BELOW %q SHED_AT %v, want off and 0.8", d.ShedBelow, d.ShedAt)
	}
}

func TestMostSevere(t *testing.T) {
	for _, c := range []struct {
		levels []string
		want   codec.Level
	}{
		{[]string{"DEBUG"}, codec.LevelDebug},
		{[]string{"debug", "trace", "Error", "info"}, codec.LevelError},
		{[]string{"TRACE"}, codec.LevelTrace},
		{[]string{"FATAL", "DEBUG"}, codec.LevelFatal},
		{[]string{"DEBUG", "verbose"}, codec.LevelOther}, // unknown: never shed
	} {
		var p codec.Packet
		var lv codec.Levels
		if err := codec.ValidatePacketLevels(levelPacket("x", c.levels...), &p, &lv); err != nil {
			t.Fatal(err)
		}
		if got := mostSevere(&lv); got != c.want {
			t.Errorf("%v: most severe %v, want %v", c.levels, got, c.want)
		}
	}
}

// Past SHED_AT of INGEST_BUFFER_SIZE, a packet whose most severe message is below
// SHED_BELOW gets 503 + Retry-After; a packet with a message at SHED_BELOW or above,
// or one whose level is unknown, is still accepted, up to the hard bound; the
// refusals are counted by level; everything accepted is delivered.
func TestShedBelowLevel(t *testing.T) {
	slow := newFakeAnalyzer(t, false)
	slow.delay.Store(int64(400 * time.Millisecond)) // packets stay in flight: the backlog grows
	srv := startDistributor(t, slow.url()+"=1", func(c *Config) {
		c.IngestBufferSize = 10
		c.ShedBelow = shedLevelOf(codec.LevelError)
		c.ShedAt = 0.5
		c.SenderTimeout = 10 * time.Second
	})
	c := &http.Client{Timeout: 10 * time.Second}
	url := ingestURL(srv)
	accepted := map[string]int{}
	send := func(id string, want int, levels ...string) {
		t.Helper()
		code, ra, body := postPacket(t, c, url, levelPacket(id, levels...))
		if code != want {
			t.Fatalf("%s %v: %d %s, want %d (backlog %d)", id, levels, code, body, want, srv.budget.held.Load())
		}
		switch code {
		case 202:
			accepted[id] = len(levels)
		case 503:
			if n, err := strconv.Atoi(ra); err != nil || n < 1 {
				t.Fatalf("%s: 503 with Retry-After %q", id, ra)
			}
		}
	}
	for i := range 5 { // backlog 0..4 of 10: under SHED_AT=0.5
		send("debug-"+strconv.Itoa(i), 202, "DEBUG", "INFO")
	}
	send("debug-5", 503, "DEBUG", "WARN") // backlog 5: shed
	send("trace-6", 503, "TRACE")
	_, _, body := postPacket(t, c, url, levelPacket("debug-7", "DEBUG"))
	if !strings.Contains(body, "shedding") {
		t.Fatalf("shed answer %s, want a JSON reason naming shedding", body)
	}
	send("mixed-8", 202, "DEBUG", "ERROR") // a message at SHED_BELOW: kept
	send("fatal-9", 202, "FATAL")
	send("other-10", 202, "DEBUG", "notice") // unknown level: never shed
	send("error-11", 202, "ERROR")
	send("error-12", 202, "ERROR") // the 10th held packet
	send("error-13", 503, "ERROR") // the hard bound
	st := srv.Snapshot()
	if st.Shed[codec.LevelWarn] != 1 || st.Shed[codec.LevelDebug] != 1 || st.Shed[codec.LevelTrace] != 1 || st.Rejected[rejectShed] != 3 || st.Rejected[rejectFull] != 1 {
		t.Fatalf("shed by level %v, rejected %v: want WARN, DEBUG and TRACE 1 each (by the most severe message), shed 3, full 1", st.Shed, st.Rejected)
	}
	var expo bytes.Buffer
	srv.prom.WritePrometheus(&expo)
	for _, line := range []string{`distributor_shed_packets_total{level="DEBUG"} 1`, `distributor_shed_packets_total{level="WARN"} 1`, `distributor_shed_packets_total{level="TRACE"} 1`,
		`distributor_shed_packets_total{level="ERROR"} 0`, `distributor_rejected_packets_total{reason="shed"} 3`} {
		if !strings.Contains(expo.String(), line+"\n") {
			t.Errorf("exposition lacks %s", line)
		}
	}
	st = settledNothingLost(t, srv, 20*time.Second)
	checkDelivered(t, accepted, []*fakeAnalyzer{slow}, false)
	// Drained: the backlog is under SHED_AT again, DEBUG is accepted.
	send("debug-after", 202, "DEBUG")
}

// With SHED_BELOW unset nothing is shed: past SHED_AT a DEBUG packet is accepted
// up to the hard bound as before.
func TestShedOffByDefault(t *testing.T) {
	slow := newFakeAnalyzer(t, false)
	slow.delay.Store(int64(300 * time.Millisecond))
	srv := startDistributor(t, slow.url()+"=1", func(c *Config) {
		c.IngestBufferSize = 4
		c.SenderTimeout = 10 * time.Second
	})
	c := &http.Client{Timeout: 10 * time.Second}
	for i := range 5 {
		code, _, body := postPacket(t, c, ingestURL(srv), levelPacket("d-"+strconv.Itoa(i), "DEBUG"))
		if want := map[bool]int{true: 202, false: 503}[i < 4]; code != want {
			t.Fatalf("packet %d: %d %s, want %d", i, code, body, want)
		}
	}
	if st := srv.Snapshot(); st.Rejected[rejectShed] != 0 || st.Rejected[rejectFull] != 1 {
		t.Fatalf("rejected %v, want 1 full and none shed", st.Rejected)
	}
	settledNothingLost(t, srv, 10*time.Second)
}

// The measurement: an analyzer that takes about 200 packets/s, offered
// about 400/s (2× overload), half ERROR-only and half DEBUG-only packets, with
// SHED_BELOW=ERROR. ERROR packets are refused at most half as often as DEBUG ones,
// and every accepted packet is delivered (by packet_id).
func TestShedAtTwiceOverload(t *testing.T) {
	longScenario(t)
	slow := newFakeAnalyzer(t, false)
	// One request at a time per connection: ~50/s each. A long delay keeps the
	// machine's own scheduling delays (a few ms on a loaded machine) small beside
	// it, so the capacity, and the overload factor, stay near what they should be.
	slow.delay.Store(int64(20 * time.Millisecond))
	srv := startDistributor(t, slow.url()+"=1", func(c *Config) {
		c.Loops = 2
		c.UpstreamConns = 2 // 4 connections: ~200 packets/s
		c.PipelineDepth = 1 // one request in flight per connection, so all four carry
		c.IngestBufferSize = 100
		c.ShedBelow = shedLevelOf(codec.LevelError)
		c.ShedAt = 0.5
		c.SenderTimeout = 10 * time.Second
	})
	const (
		offered  = 400 // packets/s, open loop: the test's emitters do not back off
		duration = 4 * time.Second
	)
	url := ingestURL(srv)
	var (
		mu       sync.Mutex
		accepted = map[string]int{}
		sent     [2]int // [0] ERROR, [1] DEBUG
		refused  [2]int
		other    atomic.Int64
	)
	work := make(chan int, offered)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for i := range work {
				kind, level := i%2, [2]string{"ERROR", "DEBUG"}[i%2]
				id := strings.ToLower(level) + "-" + strconv.Itoa(i)
				code, _, _ := postPacket(t, c, url, levelPacket(id, level, level, level))
				mu.Lock()
				sent[kind]++
				switch code {
				case 202:
					accepted[id] = 3
				case 503:
					refused[kind]++
				default:
					other.Add(1)
				}
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	tick := time.NewTicker(time.Second / offered)
	for i := 0; time.Since(start) < duration; i++ {
		<-tick.C
		work <- i
	}
	tick.Stop()
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	st := settledNothingLost(t, srv, 20*time.Second)
	checkDelivered(t, accepted, []*fakeAnalyzer{slow}, false)
	if n := other.Load(); n != 0 {
		t.Fatalf("%d answers neither 202 nor 503", n)
	}
	errRate, dbgRate := float64(refused[0])/float64(sent[0]), float64(refused[1])/float64(sent[1])
	offeredRate := float64(sent[0]+sent[1]) / elapsed.Seconds()
	deliveredRate := float64(st.Total().DeliveredPackets) / elapsed.Seconds()
	t.Logf("offered %.0f packets/s, delivered %.0f/s (%.1f× overload); ERROR refused %d of %d (%.1f %%), DEBUG refused %d of %d (%.1f %%); shed %v, full %d",
		offeredRate, deliveredRate, offeredRate/deliveredRate, refused[0], sent[0], 100*errRate, refused[1], sent[1], 100*dbgRate,
		st.Shed, st.Rejected[rejectFull])
	if offeredRate < 1.5*deliveredRate {
		t.Fatalf("offered %.0f/s against %.0f/s delivered: not overloaded, the test measures nothing", offeredRate, deliveredRate)
	}
	if dbgRate == 0 || errRate > dbgRate/2 {
		t.Fatalf("ERROR refused %.3f of the time, DEBUG %.3f: want ERROR at most half as often", errRate, dbgRate)
	}
	if st.Shed[codec.LevelError] != 0 || st.Shed[codec.LevelDebug]+st.Rejected[rejectFull] != int64(refused[0]+refused[1]) {
		t.Fatalf("shed by level %v and %d full, want no ERROR shed and every 503 counted as shed or full (%d)", st.Shed, st.Rejected[rejectFull], refused[0]+refused[1])
	}
}

// SHED_BELOW, SHED_AT, ROUTING and CAPACITY_MIN_SHARE apply on reload; AFFINITY
// is reported as needing a restart.
func TestReloadOverloadSettings(t *testing.T) {
	fa := newFrontAnalyzer(t, false)
	path := writeConfig(t, liveYAML(fa.url, ""))
	srv, r := loadedServer(t, path, io.Discard)
	if err := os.WriteFile(path, []byte(liveYAML(fa.url, "shed_below: error\nshed_at: 0.5\nrouting: weighted-capacity\ncapacity_min_share: 0.3\naffinity: emitter_id\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	res := r.reload()
	applied := strings.Join(res.Applied, ",")
	for _, s := range []string{"SHED_BELOW", "SHED_AT", "ROUTING", "CAPACITY_MIN_SHARE"} {
		if !strings.Contains(applied, s+":") {
			t.Errorf("reload applied %q, want %s among them", applied, s)
		}
	}
	if !res.OK || len(res.Restart) != 1 || !strings.Contains(res.Restart[0], "AFFINITY") {
		t.Fatalf("reload %+v: want AFFINITY alone needing a restart", res)
	}
	if ShedLevel(srv.knobs.shedBelow.Load()) != shedLevelOf(codec.LevelError) || srv.knobs.shedAt.Load() != shedScale/2 {
		t.Fatalf("knobs after reload: shed_below %v shed_at %d", ShedLevel(srv.knobs.shedBelow.Load()), srv.knobs.shedAt.Load())
	}
	srv.ctl.mu.Lock()
	routing, floor := srv.ctl.cfg.Routing, srv.ctl.cfg.CapacityMinShare
	srv.ctl.mu.Unlock()
	if routing != RoutingWeightedCapacity || floor != 0.3 {
		t.Fatalf("controller after reload: %v %v", routing, floor)
	}
	if err := os.WriteFile(path, []byte(liveYAML(fa.url, "affinity: emitter_id\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	res = r.reload()
	want := "SHED_BELOW: error -> ,SHED_AT: 0.5 -> 0.8,ROUTING: weighted-capacity -> weighted,CAPACITY_MIN_SHARE: 0.3 -> 0.5"
	if got := strings.Join(res.Applied, ","); !res.OK || got != want {
		t.Fatalf("second reload applied %q, want %q", got, want)
	}
	if ShedLevel(srv.knobs.shedBelow.Load()) != ShedOff {
		t.Fatal("SHED_BELOW removed from the file: shedding still on")
	}
}

// With a spool, shedding also measures the spool's bytes against SPOOL_MAX_BYTES:
// here the memory backlog stays far under SHED_AT (a buffer of 10,000 packets)
// while the spool fills (a stalled analyzer: no segment can be deleted), and
// DEBUG packets are shed once the spool passes SHED_AT of its bound; ERROR ones
// are still accepted.
func TestShedOnSpoolBytes(t *testing.T) {
	stall := newFakeAnalyzer(t, false)
	stall.delay.Store(int64(5 * time.Second))
	srv := startDistributor(t, stall.url()+"=1", func(c *Config) {
		spoolConfig(t.TempDir(), spool.SyncAlways)(c)
		c.SpoolSegmentBytes, c.SpoolMaxBytes = 4096, 8192
		c.ShedBelow, c.ShedAt = shedLevelOf(codec.LevelError), 0.5
		c.SenderTimeout = 10 * time.Second
	})
	c := &http.Client{Timeout: 10 * time.Second}
	url := ingestURL(srv)
	shedAt := -1
	for i := 0; i < 100 && shedAt < 0; i++ {
		before := srv.spool.Bytes()
		code, _, body := postPacket(t, c, url, levelPacket("d-"+strconv.Itoa(i), "DEBUG", "INFO"))
		switch code {
		case 202:
		case 503:
			if !strings.Contains(body, "shedding") {
				t.Fatalf("packet %d: 503 %s, want shedding", i, body)
			}
			if before*2 < 8192 {
				t.Fatalf("packet %d shed with the spool at %d of 8192 bytes, under SHED_AT", i, before)
			}
			shedAt = i
		default:
			t.Fatalf("packet %d: %d %s", i, code, body)
		}
	}
	if shedAt < 0 {
		t.Fatalf("nothing shed with the spool at %d of 8192 bytes", srv.spool.Bytes())
	}
	if held := srv.budget.held.Load(); held*2 >= 10000 {
		t.Fatalf("memory backlog %d: the test means it to stay under SHED_AT", held)
	}
	if code, _, body := postPacket(t, c, url, levelPacket("e", "ERROR")); code != 202 {
		t.Fatalf("ERROR packet with the spool past SHED_AT: %d %s, want 202", code, body)
	}
	t.Logf("first DEBUG packet shed at #%d, spool %d bytes", shedAt, srv.spool.Bytes())
}
