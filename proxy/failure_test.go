package proxy

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicelog/sluice/sched"
)

// load sends packets from several goroutines until stopped, each over its own
// keep-alive connection, and remembers what was accepted. A 503 is not retried: the
// packet was never accepted, which is all the accounting needs.
type load struct {
	s       *sender
	stop    chan struct{}
	wg      sync.WaitGroup
	seq     atomic.Int64
	prefix  string
	rejects atomic.Int64
	noRetry atomic.Int64 // 503s without a Retry-After header
}

func startLoad(t *testing.T, srv *Server, conns int, prefix string, size func(i int64) int) *load {
	l := &load{s: newSender(ingestURL(srv), conns), stop: make(chan struct{}), prefix: prefix}
	for c := 0; c < conns; c++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				i := l.seq.Add(1)
				code, h := l.s.send(t, prefix+strconv.FormatInt(i, 10), size(i))
				if code == 503 {
					l.rejects.Add(1)
					if h.Get("Retry-After") == "" {
						l.noRetry.Add(1)
					}
					time.Sleep(2 * time.Millisecond) // back off a little, as an emitter would
				}
			}
		}()
	}
	return l
}

func (l *load) finish() map[string]int {
	close(l.stop)
	l.wg.Wait()
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	out := make(map[string]int, len(l.s.accepted))
	for k, v := range l.s.accepted {
		out[k] = v
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func stateOf(srv *Server, i int) sched.State { return srv.View().Members[i].State }

// delivered is how many messages each analyzer has answered 2xx for.
func delivered(srv *Server) []int64 {
	return perDest(srv, func(d *DestStats) int64 { return d.DeliveredMessages })
}

// routed is how many messages the shards' schedulers have placed on each analyzer
// (re-routes in included). Shares are read here rather than from deliveries: the
// plain net/http fakes can fall behind a fast distributor, and a backlog drained
// inside a measuring window would be counted as that window's split.
func routed(srv *Server) []int64 {
	return perDest(srv, func(d *DestStats) int64 { return d.RoutedMessages })
}

func perDest(srv *Server, field func(*DestStats) int64) []int64 {
	st := srv.Snapshot()
	out := make([]int64, len(st.Dests))
	for i := range st.Dests {
		out[i] = field(&st.Dests[i])
	}
	return out
}

func failureConfig(c *Config) {
	c.SenderTimeout = 300 * time.Millisecond
	c.MaxFailures = 3
	c.HealthInterval = 100 * time.Millisecond
	c.BreakerBackoffMax = 2 * time.Second
}

func fixedSize(n int) func(int64) int { return func(int64) int { return n } }

// Kill an analyzer under steady load and bring it back: nothing accepted goes
// missing, the survivors split its traffic by their weights, and the returning
// analyzer ramps up instead of taking a burst.
func TestKillAndRestartAnalyzer(t *testing.T) {
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	srv := startDistributor(t, joinAnalyzers(fakes, 0.5, 0.3, 0.2), func(c *Config) {
		failureConfig(c)
		c.SlowStart = 2 * time.Second
	})
	l := startLoad(t, srv, 4, "k-", fixedSize(5))
	waitFor(t, "traffic to every analyzer", 10*time.Second, func() bool {
		d := delivered(srv)
		return d[0] > 500 && d[1] > 300 && d[2] > 200
	})

	fakes[0].stop()
	waitFor(t, "analyzer-1's breaker to open", 5*time.Second, func() bool { return stateOf(srv, 0) == StateOpen })
	before, deliveredBefore := routed(srv), delivered(srv)
	waitFor(t, "survivors to be given 3000 messages", 20*time.Second, func() bool {
		d := routed(srv)
		return d[1]+d[2]-before[1]-before[2] > 3000
	})
	during, deliveredDuring := routed(srv), delivered(srv)
	got1, got2 := during[1]-before[1], during[2]-before[2]
	if share := float64(got1) / float64(got1+got2); share < 0.55 || share > 0.65 {
		t.Errorf("survivors split %d:%d (analyzer-2 share %.3f), want 0.6 by their weights 0.3:0.2", got1, got2, share)
	}
	if during[0] != before[0] || deliveredDuring[0] != deliveredBefore[0] {
		t.Errorf("a dead analyzer was given %d messages and credited with %d deliveries", during[0]-before[0], deliveredDuring[0]-deliveredBefore[0])
	}

	fakes[0].start(t)
	waitFor(t, "analyzer-1 to rejoin", 10*time.Second, func() bool {
		s := stateOf(srv, 0)
		return s == StateSlowStart || s == StateHealthy
	})
	// While it ramps, its share of new traffic stays at or under its weight.
	rejoin := routed(srv)
	waitFor(t, "1500 messages after the rejoin", 20*time.Second, func() bool {
		d := routed(srv)
		return d[0]+d[1]+d[2]-rejoin[0]-rejoin[1]-rejoin[2] > 1500
	})
	after := routed(srv)
	ramp := float64(after[0]-rejoin[0]) / float64(after[0]+after[1]+after[2]-rejoin[0]-rejoin[1]-rejoin[2])
	if ramp > 0.5+0.05 {
		t.Errorf("rejoined analyzer took %.3f of the traffic right after rejoining, more than its weight 0.5", ramp)
	}

	accepted := l.finish()
	settledNothingLost(t, srv, 15*time.Second)
	checkDelivered(t, accepted, fakes, true)
}

// An analyzer that goes down and up several times a second: no crash, no loss,
// and the invariant holds.
func TestFlappingAnalyzer(t *testing.T) {
	longScenario(t)
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	srv := startDistributor(t, joinAnalyzers(fakes, 0.5, 0.3, 0.2), failureConfig)
	l := startLoad(t, srv, 4, "f-", fixedSize(3))
	flapFor := 10 * time.Second
	if raceEnabled {
		flapFor = 4 * time.Second
	}
	end := time.Now().Add(flapFor)
	for time.Now().Before(end) {
		fakes[0].stop()
		time.Sleep(120 * time.Millisecond) // the fault's own rhythm: down for 120 ms
		fakes[0].start(t)
		time.Sleep(130 * time.Millisecond) // and up for 130 ms
	}
	accepted := l.finish()
	settledNothingLost(t, srv, 20*time.Second)
	checkDelivered(t, accepted, fakes, true)
	if len(accepted) < 100 {
		t.Fatalf("only %d packets accepted while flapping: the survivors should have taken traffic", len(accepted))
	}
}

// listenOn listens on addr, retrying a moment while the old socket lingers.
func listenOn(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln
		}
		time.Sleep(10 * time.Millisecond) // the old socket may linger for a moment
	}
	t.Fatalf("listen on %s: %v", addr, err)
	return nil
}

