package analyzer

import (
	"math/rand/v2"
	"testing"
)

// TestIDSetAgreesWithMap churns a small set (long probe runs, wrap-around) with
// random adds and removes and checks it against a map after every step.
func TestIDSetAgreesWithMap(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	for round := 0; round < 50; round++ {
		s := newIDSet(16)
		ref := map[uint64]bool{}
		var members []uint64
		// A small value range makes homes collide. (0 is left out: it is stored as 1.)
		for step := 0; step < 2000; step++ {
			h := uint64(1 + r.IntN(64))
			if r.IntN(2) == 0 && len(members) < 16 && !ref[h] {
				s.add(h)
				ref[h] = true
				members = append(members, h)
			} else if len(members) > 0 {
				i := r.IntN(len(members))
				s.remove(members[i])
				delete(ref, members[i])
				members = append(members[:i], members[i+1:]...)
			}
			for v := uint64(1); v <= 64; v++ {
				if s.has(v) != ref[v] {
					t.Fatalf("round %d step %d: has(%d) = %v, want %v", round, step, v, s.has(v), ref[v])
				}
			}
		}
	}
}

func BenchmarkIDSetChurn(b *testing.B) {
	const n = 4096
	s := newIDSet(n)
	ring := make([]uint64, n)
	for i := 0; i < b.N; i++ {
		h := uint64(i+1) * 0x9E3779B97F4A7C15
		if s.has(h) {
			continue
		}
		if i >= n {
			s.remove(ring[i%n])
		}
		ring[i%n] = h
		s.add(h)
	}
}

// BenchmarkMapChurn is BenchmarkIDSetChurn with a Go map, the structure idSet replaces.
func BenchmarkMapChurn(b *testing.B) {
	const n = 4096
	m := make(map[uint64]struct{}, n)
	ring := make([]uint64, n)
	for i := 0; i < b.N; i++ {
		h := uint64(i+1) * 0x9E3779B97F4A7C15
		if _, ok := m[h]; ok {
			continue
		}
		if i >= n {
			delete(m, ring[i%n])
		}
		ring[i%n] = h
		m[h] = struct{}{}
	}
}
