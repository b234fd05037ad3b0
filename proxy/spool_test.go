package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicelog/sluice/spool"
)

// spoolConfig turns the spool on in dir for a test distributor.
func spoolConfig(dir string, mode spool.SyncMode) func(*Config) {
	return func(c *Config) {
		c.SpoolDir = dir
		c.SpoolSync = mode
		c.SpoolSyncInterval = 20 * time.Millisecond
		c.SpoolSegmentBytes = 1 << 20
		c.SpoolMaxBytes = 1 << 30
	}
}

// With a spool, every packet is answered 202, delivered once, and its record
// settled: the spool ends with nothing pending. Both sync modes.
func TestSpoolDeliversAndSettles(t *testing.T) {
	for _, mode := range []spool.SyncMode{spool.SyncAlways, spool.SyncInterval} {
		t.Run(mode.String(), func(t *testing.T) {
			fa := newFakeAnalyzer(t, true)
			dir := t.TempDir()
			srv := startDistributor(t, fa.url()+"=1", spoolConfig(dir, mode))
			snd := newSender(ingestURL(srv), 8)
			const n = 400
			done := make(chan struct{})
			for w := 0; w < 8; w++ {
				go func(w int) {
					defer func() { done <- struct{}{} }()
					for i := w; i < n; i += 8 {
						if code, _ := snd.send(t, "sp-"+strconv.Itoa(i), 3); code != 202 {
							t.Errorf("packet %d: %d", i, code)
						}
					}
				}(w)
			}
			for range 8 {
				<-done
			}
			settledNothingLost(t, srv, 10*time.Second)
			checkDelivered(t, snd.accepted, []*fakeAnalyzer{fa}, false)
			// Written (interval: the last group may still be on its way) and settled.
			waitFor(t, "spool records written and settled", 5*time.Second, func() bool {
				st := srv.spool.Stats()
				return st.Pending == 0 && st.SyncedRecords >= n
			})
			st := srv.spool.Stats()
			if st.Syncs == 0 || st.SyncedRecords < n {
				t.Fatalf("spool stats %+v: want at least %d records written", st, n)
			}
			j := srv.MetricsJSON().Spool
			if j == nil || j.Sync != mode.String() || j.SyncedRecords != st.SyncedRecords {
				t.Fatalf("/metrics-json spool = %+v", j)
			}
			// The ingest port serves /metrics-json to anyone: it tells the spool's
			// numbers, not where it lives.
			resp, err := http.Get(ingestURL(srv) + "/metrics-json")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if !strings.Contains(string(body), `"spool"`) || strings.Contains(string(body), dir) {
				t.Fatalf("/metrics-json on the ingest port: want the spool's numbers without its directory %s, got %s", dir, body)
			}
		})
	}
}

// rawExchange writes req on a fresh connection to srv and reads n answers.
func rawExchange(t *testing.T, srv *Server, req string, n int) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", loopbackAddr(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for i := 0; i < n; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		resp.Header.Set("X-Test-Body", string(body))
		out = append(out, resp)
	}
	if n > 0 && !out[n-1].Close {
		return out
	}
	// The last answer said Connection: close: the connection must end after it.
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last answer: %v, want EOF", err)
	}
	return out
}