// blackhole accepts TCP connections on addr and never answers.
func blackhole(t *testing.T, addr string) {
	ln := listenOn(t, addr)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
}

// A blackholed analyzer (accepts TCP, never answers): what was sent to it times
// out and goes to the others; its breaker opens; nothing is lost. It is up at
// first: one that never answered its first probe gets no traffic at all.
func TestBlackholedAnalyzer(t *testing.T) {
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	// MAX_FAILURES 12, not 3: between stop and blackhole the connections close
	// and redials are refused, and on a loaded machine that gap alone used to
	// open the breaker before anything was sent into the blackhole (no timeout to
	// see). The gap costs a few failures; the blackhole's timeouts the rest.
	srv := startDistributor(t, joinAnalyzers(fakes, 0.5, 0.3, 0.2), func(c *Config) {
		failureConfig(c)
		c.MaxFailures = 12
	})
	l := startLoad(t, srv, 4, "b-", fixedSize(2))
	waitFor(t, "traffic to the third analyzer", 10*time.Second, func() bool { return delivered(srv)[2] > 0 })
	fakes[2].stop()
	blackhole(t, fakes[2].addr)
	waitFor(t, "the blackholed analyzer's breaker to open", 10*time.Second, func() bool { return stateOf(srv, 2) == StateOpen })
	waitFor(t, "traffic to continue", 10*time.Second, func() bool {
		d := delivered(srv)
		return d[0]+d[1] > 4000
	})
	accepted := l.finish()
	st := settledNothingLost(t, srv, 15*time.Second)
	if st.Dests[2].Failures[failTimeout] == 0 {
		t.Errorf("no timeouts counted against the blackholed analyzer")
	}
	checkDelivered(t, accepted, fakes, true)
}

