package sched

import (
	"math"
	"testing"
)

// sumCredits is the invariant Pick and Move keep: every step adds W*n and takes W*n.
func sumCredits(c *Credit) int64 {
	var s int64
	for _, v := range c.credit {
		s += v
	}
	return s
}

func TestPickFollowsWeightsByMessages(t *testing.T) {
	c := NewCredit(3, 0, 1)
	c.SetWeights([]float64{0.5, 0.3, 0.2})
	got := make([]int, 3)
	total := 0
	for p := range 1000 {
		n := 1 + p%7
		i := c.Pick(n, nil)
		if i < 0 || i > 2 {
			t.Fatalf("pick %d: index %d", p, i)
		}
		got[i] += n
		total += n
	}
	for i, w := range []float64{0.5, 0.3, 0.2} {
		if d := math.Abs(float64(got[i]) - w*float64(total)); d > 7 {
			t.Errorf("analyzer %d got %d of %d messages, share %.1f, off by %.1f (> one max packet)", i, got[i], total, w*float64(total), d)
		}
	}
}

func TestPickNoneEligible(t *testing.T) {
	c := NewCredit(3, 0, 1)
	if i := c.Pick(1, nil); i != -1 {
		t.Fatalf("before SetWeights: got %d, want -1", i)
	}
	c.SetWeights([]float64{0, 0, 0})
	if i := c.Pick(1, nil); i != -1 || c.Eligible() != 0 {
		t.Fatalf("all zero: got %d (eligible %d), want -1", i, c.Eligible())
	}
	c.SetWeights([]float64{0, 2, 0})
	var skip Set
	skip.Add(1)
	before := append([]int64(nil), c.credit...)
	if i := c.Pick(5, &skip); i != -1 {
		t.Fatalf("only eligible skipped: got %d, want -1", i)
	}
	for k := range before {
		if before[k] != c.credit[k] {
			t.Fatalf("a -1 pick charged credits: %v -> %v", before, c.credit)
		}
	}
	if i := c.Pick(5, nil); i != 1 {
		t.Fatalf("got %d, want the only eligible analyzer 1", i)
	}
}

func TestZeroWeightNeverPicked(t *testing.T) {
	c := NewCredit(4, 1, 3)
	c.SetWeights([]float64{1, 0, 3, math.NaN()})
	if c.Eligible() != 2 {
		t.Fatalf("eligible = %d, want 2", c.Eligible())
	}
	for p := range 500 {
		if i := c.Pick(1+p%13, nil); i != 0 && i != 2 {
			t.Fatalf("pick %d chose ineligible analyzer %d", p, i)
		}
	}
}

func TestSkipAndMove(t *testing.T) {
	c := NewCredit(4, 0, 1)
	c.SetWeights([]float64{0.4, 0.3, 0.2, 0.1})
	var skip Set
	for p := range 2000 {
		skip.Clear()
		skip.Add(p % 4)
		n := 1 + p%9
		s0 := sumCredits(c)
		i := c.Pick(n, &skip)
		if i == p%4 || i < 0 {
			t.Fatalf("pick %d: got %d with %d skipped", p, i, p%4)
		}
		if s := sumCredits(c); s != s0 {
			t.Fatalf("pick %d: sum of credits %d -> %d", p, s0, s)
		}
		skip.Add(i)
		j := c.Move(i, n, &skip)
		if j < 0 || skip.Has(j) {
			t.Fatalf("move %d: got %d, skip has it or none", p, j)
		}
		if s := sumCredits(c); s != s0 {
			t.Fatalf("move %d: sum of credits %d -> %d", p, s0, s)
		}
	}
	skip.Clear()
	for i := range 4 {
		skip.Add(i)
	}
	i := c.Pick(3, nil)
	before := append([]int64(nil), c.credit...)
	if j := c.Move(i, 3, &skip); j != -1 {
		t.Fatalf("move with everything skipped: got %d, want -1", j)
	}
	for k := range before {
		if before[k] != c.credit[k] {
			t.Fatalf("a -1 move changed credits: %v -> %v", before, c.credit)
		}
	}
}

func TestShardsStartApart(t *testing.T) {
	first := make(map[int]bool)
	for s := range 3 {
		c := NewCredit(3, s, 3)
		c.SetWeights([]float64{0.5, 0.3, 0.2})
		first[c.Pick(1, nil)] = true
	}
	if len(first) < 2 {
		t.Fatalf("3 shards all sent their first packet to the same analyzer: %v", first)
	}
}

func TestSet(t *testing.T) {
	var s Set
	for _, i := range []int{0, 5, 63, 64, 127, 700} {
		if s.Has(i) {
			t.Fatalf("empty set has %d", i)
		}
		s.Add(i)
		if !s.Has(i) {
			t.Fatalf("set lacks %d after Add", i)
		}
	}
	if s.Len() != 6 || s.Has(1) || s.Has(65) || s.Has(701) || s.Has(-1) {
		t.Fatalf("set has the wrong members (len %d)", s.Len())
	}
	s.Clear()
	if s.Len() != 0 || !s.empty() || s.Has(700) {
		t.Fatal("Clear left members behind")
	}
	var nilSet *Set
	if nilSet.Has(0) || !nilSet.empty() {
		t.Fatal("nil set is not empty")
	}
	if a := testing.AllocsPerRun(100, func() { s.Clear(); s.Add(3); s.Add(700) }); a != 0 {
		t.Fatalf("reused Set allocates %.1f times", a)
	}
}

// Grow makes room for analyzers added at run time without touching the credits of
// the eligible ones; the new one takes its share once SetWeights makes it eligible,
// and the set change resets the credits like any other.
func TestCreditGrow(t *testing.T) {
	c := NewCredit(2, 0, 1)
	c.SetWeights([]float64{0.5, 0.5})
	for range 5 {
		c.Pick(3, nil)
	}
	before, resets := append([]int64(nil), c.credit...), c.resets
	c.Grow(3)
	c.Grow(2) // fewer: nothing
	if c.members != 3 || len(c.pos) != 3 || c.pos[2] != -1 || c.resets != resets || c.credit[0] != before[0] || c.credit[1] != before[1] {
		t.Fatalf("Grow changed the scheduler: members %d pos %v credits %v -> %v", c.members, c.pos, before, c.credit)
	}
	c.SetWeights([]float64{0.25, 0.25, 0.5})
	if c.Eligible() != 3 || c.resets != resets+1 {
		t.Fatalf("eligible %d, resets %d -> %d after the new member's weight", c.Eligible(), resets, c.resets)
	}
	got := make([]int, 3)
	for range 400 {
		got[c.Pick(1, nil)]++
	}
	if got[0] != 100 || got[1] != 100 || got[2] != 200 {
		t.Fatalf("messages %v after growing to 0.25/0.25/0.5, want 100/100/200", got)
	}
}