func postRaw(id string, close bool) string {
	body := string(packetBody(id, 2))
	conn := ""
	if close {
		conn = "Connection: close\r\n"
	}
	return "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + conn +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// Held 202s keep the connection's answers in request order: a 400 and an admin
// page pipelined between 202s stay in place, and a Connection: close after them
// closes only once every answer is written.
func TestSpoolHeldAnswersInOrder(t *testing.T) {
	fa := newFakeAnalyzer(t, false)
	srv := startDistributor(t, fa.url()+"=1", spoolConfig(t.TempDir(), spool.SyncAlways))
	bad := "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
	livez := "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
	req := postRaw("ord-1", false) + bad + postRaw("ord-2", false) + livez + postRaw("ord-3", false) + postRaw("ord-4", true)
	resps := rawExchange(t, srv, req, 6)
	want := []struct {
		code int
		id   string
	}{{202, "ord-1"}, {400, ""}, {202, "ord-2"}, {200, ""}, {202, "ord-3"}, {202, "ord-4"}}
	for i, w := range want {
		r := resps[i]
		if r.StatusCode != w.code || (w.id != "" && !strings.Contains(r.Header.Get("X-Test-Body"), `"`+w.id+`"`)) {
			t.Fatalf("answer %d: %d %s, want %d for %q", i+1, r.StatusCode, r.Header.Get("X-Test-Body"), w.code, w.id)
		}
	}
	settledNothingLost(t, srv, 5*time.Second)
	if got := srv.Snapshot().Responses[status202]; got != 4 {
		t.Fatalf("202s counted: %d, want 4", got)
	}

	// A refusal that ends the connection (a bad Content-Length: 400, lingering
	// close) behind a held 202: the 202 first, then the 400, then the end.
	resps = rawExchange(t, srv, postRaw("ord-5", false)+"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 2)
	if resps[0].StatusCode != 202 || resps[1].StatusCode != 400 || !resps[1].Close {
		t.Fatalf("answers %d, %d (close %v); want 202, then 400 closing", resps[0].StatusCode, resps[1].StatusCode, resps[1].Close)
	}
}

// heldConn records what the shard writes to an inbound connection.
type heldConn struct {
	gnet.Conn
	wrote strings.Builder
}

func (c *heldConn) Write(b []byte) (int, error) { c.wrote.Write(b); return len(b), nil }

// A group whose write fails: its held 202s are answered 503 spool write failed, in
// their places (a 400 between them stays); the packets stay queued for delivery.
func TestSpoolFailedGroupRewrites503(t *testing.T) {
	s, in, _, loop := spoolShard(t, 0)
	conn := &heldConn{}
	in.c = conn
	bad := "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
	req := string(seedRequest("fail-1")) + bad + string(seedRequest("fail-2"))
	r := s.handle(in, []byte(req), nil)
	if now := s.hold(in, r.out); len(now) != 0 || !in.waiting {
		t.Fatalf("written before the sync: %q", now)
	}
	s.log.Flush()
	run := <-loop.ch
	s.spoolDone.Err = errors.New("injected: no space left on device") // as the writer reports a failed group
	_ = run.Run(context.Background())
	if in.waiting {
		t.Fatal("still waiting after the failed group's completion")
	}
	br := bufio.NewReader(strings.NewReader(conn.wrote.String()))
	for i, want := range []int{503, 400, 503} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v in %q", i+1, err, conn.wrote.String())
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want || (want == 503 && (!strings.Contains(string(body), "spool write failed") || resp.Header.Get("Retry-After") == "")) {
			t.Fatalf("answer %d: %d %s, want %d (503: spool write failed, Retry-After)", i+1, resp.StatusCode, body, want)
		}
	}
	st := &s.stats
	if st.Responses[status202] != 0 || st.Rejected[rejectSpoolFailed] != 2 || st.SpoolFailedAnswers != 2 || st.AcceptedPackets != 2 {
		t.Fatalf("202s %d, spool_failed %d, failed answers %d, accepted %d; want 0, 2, 2, 2",
			st.Responses[status202], st.Rejected[rejectSpoolFailed], st.SpoolFailedAnswers, st.AcceptedPackets)
	}
	queued := int64(0)
	for _, d := range s.dests {
		queued += d.st.Queued
	}
	if queued != 2 {
		t.Fatalf("%d packets queued, want both: a 503 for the spool never drops an accepted packet", queued)
	}
}

// What the shutdown timeout leaves is not dropped but left in the spool, and the
// next start on the same directory delivers it (SIGTERM with a stalled analyzer).
func TestSpoolShutdownLeavesAndRestartDelivers(t *testing.T) {
	dir := t.TempDir()
	stalled := newFakeAnalyzer(t, false)
	stalled.delay.Store(int64(time.Second)) // up, answers its probes, answers no packet in SENDER_TIMEOUT_MS
	cfg := func(c *Config) {
		spoolConfig(dir, spool.SyncAlways)(c)
		c.SenderRetries = 100
		c.MaxFailures = 1 << 20 // keep it eligible: the packets stay queued for it
	}
	a, err := New(testConfig(t, stalled.url()+"=1", cfg), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	snd := newSender(ingestURL(a), 4)
	for i := 0; i < 50; i++ {
		if code, _ := snd.send(t, "left-"+strconv.Itoa(i), 2); code != 202 {
			t.Fatalf("packet %d: %d", i, code)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_ = a.Shutdown(ctx)
	st := a.Snapshot()
	tot := st.Total()
	if tot.LeftInSpool != 50 || tot.DroppedTotal() != 0 {
		t.Fatalf("after the shutdown timeout: left in spool %d, dropped %d; want 50, 0", tot.LeftInSpool, tot.DroppedTotal())
	}
	checkInvariant(t, st)

	good := newFakeAnalyzer(t, true)
	b := startDistributor(t, good.url()+"=1", spoolConfig(dir, spool.SyncAlways))
	waitFor(t, "replayed packets delivered", 10*time.Second, func() bool {
		_, _, ids := good.counts()
		return len(ids) >= 50
	})
	checkDelivered(t, snd.accepted, []*fakeAnalyzer{good}, true)
	st = settledNothingLost(t, b, 5*time.Second)
	if st.SpoolReplayed != 50 {
		t.Fatalf("replayed %d, want 50", st.SpoolReplayed)
	}
	waitFor(t, "replayed records settled", 5*time.Second, func() bool { return b.spool.Stats().Pending == 0 })
}

// A second distributor on a SPOOL_DIR in use refuses to start, saying why.
func TestSpoolDirLocked(t *testing.T) {
	fa := newFakeAnalyzer(t, false)
	dir := t.TempDir()
	startDistributor(t, fa.url()+"=1", spoolConfig(dir, spool.SyncAlways))
	_, err := New(testConfig(t, fa.url()+"=1", spoolConfig(dir, spool.SyncAlways)), quietLog())
	if err == nil || !errors.Is(err, spool.ErrLocked) || !strings.Contains(err.Error(), "SPOOL_DIR=") {
		t.Fatalf("second New on %s: %v, want SPOOL_DIR=...: in use", dir, err)
	}
}

// At SPOOL_MAX_BYTES new packets get 503 spool full with Retry-After, counted.
func TestSpoolFull(t *testing.T) {
	fa := newFakeAnalyzer(t, false)
	fa.delay.Store(int64(time.Second)) // holds what it gets: the spool fills
	srv := startDistributor(t, fa.url()+"=1", func(c *Config) {
		spoolConfig(t.TempDir(), spool.SyncAlways)(c)
		c.SpoolSegmentBytes, c.SpoolMaxBytes = 1<<16, 1<<16
		c.SenderRetries, c.MaxFailures = 100, 1<<20
	})
	snd := newSender(ingestURL(srv), 1)
	var full http.Header
	for i := 0; i < 2000 && full == nil; i++ {
		code, h := snd.send(t, "full-"+strconv.Itoa(i), 20)
		if code == 503 {
			full = h
		}
	}
	if full == nil || full.Get("Retry-After") == "" {
		t.Fatalf("no 503 with Retry-After before the spool limit: %v", snd.statuses)
	}
	if got := srv.Snapshot().Rejected[rejectSpoolFull]; got == 0 {
		t.Fatal("spool_full not counted")
	}
}

func testConfig(t *testing.T, analyzers string, tweak func(*Config)) Config {
	t.Helper()
	cfg := DefaultConfig()
	specs, err := ParseAnalyzers(analyzers)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Analyzers, cfg.Port, cfg.MetricsAddr, cfg.Loops = specs, 0, "", 2
	cfg.HealthInterval, cfg.SlowStart = 200*time.Millisecond, 0
	if tweak != nil {
		tweak(&cfg)
	}
	return cfg
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// execLoop is fakeLoop with Execute: the runnables wait on a channel for the test's
// goroutine to run them, as the loop would.
type execLoop struct {
	*fakeLoop
	ch chan gnet.Runnable
}

func (l *execLoop) Execute(ctx context.Context, r gnet.Runnable) error {
	l.ch <- r
	return nil
}

// TestSpoolIngestPathAllocs: with SPOOL_SYNC=always, a pass of pipelined requests,
// their group's write and sync, the release of the held 202s, the settles and the
// acks' write do not allocate once warm (the loop and the log's writer goroutine:
// AllocsPerRun counts every goroutine's).
func TestSpoolIngestPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Log("allocation counts are not meaningful under the race detector; checked in the non-race run")
		return
	}
	pass, acks := spoolPass(t)
	both := func() { pass(); acks() }
	for i := 0; i < 200; i++ {
		both()
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	allocs := 1e9
	for try := 0; try < 5 && allocs > 0; try++ {
		allocs = min(allocs, testing.AllocsPerRun(20, both))
	}
	if allocs != 0 {
		t.Fatalf("spool ingest path allocates %.1f times per pass of 16 requests, want 0", allocs)
	}
}

// spoolPass is one pass of 16 pipelined requests through a shard with a spool
// (SPOOL_SYNC=always): handled, their 202s held, the group written and synced, the
// 202s released, the packets settled; acks writes the settles' acks.
func spoolPass(tb testing.TB) (pass, acks func()) {
	s, in, req, loop := spoolShard(tb, 16)
	out := make([]byte, 0, 64<<10)
	acks = func() {
		s.log.Flush()
		_ = (<-loop.ch).Run(context.Background())
	}
	return func() {
		r := s.handle(in, req, out[:0])
		if r.answered != 16 {
			tb.Fatalf("answered %d", r.answered)
		}
		if now := s.hold(in, r.out); len(now) != 0 || !in.waiting {
			tb.Fatalf("written at once: %d bytes; waiting %v", len(now), in.waiting)
		}
		s.log.Flush()
		_ = (<-loop.ch).Run(context.Background())
		if in.waiting {
			tb.Fatal("still waiting after the group's completion")
		}
		s.drain()
	}, acks
}

// spoolShard is a benchShard with a spool (SPOOL_SYNC=always) and a loop whose
// Execute the test runs; req is n pipelined seed requests.
func spoolShard(tb testing.TB, n int) (*shard, *ingress, []byte, *execLoop) {
	dir := tb.TempDir()
	s := testShard(tb, 3, spoolConfig(dir, spool.SyncAlways))
	loop := &execLoop{fakeLoop: s.loop.(*fakeLoop), ch: make(chan gnet.Runnable, 4)}
	s.loop = loop
	tb.Cleanup(func() { _ = s.srv.spool.Close() })
	in := &ingress{sh: s}
	in.parser.Init(s.srv.cfg.Limits())
	var req []byte
	for i := 0; i < n; i++ {
		req = append(req, seedRequest("packet-"+strconv.Itoa(100000+i))...)
	}
	return s, in, req, loop
}

// BenchmarkIngestPathSpool is BenchmarkIngestPath with SPOOL_SYNC=always: 16
// pipelined requests per pass, their group written and fdatasynced, the 202s
// released, the packets settled. Per op: one pass.
func BenchmarkIngestPathSpool(b *testing.B) {
	pass, acks := spoolPass(b)
	b.ReportAllocs()
	for b.Loop() {
		pass()
		acks()
	}
}

// A graceful stop after everything was delivered leaves nothing to replay: the last
// acks are written before the writers stop, so the next start sends no duplicates.
func TestSpoolCleanStopReplaysNothing(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAnalyzer(t, true)
	a, err := New(testConfig(t, fa.url()+"=1", spoolConfig(dir, spool.SyncAlways)), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	snd := newSender(ingestURL(a), 4)
	for i := 0; i < 300; i++ {
		if code, _ := snd.send(t, "clean-"+strconv.Itoa(i), 2); code != 202 {
			t.Fatalf("packet %d: %d", i, code)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, snd.accepted, []*fakeAnalyzer{fa}, false)
	_, recs, err := spool.Open(spool.Options{Dir: dir, SegmentBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		n += r.Len()
	}
	if n != 0 {
		t.Fatalf("%d records of delivered packets found unsettled after a clean stop: they would be sent again", n)
	}
}

// A disk that stalls (its writer never reports back) while the analyzers deliver:
// the records not yet written stay bounded (unwrittenLimit), new packets get 503
// spool unavailable instead of growing the group without end.
func TestSpoolUnwrittenBounded(t *testing.T) {
	s, in, req, loop := spoolShard(t, 16)
	limit := s.unwrittenLimit()
	refused := false
	for pass := 0; pass < 10000 && !refused; pass++ {
		r := s.handle(in, req, nil)
		s.hold(in, r.out)
		s.drain() // the analyzers keep up: INGEST_BUFFER_SIZE never fills
		s.flushSpool()
		refused = bytes.Contains(in.held, []byte("spool unavailable"))
		if s.spoolFill+s.spoolBusy > limit+int64(len(req)) {
			t.Fatalf("pass %d: %d bytes unwritten, limit %d", pass, s.spoolFill+s.spoolBusy, limit)
		}
	}
	if !refused {
		t.Fatalf("no 503 while the writer stalled with %d bytes unwritten", s.spoolFill+s.spoolBusy)
	}
	if s.stats.Rejected[rejectSpoolFailed] == 0 {
		t.Fatal("not counted as spool_failed")
	}
	// The disk answers again: the group completes and the loop takes packets.
	_ = (<-loop.ch).Run(context.Background())
	if s.spoolBusy != 0 && s.spoolFill != 0 {
		t.Fatalf("after the completion: %d bytes with the writer, %d filling", s.spoolBusy, s.spoolFill)
	}
}

// A 202 means the record is written, in both modes: with SPOOL_SYNC=interval it is
// in the file (the page cache outlives a killed process) before its 202 leaves,
// fdatasynced or not. One packet at a time, so after the i-th 202 at least i
// records must be written.
func TestSpoolAnswersAfterTheWrite(t *testing.T) {
	for _, mode := range []spool.SyncMode{spool.SyncAlways, spool.SyncInterval} {
		t.Run(mode.String(), func(t *testing.T) {
			fa := newFakeAnalyzer(t, true)
			cfg := spoolConfig(t.TempDir(), mode)
			srv := startDistributor(t, fa.url()+"=1", func(c *Config) {
				cfg(c)
				c.SpoolSyncInterval = time.Minute // no periodic sync helps
			})
			snd := newSender(ingestURL(srv), 1)
			for i := range 200 {
				if code, _ := snd.send(t, "w-"+strconv.Itoa(i), 2); code != 202 {
					t.Fatalf("packet %d: %d", i, code)
				}
				if st := srv.spool.Stats(); st.SyncedRecords < int64(i+1) {
					t.Fatalf("after %d 202s only %d records written", i+1, st.SyncedRecords)
				}
			}
			settledNothingLost(t, srv, 10*time.Second)
			checkDelivered(t, snd.accepted, []*fakeAnalyzer{fa}, false)
		})
	}
}
