package proxy

import "testing"

func TestRingFIFOAcrossGrowth(t *testing.T) {
	var r ring[int]
	next, want := 0, 0
	for round := 0; round < 200; round++ {
		for i := 0; i < round%37+1; i++ {
			r.push(next)
			next++
		}
		for i := 0; i < round%23 && r.len() > 0; i++ {
			if got := r.pop(); got != want {
				t.Fatalf("round %d: pop = %d, want %d", round, got, want)
			}
			want++
		}
	}
	for r.len() > 0 {
		if got := r.pop(); got != want {
			t.Fatalf("drain: pop = %d, want %d", got, want)
		}
		want++
	}
	if want != next {
		t.Fatalf("popped %d values, pushed %d", want, next)
	}
}

func TestRingPushFront(t *testing.T) {
	var r ring[int]
	for i := 1; i <= 20; i++ {
		r.push(i)
	}
	r.pushFront(0)
	for i := 0; i <= 20; i++ {
		if r.at(i) != i {
			t.Fatalf("at(%d) = %d", i, r.at(i))
		}
	}
}
