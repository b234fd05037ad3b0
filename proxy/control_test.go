package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicelog/sluice/sched"
)

// answerProbes folds in a passing health probe for every analyzer, as Start's
// first probe round does, for tests that build a Server without starting it.
func answerProbes(srv *Server) {
	for id := range srv.cfg.Analyzers {
		srv.ctl.probed(probeResult{id: id, ok: true, status: 200}, time.Now())
	}
}

// ctlHarness runs a controller on a fake clock: probes are recorded, not sent, and
// answered by the test.
type ctlHarness struct {
	c        *controller
	board    sched.Board
	clock    time.Time
	launched []int   // probes started and not yet answered
	retry    []int32 // every Retry-After the controller set
}

func newHarness(weights []float64, tweak func(*Config)) *ctlHarness {
	cfg := DefaultConfig()
	for i, w := range weights {
		cfg.Analyzers = append(cfg.Analyzers, AnalyzerSpec{Name: "a" + strconv.Itoa(i), URL: "http://127.0.0.1:1", Weight: w})
	}
	if tweak != nil {
		tweak(&cfg)
	}
	h := &ctlHarness{clock: time.Unix(1000, 0)}
	h.c = newController(cfg, &h.board, slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(s int32) { h.retry = append(h.retry, s) }, func() int32 { return 1 })
	h.c.now = func() time.Time { return h.clock }
	h.c.launch = func(id int) { h.launched = append(h.launched, id) }
	h.c.publish(h.clock)
	return h
}

// advance moves the clock on by d and lets the controller step.
func (h *ctlHarness) advance(d time.Duration) {
	h.clock = h.clock.Add(d)
	h.c.step(h.clock)
}

// answer folds in a result for every probe started so far.
func (h *ctlHarness) answer(ok bool) {
	for _, id := range h.launched {
		r := probeResult{id: id, ok: ok, err: "connection refused"}
		if ok {
			r.status = 200
		}
		h.c.probed(r, h.clock)
	}
	h.launched = nil
}

func (h *ctlHarness) member(i int) sched.Member { return h.board.Load().Members[i] }

// Issue #14: the last step of a slow-start ramp must be published, after an
// undrain and after a breaker closes.
func TestSlowStartEndsAtFullWeight(t *testing.T) {
	const window = 3 * time.Second
	h := newHarness([]float64{0.5, 0.5}, func(c *Config) { c.SlowStart = window })
	h.advance(0)
	h.answer(true)
	checkFull := func(what string) {
		t.Helper()
		m := h.member(0)
		if m.State != StateHealthy || m.Effective != m.Weight {
			t.Fatalf("%s: %s with effective weight %v, want healthy with %v", what, m.State, m.Effective, m.Weight)
		}
	}
	checkFull("at start")

	_, _, _ = h.c.setDrained(h.member(0).Name, true)
	_, _, _ = h.c.setDrained(h.member(0).Name, false)
	h.advance(window / 2)
	if m := h.member(0); m.State != StateSlowStart || !(m.Effective < m.Weight) {
		t.Fatalf("mid-ramp after an undrain: %s with %v, want slow_start below %v", m.State, m.Effective, m.Weight)
	}
	for range 20 { // 2 s of controller steps: well past the window
		h.advance(controlInterval)
	}
	checkFull("after the ramp that followed an undrain")

	// Through the breaker: open, half-open, three trial successes, ramp, full weight.
	for range h.c.cfg.MaxFailures {
		h.c.failed(0, false)
	}
	h.advance(0)
	if s := h.member(0).State; s != StateOpen {
		t.Fatalf("after MAX_FAILURES failures: %s, want open", s)
	}
	h.advance(2 * breakerBase) // past any jittered first backoff: the probe starts
	h.answer(true)
	if s := h.member(0).State; s != StateHalfOpen {
		t.Fatalf("after a passing probe: %s, want half_open", s)
	}
	for range trialNeeded {
		h.c.answered(0, true)
	}
	h.advance(0)
	if s := h.member(0).State; s != StateSlowStart {
		t.Fatalf("after the trial: %s, want slow_start", s)
	}
	for range 40 {
		h.advance(controlInterval)
	}
	checkFull("after the ramp that followed the breaker closing")
}

