package emitter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeDistributor is an in-test server on 127.0.0.1:0 that checks every body is a
// seed packet and records each packet id's arrivals. decide picks the answer for
// the given attempt (1 for the first arrival of that packet id).
type fakeDistributor struct {
	t      *testing.T
	srv    *httptest.Server
	decide func(w http.ResponseWriter, r *http.Request, p *seedPacket, attempt int) bool // true: accepted

	// light skips the full JSON check (the packet id is cut out of the body), for
	// tests about timing on a machine too loaded to decode every packet under -race.
	light bool

	mu          sync.Mutex
	arrivals    map[string][]time.Time
	accepted    map[string]int // packet id → messages
	bad         []string
	requests    int
	connections atomic.Int64
}

func newFakeDistributor(t *testing.T, decide func(w http.ResponseWriter, r *http.Request, p *seedPacket, attempt int) bool, configure ...func(*http.Server)) *fakeDistributor {
	f := &fakeDistributor{t: t, decide: decide, arrivals: map[string][]time.Time{}, accepted: map[string]int{}}
	if f.decide == nil {
		f.decide = accept
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.connections.Add(1)
		}
	}
	for _, c := range configure {
		c(f.srv.Config)
	}
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

func accept(w http.ResponseWriter, _ *http.Request, p *seedPacket, _ int) bool {
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, `{"status":"accepted","packet_id":"`+p.PacketID+`"}`)
	return true
}

func (f *fakeDistributor) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var p seedPacket
	var bad string
	if f.light {
		p.PacketID = lightPacketID(body)
		if p.PacketID == "" {
			bad = "no packet_id"
		}
	} else {
		p, bad = checkSeedPacket(body)
	}
	f.mu.Lock()
	f.requests++
	if r.Method != http.MethodPost || r.URL.Path != "/ingest" || r.Header.Get("Content-Type") != "application/json" {
		bad = "request is " + r.Method + " " + r.URL.Path + " " + r.Header.Get("Content-Type")
	}
	if bad != "" {
		f.bad = append(f.bad, bad)
		f.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	f.arrivals[p.PacketID] = append(f.arrivals[p.PacketID], now)
	attempt := len(f.arrivals[p.PacketID])
	f.mu.Unlock()

	if f.decide(w, r, &p, attempt) {
		f.mu.Lock()
		if _, dup := f.accepted[p.PacketID]; dup {
			f.bad = append(f.bad, "packet "+p.PacketID+" accepted twice")
		}
		f.accepted[p.PacketID] = len(p.Messages)
		f.mu.Unlock()
	}
}

func (f *fakeDistributor) target() string { return f.srv.URL }

func lightPacketID(body []byte) string {
	_, rest, ok := bytes.Cut(body, []byte(`"packet_id":"`))
	id, _, ok2 := bytes.Cut(rest, []byte(`"`))
	if !ok || !ok2 {
		return ""
	}
	return string(id)
}

// check fails the test on any malformed request the server saw.
func (f *fakeDistributor) check() {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, b := range f.bad {
		if i == 5 {
			f.t.Errorf("... %d malformed requests in all", len(f.bad))
			break
		}
		f.t.Errorf("server saw a bad request: %s", b)
	}
}

func (f *fakeDistributor) acceptedMessages() (packets, messages uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.accepted {
		packets++
		messages += uint64(n)
	}
	return packets, messages
}

// checkInvariant: every packet sent ends exactly one way.
func checkInvariant(t *testing.T, rep Report) {
	t.Helper()
	if rep.Sent != rep.Accepted+rep.GaveUp+rep.Unfinished {
		t.Errorf("sent %d != accepted %d + gave_up %d + unfinished %d", rep.Sent, rep.Accepted, rep.GaveUp, rep.Unfinished)
	}
}

func runOK(t *testing.T, cfg Config) Report {
	t.Helper()
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariant(t, rep)
	return rep
}

