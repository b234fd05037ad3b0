package proxy

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/sluicelog/sluice/codec"
)

// Shard logic on the fake-upstream harness (harness_test.go): no sockets, no
// timers, every step driven by the test.

// hold keeps d's connections from opening (as if dialling forever), so what is
// routed to d stays in its outbox.
func hold(d *dest) {
	for _, u := range d.conns {
		u.state = connDialing
	}
}

// answerAll answers 2xx to everything written on the analyzer's connections.
func answerAll(t *testing.T, s *shard, cs []*fakeConn) int {
	t.Helper()
	n := 0
	for _, c := range cs {
		paths, _ := requests(t, c)
		answer(s, c, len(paths), 200)
		n += len(paths)
	}
	return n
}

// The linger lets go of an outbox one packet before the analyzer's queue limit, so
// lingering packets never make an analyzer refuse: a slow analyzer (never answers)
// full, a fast one (answers everything written) with a queue of 2, and a linger
// far longer than the test: all 20 are accepted. The old shard held the fast
// analyzer's packets until the linger ended, and refused the 3rd packet.
func TestShardLingerStopsBeforeQueueLimit(t *testing.T) {
	s := testShard(t, 2, func(c *Config) {
		c.QueueSize = 2
		c.BatchLinger = time.Second
		c.Spill = true
	})
	conns := open(s)
	for i := 0; i < 20; i++ {
		if r := offer(s, "p-"+strconv.Itoa(i), 1); r != acceptOK {
			t.Fatalf("packet %d: %v, want ok (slow in flight %d, fast queued %d)", i, r, s.stats.Dests[0].InFlight, s.stats.Dests[1].Queued)
		}
		answerAll(t, s, conns[1])
		shardInvariant(t, s)
	}
	if s.stats.Dests[0].InFlight != 2 {
		t.Fatalf("the slow analyzer holds %d in flight, want its queue of 2", s.stats.Dests[0].InFlight)
	}
}

// With a linger, packets wait for a full batch or the linger's end; without, each
// leaves at once. Batches carry codec's framing byte for byte.
func TestShardLingerFill(t *testing.T) {
	const batchMax = 8
	for _, linger := range []time.Duration{time.Second, 0} {
		t.Run("linger="+linger.String(), func(t *testing.T) {
			s := testShard(t, 1, func(c *Config) {
				c.BatchMax = batchMax
				c.BatchLinger = linger
				c.UpstreamConns = 1
			})
			d := s.dests[0]
			d.batch = true
			c := open(s)[0][0]
			var want [][]byte
			for i := 0; i < batchMax-1; i++ {
				want = append(want, packetBody("b-"+strconv.Itoa(i), 1))
				offer(s, "b-"+strconv.Itoa(i), 1)
			}
			if linger > 0 {
				if c.wrote.Len() != 0 || !s.lingerArmed || len(s.lingerWake) != 1 {
					t.Fatalf("one short of a batch: wrote %d bytes, armed %v, wake %d; want all lingering and the timer started", c.wrote.Len(), s.lingerArmed, len(s.lingerWake))
				}
				want = append(want, packetBody("b-7", 1))
				before := time.Now().UnixMilli()
				s.now = nanotime() // as the event that reads the request sets it
				offer(s, "b-7", 1)
				after := time.Now().UnixMilli()
				written := append([]byte(nil), c.wrote.Bytes()...)
				// codec.AppendBatchRequest's bytes, with the deadline field in the head:
				// the send time plus SENDER_TIMEOUT_MS.
				dl := deadlineOf(t, written)
				timeout := s.srv.cfg.SenderTimeout.Milliseconds()
				if dl < before+timeout || dl > after+timeout {
					t.Fatalf("deadline %d, want between %d and %d (send time + SENDER_TIMEOUT_MS)", dl, before+timeout, after+timeout)
				}
				plain := codec.AppendBatchRequest(nil, d.host, want)
				body := plain[len(codec.AppendBatchHead(nil, d.host, codec.BatchBodyLen(want))):]
				if exp := append(codec.AppendBatchHeadDeadline(nil, d.host, codec.BatchBodyLen(want), dl), body...); !bytes.Equal(written, exp) {
					t.Fatalf("the full batch on the wire:\n%q\nwant codec.AppendBatchRequest's with the deadline\n%q", written, exp)
				}
				paths, bodies := requests(t, c)
				if len(paths) != 1 || paths[0] != codec.BatchPath || len(bodies[0]) != codec.BatchBodyLen(want) {
					t.Fatalf("requests %v, want one batch of %d", paths, batchMax)
				}
				answer(s, c, 1, 200)
				for i := 0; i < 3; i++ {
					offer(s, "c-"+strconv.Itoa(i), 1)
				}
				if c.wrote.Len() != 0 {
					t.Fatalf("3 packets were written before the linger ended")
				}
				s.lingerFire()
				if paths, _ := requests(t, c); len(paths) != 1 {
					t.Fatalf("the linger's end wrote %d requests, want one batch", len(paths))
				}
				answer(s, c, 1, 200)
			} else {
				paths, _ := requests(t, c)
				if len(paths) != 1 {
					t.Fatalf("without a linger the first packet goes at once, alone: %d requests", len(paths))
				}
			}
			shardInvariant(t, s)
		})
	}
}