// Issue #14, through a real Server: after SLOW_START_SEC=1 an undrained analyzer is
// healthy at exactly its weight in /health.
func TestSlowStartEndsThroughServer(t *testing.T) {
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	srv := startDistributor(t, joinAnalyzers(fakes, 0.5, 0.5), func(c *Config) { c.SlowStart = time.Second })
	name := srv.View().Members[0].Name
	admin := func(action string) (a AnalyzerHealth) {
		t.Helper()
		fetchJSON(t, http.MethodPost, "http://"+srv.MetricsAddr()+"/admin/analyzers/"+name+"/"+action, &a)
		return a
	}
	admin("drain")
	if a := admin("undrain"); a.State != StateSlowStart.String() {
		t.Fatalf("right after undrain: %s, want slow_start", a.State)
	}
	waitFor(t, "the ramp to end at the full weight", 5*time.Second, func() bool {
		h, _ := getHealth(t, ingestURL(srv))
		a := h.Analyzers[0]
		return a.State == StateHealthy.String() && a.EffectiveWeight == a.Weight
	})
}

func getHealth(t *testing.T, base string) (h HealthJSON, status int) {
	t.Helper()
	status = fetchJSON(t, http.MethodGet, base+"/health", &h)
	return h, status
}

// fetchJSON sends a bodiless request (declared JSON, as the admin API wants of a
// change) and decodes the JSON answer into v; it returns the answer's status.
func fetchJSON(t *testing.T, method, url string, v any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// Issue #21.1: an analyzer nothing listens on is not healthy at start: /health
// answers 503 and /ingest 503 at once.
func TestUnreachableAnalyzerAtStart(t *testing.T) {
	srv := startDistributor(t, "http://"+deadAddr(t)+"=1", nil)
	h, code := getHealth(t, ingestURL(srv))
	if code != 503 || h.Status == "healthy" || h.HealthyAnalyzers != 0 {
		t.Fatalf("/health: %d %s with %d healthy, want 503 and none healthy", code, h.Status, h.HealthyAnalyzers)
	}
	if s := h.Analyzers[0].State; s != StateUnknown.String() && s != StateOpen.String() {
		t.Fatalf("the unreachable analyzer is %s, want unknown or open", s)
	}
	start := time.Now()
	if code, hdr := newSender(ingestURL(srv), 1).send(t, "p-1", 3); code != 503 || hdr.Get("Retry-After") == "" {
		t.Fatalf("/ingest: %d (Retry-After %q), want 503 with Retry-After", code, hdr.Get("Retry-After"))
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the 503 took %v; it must be immediate", d)
	}
}

// A second analyzer that is up is eligible as soon as Start returns, next to one
// that is not.
func TestStartWaitsForFirstProbes(t *testing.T) {
	fake := newFakeAnalyzer(t, false)
	srv := startDistributor(t, fake.url()+"=0.5,http://"+deadAddr(t)+"=0.5", nil)
	v := srv.View()
	if !v.Members[0].Eligible || v.Members[0].State != StateHealthy {
		t.Fatalf("the live analyzer is %s (eligible %v) when Start returns, want healthy", v.Members[0].State, v.Members[0].Eligible)
	}
	if v.Members[1].Eligible {
		t.Fatalf("the dead analyzer is eligible (%s)", v.Members[1].State)
	}
	if code, _ := newSender(ingestURL(srv), 1).send(t, "p-1", 3); code != 202 {
		t.Fatalf("/ingest: %d, want 202", code)
	}
}

// Issue #21.4: a half-open analyzer is not healthy, and every surface says so.
func TestHalfOpenIsNotHealthyAnywhere(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Analyzers, _ = ParseAnalyzers("http://127.0.0.1:1=0.5,http://127.0.0.2:1=0.5")
	cfg.Loops, cfg.MetricsAddr = 1, ""
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv.ctl.launch = func(int) {} // no real probes: this test answers them
	answerProbes(srv)
	for range cfg.MaxFailures {
		srv.ctl.failed(1, false)
	}
	now := time.Now()
	srv.ctl.step(now)
	srv.ctl.probed(probeResult{id: 1, ok: true, status: 200}, now.Add(time.Minute))
	if s := srv.View().Members[1].State; s != StateHalfOpen || !srv.View().Members[1].Eligible {
		t.Fatalf("analyzer is %s, want half_open (and eligible for its trial)", s)
	}
	h, ok := srv.Health()
	if h.HealthyAnalyzers != 1 || h.Status != "degraded" || !ok {
		t.Errorf("/health: %d healthy, status %s, want 1 and degraded", h.HealthyAnalyzers, h.Status)
	}
	if n := srv.MetricsJSON().HealthyAnalyzers; n != 1 {
		t.Errorf("/metrics-json healthy_analyzers = %d, want 1", n)
	}
	var buf bytes.Buffer
	srv.prom.WritePrometheus(&buf)
	if !strings.Contains(buf.String(), "\ndistributor_healthy_analyzers 1\n") {
		t.Errorf("/metrics: no distributor_healthy_analyzers 1 in\n%s", grepLines(buf.String(), "healthy_analyzers"))
	}
	if !strings.Contains(buf.String(), `distributor_breaker_state{analyzer="`+h.Analyzers[1].Name+`"} 2`) {
		t.Errorf("/metrics: breaker state of the half-open analyzer is not 2:\n%s", grepLines(buf.String(), "breaker_state"))
	}
}

func grepLines(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Issue #21.5: MAX_FAILURES counts failures in a row of one analyzer, whichever
// loops saw them: exactly MAX_FAILURES open it, and a 2xx on any loop ends the run.
func TestMaxFailuresAcrossShards(t *testing.T) {
	srv := benchShard(t, 2).srv
	srv.ctl.launch = func(int) {}
	shards := []*shard{newShard(srv, 0, nil), newShard(srv, 1, nil)}
	fail := func(n int) {
		for i := range n {
			sh := shards[i%2]
			sh.failure(sh.dests[0], false)
		}
		srv.ctl.step(time.Now())
	}
	max := srv.cfg.MaxFailures
	fail(max - 1)
	if s := stateOf(srv, 0); s != StateHealthy {
		t.Fatalf("after %d failures spread over two loops: %s, want healthy", max-1, s)
	}
	srv.ctl.answered(0, false) // a 2xx on some loop ends the run
	fail(max - 1)
	if s := stateOf(srv, 0); s != StateHealthy {
		t.Fatalf("after a success and %d more failures: %s, want healthy", max-1, s)
	}
	fail(1)
	if s := stateOf(srv, 0); s != StateOpen {
		t.Fatalf("after %d failures in a row over two loops: %s, want open", max, s)
	}
}

// Issue #21.6: an open analyzer is probed at the steady DOWN_PROBE_INTERVAL_MS
// once its backoff has passed, and Retry-After while all are down counts down and
// never jumps up.
func TestDownProbesSteadyRetryAfterMonotone(t *testing.T) {
	h := newHarness([]float64{1}, func(c *Config) { c.BreakerBackoffMax = 30 * time.Second })
	h.advance(0)
	h.answer(true)
	// Flap it: each failed trial doubles the backoff, 0.5 s to about 16 s.
	for range 5 {
		h.c.failed(0, true)
		h.advance(0)
		for h.member(0).State == StateOpen {
			h.advance(controlInterval)
			h.answer(true)
		}
	}
	h.c.failed(0, true)
	h.advance(0)
	delay := h.c.members[0].br.delay
	if delay < 12*time.Second {
		t.Fatalf("backoff after 5 failed trials is %v, want about 16 s", delay)
	}
	h.retry = h.retry[:0]
	probes := 0
	for range 300 { // 30 s, every probe fails
		h.advance(controlInterval)
		probes += len(h.launched)
		h.answer(false)
	}
	if s := h.member(0).State; s != StateOpen {
		t.Fatalf("state %s, want open", s)
	}
	for i := 1; i < len(h.retry); i++ {
		if h.retry[i] > h.retry[i-1] || h.retry[i] < 1 {
			t.Fatalf("Retry-After went %v: it must count down, never jump", h.retry[:i+1])
		}
	}
	if first, limit := h.retry[0], int32(delay/time.Second)+1; first > limit {
		t.Fatalf("first Retry-After %d, but the trial is due in %v", first, delay)
	}
	// After the backoff, one probe per DOWN_PROBE_INTERVAL_MS (1 s), not fewer.
	want := int((30*time.Second - delay) / h.c.cfg.DownProbeInterval)
	if probes < want-1 || probes > want+1 {
		t.Fatalf("%d probes in the %v after the backoff, want about %d (one per %v)", probes, 30*time.Second-delay, want, h.c.cfg.DownProbeInterval)
	}
}

// stateLog collects the controller's "analyzer state changed" records.
type stateLog struct {
	mu      sync.Mutex
	changes []string // "analyzer: from -> to"
}

func (l *stateLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *stateLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *stateLog) WithGroup(string) slog.Handler            { return l }
func (l *stateLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "analyzer state changed" {
		return nil
	}
	at := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { at[a.Key] = a.Value.String(); return true })
	l.mu.Lock()
	l.changes = append(l.changes, at["analyzer"]+": "+at["from"]+" -> "+at["to"])
	l.mu.Unlock()
	return nil
}

func (l *stateLog) of(analyzer string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, c := range l.changes {
		if strings.HasPrefix(c, analyzer+": ") {
			out = append(out, strings.TrimPrefix(c, analyzer+": "))
		}
	}
	return out
}

// Issue #21.6: with the default probe settings an analyzer that died and came back
// on the same port takes packets again within about 2 s, and each of its state
// changes is logged exactly once.
func TestRestartedAnalyzerBackQuicklyAndLogged(t *testing.T) {
	longScenario(t)
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	logs := &stateLog{}
	def := DefaultConfig()
	srv := startDistributorLog(t, joinAnalyzers(fakes, 0.5, 0.5), func(c *Config) {
		c.HealthInterval, c.DownProbeInterval, c.MaxFailures = def.HealthInterval, def.DownProbeInterval, def.MaxFailures
	}, slog.New(logs))
	l := startLoad(t, srv, 2, "r-", fixedSize(2))
	waitFor(t, "traffic to the second analyzer", 10*time.Second, func() bool { return delivered(srv)[1] > 0 })
	fakes[1].stop()
	waitFor(t, "its breaker to open", 10*time.Second, func() bool { return stateOf(srv, 1) == StateOpen })
	time.Sleep(4 * time.Second) // the outage: long enough for a doubling backoff to reach 4–8 s
	fakes[1].start(t)
	back := time.Now()
	waitFor(t, "the restarted analyzer to be eligible", 3*time.Second, func() bool { return srv.View().Members[1].Eligible })
	t.Logf("eligible %v after the restart", time.Since(back).Round(time.Millisecond))
	waitFor(t, "it to be healthy", 10*time.Second, func() bool { return stateOf(srv, 1) == StateHealthy })
	l.finish()
	name := srv.View().Members[1].Name
	want := []string{"unknown -> healthy", "healthy -> open", "open -> half_open", "half_open -> healthy"}
	if got := logs.of(name); strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("state changes logged for %s: %q, want each once: %q", name, got, want)
	}
	if got := logs.of(srv.View().Members[0].Name); len(got) != 1 || got[0] != "unknown -> healthy" {
		t.Errorf("state changes logged for the analyzer that stayed up: %q", got)
	}
}