// A slow but healthy analyzer (answers after 200 ms): it stays in, nothing is
// lost, and with spill its excess goes elsewhere.
func TestSlowAnalyzer(t *testing.T) {
	longScenario(t)
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	fakes[2].delay.Store(int64(200 * time.Millisecond))
	srv := startDistributor(t, joinAnalyzers(fakes, 0.5, 0.3, 0.2), func(c *Config) {
		failureConfig(c)
		c.SenderTimeout = time.Second // 200 ms answers are within it, even on a loaded machine
		c.QueueSize = 200             // small, so the slow analyzer's queue fills and spill shows
	})
	l := startLoad(t, srv, 4, "s-", fixedSize(2))
	waitFor(t, "3000 deliveries", 20*time.Second, func() bool {
		d := delivered(srv)
		return d[0]+d[1]+d[2] > 6000
	})
	accepted := l.finish()
	if s := stateOf(srv, 2); s != StateHealthy {
		t.Errorf("slow but healthy analyzer is %s, want healthy", s)
	}
	st := settledNothingLost(t, srv, 30*time.Second)
	checkDelivered(t, accepted, fakes, true)
	if st.Dests[2].Failures[failTimeout] != 0 {
		t.Errorf("a slow analyzer that answers within the deadline was timed out %d times", st.Dests[2].Failures[failTimeout])
	}
}

// All analyzers down: new packets get 503 with Retry-After at once; packets
// already accepted wait and are delivered when an analyzer returns.
func TestAllDownThenBack(t *testing.T) {
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	srv := startDistributor(t, joinAnalyzers(fakes, 0.6, 0.4), failureConfig)
	s := newSender(ingestURL(srv), 2)
	for i := 0; i < 200; i++ {
		s.send(t, "before-"+strconv.Itoa(i), 3)
	}
	fakes[0].stop()
	fakes[1].stop()
	// Packets accepted now wait in outboxes until their analyzer is known dead.
	for i := 0; i < 50; i++ {
		s.send(t, "during-"+strconv.Itoa(i), 3)
	}
	waitFor(t, "both breakers to open", 10*time.Second, func() bool {
		return stateOf(srv, 0) == StateOpen && stateOf(srv, 1) == StateOpen
	})
	start := time.Now()
	code, h := s.send(t, "rejected", 3)
	if code != 503 || h.Get("Retry-After") == "" {
		t.Fatalf("with every analyzer down: status %d, Retry-After %q; want 503 with Retry-After", code, h.Get("Retry-After"))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("503 took %v; it must be immediate", d)
	}
	fakes[1].start(t)
	settledNothingLost(t, srv, 20*time.Second)
	s.mu.Lock()
	accepted := s.accepted
	s.mu.Unlock()
	checkDelivered(t, accepted, fakes, true)
}

// SIGTERM's path under load: Shutdown stops accepting, flushes every outbox and
// loses nothing that was accepted.
func TestShutdownUnderLoadLosesNothing(t *testing.T) {
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	srv := startDistributor(t, joinAnalyzers(fakes, 0.5, 0.5), nil)
	l := startLoad(t, srv, 4, "t-", fixedSize(4))
	l.s.tolerant = true // after Shutdown the port is closed
	waitFor(t, "load to flow", 10*time.Second, func() bool { d := delivered(srv); return d[0]+d[1] > 2000 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	accepted := l.finish()
	st := srv.Snapshot()
	checkInvariant(t, st)
	tot := st.Total()
	if tot.DroppedTotal() != 0 || tot.Queued != 0 || tot.InFlight != 0 {
		t.Fatalf("after shutdown: dropped %d, queued %d, in flight %d", tot.DroppedTotal(), tot.Queued, tot.InFlight)
	}
	checkDelivered(t, accepted, fakes, true)
}

// garbage accepts connections and answers every read with bytes that are not HTTP,
// except health probes, which pass: the analyzer is up, its answers are broken.
func garbage(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					answer := "SPDY/9 what\r\n\r\n"
					if bytes.HasPrefix(buf[:n], []byte("GET /health ")) {
						answer = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
					}
					if _, err := c.Write([]byte(answer)); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return "http://" + ln.Addr().String()
}

// An analyzer that answers with garbage: counted as malformed answers, its breaker
// opens, what it was sent goes elsewhere, nothing is lost.
func TestMalformedAnswers(t *testing.T) {
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false)}
	srv := startDistributor(t, fakes[0].url()+"=0.5,"+garbage(t)+"=0.5", failureConfig)
	l := startLoad(t, srv, 2, "m-", fixedSize(2))
	waitFor(t, "the garbage analyzer's breaker to open", 10*time.Second, func() bool { return stateOf(srv, 1) == StateOpen })
	waitFor(t, "traffic to continue", 10*time.Second, func() bool { return delivered(srv)[0] > 2000 })
	accepted := l.finish()
	st := settledNothingLost(t, srv, 15*time.Second)
	if st.Dests[1].Failures[failMalformed] == 0 {
		t.Errorf("no malformed answers counted: %+v", st.Dests[1].Failures)
	}
	checkDelivered(t, accepted, fakes, true)
}