// retry: a failed send goes to the best other eligible analyzer, at the front of
// its outbox, or back to the same one when there is none; past SENDER_RETRIES it is
// dropped. A 4xx is the packet's fault: retried, but not a failure of the analyzer.
func TestShardRetry(t *testing.T) {
	for _, tc := range []struct {
		name      string
		analyzers int
		retries   int
		status    int
		lose      bool // the connection closes instead of answering
		wantOn    int  // analyzer holding the packet afterwards, -1 dropped
		wantFail  failKind
		wantCount bool // counted in the streak towards MAX_FAILURES
	}{
		{"5xx moves it", 2, 3, 503, false, 1, failStatus5xx, true},
		{"429 moves it", 2, 3, 429, false, 1, failStatus5xx, true},
		{"4xx moves it, not charged", 2, 3, 404, false, 1, failStatus4xx, false},
		{"lost connection moves it", 2, 3, 0, true, 1, failClosed, true},
		{"nowhere else: same analyzer", 1, 3, 500, false, 0, failStatus5xx, true},
		{"no retries left: dropped", 2, 0, 500, false, -1, failStatus5xx, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testShard(t, tc.analyzers, func(c *Config) {
				c.SenderRetries = tc.retries
				c.BatchLinger = 0
				c.UpstreamConns = 1
				c.MaxFailures = 100
			})
			conns := open(s)
			// Route one packet to analyzer 0: the others cannot take it yet.
			for _, d := range s.dests[1:] {
				d.eligible = false
			}
			s.cred.SetWeights(append([]float64{1}, make([]float64, tc.analyzers-1)...))
			if r := offer(s, "r-1", 3); r != acceptOK {
				t.Fatal(r)
			}
			for _, d := range s.dests[1:] {
				d.eligible = true
				hold(d) // the retried packet stays where it lands
			}
			s.cred.SetWeights(append([]float64{1}, onesN(tc.analyzers-1)...))
			queuedBefore := int64(0)
			if tc.analyzers > 1 {
				offer(s, "r-2", 1) // something already waiting on analyzer 1, or 0
				queuedBefore = s.stats.Dests[1].Queued
			}
			c := conns[0][0]
			if paths, _ := requests(t, c); len(paths) == 0 {
				t.Fatal("nothing was sent to analyzer 0")
			}
			hold(s.dests[0]) // a retried packet on analyzer 0 stays queued too
			if tc.lose {
				_ = s.loop.Close(c)
			} else {
				answer(s, c, 1, tc.status)
			}
			s.flushDirty()
			st := &s.stats
			if got := st.Dests[0].Failures[tc.wantFail]; got != 1 {
				t.Fatalf("failures %v, want one %v", st.Dests[0].Failures, tc.wantFail)
			}
			if streak := s.srv.ctl.members[0].streak.Load(); (streak == 1) != tc.wantCount {
				t.Fatalf("streak %d after a %v", streak, tc.wantFail)
			}
			if tc.wantOn < 0 {
				if st.Dests[0].Dropped[dropRetries] != 1 {
					t.Fatalf("dropped %v, want one retries_exhausted", st.Dests[0].Dropped)
				}
			} else {
				d := s.dests[tc.wantOn]
				if d.outbox.len() == 0 || d.outbox.peek().msgs != 3 || d.outbox.peek().attempts != 1 {
					t.Fatalf("analyzer %d's outbox front is not the retried packet with one attempt spent", tc.wantOn)
				}
				if tc.wantOn != 0 && (st.Dests[0].Rerouted != 1 || st.Dests[tc.wantOn].Queued != queuedBefore+1) {
					t.Fatalf("rerouted %d, queued on %d: %d", st.Dests[0].Rerouted, tc.wantOn, st.Dests[tc.wantOn].Queued)
				}
			}
			shardInvariant(t, s)
		})
	}
}