// Issue #13.12: the drain estimate.
func TestDrainEstimate(t *testing.T) {
	cases := []struct {
		backlog, delivered int64
		elapsed            time.Duration
		want               int32
	}{
		{0, 100, time.Second, 1},
		{100, 0, time.Second, stalledRetryAfter},
		{100, 50, time.Second, 3},
		{100, 50, 2 * time.Second, 5},
		{1 << 40, 1, time.Second, maxRetryAfter},
		{100, 1, time.Duration(math.MaxInt64), maxRetryAfter},
	}
	for _, c := range cases {
		if got := drainEstimate(c.backlog, c.delivered, c.elapsed); got != c.want {
			t.Errorf("drainEstimate(%d, %d, %v) = %d, want %d", c.backlog, c.delivered, c.elapsed, got, c.want)
		}
	}
}

// Issue #13.12: the first Retry-After estimate measures the rate since Start, not
// since the year 1 (which overflowed to a negative number, clamped to 1).
func TestFirstDrainEstimateSinceStart(t *testing.T) {
	fake := newFakeAnalyzer(t, false)
	fake.delay.Store(int64(100 * time.Millisecond)) // about 10 answers a second per connection
	srv := startDistributor(t, fake.url()+"=1", func(c *Config) {
		c.UpstreamConns, c.PipelineDepth = 1, 1
		c.SenderTimeout = 2 * time.Second
	})
	l := startLoad(t, srv, 2, "d-", fixedSize(1))
	defer func() {
		l.finish()
		fake.delay.Store(0) // let the backlog drain before the cleanup's Shutdown
	}()
	var first int32
	waitFor(t, "the first drain estimate", 3*time.Second, func() bool {
		first = srv.drainSec.Load()
		return first != 0
	})
	if first < 2 {
		t.Fatalf("first drain estimate %d s with a backlog draining at about 20 packets/s, want more than 1", first)
	}
}