func TestAcceptsAllAndSendsSeedPackets(t *testing.T) {
	f := newFakeDistributor(t, nil)
	var mu sync.Mutex
	onAccepted := map[string]int{}
	rep := runOK(t, Config{
		Target: f.target(), Count: 500, Concurrency: 4, Messages: "uniform:1-20", EmitterID: "e-test",
		OnAccepted: func(id string, n int) {
			mu.Lock()
			onAccepted[id] += n
			mu.Unlock()
		},
	})
	f.check()
	packets, messages := f.acceptedMessages()
	if rep.Sent != 500 || rep.Accepted != 500 || packets != 500 || rep.MessagesAccepted != messages {
		t.Fatalf("report %+v; server accepted %d packets, %d messages", rep, packets, messages)
	}
	if rep.Retries != 0 || rep.OtherErrors != 0 || rep.GaveUp != 0 {
		t.Errorf("clean run reported retries %d, errors %d, gave up %d", rep.Retries, rep.OtherErrors, rep.GaveUp)
	}
	// Keep-alive: four connections for 500 packets.
	if c := f.connections.Load(); c != 4 {
		t.Errorf("server saw %d connections, want 4 (one per --concurrency, kept alive)", c)
	}
	// OnAccepted saw each accepted packet once, with the server's message count,
	// and ids are unique (the server's map would have counted duplicates as one).
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(onAccepted) != len(f.accepted) {
		t.Fatalf("OnAccepted saw %d packets, server accepted %d", len(onAccepted), len(f.accepted))
	}
	for id, n := range f.accepted {
		if onAccepted[id] != n {
			t.Fatalf("packet %s: OnAccepted %d messages, server %d", id, onAccepted[id], n)
		}
		if !strings.HasPrefix(id, "e-test-") {
			t.Fatalf("packet id %q does not start with the emitter id", id)
		}
	}
	if rep.P50Ms <= 0 || rep.P99Ms < rep.P50Ms || rep.P999Ms < rep.P99Ms {
		t.Errorf("latency p50 %v p99 %v p99.9 %v: want 0 < p50 <= p99 <= p99.9", rep.P50Ms, rep.P99Ms, rep.P999Ms)
	}
}

func TestPacketIDsUniqueAcrossRuns(t *testing.T) {
	f := newFakeDistributor(t, nil)
	for i := 0; i < 3; i++ {
		runOK(t, Config{Target: f.target(), Count: 100, Concurrency: 2, EmitterID: "same"})
	}
	f.check()
	if packets, _ := f.acceptedMessages(); packets != 300 {
		t.Fatalf("three runs of 100 packets with one emitter id: %d distinct packet ids, want 300", packets)
	}
}

func TestPacingRate(t *testing.T) {
	f := newFakeDistributor(t, nil)
	f.light = true
	start := time.Now()
	rep := runOK(t, Config{Target: f.target(), Rate: 200, Duration: time.Second, Concurrency: 16})
	f.check()
	// Slot k of a 200/s schedule is due at k·5 ms and new packets start only in
	// slots due before the 1 s stop, so exactly 200 are sent whatever the timers
	// do. Fewer are sent only when every connection is busy for longer than the
	// pacer's 100 ms slack (missed slots are then dropped, not burst): 16
	// connections leave each 80 ms per answer, but an overloaded 2-core machine
	// under -race stalls the emitter or the server that long now and then (seen:
	// 164 with six copies of this suite running at once), so the lower bound
	// allows a quarter lost. More than 200 would be a pacing bug, at any load.
	if rep.Sent < 150 || rep.Sent > 200 {
		t.Fatalf("rate 200 for 1 s sent %d packets, want 200 (150 at worst)", rep.Sent)
	}
	if rep.Accepted != rep.Sent {
		t.Fatalf("accepted %d of %d", rep.Accepted, rep.Sent)
	}
	// The packets are spread over the second, not sent in a burst: count arrivals
	// in each half (expected 100 each; ±30 absorbs scheduling noise).
	var first, second int
	f.mu.Lock()
	for _, at := range f.arrivals {
		if at[0].Sub(start) < 500*time.Millisecond {
			first++
		} else {
			second++
		}
	}
	f.mu.Unlock()
	if first < 60 || first > 130 || second < 60 || second > 130 {
		t.Fatalf("arrivals: %d in the first half second, %d in the second; want about 100 each", first, second)
	}
}

