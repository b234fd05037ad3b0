package sched

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// affinityLoad is a stream of packets from emitters of skewed sizes: emitter k
// sends with probability ∝ 1/(k+1) (Zipf, s = 1), packets of 1..50 messages.
type affinityLoad struct {
	r      *rand.Rand
	hashes []uint64
	cdf    []float64
}

func newAffinityLoad(seed uint64, emitters int) *affinityLoad {
	l := &affinityLoad{r: rand.New(rand.NewPCG(seed, 7))}
	sum := 0.0
	for k := range emitters {
		l.hashes = append(l.hashes, HashEmitter([]byte("emitter-"+strconv.Itoa(k))))
		sum += 1 / float64(k+1)
		l.cdf = append(l.cdf, sum)
	}
	for k := range l.cdf {
		l.cdf[k] /= sum
	}
	return l
}

// next is the next packet: its emitter's index and its size.
func (l *affinityLoad) next() (int, int) {
	x := l.r.Float64()
	lo, hi := 0, len(l.cdf)-1
	for lo < hi {
		m := (lo + hi) / 2
		if l.cdf[m] < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, 1 + l.r.IntN(50)
}

// checkBound asserts the proven bound: every analyzer holds at most
// bound·w_i·T + affinitySlack·nmax messages.
func checkBound(t *testing.T, a *Affinity, w []float64, bound float64, step int) {
	t.Helper()
	sum := 0.0
	for _, x := range w {
		sum += x
	}
	for i, x := range w {
		if limit := bound*x/sum*a.Total() + a.Slack(); a.Load(i) > limit+1e-6 {
			t.Fatalf("step %d: analyzer %d holds %.0f messages of %.0f, over its bound %.1f (weight %.3f × %.2f + %0.f)",
				step, i, a.Load(i), a.Total(), limit, x/sum, bound, a.Slack())
		}
	}
}

// The test: 1,000 emitters with skewed sizes over 0.5/0.3/0.2 and
// AFFINITY_LOAD_BOUND 1.25: after every packet each analyzer is within the bound,
// and the shares end within 1.25 × the weights. Most emitters never move.
func TestAffinitySharesWithinBound(t *testing.T) {
	w := []float64{0.5, 0.3, 0.2}
	const bound = 1.25
	a := NewAffinity(3, bound, 4096)
	a.SetWeights(w, w)
	l := newAffinityLoad(1, 1000)
	where := make([]int, 1000)
	for k := range where {
		where[k] = -1
	}
	changed := map[int]bool{}
	for step := range 300_000 {
		k, n := l.next()
		got := a.Pick(l.hashes[k], n, nil)
		if got < 0 {
			t.Fatalf("step %d: no analyzer", step)
		}
		if where[k] >= 0 && where[k] != got {
			changed[k] = true
		}
		where[k] = got
		checkBound(t, a, w, bound, step)
	}
	seen := 0
	for k := range where {
		if where[k] >= 0 {
			seen++
		}
	}
	for i := range w {
		share := a.Load(i) / a.Total()
		t.Logf("analyzer %d: weight %.2f, message share %.4f (bound %.4f)", i, w[i], share, bound*w[i])
		if share > bound*w[i]+1e-3 {
			t.Errorf("analyzer %d: share %.4f over %.2f × its weight %.2f", i, share, bound, w[i])
		}
	}
	t.Logf("%d emitters seen, %d ever moved (%d moves)", seen, len(changed), a.Moves)
	if float64(len(changed)) > 0.1*float64(seen) {
		t.Errorf("%d of %d emitters moved at least once, want at most 10 %%", len(changed), seen)
	}
}

// When an analyzer leaves, only the emitters placed on it move, so the fraction of
// emitters that moved is close to its share; when it returns, the emitters whose
// home it is go back to it and the others stay.
func TestAffinityLeaveAndReturn(t *testing.T) {
	w := []float64{0.5, 0.3, 0.2}
	a := NewAffinity(3, 1.25, 4096)
	a.SetWeights(w, w)
	l := newAffinityLoad(2, 1000)
	// Every emitter sends: first one packet each, then the skewed stream.
	settle := func() []int {
		where := make([]int, len(l.hashes))
		for k, h := range l.hashes {
			where[k] = a.Pick(h, 1+k%50, nil)
		}
		for range 100_000 {
			k, n := l.next()
			where[k] = a.Pick(l.hashes[k], n, nil)
		}
		for k, h := range l.hashes {
			where[k] = a.Pick(h, 1, nil)
		}
		return where
	}
	before := settle()
	onOne := 0
	for _, x := range before {
		if x == 1 {
			onOne++
		}
	}
	a.SetWeights([]float64{0.5, 0, 0.2}, w) // analyzer 1 leaves
	during := settle()
	moved, movedOff := 0, 0
	for k := range before {
		if during[k] == 1 {
			t.Fatalf("emitter %d placed on the analyzer that left", k)
		}
		if during[k] != before[k] {
			moved++
			if before[k] == 1 {
				movedOff++
			}
		}
	}
	frac := float64(moved) / float64(len(before))
	t.Logf("leave: %d of %d emitters were on analyzer 1 (weight 0.3); %d moved (%.3f), %d of them from it", onOne, len(before), moved, frac, movedOff)
	if movedOff != onOne || math.Abs(frac-float64(onOne)/float64(len(before))) > 0.03 || math.Abs(frac-0.3) > 0.08 {
		t.Errorf("moved fraction %.3f: want close to the share of emitters on the analyzer that left (%.3f) and its weight 0.3", frac, float64(onOne)/float64(len(before)))
	}
	a.SetWeights(w, w) // it returns
	after := settle()
	back, others := 0, 0
	for k := range before {
		switch {
		case after[k] == before[k] && before[k] == 1:
			back++
		case after[k] != during[k] && before[k] != 1:
			others++
		}
	}
	t.Logf("return: %d of %d emitters back on analyzer 1; %d others moved", back, onOne, others)
	if float64(back) < 0.9*float64(onOne) || float64(others) > 0.03*float64(len(before)) {
		t.Errorf("return: %d of %d emitters back, %d others moved: want nearly all back and nearly no other moved", back, onOne, others)
	}
}

// Property test in the manner of Credit's: random members, weights, bounds and
// packet sizes; the bound holds after every placement, the choice is always
// eligible, and a remembered emitter keeps its analyzer while it has room.
func TestAffinityProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for trial := range 200 {
		n := 1 + r.IntN(12)
		w := make([]float64, n)
		for i := range w {
			if r.IntN(5) > 0 {
				w[i] = 0.05 + r.Float64()
			}
		}
		elig := 0
		for _, x := range w {
			if x > 0 {
				elig++
			}
		}
		bound := 1 + r.Float64()
		a := NewAffinity(n, bound, 64<<r.IntN(6))
		a.SetWeights(w, w)
		emitters := 1 + r.IntN(300)
		for step := range 3000 {
			h := HashEmitter([]byte{byte(trial), byte(r.IntN(emitters)), byte(step % 3)})
			got := a.Pick(h, 1+r.IntN(200), nil)
			if elig == 0 {
				if got != -1 {
					t.Fatalf("trial %d: picked %d with none eligible", trial, got)
				}
				continue
			}
			if got < 0 || w[got] == 0 {
				t.Fatalf("trial %d step %d: picked %d, weights %v", trial, step, got, w)
			}
			checkBound(t, a, w, bound, step)
		}
	}
}