func onesN(n int) []float64 {
	w := make([]float64, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

// evacuate: an analyzer that may no longer take packets gives its queued ones to
// the others at once, with no attempt spent; with nowhere to go they stay.
func TestShardEvacuate(t *testing.T) {
	for _, analyzers := range []int{2, 1} {
		t.Run("analyzers="+strconv.Itoa(analyzers), func(t *testing.T) {
			s := testShard(t, analyzers, func(c *Config) { c.BatchLinger = 0 })
			for _, d := range s.dests {
				hold(d)
			}
			for i := 0; i < 30; i++ {
				offer(s, "e-"+strconv.Itoa(i), 1)
			}
			before := s.stats.Dests[0].Queued
			if before == 0 {
				t.Fatal("nothing routed to analyzer 0")
			}
			_, _, _ = s.srv.ctl.setDrained(s.view.Members[0].Name, true)
			s.sync()
			st := &s.stats
			if analyzers == 1 {
				if st.Dests[0].Queued != before {
					t.Fatalf("with nowhere to go %d of %d stayed", st.Dests[0].Queued, before)
				}
			} else {
				if st.Dests[0].Queued != 0 || st.Dests[0].Rerouted != before || st.Dests[1].Queued != 30 {
					t.Fatalf("after evacuation: %+v / %+v", st.Dests[0], st.Dests[1])
				}
				for k := range s.dests[1].outbox.len() {
					if s.dests[1].outbox.at(k).attempts != 0 {
						t.Fatal("an evacuated packet was charged an attempt")
					}
				}
			}
			shardInvariant(t, s)
		})
	}
}

// spill vs strict: with SPILL a full analyzer is skipped while another has room;
// without, a packet whose turn falls on a full analyzer is refused.
func TestShardSpillVsStrict(t *testing.T) {
	for _, spill := range []bool{true, false} {
		t.Run("spill="+strconv.FormatBool(spill), func(t *testing.T) {
			s := testShard(t, 2, func(c *Config) {
				c.QueueSize = 3
				c.Spill = spill
				c.BatchLinger = 0
			})
			for _, d := range s.dests {
				hold(d)
			}
			accepted := 0
			var first acceptResult
			for i := 0; i < 10; i++ {
				r := offer(s, "f-"+strconv.Itoa(i), 1)
				if r == acceptOK {
					accepted++
				} else if first == acceptOK {
					first = r
					if spill && (s.stats.Dests[0].Queued < 3 || s.stats.Dests[1].Queued < 3) {
						t.Fatalf("spill refused (%v) while an analyzer had room: %d, %d", r, s.stats.Dests[0].Queued, s.stats.Dests[1].Queued)
					}
					if !spill && s.stats.Dests[0].Queued == 3 && s.stats.Dests[1].Queued == 3 {
						t.Fatal("strict: no refusal before both queues were full")
					}
				}
			}
			if first != acceptQueueFull {
				t.Fatalf("refusal %v, want queue_full", first)
			}
			if spill && accepted != 6 {
				t.Fatalf("spill accepted %d, want both queues of 3 filled", accepted)
			}
			if !spill && accepted >= 6 {
				t.Fatalf("strict accepted %d, want a refusal on the full analyzer's turn first", accepted)
			}
			shardInvariant(t, s)
		})
	}
}

// dropAll: the shutdown timeout gives up on what is queued and in flight, counted
// as shutdown_timeout, and closes the connections.
func TestShardDropAll(t *testing.T) {
	s := testShard(t, 2, func(c *Config) { c.BatchLinger = 0 })
	conns := open(s)
	hold(s.dests[1])
	for i := 0; i < 20; i++ {
		offer(s, "d-"+strconv.Itoa(i), 2)
	}
	answer(s, conns[0][0], 1, 200)
	tot := s.stats.Total()
	if tot.Queued == 0 || tot.InFlight == 0 || tot.DeliveredPackets != 1 {
		t.Fatalf("want some queued, some in flight, one delivered: %+v", tot)
	}
	s.dropAll()
	shardInvariant(t, s)
	tot = s.stats.Total()
	if tot.Queued+tot.InFlight != 0 || tot.Dropped[dropShutdown] != 19 || tot.Dropped[dropRetries] != 0 {
		t.Fatalf("after dropAll: %+v", tot)
	}
	for _, c := range conns[0] {
		if !c.closed {
			t.Fatal("an open upstream connection was left open")
		}
	}
}

// plan: at most room requests, batches of at most BATCH_MAX packets under
// batchBytes, in outbox order.
func TestShardPlan(t *testing.T) {
	s := testShard(t, 1, func(c *Config) { c.BatchLinger = 0 })
	d := s.dests[0]
	hold(d)
	for i := 0; i < 10; i++ {
		offer(s, "pl-"+strconv.Itoa(i), 1)
	}
	for _, tc := range []struct{ room, batchMax, wantSpans, wantFirst int }{
		{2, 4, 2, 4}, {5, 4, 3, 4}, {3, 1, 3, 1}, {1, 64, 1, 10},
	} {
		_, spans := s.plan(d, tc.room, tc.batchMax)
		if len(spans) != tc.wantSpans || spans[0].n != tc.wantFirst {
			t.Errorf("room %d batchMax %d: %d spans, first %d; want %d, %d", tc.room, tc.batchMax, len(spans), spans[0].n, tc.wantSpans, tc.wantFirst)
		}
	}
	// batchBytes: packets of 300 KiB fit three to a 1 MiB batch.
	s2 := testShard(t, 1, func(c *Config) { c.BatchLinger = 0 })
	hold(s2.dests[0])
	big := bytes.Repeat([]byte("x"), 300<<10)
	for i := 0; i < 7; i++ {
		s2.accept(big, 1)
	}
	_, spans := s2.plan(s2.dests[0], 10, 64)
	if len(spans) != 3 || spans[0].n != 3 || spans[1].n != 3 || spans[2].n != 1 {
		t.Fatalf("300 KiB packets: spans %+v, want 3, 3, 1", spans)
	}
}

// A request sent before the analyzer went half-open that fails afterwards is not a
// trial result: it counts towards MAX_FAILURES and does not reopen the breaker at
// once; a request sent while half-open does (found in review: the trial flag was
// read when the answer came, not when the request left).
func TestTrialIsDecidedWhenSent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sentTrial bool
		wantTrip  bool
	}{
		{"sent before the trip, fails while half-open", false, false},
		{"sent while half-open, fails", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testShard(t, 1, func(c *Config) {
				c.BatchLinger = 0
				c.UpstreamConns = 1
				c.MaxFailures = 100
			})
			conns := open(s)
			s.dests[0].trial = tc.sentTrial
			if r := offer(s, "t-1", 1); r != acceptOK {
				t.Fatal(r)
			}
			c := conns[0][0]
			if paths, _ := requests(t, c); len(paths) == 0 {
				t.Fatal("nothing was sent")
			}
			s.dests[0].trial = true // the analyzer is half-open when the answer comes
			answer(s, c, 1, 503)
			if got := s.srv.ctl.members[0].tripped.Load(); got != tc.wantTrip {
				t.Fatalf("breaker tripped: %v, want %v", got, tc.wantTrip)
			}
		})
	}
}