func TestBackoffOn503HonoursRetryAfter(t *testing.T) {
	const rejections = 2
	f := newFakeDistributor(t, func(w http.ResponseWriter, r *http.Request, p *seedPacket, attempt int) bool {
		if attempt <= rejections {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return false
		}
		return accept(w, r, p, attempt)
	})
	rep := runOK(t, Config{Target: f.target(), Count: 4, Concurrency: 2, Pipeline: 2})
	f.check()
	if rep.Accepted != 4 || rep.Rejected503 != 4*rejections || rep.Retries != 4*rejections || rep.GaveUp != 0 {
		t.Fatalf("report %+v: want 4 accepted after %d rejections and re-sends each", rep, rejections)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.arrivals) != 4 {
		t.Fatalf("server saw %d packet ids, want 4: re-sends must reuse the packet_id", len(f.arrivals))
	}
	for id, at := range f.arrivals {
		if len(at) != rejections+1 {
			t.Fatalf("packet %s arrived %d times, want %d", id, len(at), rejections+1)
		}
		// The emitter waits at least Retry-After after reading the 503, which the
		// server wrote after recording the arrival: so arrivals are >= 1 s apart.
		for i := 1; i < len(at); i++ {
			if gap := at[i].Sub(at[i-1]); gap < time.Second {
				t.Fatalf("packet %s re-sent %v after its 503 with Retry-After: 1", id, gap)
			}
		}
	}
}

