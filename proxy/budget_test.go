package proxy

import (
	"strconv"
	"testing"
)

// MAX_BUFFER_BYTES bounds the bytes the whole distributor holds (counted by the
// pooled buffers' capacity): packets past it are refused as full (503), a
// delivery makes room again, and without it nothing is counted at all.
func TestMaxBufferBytes(t *testing.T) {
	const limit = 8 << 10
	s := testShard(t, 2, func(c *Config) {
		c.MaxBufferBytes = limit
		c.BatchLinger = 0
		c.UpstreamConns = 1
	})
	for _, d := range s.dests {
		hold(d) // nothing is sent: everything accepted stays held
	}
	body := packetBody("m-0", 1)
	accepted := 0
	var last acceptResult
	for i := 0; i < 100; i++ {
		if last = offer(s, "m-"+strconv.Itoa(i), 1); last != acceptOK {
			break
		}
		accepted++
	}
	b := s.srv.budget
	if last != acceptFull || accepted == 0 || accepted > limit/len(body) {
		t.Fatalf("accepted %d packets of %d bytes under %d, then %v; want some, at most %d, then full", accepted, len(body), limit, last, limit/len(body))
	}
	if held := b.heldBytes.Load(); held > limit+int64(cap(s.dests[0].outbox.at(0).body.B)) {
		t.Fatalf("%d bytes held, over the limit by more than one buffer", held)
	}
	// Deliver everything: the bytes are given back and packets are taken again.
	conns := open(s)
	for round := 0; round < 20 && s.stats.Total().DeliveredPackets < int64(accepted); round++ {
		s.ticking = true // the tick's flush: busy connections take more too
		for _, d := range s.dests {
			s.markDirty(d)
		}
		s.flushDirty()
		s.ticking = false
		for _, cs := range conns {
			for _, c := range cs {
				paths, _ := requests(t, c)
				answer(s, c, len(paths), 200)
			}
		}
	}
	if n := b.heldBytes.Load(); n != 0 || s.stats.Total().DeliveredPackets != int64(accepted) {
		t.Fatalf("after delivering all: %d bytes still counted, %d delivered of %d", n, s.stats.Total().DeliveredPackets, accepted)
	}
	if r := offer(s, "m-again", 1); r != acceptOK {
		t.Fatalf("after the deliveries: %v, want ok", r)
	}
	shardInvariant(t, s)

	s2 := testShard(t, 1, nil)
	hold(s2.dests[0])
	for i := 0; i < 10; i++ {
		offer(s2, "n-"+strconv.Itoa(i), 1)
	}
	if n := s2.srv.budget.heldBytes.Load(); n != 0 || s2.srv.budget.bytesOn {
		t.Fatalf("MAX_BUFFER_BYTES unset: %d bytes counted (on %v), want none", n, s2.srv.budget.bytesOn)
	}
}

func TestMemoryLimitFor(t *testing.T) {
	for _, tc := range []struct {
		max    int64
		env    string
		want   int64
		wantOK bool
	}{
		{0, "", 0, false},
		{256 << 20, "", 2*(256<<20) + 64<<20, true},
		{256 << 20, "1GiB", 0, false},
	} {
		if got, ok := MemoryLimitFor(tc.max, tc.env); got != tc.want || ok != tc.wantOK {
			t.Errorf("MemoryLimitFor(%d, %q) = %d %v, want %d %v", tc.max, tc.env, got, ok, tc.want, tc.wantOK)
		}
	}
}
