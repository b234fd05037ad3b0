package sched

import "testing"

// FuzzAffinity drives one Affinity with fuzzed weights, bound and a fuzzed program
// of placements (emitter and size from the program), skipped placements and
// analyzers leaving or returning, and checks after every step: the choice is
// eligible and outside skip, -1 exactly when nothing can be chosen, and, while no
// skip happened since the last change of the eligible set, the proven bound.
//
// Program: byte pairs (op, arg). op < 0xC0: a packet of 1+op%64 messages from
// emitter arg; 0xC0..0xEF: the same with analyzer arg%members skipped; 0xF0..0xFF:
// analyzer arg%members leaves, or returns when it was out.
func FuzzAffinity(f *testing.F) {
	f.Add(uint8(3), uint8(25), []byte{5, 3, 2}, []byte{0, 1, 49, 2, 0xC0, 1, 0xF0, 1, 7, 7, 0xF0, 1, 9, 9})
	f.Add(uint8(8), uint8(0), []byte{1, 0, 1, 9, 0, 200, 3, 3}, []byte{191, 0, 0, 1, 0xC5, 2, 0xF3, 4, 7, 7, 0xC1, 3, 0, 0})
	f.Add(uint8(1), uint8(255), []byte{}, []byte{0, 0, 0xF0, 0, 1, 1, 0xF0, 0, 2, 2})
	f.Fuzz(func(t *testing.T, members, boundByte uint8, weights, program []byte) {
		if len(program) > 8192 {
			program = program[:8192]
		}
		n := 1 + int(members%70) // beyond 64: Set's second word
		bound := 1 + float64(boundByte)/128
		w := make([]float64, n)
		for i := range w {
			w[i] = 1
			if len(weights) > 0 {
				w[i] = float64(weights[i%len(weights)])
			}
		}
		out := make([]bool, n)
		eff := make([]float64, n)
		apply := func() {
			for i := range w {
				eff[i] = w[i]
				if out[i] {
					eff[i] = 0
				}
			}
		}
		apply()
		a := NewAffinity(n, bound, 64)
		a.SetWeights(eff, w)
		exact := true
		var skip Set
		for k := 0; k+1 < len(program); k += 2 {
			op, arg := program[k], program[k+1]
			skip.Clear()
			switch {
			case op >= 0xF0:
				i := int(arg) % n
				out[i] = !out[i]
				apply()
				a.SetWeights(eff, w)
				exact = true
				continue
			case op >= 0xC0:
				skip.Add(int(arg) % n)
				exact = false
			}
			got := a.Pick(HashEmitter([]byte{arg, op & 3}), 1+int(op)%64, &skip)
			can := false
			for i := range eff {
				if eff[i] > 0 && !skip.Has(i) {
					can = true
				}
			}
			if got < 0 {
				if can {
					t.Fatalf("step %d: -1 while analyzers could take it (eff %v)", k, eff)
				}
				continue
			}
			if got >= n || eff[got] <= 0 || skip.Has(got) {
				t.Fatalf("step %d: picked %d (eff %v, skipped %v)", k, got, eff, skip.Has(got))
			}
			if exact {
				checkBound(t, a, eff, bound, k)
			}
		}
	})
}