func TestRetriesExhaustedGiveUp(t *testing.T) {
	f := newFakeDistributor(t, func(w http.ResponseWriter, _ *http.Request, _ *seedPacket, _ int) bool {
		w.WriteHeader(http.StatusTooManyRequests) // no Retry-After: backoff alone
		return false
	})
	rep := runOK(t, Config{Target: f.target(), Count: 6, Concurrency: 3, Retries: 2, RetryBudget: -1})
	f.check()
	if rep.Accepted != 0 || rep.GaveUp != 6 || rep.Retries != 12 || rep.Rejected429 != 18 {
		t.Fatalf("report %+v: want 6 packets each sent 3 times (2 retries) then given up", rep)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, at := range f.arrivals {
		if len(at) != 3 {
			t.Fatalf("packet %s arrived %d times, want 3", id, len(at))
		}
	}
}

func TestRetryBudgetLimitsResends(t *testing.T) {
	f := newFakeDistributor(t, func(w http.ResponseWriter, _ *http.Request, _ *seedPacket, _ int) bool {
		w.WriteHeader(http.StatusServiceUnavailable)
		return false
	})
	// 200 packets against a distributor that always refuses: with 5 retries each
	// that would be 1000 re-sends. The budget allows the 10 it starts with plus
	// 0.2 per first send: at most 10 + 40 = 50.
	rep := runOK(t, Config{Target: f.target(), Count: 200, Concurrency: 4, Retries: 5, RetryBudget: 0.2})
	f.check()
	if rep.GaveUp != 200 || rep.Accepted != 0 {
		t.Fatalf("report %+v: want all 200 given up", rep)
	}
	if rep.Retries > 50 || rep.Retries < 10 {
		t.Fatalf("%d re-sends for 200 refused packets, want between 10 and 50 (the budget)", rep.Retries)
	}
	f.mu.Lock()
	requests := f.requests
	f.mu.Unlock()
	if uint64(requests) != rep.Sent+rep.Retries {
		t.Fatalf("server saw %d requests, report says %d sends + %d re-sends", requests, rep.Sent, rep.Retries)
	}
}

func TestNonRetryableStatusGivesUpAtOnce(t *testing.T) {
	f := newFakeDistributor(t, func(w http.ResponseWriter, r *http.Request, p *seedPacket, attempt int) bool {
		if strings.HasSuffix(p.PacketID, "0") { // one packet in ten
			w.WriteHeader(http.StatusBadRequest)
			return false
		}
		return accept(w, r, p, attempt)
	})
	rep := runOK(t, Config{Target: f.target(), Count: 100, Concurrency: 2})
	if rep.Accepted != 90 || rep.GaveUp != 10 || rep.OtherErrors != 10 || rep.Retries != 0 {
		t.Fatalf("report %+v: want 90 accepted, 10 given up after one 400 each", rep)
	}
}

func TestReconnectsWhenServerClosesConnections(t *testing.T) {
	// "Connection: close" on every answer.
	f := newFakeDistributor(t, nil, func(s *http.Server) { s.SetKeepAlivesEnabled(false) })
	rep := runOK(t, Config{Target: f.target(), Count: 60, Concurrency: 3, Pipeline: 4})
	f.check()
	if rep.Accepted != 60 || rep.OtherErrors != 0 || rep.GaveUp != 0 {
		t.Fatalf("report %+v: want all 60 accepted without errors", rep)
	}
	if c := f.connections.Load(); c < 60 {
		t.Fatalf("server saw %d connections for 60 answers each closing its connection", c)
	}
}

func TestIdleConnectionClosedByServerIsNotAnError(t *testing.T) {
	// The server closes keep-alive connections idle for 50 ms; the emitter sends
	// a packet every 400 ms, so every packet after the first finds its connection
	// closed under it. It must re-send on a new connection without counting an
	// error or using up the packet's retries (there are none here).
	f := newFakeDistributor(t, nil, func(s *http.Server) { s.IdleTimeout = 50 * time.Millisecond })
	rep := runOK(t, Config{Target: f.target(), Rate: 2.5, Count: 4, Concurrency: 1, Retries: -1})
	f.check()
	conns := f.connections.Load()
	if rep.Accepted != 4 || rep.OtherErrors != 0 || rep.GaveUp != 0 || rep.Retries != uint64(conns-1) || conns < 2 {
		t.Fatalf("report %+v with %d connections: want 4 accepted, no errors, one re-send per new connection", rep, conns)
	}
}

func TestResendsAfterConnectionDrops(t *testing.T) {
	// The first attempt of every packet has its connection cut without an answer.
	// Those are errors, never stale idle connections, however slow this machine is
	// between an answer and the next send.
	defer func(d time.Duration) { staleAfter = d }(staleAfter)
	staleAfter = time.Hour
	f := newFakeDistributor(t, func(w http.ResponseWriter, r *http.Request, p *seedPacket, attempt int) bool {
		if attempt == 1 {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
			return false
		}
		return accept(w, r, p, attempt)
	})
	rep := runOK(t, Config{Target: f.target(), Count: 20, Concurrency: 2, RetryBudget: -1})
	f.check()
	if rep.Accepted != 20 || rep.Retries != 20 || rep.OtherErrors != 20 || rep.GaveUp != 0 {
		t.Fatalf("report %+v: want 20 accepted, each after one dropped connection and one re-send", rep)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, at := range f.arrivals {
		if len(at) != 2 {
			t.Fatalf("packet %s arrived %d times, want 2 (same packet_id re-sent)", id, len(at))
		}
	}
}

func TestUnreachableTargetGivesUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connects are refused
	rep := runOK(t, Config{Target: addr, Count: 3, Concurrency: 3, Retries: 2})
	if rep.Accepted != 0 || rep.GaveUp != 3 || rep.OtherErrors != 9 || rep.Retries != 6 {
		t.Fatalf("report %+v: want 3 packets given up after 3 refused connects each", rep)
	}
}

func TestDeadTargetIsNotHammered(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	// Flat out for a second at a port that refuses: connects back off (50 ms
	// doubling, full jitter), so a connection makes about seven attempts in the
	// second (the expected waits are 25, 50, 100, 200, 400 ms, ...) instead of
	// thousands.
	rep := runOK(t, Config{Target: addr, Duration: time.Second, Concurrency: 2})
	if rep.Accepted != 0 || rep.OtherErrors == 0 || rep.OtherErrors > 40 {
		t.Fatalf("report %+v: want a few refused connects per connection, not a tight loop", rep)
	}
}

func TestTargetDownEndsRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	// No --count, no --duration: only the down timeout can end this run.
	done := make(chan error, 1)
	var rep Report
	go func() {
		var err error
		rep, err = Run(context.Background(), Config{Target: addr, Concurrency: 2, DownTimeout: 300 * time.Millisecond}, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrTargetDown) {
			t.Fatalf("error %v, want ErrTargetDown", err)
		}
		checkInvariant(t, rep)
		if rep.Accepted != 0 || rep.OtherErrors == 0 {
			t.Fatalf("report %+v: want refused connects and nothing accepted", rep)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a run against a port that refuses every connect did not end")
	}

	code, out, errOut := runMain(t, "--target", addr, "--down-timeout", "200ms", "--json")
	if code != ExitFailed || !strings.Contains(out, `"accepted":0`) || !strings.Contains(errOut, "target unreachable") {
		t.Fatalf("exit %d stdout %q stderr %q: want the report, then exit 1 naming the unreachable target", code, out, errOut)
	}
}

func TestResponseTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	f := newFakeDistributor(t, func(w http.ResponseWriter, r *http.Request, p *seedPacket, attempt int) bool {
		if attempt == 1 {
			<-release // never answers the first attempt
			return false
		}
		return accept(w, r, p, attempt)
	})
	rep := runOK(t, Config{Target: f.target(), Count: 2, Concurrency: 1, Timeout: 200 * time.Millisecond})
	if rep.Accepted != 2 || rep.Retries != 2 || rep.OtherErrors != 2 {
		t.Fatalf("report %+v: want 2 accepted after one timed-out attempt each", rep)
	}
}

