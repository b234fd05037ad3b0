package proxy

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// startPaced starts a distributor like startDistributor (one loop) whose tick
// periods the test chooses: busy (tickEvery) and quiet (quietEvery).
func startPaced(t *testing.T, analyzers string, busy, quiet time.Duration, tweak func(*Config)) *Server {
	t.Helper()
	cfg := DefaultConfig()
	specs, err := ParseAnalyzers(analyzers)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Analyzers, cfg.Port, cfg.MetricsAddr, cfg.Loops = specs, 0, "", 1
	cfg.SlowStart, cfg.HealthInterval = 0, 200*time.Millisecond
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv.tickEvery, srv.quietEvery = busy, quiet
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := contextWithTimeout(5 * time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// onLoop runs f on sh's loop and waits for it.
func onLoop(t *testing.T, sh *shard, f func()) {
	t.Helper()
	done := make(chan struct{})
	err := sh.loop.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		f()
		close(done)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not run the task within 5 s")
	}
}

// waitQuiet waits until every shard's tick is on its quiet pace.
func waitQuiet(t *testing.T, srv *Server, within time.Duration) *shard {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		list := srv.shardList()
		quiet := len(list) > 0
		for _, sh := range list {
			quiet = quiet && sh.tickQuiet.Load()
		}
		if quiet {
			return list[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("shards not quiet after %v", within)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
}

// An idle shard ticks once a second, not every 10 ms; a packet brings the fast
// tick back at once, and delivery turns it quiet again.
func TestTickQuietWhenIdle(t *testing.T) {
	fake := newFakeAnalyzer(t, false)
	srv := startPaced(t, joinAnalyzers([]*fakeAnalyzer{fake}, 1), tickInterval, quietInterval, nil)
	s := newSender(ingestURL(srv), 1)
	if code, _ := s.send(t, "q-0", 1); code != 202 {
		t.Fatalf("status %d", code)
	}
	waitDelivered(t, srv, 1, 2*time.Second)
	sh := waitQuiet(t, srv, 2*time.Second)
	var before, after int64
	onLoop(t, sh, func() { before = sh.ticks })
	time.Sleep(300 * time.Millisecond) // the window the ticks are counted over
	onLoop(t, sh, func() { after = sh.ticks })
	if n := after - before; n > 2 {
		t.Fatalf("%d ticks in 300 ms while quiet, want at most 2 (one a second)", n)
	}
	// A packet in flight needs the fast tick (its answer deadline): the analyzer
	// holds its answer back 300 ms, in which some 30 ticks run.
	fake.delay.Store(int64(300 * time.Millisecond))
	onLoop(t, sh, func() { before = sh.ticks })
	if code, _ := s.send(t, "q-1", 1); code != 202 {
		t.Fatalf("status %d", code)
	}
	if sh.tickQuiet.Load() {
		t.Fatal("still quiet with a packet queued or in flight")
	}
	waitDelivered(t, srv, 2, 2*time.Second)
	onLoop(t, sh, func() { after = sh.ticks })
	if n := after - before; n < 10 {
		t.Fatalf("%d ticks while a packet was in flight for 300 ms, want the fast tick (about 30)", n)
	}
	waitQuiet(t, srv, 2*time.Second)
	checkDelivered(t, s.accepted, []*fakeAnalyzer{fake}, false)
}

// A packet sent from a quiet shard still gets its answer deadline on time: the
// quiet tick is an hour here, so only the fast tick that the packet brings back
// can time it out.
func TestTickQuietStillTimesOut(t *testing.T) {
	slow, fast := newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)
	srv := startPaced(t, joinAnalyzers([]*fakeAnalyzer{slow, fast}, 0.5, 0.5), tickInterval, time.Hour, func(c *Config) {
		c.SenderTimeout = 200 * time.Millisecond
		c.MaxFailures = 100 // the breaker stays out of it
	})
	s := newSender(ingestURL(srv), 1)
	if code, _ := s.send(t, "t-0", 1); code != 202 {
		t.Fatalf("status %d", code)
	}
	waitDelivered(t, srv, 1, 2*time.Second)
	waitQuiet(t, srv, 2*time.Second)
	slow.delay.Store(int64(time.Second))
	start := time.Now()
	for i := range 4 { // 0.5/0.5: some reach the slow one
		if code, _ := s.send(t, "t-"+string(rune('1'+i)), 1); code != 202 {
			t.Fatalf("status %d", code)
		}
	}
	deadline := start.Add(2 * time.Second)
	for {
		st := srv.Snapshot()
		if st.Dests[0].Failures[failTimeout] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer deadline passed 2 s after sending to an analyzer that holds answers 1 s (deadline 200 ms)")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("timed out %v after the sends (deadline 200 ms)", time.Since(start))
	waitDelivered(t, srv, 5, 5*time.Second) // retried on the fast one
	slow.delay.Store(0)
	checkDelivered(t, s.accepted, []*fakeAnalyzer{slow, fast}, true)
}

// A View published while a shard is quiet is applied at once (the controller
// nudges the quiet shard's tick), not at the next quiet tick (an hour here) or
// inbound request.
func TestTickQuietAppliesViews(t *testing.T) {
	a, b := newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)
	srv := startPaced(t, joinAnalyzers([]*fakeAnalyzer{a, b}, 0.5, 0.5), tickInterval, time.Hour, nil)
	s := newSender(ingestURL(srv), 1)
	if code, _ := s.send(t, "v-0", 1); code != 202 {
		t.Fatalf("status %d", code)
	}
	waitDelivered(t, srv, 1, 2*time.Second)
	sh := waitQuiet(t, srv, 2*time.Second)
	if _, _, err := srv.ctl.setDrained(srv.View().Members[1].Name, true); err != nil {
		t.Fatal(err)
	}
	want := srv.View().Gen
	deadline := time.Now().Add(time.Second)
	for {
		var gen uint64
		var eligible bool
		onLoop(t, sh, func() { gen, eligible = sh.gen, sh.dests[1].eligible })
		if gen >= want {
			if eligible {
				t.Fatal("applied the View but analyzer 1 is still eligible after its drain")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the quiet shard is at View %d 1 s after View %d was published", gen, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