// /health passes but /ingest answers 500: a passing probe alone never readmits the
// analyzer; its trial traffic fails and re-opens the breaker, with growing backoff.
func TestHealthyProbeFailingIngest(t *testing.T) {
	longScenario(t)
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	fakes[1].status.Store(500)
	srv := startDistributor(t, joinAnalyzers(fakes, 0.5, 0.5), func(c *Config) {
		failureConfig(c)
		c.BreakerBackoffMax = time.Second
	})
	l := startLoad(t, srv, 2, "h-", fixedSize(2))
	// It starts in (nothing is known against it), and its first failures take it out.
	waitFor(t, "the first opening", 10*time.Second, func() bool { return stateOf(srv, 1) == StateOpen })
	// Long enough for several open → half-open → open cycles. The state is sampled
	// only to catch a readmission; the half-open periods are counted by the breaker,
	// since a failing trial can end one faster than any sampling would see it.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if s := stateOf(srv, 1); s == StateHealthy || s == StateSlowStart {
			t.Fatalf("analyzer with failing /ingest was readmitted")
		}
		time.Sleep(5 * time.Millisecond) // sampling the state, not synchronising
	}
	accepted := l.finish()
	st := settledNothingLost(t, srv, 15*time.Second)
	b := srv.ctl.breakerCounts()[1]
	opens, trials := b.opens, b.trials
	if trials < 1 || opens < 2 {
		t.Errorf("want trial traffic (half-open %d times) that re-opened the breaker (opened %d times)", trials, opens)
	}
	if st.Dests[1].DeliveredPackets != 0 {
		t.Errorf("%d packets counted delivered by an analyzer that answers 500", st.Dests[1].DeliveredPackets)
	}
	checkDelivered(t, accepted, fakes[:1], true)
}

// A second analyzer that dies while another one ramps up after a rejoin must still
// be tripped by its failures: the ramp republishes the view every 100 ms, and that
// must not wipe the shards' failure streaks.
func TestDeathDuringAnotherSlowStart(t *testing.T) {
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	srv := startDistributor(t, joinAnalyzers(fakes, 0.4, 0.3, 0.3), func(c *Config) {
		failureConfig(c)
		c.SlowStart = 20 * time.Second // the whole test happens inside the ramp
		c.HealthInterval = time.Hour   // only traffic can trip the second one
		c.MaxFailures = 10             // its streak takes several ramp steps (100 ms each) to build
	})
	l := startLoad(t, srv, 4, "r-", fixedSize(2))
	fakes[0].stop()
	waitFor(t, "analyzer-1 to open", 10*time.Second, func() bool { return stateOf(srv, 0) == StateOpen })
	fakes[0].start(t)
	waitFor(t, "analyzer-1 to ramp", 20*time.Second, func() bool { return stateOf(srv, 0) == StateSlowStart })
	fakes[1].stop()
	waitFor(t, "analyzer-2 to open during the ramp", 5*time.Second, func() bool { return stateOf(srv, 1) == StateOpen })
	accepted := l.finish()
	settledNothingLost(t, srv, 15*time.Second)
	checkDelivered(t, accepted, fakes, true)
}