// A full analyzer (in skip) is never chosen; with every eligible analyzer skipped
// the answer is -1.
func TestAffinitySkip(t *testing.T) {
	w := []float64{1, 1, 1}
	a := NewAffinity(3, 1.25, 64)
	a.SetWeights(w, w)
	h := HashEmitter([]byte("e"))
	first := a.Pick(h, 5, nil)
	var skip Set
	skip.Add(first)
	if got := a.Pick(h, 5, &skip); got == first || got < 0 {
		t.Fatalf("analyzer %d skipped, got %d", first, got)
	}
	skip.Add(0)
	skip.Add(1)
	skip.Add(2)
	if got := a.Pick(h, 5, &skip); got != -1 {
		t.Fatalf("all skipped, got %d", got)
	}
}

// Hashing an emitter_id and placing a packet do not allocate.
func TestAffinityNoAllocs(t *testing.T) {
	w := []float64{0.5, 0.3, 0.2}
	a := NewAffinity(3, 1.25, 1024)
	a.SetWeights(w, w)
	id := []byte("emitter-42")
	var skip Set
	if allocs := testing.AllocsPerRun(1000, func() {
		id[len(id)-1]++
		a.Pick(HashEmitter(id), 5, &skip)
	}); allocs != 0 {
		t.Fatalf("%v allocations per packet, want 0", allocs)
	}
}

// BenchmarkAffinityPick is one placement for 1,000 emitters of skewed sizes over
// three analyzers, hashing the emitter_id included (compare Pick3).
func BenchmarkAffinityPick(b *testing.B) {
	w := []float64{0.5, 0.3, 0.2}
	a := NewAffinity(3, 1.25, 16384)
	a.SetWeights(w, w)
	l := newAffinityLoad(4, 1000)
	ids := make([][]byte, 1000)
	for k := range ids {
		ids[k] = []byte("emitter-" + strconv.Itoa(k))
	}
	seq := make([][2]int, 4096)
	for i := range seq {
		k, n := l.next()
		seq[i] = [2]int{k, n}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p := seq[i&4095]
		a.Pick(HashEmitter(ids[p[0]]), p[1], nil)
	}
}