func TestPipelineKeepsWindowFull(t *testing.T) {
	// A raw server that reads requests and answers only once it holds 8 of them
	// unanswered: it makes progress only if the emitter keeps 8 in flight.
	srv := newRawServer(t, func(pending int) int {
		if pending >= 8 {
			return pending
		}
		return 0
	})
	rep := runOK(t, Config{Target: srv.addr, Count: 800, Concurrency: 1, Pipeline: 8, Timeout: 2 * time.Second})
	if rep.Accepted != 800 || rep.OtherErrors != 0 {
		t.Fatalf("report %+v: want 800 accepted through a window of 8", rep)
	}
}

func TestStopsOnContextAndDrains(t *testing.T) {
	f := newFakeDistributor(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var accepted atomic.Int64
	cfg := Config{Target: f.target(), Concurrency: 4, OnAccepted: func(string, int) {
		if accepted.Add(1) == 500 {
			cancel()
		}
	}}
	done := make(chan Report)
	go func() {
		rep, err := Run(ctx, cfg, nil)
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	select {
	case rep := <-done:
		checkInvariant(t, rep)
		if rep.Accepted < 500 || rep.Unfinished != 0 {
			t.Fatalf("report %+v: want >= 500 accepted and the in-flight ones answered", rep)
		}
		if packets, _ := f.acceptedMessages(); packets != rep.Accepted {
			t.Fatalf("server accepted %d, report %d", packets, rep.Accepted)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func TestDurationStopsRun(t *testing.T) {
	f := newFakeDistributor(t, nil)
	rep := runOK(t, Config{Target: f.target(), Concurrency: 2, Duration: 300 * time.Millisecond})
	if rep.Accepted == 0 || rep.DurationS < 0.3 || rep.DurationS > 0.3+DefaultGrace.Seconds() {
		t.Fatalf("report %+v: want packets accepted over about 0.3 s", rep)
	}
}

func TestSkewedPacketsSmallerThanUniform(t *testing.T) {
	mean := func(spec string) float64 {
		f := newFakeDistributor(t, nil)
		rep := runOK(t, Config{Target: f.target(), Count: 600, Concurrency: 2, Messages: spec, MessageBytes: 10})
		f.check()
		f.mu.Lock()
		defer f.mu.Unlock()
		for id, n := range f.accepted {
			if n < 1 || n > 50 {
				t.Fatalf("%s: packet %s has %d messages", spec, id, n)
			}
		}
		return float64(rep.MessagesAccepted) / float64(rep.Accepted)
	}
	u, s := mean("uniform:1-50"), mean("skewed:1-50")
	if u < 23 || u > 28 || s > u/2 {
		t.Fatalf("mean messages per packet: uniform %.1f (want about 25.5), skewed %.1f (want well under half)", u, s)
	}
}

// runMain runs the command with stdout and stderr captured.
func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = mainWith(context.Background(), args, func(string) string { return "" }, &out, &errOut, false)
	return code, out.String(), errOut.String()
}

func TestMainJSONReport(t *testing.T) {
	f := newFakeDistributor(t, func(w http.ResponseWriter, r *http.Request, p *seedPacket, attempt int) bool {
		if attempt == 1 && strings.HasSuffix(p.PacketID, "7") {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return false
		}
		return accept(w, r, p, attempt)
	})
	code, out, errOut := runMain(t, "--target", f.target(), "--count", "300", "--rate", "0", "--json", "--messages", "skewed:1-30")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	last := lines[len(lines)-1]
	var fields map[string]any
	if err := json.Unmarshal([]byte(last), &fields); err != nil {
		t.Fatalf("last line is not a JSON object: %q: %v", last, err)
	}
	want := []string{"sent", "accepted", "rejected_503", "rejected_429", "other_errors", "retries", "gave_up",
		"unfinished", "messages_accepted", "duration_s", "rate_pps",
		"min_ms", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "status_codes"}
	for _, k := range want {
		if _, ok := fields[k]; !ok {
			t.Errorf("JSON report has no %q: %s", k, last)
		}
	}
	if len(fields) != len(want) {
		t.Errorf("JSON report has %d fields, want %d: %s", len(fields), len(want), last)
	}
	var rep Report
	if err := json.Unmarshal([]byte(last), &rep); err != nil {
		t.Fatal(err)
	}
	packets, messages := f.acceptedMessages()
	// Packet ids ending in 7 among 1..300: 30 of them, each refused once.
	if rep.Sent != 300 || rep.Accepted != packets || rep.Accepted != 300 || rep.MessagesAccepted != messages ||
		rep.Rejected503 != 30 || rep.Retries != 30 || rep.RatePPS <= 0 || rep.DurationS <= 0 {
		t.Fatalf("JSON report %+v; server accepted %d packets with %d messages", rep, packets, messages)
	}
	if len(rep.StatusCodes) != 2 || rep.StatusCodes["202"] != 300 || rep.StatusCodes["503"] != 30 {
		t.Fatalf("status codes %v, want 202: 300 and 503: 30", rep.StatusCodes)
	}
	if !(rep.MinMs > 0 && rep.MinMs <= rep.P50Ms && rep.P50Ms <= rep.P90Ms && rep.P90Ms <= rep.P95Ms &&
		rep.P95Ms <= rep.P99Ms && rep.P99Ms <= rep.P999Ms && rep.MeanMs >= rep.MinMs && rep.MeanMs <= rep.MaxMs &&
		rep.P999Ms <= rep.MaxMs*1.02) {
		t.Fatalf("latency min %v mean %v p50 %v p90 %v p95 %v p99 %v p99.9 %v max %v: out of order",
			rep.MinMs, rep.MeanMs, rep.P50Ms, rep.P90Ms, rep.P95Ms, rep.P99Ms, rep.P999Ms, rep.MaxMs)
	}
}

func TestMainTextReport(t *testing.T) {
	f := newFakeDistributor(t, nil)
	code, out, _ := runMain(t, "--target", f.target(), "--count", "50", "--rate", "0")
	if code != 0 || !strings.Contains(out, "accepted         50\n") || !strings.Contains(out, "status codes     202: 50\n") {
		t.Fatalf("exit %d, text report:\n%s", code, out)
	}
	for _, want := range []string{"min ", "mean ", "max ", "p50 ", "p90 ", "p95 ", "p99 ", "p99.9 "} {
		if !strings.Contains(out, want) {
			t.Errorf("text report has no %q:\n%s", want, out)
		}
	}
}

func TestMainMinAccept(t *testing.T) {
	// Half the packets get a final 400: acceptance 0.5.
	f := newFakeDistributor(t, func(w http.ResponseWriter, r *http.Request, p *seedPacket, attempt int) bool {
		last := p.PacketID[len(p.PacketID)-1]
		if (last-'0')%2 == 1 {
			w.WriteHeader(http.StatusBadRequest)
			return false
		}
		return accept(w, r, p, attempt)
	})
	args := []string{"--target", f.target(), "--count", "100", "--rate", "0", "--json"}
	code, out, errOut := runMain(t, append(args, "--min-accept", "0.99")...)
	if code != ExitBelowMin {
		t.Fatalf("acceptance 0.5 under --min-accept 0.99: exit %d, want %d; stderr %q", code, ExitBelowMin, errOut)
	}
	if !strings.Contains(errOut, "under --min-accept") || !strings.Contains(out, `"accepted":50`) {
		t.Fatalf("stdout %q stderr %q", out, errOut)
	}
	if code, _, errOut = runMain(t, append(args, "--min-accept", "0.4")...); code != ExitOK {
		t.Fatalf("acceptance 0.5 over --min-accept 0.4: exit %d; stderr %q", code, errOut)
	}
}

func TestMainBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--rate", "-5"}, {"--concurrency", "0"}, {"--messages", "uniform:5-1"}, {"--bogus"},
		{"--target", "https://x:1"}, {"--min-accept", "2"}, {"--duration", "soon"}, {"extra"},
		{"--retry-budget", "0"}, {"--pipeline", "0"},
	} {
		code, out, errOut := runMain(t, args...)
		if code != ExitBadFlags || out != "" || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "sluice emitter: ") ||
			!strings.HasSuffix(errOut, "; run 'sluice emitter -h' for usage\n") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one line on stderr with a hint to -h", args, code, out, errOut)
		}
	}
}

