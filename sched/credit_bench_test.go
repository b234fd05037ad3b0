package sched

import (
	"math/rand"
	"testing"
)

func benchSizes() []int {
	rng := rand.New(rand.NewSource(1))
	s := make([]int, 1024)
	for i := range s {
		s[i] = 1 + rng.Intn(50)
	}
	return s
}

func benchPick(b *testing.B, members int, skip *Set) {
	rng := rand.New(rand.NewSource(2))
	w := make([]float64, members)
	for i := range w {
		w[i] = rng.Float64() + 0.01
	}
	c := NewCredit(members, 0, 1)
	c.SetWeights(w)
	sizes := benchSizes()
	b.ReportAllocs()
	b.ResetTimer()
	sink := 0
	for i := 0; b.Loop(); i++ {
		sink += c.Pick(sizes[i&1023], skip)
	}
	if sink < 0 {
		b.Fatal("a pick found nobody")
	}
}

func BenchmarkPick3(b *testing.B)  { benchPick(b, 3, nil) }
func BenchmarkPick64(b *testing.B) { benchPick(b, 64, nil) }

// BenchmarkPickSkip re-routes around one of 8 analyzers (the slow path).
func BenchmarkPickSkip(b *testing.B) {
	var skip Set
	skip.Add(3)
	benchPick(b, 8, &skip)
}

func BenchmarkMove(b *testing.B) {
	c := NewCredit(8, 0, 1)
	c.SetWeights([]float64{8, 7, 6, 5, 4, 3, 2, 1})
	sizes := benchSizes()
	var skip Set
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		n := sizes[i&1023]
		from := c.Pick(n, nil)
		skip.Clear()
		skip.Add(from)
		c.Move(from, n, &skip)
	}
}

func TestPickMoveDoNotAllocate(t *testing.T) {
	c := NewCredit(100, 1, 2)
	w := make([]float64, 100)
	for i := range w {
		w[i] = float64(1 + i%7)
	}
	c.SetWeights(w)
	var skip Set
	skip.Add(99) // grow the Set once, outside the measured runs
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		from := c.Pick(1+i%50, nil)
		skip.Clear()
		skip.Add(from)
		skip.Add(70)
		c.Pick(1+i%50, &skip)
		c.Move(from, 1+i%50, &skip)
	})
	if allocs != 0 {
		t.Fatalf("Pick/Move allocate %.1f times per run", allocs)
	}
}