// deadlineOf is the X-Sluice-Deadline of the first request in wire.
func deadlineOf(t testing.TB, wire []byte) int64 {
	t.Helper()
	var p codec.Parser
	p.Init(codec.Limits{})
	var r codec.Request
	if _, err := p.Parse(wire, &r); err != nil {
		t.Fatalf("parse %q: %v", wire, err)
	}
	ms, ok := codec.ParseDeadline(r.Deadline)
	if !ok {
		t.Fatalf("no %s in %q", codec.DeadlineHeader, wire)
	}
	return ms
}

// A connection that times out fails every request on it, but only the oldest has
// had SENDER_TIMEOUT_MS of its own: a request written behind it recently goes back
// without spending an attempt. With no retries left, the old one is dropped and the
// young one is sent again and delivered. (Before: both spent an attempt, and with
// every analyzer stalled packets bounced between stalled connections until they
// were dropped, before the breakers opened; make chaos, "memory".)
func TestTimeoutSparesYoungRequests(t *testing.T) {
	s := testShard(t, 1, func(c *Config) {
		c.SenderRetries = 0
		c.BatchLinger = 0
		c.UpstreamConns = 1
		c.MaxFailures = 100
	})
	c := open(s)[0][0]
	d := s.dests[0]
	u := d.conns[0]
	timeout := int64(s.srv.cfg.SenderTimeout)
	t0 := nanotime()
	s.now = t0
	offer(s, "old", 1)
	s.now = t0 + timeout - int64(time.Millisecond)
	s.ticking = true // a busy connection takes one more packet only on the tick (coalescing)
	offer(s, "young", 1)
	s.ticking = false
	if paths, _ := requests(t, c); len(paths) != 2 || u.flights.len() != 2 {
		t.Fatalf("%d requests written, %d in flight; want both on the one connection", len(paths), u.flights.len())
	}
	s.now = t0 + timeout + int64(time.Millisecond)
	if !u.stalled(s.now, timeout) {
		t.Fatal("the connection is not stalled past the oldest request's deadline")
	}
	d.answered = t0 + 1 // the analyzer answered on another connection after "old" was sent: alive
	u.fail(failTimeout)
	st := &s.stats.Dests[0]
	if st.Dropped[dropRetries] != 1 || st.Queued != 1 {
		t.Fatalf("dropped %d queued %d: want the old request dropped (no retries left) and the young one queued again", st.Dropped[dropRetries], st.Queued)
	}
	c2 := open(s)[0][0]
	s.flush(d)
	paths, bodies := requests(t, c2)
	if len(paths) != 1 || !bytes.Contains(bodies[0], []byte(`"young"`)) {
		t.Fatalf("re-sent %q", bodies)
	}
	answer(s, c2, 1, 200)
	if st.DeliveredPackets != 1 {
		t.Fatalf("delivered %d, want the young packet", st.DeliveredPackets)
	}
	shardInvariant(t, s)
}