func TestMainRetriesZeroMeansNone(t *testing.T) {
	f := newFakeDistributor(t, func(w http.ResponseWriter, _ *http.Request, _ *seedPacket, _ int) bool {
		w.WriteHeader(http.StatusServiceUnavailable)
		return false
	})
	code, out, _ := runMain(t, "--target", f.target(), "--count", "10", "--retries", "0", "--json")
	if code != 0 || !strings.Contains(out, `"retries":0,"gave_up":10`) {
		t.Fatalf("exit %d report %s", code, out)
	}
}

func TestProgressLine(t *testing.T) {
	f := newFakeDistributor(t, nil)
	f.light = true
	var buf syncBuffer
	_, err := Run(context.Background(), Config{Target: f.target(), Rate: 100, Duration: 2500 * time.Millisecond, Concurrency: 16}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	s := buf.String()
	// Not a terminal: a line at 1 s and at 2 s (an overloaded machine can delay
	// the second past the end of the run), no carriage returns.
	if n := strings.Count(s, "\n"); n < 1 || n > 2 || strings.Contains(s, "\r") || !strings.HasSuffix(s, "\n") {
		t.Fatalf("progress output %q", s)
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	second := lines[len(lines)-1]
	for _, want := range []string{"s  ", "pkt/s", "accepted ", "rejected 0", "retries 0", "p50 ", "p99 "} {
		if !strings.Contains(second, want) {
			t.Fatalf("progress line %q has no %q", second, want)
		}
	}
	// The rate shown is over the last second: paced at 100/s it is near 100, and
	// never much above (a loaded machine can make it lower, not higher).
	fields := strings.Fields(second)
	rate, _ := strconv.Atoi(fields[1])
	if rate < 1 || rate > 120 {
		t.Fatalf("progress rate %d, want about 100: %q", rate, second)
	}
}

// On a terminal the line is redrawn in place: '\r' first, a shorter line blanks
// what the longer one left, and one newline at the end.
func TestProgressRedrawsOnATerminal(t *testing.T) {
	var buf bytes.Buffer
	p := progressLine{w: &buf, inPlace: true}
	var lat histSnapshot
	p.draw(time.Second, totals{accepted: 123456, retries: 99999}, &lat)
	long := buf.Len()
	p.draw(2*time.Second, totals{accepted: 123457}, &lat)
	p.finish()
	s := buf.String()
	if strings.Count(s, "\r") != 2 || strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") || len(s)-long != long+1 {
		t.Fatalf("redrawn output %q", s)
	}
}

// --token sends "Authorization: Bearer <token>" with every request, re-sends
// included, and the token shows in neither the report nor stderr.
func TestTokenIsSentAndNeverPrinted(t *testing.T) {
	var mu sync.Mutex
	auth := map[string]int{}
	f := newFakeDistributor(t, func(w http.ResponseWriter, r *http.Request, p *seedPacket, attempt int) bool {
		mu.Lock()
		auth[r.Header.Get("Authorization")]++
		mu.Unlock()
		if attempt == 1 && strings.HasSuffix(p.PacketID, "3") {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return false
		}
		return accept(w, r, p, attempt)
	})
	for _, tc := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"--token", "t0k-en.42"}, nil},
		{nil, map[string]string{"EMITTER_TOKEN": "t0k-en.42"}},
	} {
		clear(auth)
		var out, errOut bytes.Buffer
		args := append([]string{"--target", f.target(), "--count", "40", "--rate", "0", "--json", "--progress"}, tc.args...)
		code := mainWith(context.Background(), args, func(k string) string { return tc.env[k] }, &out, &errOut, false)
		mu.Lock()
		got := maps.Clone(auth)
		mu.Unlock()
		if code != 0 || len(got) != 1 || got["Bearer t0k-en.42"] != 44 {
			t.Errorf("%v %v: exit %d; Authorization values seen %v, want 40 packets + 4 re-sends all with the token", tc.args, tc.env, code, got)
		}
		if strings.Contains(out.String()+errOut.String(), "t0k-en") {
			t.Errorf("the token was printed:\n%s%s", out.String(), errOut.String())
		}
	}
	var errOut bytes.Buffer
	code := mainWith(context.Background(), []string{"--target", f.target(), "--token", "has space"}, func(string) string { return "" }, io.Discard, &errOut, false)
	if code != ExitBadFlags || strings.Contains(errOut.String(), "has space") {
		t.Fatalf("a bad token: exit %d, stderr %q; want 2 without the token", code, errOut.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rawServer answers "202 Accepted" over raw TCP with codec-free framing: it finds
// each request's end from its Content-Length (the emitter always sends one). answer
// says, given the requests read and not yet answered, how many to answer now.
type rawServer struct {
	addr     string
	requests atomic.Int64
}

const raw202 = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"

func newRawServer(tb testing.TB, answer func(pending int) int) *rawServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &rawServer{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serve(c, answer) })
		}
	})
	return s
}

