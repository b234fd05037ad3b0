package sched

import (
	"math/rand"
	"testing"
)

// Peek must name exactly the analyzer the next Pick chooses and change nothing.
func TestPeekPredictsPick(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	c := NewCredit(5, 1, 3)
	c.SetWeights([]float64{0.4, 0.1, 0.2, 0, 0.3})
	for i := 0; i < 5000; i++ {
		n := 1 + rng.Intn(50)
		want := c.Peek(n)
		if again := c.Peek(n); again != want {
			t.Fatalf("step %d: Peek not idempotent: %d then %d", i, want, again)
		}
		if got := c.Pick(n, nil); got != want {
			t.Fatalf("step %d (n=%d): Peek said %d, Pick chose %d", i, n, want, got)
		}
	}
	empty := NewCredit(2, 0, 1)
	if got := empty.Peek(3); got != -1 {
		t.Fatalf("Peek with no eligible analyzer = %d, want -1", got)
	}
}

func TestSetRemove(t *testing.T) {
	var s Set
	for _, i := range []int{0, 5, 63, 64, 200} {
		s.Add(i)
	}
	s.Remove(5)
	s.Remove(200)
	s.Remove(1000) // absent, beyond storage: no-op
	for _, c := range []struct {
		i    int
		want bool
	}{{0, true}, {5, false}, {63, true}, {64, true}, {200, false}} {
		if s.Has(c.i) != c.want {
			t.Fatalf("Has(%d) = %v, want %v", c.i, !c.want, c.want)
		}
	}
	if s.Len() != 3 {
		t.Fatalf("Len = %d, want 3", s.Len())
	}
}
