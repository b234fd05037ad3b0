package sched

import (
	"slices"
	"testing"
)

// FuzzCredit drives one Credit with fuzzed weights and a fuzzed program of picks
// (sizes 1..192), skipped picks, moves and resets, and checks after every step: the
// sum of credits never moves, skipped and ineligible analyzers are never chosen, -1
// exactly when nobody can be, credits stay inside the overflow-safe range, and while
// no skip or move has happened since the last reset, the proven error bound.
//
// Program bytes: b < 0xC0 picks a packet of 1+b messages; 0xC0..0xEF picks with
// analyzer (b-0xC0)%members skipped; 0xF0..0xFE moves the last picked packet off its
// analyzer; 0xFF sets the weights rotated by one (a reset when the eligible set
// changes, carried credits when only the weights do).
func FuzzCredit(f *testing.F) {
	f.Add(uint8(3), uint8(0x00), []byte{5, 3, 2}, []byte{0, 49, 0, 49, 0, 49, 191, 0, 0, 0, 0})
	f.Add(uint8(5), uint8(0x31), []byte{17, 1, 5, 1, 16}, []byte{56, 99, 2, 99, 99, 99, 63, 89, 99, 11, 99, 99})
	f.Add(uint8(8), uint8(0x72), []byte{1, 0, 1, 9, 0, 200, 3, 3}, []byte{191, 0, 0, 0, 0xC5, 0xF0, 0xFF, 7, 7, 0xC1, 0xF3, 0})
	f.Add(uint8(0x82), uint8(0x11), []byte{}, []byte{0, 1, 2, 0xC0, 0xC1, 0xF0, 0xFF, 3, 4})
	f.Fuzz(func(t *testing.T, members, shard uint8, weights, program []byte) {
		if len(program) > 4096 {
			program = program[:4096] // long programs find nothing new, only run slower
		}
		n := 1 + int(members%12)
		if members&0x80 != 0 {
			n = 65 + int(members%8) // exercise Set beyond 64 members
		}
		shards := 1 + int(shard>>4)%8
		c := NewCredit(n, int(shard)%shards, shards)
		w := make([]float64, n)
		rot := 0
		reset := func() *tracker {
			for j := range w {
				w[j] = 1
				if len(weights) > 0 {
					w[j] = float64(weights[(j+rot)%len(weights)])
				}
			}
			return newTracker(c, w)
		}
		tr := reset()
		sum0 := sumCredits(c)
		exact := true // no skip or move since the last reset
		last, lastN := -1, 0
		var skip Set
		for step, b := range program {
			skip.Clear()
			var got int
			switch {
			case b < 0xC0:
				got = tr.pick(1 + int(b))
				if got >= 0 {
					last, lastN = got, 1+int(b)
				}
			case b < 0xF0:
				skip.Add(int(b-0xC0) % n)
				got = c.Pick(1+step%50, &skip)
				exact = false
				if got >= 0 {
					last, lastN = got, 1+step%50
				}
			case b < 0xFF:
				if last < 0 {
					continue
				}
				skip.Add(last)
				before := slices.Clone(c.credit)
				got = c.Move(last, lastN, &skip)
				exact = false
				if got < 0 && !slices.Equal(before, c.credit) {
					t.Fatalf("step %d: Move found nowhere but changed credits", step)
				}
				if got >= 0 {
					last = got
				}
			default:
				rot++
				resets, before := c.resets, slices.Clone(c.credit)
				next := reset()
				if c.resets == resets {
					// Same eligible analyzers: SetWeights carries the credits and the
					// run goes on, owed shares following the new weights.
					if !slices.Equal(before, c.credit) {
						t.Fatalf("step %d: new weights over the same analyzers moved the credits", step)
					}
					continue
				}
				tr = next
				sum0 = sumCredits(c)
				exact = true
				last = -1
				continue
			}
			candidates := 0
			for i := range n {
				if w[i] > 0 && !skip.Has(i) {
					candidates++
				}
			}
			if b >= 0xF0 {
				candidates-- // Move never returns from
			}
			switch {
			case got < 0 && candidates > 0 && b < 0xF0:
				t.Fatalf("step %d: -1 with %d candidates", step, candidates)
			case got < 0 && candidates > 0:
				t.Fatalf("step %d: Move found nowhere with %d candidates", step, candidates)
			case got >= 0 && (w[got] <= 0 || skip.Has(got)):
				t.Fatalf("step %d: chose %d (weight %v, skipped %v)", step, got, w[got], skip.Has(got))
			}
			if s := sumCredits(c); s != sum0 {
				t.Fatalf("step %d: sum of credits %d, was %d", step, s, sum0)
			}
			lo := -int64(max(len(c.idx)-1, 0)) * c.limit
			for k, v := range c.credit {
				if v > c.limit || v < lo {
					t.Fatalf("step %d: analyzer %d credit %d outside [%d, %d]", step, c.idx[k], v, lo, c.limit)
				}
			}
			if exact {
				if err := tr.check(); err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
			}
		}
	})
}