func (s *rawServer) serve(c net.Conn, answer func(pending int) int) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	out := make([]byte, 0, 64<<10)
	pending := 0
	for {
		// One request: header lines up to the blank line, then Content-Length bytes.
		length := -1
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
			if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
				length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
			}
		}
		if length < 0 {
			return
		}
		if _, err := r.Discard(length); err != nil {
			return
		}
		s.requests.Add(1)
		pending++
		if r.Buffered() > 0 && pending < 1024 {
			continue // answer the whole batch that arrived together in one write
		}
		n := answer(pending)
		for i := 0; i < n; i++ {
			out = append(out, raw202...)
		}
		pending -= n
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
	}
}

// A stop with a long grace must not postpone the timeout of a request already in
// flight: the drain's deadline only ever shortens a connection's read deadline.
func TestStopKeepsRequestTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan struct{}, 1)
	go func() { // a target that reads requests and never answers
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					select {
					case got <- struct{}{}:
					default:
					}
				}
			}()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Report, 1)
	go func() {
		rep, _ := Run(ctx, Config{Target: "http://" + ln.Addr().String(), Rate: 0, Concurrency: 1, Pipeline: 1,
			Timeout: 500 * time.Millisecond, Grace: 10 * time.Second, Retries: -1, DownTimeout: -1}, io.Discard)
		done <- rep
	}()
	<-got // a request is in flight
	stopped := time.Now()
	cancel()
	select {
	case rep := <-done:
		if took := time.Since(stopped); took > 5*time.Second {
			t.Fatalf("run ended %v after the stop: the 500 ms request timeout waited for the 10 s grace", took)
		}
		if rep.Accepted != 0 {
			t.Fatalf("accepted %d from a target that never answers", rep.Accepted)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not end")
	}
}
