package proxy

import (
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"
)

// With a linger, packets wait for a full batch (sent at once) or for the linger to
// end (sent together then); without one, every packet leaves as soon as a connection
// can take it. The linger here is long (1 s) so that what the test sees cannot be a
// timing accident of a slow machine: only the fill rule or the timer can send.
func TestLingerFillsBatches(t *testing.T) {
	const batchMax = 8
	for _, linger := range []time.Duration{time.Second, 0} {
		t.Run("linger="+linger.String(), func(t *testing.T) {
			fake := newFakeAnalyzer(t, true)
			srv := startDistributor(t, joinAnalyzers([]*fakeAnalyzer{fake}, 1), func(c *Config) {
				c.Loops = 1
				c.BatchMax = batchMax
				c.BatchLinger = linger
				c.SenderTimeout = 10 * time.Second
			})
			waitBatch(t, srv, true)
			s := newSender(ingestURL(srv), 1)
			send := func(from, to int) {
				for i := from; i < to; i++ {
					if code, _ := s.send(t, "l-"+strconv.Itoa(i), 2); code != 202 {
						t.Fatalf("packet %d: status %d", i, code)
					}
				}
			}
			// One packet short of a batch: with the linger, all of it still waits.
			send(0, batchMax-1)
			if linger > 0 {
				st := srv.Snapshot()
				if q := st.Total().Queued; q != batchMax-1 {
					t.Fatalf("queued %d right after the 202s, want all %d lingering", q, batchMax-1)
				}
			}
			// The packet that fills the batch sends it.
			send(batchMax-1, batchMax)
			waitDelivered(t, srv, batchMax, 5*time.Second)
			if linger > 0 {
				if b := fake.batches.Load(); b != 1 {
					t.Fatalf("%d batch requests for one full batch, want 1", b)
				}
			} else if b := fake.batches.Load(); b < 2 {
				// One packet at a time on one connection: each leaves before the next.
				t.Fatalf("%d batch requests without a linger, want one per packet or so", b)
			}
			// Less than a batch is sent when the linger ends, all together.
			before := fake.batches.Load()
			send(batchMax, batchMax+3)
			waitDelivered(t, srv, batchMax+3, 5*time.Second)
			if linger > 0 {
				if b := fake.batches.Load() - before; b != 1 {
					t.Fatalf("%d batch requests for 3 lingering packets, want 1", b)
				}
			}
			checkInvariant(t, waitSettled(t, srv, 5*time.Second))
			checkDelivered(t, s.accepted, []*fakeAnalyzer{fake}, false)
		})
	}
}

// waitDelivered waits until n packets were delivered in all.
func waitDelivered(t *testing.T, srv *Server, n int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := srv.Snapshot()
		if got := st.Total().DeliveredPackets; got >= n {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("delivered %d after %v, want %d", got, within, n)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
}

// The linger must not be why an analyzer counts as full. With a slow analyzer full
// and a tiny queue on the fast one, packets lingering on the fast one filled its
// queue and SPILL answered 503 queue_full to 16 of 20 back-to-back POSTs while the
// fast analyzer had nothing in flight. Now the linger lets go of an outbox one
// packet before its queue limit. A 503 can still happen when the next POST beats
// the fast analyzer's answers to the previous ones (so it does without a linger
// too, about once in 100 POSTs here); the deterministic version of this test is
// TestShardLingerStopsBeforeQueueLimit.
func TestLingerDoesNotFillTheQueue(t *testing.T) {
	slow, fast := newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)
	slow.delay.Store(int64(time.Second))
	srv := startDistributor(t, joinAnalyzers([]*fakeAnalyzer{slow, fast}, 0.5, 0.5), func(c *Config) {
		c.Loops = 1
		c.QueueSize = 2
		c.SenderTimeout = 5 * time.Second
		c.BatchLinger = time.Millisecond
		c.Spill = true
	})
	s := newSender(ingestURL(srv), 1)
	for i := 0; i < 20; i++ {
		s.send(t, "s-"+strconv.Itoa(i), 1)
	}
	if s.statuses[202] < 15 {
		t.Fatalf("answers %v to 20 POSTs, want (nearly) all accepted while the fast analyzer has room", s.statuses)
	}
	settledNothingLost(t, srv, 10*time.Second)
}

// A lone packet leaves when its linger ends, with no other event to help: the
// tick is taken out (an hour), so only the linger timer can send it; the linger
// (100 ms) is long enough that delivering before it would show. The timer parks
// between lingers and is started again (3 rounds).
func TestLingerLonePacket(t *testing.T) {
	const linger = 100 * time.Millisecond
	fake := newFakeAnalyzer(t, true)
	cfg := DefaultConfig()
	specs, err := ParseAnalyzers(joinAnalyzers([]*fakeAnalyzer{fake}, 1))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Analyzers, cfg.Port, cfg.MetricsAddr, cfg.Loops = specs, 0, "", 1
	cfg.BatchLinger, cfg.SlowStart, cfg.HealthInterval = linger, 0, 200*time.Millisecond
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv.tickEvery = time.Hour
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := contextWithTimeout(5 * time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	waitBatch(t, srv, true)
	s := newSender(ingestURL(srv), 1)
	for round := range 3 {
		id := "lone-" + strconv.Itoa(round)
		start := time.Now()
		if code, _ := s.send(t, id, 1); code != 202 {
			t.Fatalf("status %d", code)
		}
		waitDelivered(t, srv, int64(round+1), 2*time.Second)
		took := time.Since(start)
		if took < linger*9/10 {
			t.Fatalf("round %d: delivered after %v, before the linger of %v ended", round, took, linger)
		}
		t.Logf("round %d: lone packet delivered after %v (linger %v)", round, took, linger)
	}
	checkDelivered(t, s.accepted, []*fakeAnalyzer{fake}, false)
}