// An operator's change by name acts on the analyzer that has the name when it is
// made. With the name removed and added again at another address (a new id)
// meanwhile, a change that looked the id up first and acted after could land on
// the tombstone and answer with it; by name under one lock it never does.
func TestChangeByNameNeverActsOnATombstone(t *testing.T) {
	h := newHarness([]float64{0.5}, nil)
	spec := func(port int) AnalyzerSpec {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		return AnalyzerSpec{Name: "a1", URL: "http://" + addr, Addr: addr, Weight: 0.5}
	}
	if _, err := h.c.add(spec(1999), "test", false); err != nil {
		t.Fatal(err)
	}
	const rounds = 400 // each round leaves a tombstone; maxAnalyzers bounds them
	var attempts atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range rounds {
			for n := attempts.Load(); attempts.Load() == n; {
				runtime.Gosched() // let a change start between two rounds
			}
			if _, _, err := h.c.remove("a1", "test"); err != nil {
				t.Error(err)
				return
			}
			if _, err := h.c.add(spec(2000+i), "test", false); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	changed := 0
	for w := 1.0; ; w++ {
		select {
		case <-done:
			if changed == 0 {
				t.Fatal("no change found the analyzer in place")
			}
			return
		default:
		}
		attempts.Add(1)
		before, after, err := h.c.setWeight("a1", w)
		if err != nil {
			continue // between its removal and its return: 404 for the operator
		}
		changed++
		if after.State == StateRemoved || before.State == StateRemoved || after.Configured != w {
			t.Fatalf("weight %v acted on %+v (before %+v)", w, after, before)
		}
	}
}

// Once all maxAnalyzers ids are taken, an add takes over the id of the analyzer
// removed longest ago, once reclaimAfter has passed and nothing is held for it;
// before that, or with something held, it is refused.
func TestReclaimTombstoneIDs(t *testing.T) {
	h := newHarness([]float64{1}, nil)
	held := map[int]bool{}
	h.c.retired = func(id int) bool { return !held[id] }
	spec := func(i int) AnalyzerSpec {
		addr := "10.0.0.1:" + strconv.Itoa(1000+i)
		return AnalyzerSpec{Name: "x" + strconv.Itoa(i), URL: "http://" + addr, Addr: addr, Weight: 1}
	}
	for i := 1; i < maxAnalyzers; i++ {
		if _, err := h.c.add(spec(i), "test", false); err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
	}
	h.answer(false) // no probe left running: a probing tombstone is never reclaimed
	if _, err := h.c.add(spec(maxAnalyzers), "test", false); !errors.Is(err, errMembersFull) {
		t.Fatalf("add past maxAnalyzers with no tombstone: %v, want errMembersFull", err)
	}
	idOf := func(name string) int { return h.c.lookup(name) }
	first, second := idOf("x7"), idOf("x3")
	if _, _, err := h.c.remove("x7", "test"); err != nil {
		t.Fatal(err)
	}
	h.advance(time.Second)
	if _, _, err := h.c.remove("x3", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.add(spec(maxAnalyzers), "test", false); !errors.Is(err, errMembersFull) {
		t.Fatalf("add right after the removals: %v, want errMembersFull (reclaimAfter not passed)", err)
	}
	h.advance(reclaimAfter)
	h.answer(false) // probes the steps started before the removals
	held[first] = true
	m, err := h.c.add(spec(maxAnalyzers), "test", false)
	if err != nil || idOf(m.Name) != second {
		t.Fatalf("add with x7's id still held: %v id %d, want x3's id %d", err, idOf(m.Name), second)
	}
	held[first] = false
	m, err = h.c.add(spec(maxAnalyzers+1), "test", false)
	if err != nil || idOf(m.Name) != first {
		t.Fatalf("add: %v id %d, want x7's id %d", err, idOf(m.Name), first)
	}
	if got := h.member(first); got.Name != spec(maxAnalyzers+1).Name || got.URL != spec(maxAnalyzers+1).URL || got.State != StateUnknown {
		t.Fatalf("reclaimed member %+v, want the new URL, unknown", got)
	}
	if _, err := h.c.add(spec(maxAnalyzers+2), "test", false); !errors.Is(err, errMembersFull) {
		t.Fatalf("add with no tombstone left: %v, want errMembersFull", err)
	}
}
