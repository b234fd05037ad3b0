package proxy

import (
	"strconv"
	"testing"
)

// The window starts at two full requests, so an analyzer that stops answering
// holds at most that many unanswered packets (plus less than one request), however
// much waits; answers while the window limits double it per round trip up to the
// fixed bound; a failure cuts it to one request.
func TestWindowAdapts(t *testing.T) {
	s := testShard(t, 1, func(c *Config) {
		c.BatchLinger = 0
		c.UpstreamConns = 2
		c.PipelineDepth = 8
		c.BatchMax = 16
		c.MaxFailures = 100
	})
	d := s.dests[0]
	d.batch = true
	lo, hi := s.windowMin(d), s.windowMax(d)
	if lo != 32 || hi != 8*16*2 {
		t.Fatalf("window bounds %d..%d, want 32..256", lo, hi)
	}
	n := 0
	offerN := func(k int) {
		for range k {
			s.accept(packetBody("w-"+strconv.Itoa(n), 1), 1)
			n++
		}
		s.ticking = true // write to busy connections too (coalescing waits otherwise)
		s.markDirty(d)
		s.flushDirty()
		s.ticking = false
	}
	hold(d)
	offerN(200) // queued while the connections are still being dialled
	conns := open(s)[0]
	s.flushDirty()
	if in := s.stats.Dests[0].InFlight; in < int64(lo) || in >= int64(lo+16) {
		t.Fatalf("%d in flight with nothing answered, want the start window %d (+ less than a request)", in, lo)
	}
	if !d.win.limited {
		t.Fatal("packets wait for the window but it is not marked limited")
	}
	// Answer everything in flight, round after round: slow start doubles it.
	prev := d.win.size
	for round := 0; round < 6; round++ {
		for _, c := range conns {
			paths, _ := requests(t, c)
			answer(s, c, len(paths), 200)
		}
		offerN(300)
		if d.win.size <= prev && d.win.size < hi {
			t.Fatalf("round %d: window %d did not grow from %d while limiting", round, d.win.size, prev)
		}
		prev = d.win.size
	}
	if d.win.size != hi {
		t.Fatalf("window %d after six doubling rounds, want the fixed bound %d", d.win.size, hi)
	}
	if in := s.stats.Dests[0].InFlight; in > int64(hi) {
		t.Fatalf("%d in flight, over the fixed bound %d", in, hi)
	}
	// A failed connection cuts it to one request (16 packets here).
	conns[0].u.fail(failTimeout)
	if d.win.size != 16 || d.win.ssthresh != hi/2 {
		t.Fatalf("after a failure: window %d ssthresh %d, want one request (16) and %d", d.win.size, d.win.ssthresh, hi/2)
	}
	shardInvariant(t, s)
}

// A window that holds nothing back does not grow: an analyzer that keeps up keeps
// a small window, which is what a freeze would double.
func TestWindowGrowsOnlyWhenLimiting(t *testing.T) {
	s := testShard(t, 1, func(c *Config) {
		c.BatchLinger = 0
		c.UpstreamConns = 1
	})
	d := s.dests[0]
	c := open(s)[0][0]
	for i := range 500 {
		offer(s, "k-"+strconv.Itoa(i), 1)
		paths, _ := requests(t, c)
		answer(s, c, len(paths), 200)
	}
	if d.win.size != s.windowMin(d) || d.win.limited {
		t.Fatalf("window %d (limited %v) after 500 packets one at a time, want it to stay at %d", d.win.size, d.win.limited, s.windowMin(d))
	}
}

// Answers that slow down (a round trip over 4 × the smallest + 10 ms) cut the
// window by a quarter, at most once per round trip.
func TestWindowShrinksWhenAnswersSlow(t *testing.T) {
	s := testShard(t, 1, nil)
	d := s.dests[0]
	s.windowRoom(d) // first use sets the start
	d.win.size = 1000
	s.now = 1e9
	s.windowAnswered(d, 1, 1e6) // 1 ms: the smallest round trip
	s.now += 1e6
	s.windowAnswered(d, 1, 50e6) // 50 ms > 4 × 1 ms + 10 ms
	if d.win.size != 750 {
		t.Fatalf("window %d after a slow answer, want 750", d.win.size)
	}
	s.now += 1e6
	s.windowAnswered(d, 1, 50e6) // within the same round trip: no second cut
	if d.win.size != 750 {
		t.Fatalf("window %d after a second slow answer in one round trip, want 750", d.win.size)
	}
}