// Whether a timed-out request that had SENDER_TIMEOUT_MS of its own spends its
// packet an attempt. It does only when the analyzer is in rotation and answered
// something (on any connection) after the request was sent: it is alive and this
// request alone hangs it. An analyzer that answered nothing since is stalled, and
// one whose breaker took it out is known to be: neither is the packet's fault
// (with every analyzer frozen, their connections used to time out one after
// another and exhaust the packets' retries before the breakers opened; make
// chaos, "memory"). With no retries left, a spent attempt drops the packet; a
// spared one is queued again and delivered once the analyzer answers.
func TestTimeoutSpendsAnAttemptOnlyOnALiveAnalyzer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answered bool // the analyzer answered something after the request was sent
		eligible bool // its breaker still has it in rotation
		spent    bool
	}{
		{"silent analyzer", false, true, false},
		{"live analyzer", true, true, true},
		{"live analyzer taken out by its breaker", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testShard(t, 1, func(c *Config) {
				c.SenderRetries = 0
				c.BatchLinger = 0
				c.UpstreamConns = 1
				c.MaxFailures = 100
			})
			open(s)
			d := s.dests[0]
			u := d.conns[0]
			t0 := nanotime()
			s.now = t0
			offer(s, "old", 1)
			if u.flights.len() != 1 {
				t.Fatal("nothing in flight")
			}
			if tc.answered {
				d.answered = t0 + 1 // an answer on another connection after "old" was sent
			}
			d.eligible = tc.eligible // as shard.sync applies the breaker's View
			s.now = t0 + 2*int64(s.srv.cfg.SenderTimeout)
			u.fail(failTimeout)
			st := &s.stats.Dests[0]
			if tc.spent {
				if st.Dropped[dropRetries] != 1 || st.Queued != 0 {
					t.Fatalf("dropped %d queued %d: want the packet dropped (its one attempt spent)", st.Dropped[dropRetries], st.Queued)
				}
				shardInvariant(t, s)
				return
			}
			if st.Dropped[dropRetries] != 0 || st.Queued != 1 || d.outbox.peek().attempts != 0 {
				t.Fatalf("dropped %d queued %d: want the packet queued again, its attempt not spent", st.Dropped[dropRetries], st.Queued)
			}
			d.eligible = true
			c2 := open(s)[0][0]
			s.flush(d)
			answer(s, c2, 1, 200)
			if st.DeliveredPackets != 1 {
				t.Fatalf("delivered %d, want the packet", st.DeliveredPackets)
			}
			shardInvariant(t, s)
		})
	}
}
