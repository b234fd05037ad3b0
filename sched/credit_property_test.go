package sched

import (
	"flag"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"testing"
	"time"
)

var seedFlag = flag.Int64("sched.seed", 0, "seed for the sched property tests (0: from the clock)")

func testSeed(t testing.TB) int64 {
	s := *seedFlag
	if s == 0 {
		s = time.Now().UnixNano()
	}
	t.Logf("seed %d (rerun with -sched.seed=%d)", s, s)
	return s
}

func cloneCredit(c *Credit) *Credit {
	d := *c
	d.idx = slices.Clone(c.idx)
	d.weight = slices.Clone(c.weight)
	d.credit = slices.Clone(c.credit)
	d.pos = slices.Clone(c.pos)
	return &d
}

// tracker follows one Credit since its last reset: what each eligible analyzer was
// charged, what it was owed (its weight at the time times each packet's size, summed,
// so weight changes without a reset are followed exactly), and the credits the shard
// offset started from.
type tracker struct {
	c     *Credit
	off   []int64 // credits right after the reset
	got   []int64 // messages charged, per eligible position
	ideal []int64 // sum of weight*n over the packets placed: W times the exact share
	m     int64   // messages placed
	nmax  int64   // largest packet placed
}

func newTracker(c *Credit, w []float64) *tracker {
	c.SetWeights(w)
	return &tracker{c: c, off: slices.Clone(c.credit), got: make([]int64, len(c.idx)), ideal: make([]int64, len(c.idx))}
}

func (tr *tracker) record(member, n int) {
	tr.got[tr.c.pos[member]] += int64(n)
	for k, w := range tr.c.weight {
		tr.ideal[k] += w * int64(n)
	}
	tr.m += int64(n)
	tr.nmax = max(tr.nmax, int64(n))
}

func (tr *tracker) pick(n int) int {
	i := tr.c.Pick(n, nil)
	if i >= 0 {
		tr.record(i, n)
	}
	return i
}

// dev is how many messages the analyzer at position k got beyond its exact share (of
// the scheduler's own integer weights).
func (tr *tracker) dev(k int) float64 {
	return float64(tr.got[k]*tr.c.total-tr.ideal[k]) / float64(tr.c.total)
}

// check asserts the theorem of docs/scheduler.md after a run of plain picks: the
// credit identity, the credit bounds -(N-1)/N*W*nmax <= c <= (H_N-1)*W*nmax (nmax
// counting the warm-up packets of the shard offset), and so the per-analyzer message
// error bounds, Credit.Bound and ErrorBound.
func (tr *tracker) check() error {
	c := tr.c
	n := int64(len(c.idx))
	if n == 0 || tr.m == 0 {
		return nil
	}
	w := c.total
	nmax := c.maxN
	if nmax < tr.nmax || (c.shard > 0 && nmax < c.offsetN) {
		return fmt.Errorf("maxN %d below the largest packet %d or the warm-up %d", nmax, tr.nmax, c.offsetN)
	}
	hm1 := harmonic(int(n)) - 1
	for k := range c.idx {
		if want := tr.off[k] + tr.ideal[k] - w*tr.got[k]; c.credit[k] != want {
			return fmt.Errorf("analyzer %d: credit %d, want offset+sum(w*n)-W*D = %d", c.idx[k], c.credit[k], want)
		}
		if n*c.credit[k] < -(n-1)*w*nmax {
			return fmt.Errorf("analyzer %d: credit %d below -(N-1)/N*W*nmax (N=%d W=%d nmax=%d)", c.idx[k], c.credit[k], n, w, nmax)
		}
		if float64(c.credit[k]) > hm1*float64(w*nmax)*(1+1e-12) {
			return fmt.Errorf("analyzer %d: credit %d above (H_N-1)*W*nmax = %.0f (N=%d)", c.idx[k], c.credit[k], hm1*float64(w*nmax), n)
		}
		d := tr.dev(k)
		over := float64(n-1)/float64(n)*float64(nmax) + float64(tr.off[k])/float64(w)
		under := hm1*float64(nmax) - float64(tr.off[k])/float64(w)
		if d > over+1e-9 || -d > under+1e-9 || math.Abs(d) > c.Bound()+1e-9 || math.Abs(d) > ErrorBound(int(n), int(nmax))+1e-9 {
			return fmt.Errorf("analyzer %d: %d of %d messages, %.3f off its share; bound +%.3f/-%.3f, Bound %.3f (N=%d nmax=%d warm-up %d)",
				c.idx[k], tr.got[k], tr.m, d, over, under, c.Bound(), n, nmax, c.offsetN)
		}
	}
	return nil
}

// Weight shapes the property tests draw from.
func randomWeights(rng *rand.Rand, n int) []float64 {
	w := make([]float64, n)
	shape := rng.Intn(5)
	for i := range w {
		switch shape {
		case 0:
			w[i] = rng.Float64() + 1e-3
		case 1: // heavily skewed
			w[i] = rng.ExpFloat64() * rng.ExpFloat64() * rng.ExpFloat64()
		case 2: // equal
			w[i] = 1
		case 3: // one dominant, the rest tiny
			w[i] = 1e-4 * (1 + rng.Float64())
			if i == 0 {
				w[i] = 1
			}
		case 4: // small integers, some zero
			w[i] = float64(rng.Intn(4))
		}
	}
	if shape == 4 && slices.Max(w) == 0 {
		w[rng.Intn(n)] = 1
	}
	return w
}

// A sizer returns the size of the next packet; it may look at the scheduler (through
// a clone) to be adversarial.
type sizer struct {
	name string
	next func(rng *rand.Rand, step int, c *Credit) int
}

var sizers = []sizer{
	{"random 1..50", func(rng *rand.Rand, _ int, _ *Credit) int { return 1 + rng.Intn(50) }},
	{"1000 then ones", func(_ *rand.Rand, step int, _ *Credit) int {
		if step == 0 {
			return 1000
		}
		return 1
	}},
	{"50 then ones", func(_ *rand.Rand, step int, _ *Credit) int {
		if step == 0 {
			return 50
		}
		return 1
	}},
	{"alternate 1,50", func(_ *rand.Rand, step int, _ *Credit) int { return 1 + 49*(step%2) }},
	{"runs", func(rng *rand.Rand, step int, _ *Credit) int {
		if (step/(1+step%37))%2 == 0 {
			return 1
		}
		return 50
	}},
	{"big to the lightest", func(_ *rand.Rand, _ int, c *Credit) int {
		// 50 messages whenever the lightest analyzer would win a 1-message packet.
		i := cloneCredit(c).Pick(1, nil)
		if c.weight[c.pos[i]] == slices.Min(c.weight) {
			return 50
		}
		return 1
	}},
	{"big to the heaviest", func(_ *rand.Rand, _ int, c *Credit) int {
		i := cloneCredit(c).Pick(1, nil)
		if c.weight[c.pos[i]] == slices.Max(c.weight) {
			return 50
		}
		return 1
	}},
	{"greedy adversary", func(_ *rand.Rand, _ int, c *Credit) int {
		// The size in {1, 50} that leaves the largest credit (the most under-served
		// analyzer) after the pick.
		best, bestN := int64(math.MinInt64), 1
		for _, n := range []int{1, 50} {
			d := cloneCredit(c)
			d.Pick(n, nil)
			if m := slices.Max(d.credit); m > best {
				best, bestN = m, n
			}
		}
		return bestN
	}},
}

func TestBoundSingleShard(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	for _, members := range []int{2, 3, 4, 5, 6, 7, 8, 64} {
		for _, sz := range sizers {
			for rep := range 4 {
				shards := 1 + rng.Intn(8)
				shard := rng.Intn(shards)
				w := randomWeights(rng, members)
				tr := newTracker(NewCredit(members, shard, shards), w)
				steps := 2000
				if members == 64 {
					steps = 600
				}
				for step := range steps {
					n := sz.next(rng, step, tr.c)
					i := tr.pick(n)
					if i < 0 || w[i] <= 0 {
						t.Fatalf("seed %d, %d members, %s, rep %d, step %d: picked %d (weights %v)", seed, members, sz.name, rep, step, i, w)
					}
					if err := tr.check(); err != nil {
						t.Fatalf("seed %d, %d members, shard %d/%d, %s, rep %d, step %d: %v\nweights %v", seed, members, shard, shards, sz.name, rep, step, err, w)
					}
				}
			}
		}
	}
}

// The shards of one process: each its own Credit, fed round-robin or at random; the
// global split errs by at most the sum of the shards' bounds, so at most S times one.
func TestBoundShards(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	for _, members := range []int{2, 3, 5, 8, 64} {
		for shards := 1; shards <= 8; shards++ {
			if members == 64 && shards%3 != 1 {
				continue // 1, 4, 7 shards: enough at this size, and 64 members are slow to check
			}
			for _, sz := range sizers {
				w := randomWeights(rng, members)
				trs := make([]*tracker, shards)
				for s := range trs {
					trs[s] = newTracker(NewCredit(members, s, shards), w)
				}
				random := rng.Intn(2) == 0
				for step := range 800 {
					s := step % shards
					if random {
						s = rng.Intn(shards)
					}
					tr := trs[s]
					tr.pick(sz.next(rng, step, tr.c))
					if err := tr.check(); err != nil {
						t.Fatalf("seed %d, %d members, shard %d/%d, %s: %v", seed, members, s, shards, sz.name, err)
					}
					// Global: the same eligible positions in every shard.
					var nmax int64
					var sumBound float64
					for _, o := range trs {
						nmax = max(nmax, o.c.maxN)
						sumBound += o.c.Bound()
					}
					for k := range trs[0].c.idx {
						d := 0.0
						for _, o := range trs {
							d += o.dev(k)
						}
						if math.Abs(d) > sumBound+1e-9 || math.Abs(d) > float64(shards)*ErrorBound(len(trs[0].c.idx), int(nmax))+1e-9 {
							t.Fatalf("seed %d, %d members, %d shards, %s, step %d: analyzer %d off by %.3f messages globally, bound %.3f",
								seed, members, shards, sz.name, step, trs[0].c.idx[k], d, sumBound)
						}
					}
				}
			}
		}
	}
}

// The shard offsets put S shards at S consecutive points of one smooth sequence, so
// their first packets already split by weight: with 10 shards over 0.5/0.3/0.2 the
// first one-message packets go 5/3/2 (the bound forces exactly that).
func TestShardOffsetsSpreadFirstPackets(t *testing.T) {
	w := []float64{0.5, 0.3, 0.2}
	first := make([]int, 3)
	for s := range 10 {
		c := NewCredit(3, s, 10)
		c.SetWeights(w)
		first[c.Pick(1, nil)]++
	}
	if !slices.Equal(first, []int{5, 3, 2}) {
		t.Fatalf("first packets of 10 shards: %v, want [5 3 2]", first)
	}
	for n := 2; n <= 8; n++ {
		seen := make(map[int]bool)
		eq := make([]float64, n)
		for i := range eq {
			eq[i] = 1
		}
		for s := range n {
			c := NewCredit(n, s, n)
			c.SetWeights(eq)
			seen[c.Pick(7, nil)] = true
		}
		if len(seen) != n {
			t.Fatalf("%d shards over %d equal analyzers sent their first packets to only %d of them", n, n, len(seen))
		}
	}
}

func TestFairnessByMessages(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	w := []float64{0.5, 0.3, 0.2}
	tr := newTracker(NewCredit(3, 0, 1), w)
	got := make([]int64, 3)
	packets := make([]int64, 3)
	for range 20000 {
		n := 1 + rng.Intn(50)
		i := tr.pick(n)
		got[i] += int64(n)
		packets[i]++
	}
	if err := tr.check(); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	bound := tr.c.Bound()
	for i := range w {
		share := float64(got[i]) / float64(tr.m)
		if math.Abs(share-w[i]) > 0.005 {
			t.Errorf("seed %d: analyzer %d has %.4f of the messages, want %.2f ± 0.005", seed, i, share, w[i])
		}
		// Against the configured float weights the scaled integer weights add at most
		// one part in 2^20 of the total.
		if d := math.Abs(float64(got[i]) - w[i]*float64(tr.m)); d > bound+float64(tr.m)/(1<<20) {
			t.Errorf("seed %d: analyzer %d is %.2f messages off its share of %d, bound %.2f", seed, i, d, tr.m, bound)
		}
		t.Logf("analyzer %d: %d messages (%.5f), %d packets (%.4f)", i, got[i], float64(got[i])/float64(tr.m), packets[i], float64(packets[i])/20000)
	}
}

// Pick with from skipped and Pick followed by Move off the winner end in the same
// state: Move is exactly "that pick should have skipped from".
func TestMoveEqualsSkippedPick(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	for rep := range 200 {
		members := 2 + rng.Intn(7)
		w := randomWeights(rng, members)
		a := NewCredit(members, rng.Intn(4), 4)
		a.SetWeights(w)
		for range rng.Intn(50) {
			a.Pick(1+rng.Intn(50), nil)
		}
		b := cloneCredit(a)
		n := 1 + rng.Intn(50)
		from := a.Pick(n, nil)
		var skip Set
		skip.Add(from)
		to := a.Move(from, n, &skip)
		want := b.Pick(n, &skip)
		if to != want || !slices.Equal(a.credit, b.credit) {
			t.Fatalf("seed %d rep %d: Pick+Move gave %d %v, skipped Pick %d %v", seed, rep, to, a.credit, want, b.credit)
		}
	}
}

// Move never returns from, even when skip does not name it; and a from that is no
// longer eligible is placed afresh, as Pick would.
func TestMoveFromSelfAndIneligible(t *testing.T) {
	c := NewCredit(3, 0, 1)
	c.SetWeights([]float64{1, 1, 1})
	for range 100 {
		from := c.Pick(3, nil)
		if to := c.Move(from, 3, nil); to == from || to < 0 {
			t.Fatalf("Move(%d) with nil skip returned %d", from, to)
		}
	}
	c.SetWeights([]float64{1, 0, 1})
	b := cloneCredit(c)
	if to, want := c.Move(1, 4, nil), b.Pick(4, nil); to != want || !slices.Equal(c.credit, b.credit) {
		t.Fatalf("Move from an ineligible analyzer: %d %v, Pick: %d %v", to, c.credit, want, b.credit)
	}
	if to := c.Move(-1, 4, nil); to < 0 {
		t.Fatal("Move from an unknown index found nothing")
	}
}

// Analyzers in skip are never picked, a -1 charges nothing, and the sum of credits
// is invariant under every Pick and Move, whatever is skipped (also beyond 64
// members, where Set grows).
func TestSkipInvariants(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	for _, members := range []int{2, 5, 64, 130} {
		w := randomWeights(rng, members)
		c := NewCredit(members, rng.Intn(3), 3)
		c.SetWeights(w)
		sum0 := sumCredits(c)
		var skip Set
		for step := range 5000 {
			skip.Clear()
			for range rng.Intn(members + 1) {
				skip.Add(rng.Intn(members))
			}
			candidates := 0
			for i := range members {
				if w[i] > 0 && !skip.Has(i) {
					candidates++
				}
			}
			n := 1 + rng.Intn(50)
			before := slices.Clone(c.credit)
			i := c.Pick(n, &skip)
			switch {
			case candidates == 0 && (i != -1 || !slices.Equal(before, c.credit)):
				t.Fatalf("seed %d step %d: nothing to pick, got %d and credits changed=%v", seed, step, i, !slices.Equal(before, c.credit))
			case candidates > 0 && (i < 0 || skip.Has(i) || w[i] <= 0):
				t.Fatalf("seed %d step %d: picked %d (skipped=%v, weight %v)", seed, step, i, i >= 0 && skip.Has(i), w)
			}
			if i >= 0 && rng.Intn(3) == 0 {
				skip.Add(i)
				j := c.Move(i, n, &skip)
				if j >= 0 && (skip.Has(j) || w[j] <= 0) {
					t.Fatalf("seed %d step %d: moved to %d, skipped or ineligible", seed, step, j)
				}
			}
			if s := sumCredits(c); s != sum0 {
				t.Fatalf("seed %d step %d: sum of credits %d, was %d", seed, step, s, sum0)
			}
			for k, v := range c.credit {
				if v > c.limit {
					t.Fatalf("seed %d step %d: analyzer %d credit %d above the cap %d", seed, step, c.idx[k], v, c.limit)
				}
			}
		}
	}
}

// An analyzer skipped for a long time is owed at most the cap, so when it can take
// packets again its catch-up run is a few packets long, not the whole debt.
func TestSkipDebtIsCapped(t *testing.T) {
	c := NewCredit(3, 0, 1)
	c.SetWeights([]float64{0.5, 0.3, 0.2})
	var skip Set
	skip.Add(0)
	for p := range 100000 {
		if c.Pick(1+p%50, &skip) == 0 {
			t.Fatal("picked a skipped analyzer")
		}
	}
	if c.credit[0] != c.limit {
		t.Fatalf("analyzer 0 skipped for 100000 packets is owed %d, want the cap %d", c.credit[0], c.limit)
	}
	run := 0
	for c.Pick(50, nil) == 0 {
		run += 50
	}
	// Each win of analyzer 0 lowers its credit by (W - w_0)*n, and it stops winning
	// once below the others; from the cap that takes at most capFactor*W*nmax/(W-w_0)
	// messages plus the packet that crosses.
	maxRun := float64(c.capFactor)*50/(1-0.5) + 50
	if run == 0 || float64(run) > maxRun {
		t.Fatalf("catch-up run of %d messages, want 1..%.0f", run, maxRun)
	}
}

// SetWeights resets credits: an analyzer that comes back (weight 0 -> w) or that was
// owed a debt gets its share plus at most the bound over any prefix of what follows,
// while carrying the debt over would have given it a burst.
func TestSetWeightsResetNoBurst(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	w := []float64{0.5, 0.3, 0.2}
	c := NewCredit(3, 1, 2)
	c.SetWeights(w)
	var skip Set
	skip.Add(2)
	for range 2000 {
		c.Pick(1+rng.Intn(50), &skip)
	}
	carried := cloneCredit(c)
	tr := newTracker(c, []float64{0.5, 0.3, 0})
	for range 500 {
		tr.pick(1 + rng.Intn(50))
	}
	tr = newTracker(c, w) // analyzer 2 returns
	var carriedGot, carriedM int64
	carriedExcess := 0.0 // most messages the carried-over scheduler gave analyzer 2 beyond its share
	for k := range 1000 {
		n := 1 + rng.Intn(50)
		i := tr.pick(n)
		if err := tr.check(); err != nil {
			t.Fatalf("seed %d: %d picks after the reset: %v", seed, k+1, err)
		}
		if pos := tr.c.pos[2]; i == 2 && tr.dev(int(pos)) > tr.c.Bound() {
			t.Fatalf("seed %d: analyzer 2 got %.1f messages beyond its share after returning", seed, tr.dev(int(pos)))
		}
		carriedM += int64(n)
		if carried.Pick(n, nil) == 2 {
			carriedGot += int64(n)
		}
		carriedExcess = max(carriedExcess, float64(carriedGot)-0.2*float64(carriedM))
	}
	// Without the reset analyzer 2 would be owed the capped debt and take a burst well
	// beyond the bound; this is what the reset prevents (and shows the checks above
	// can fail).
	if carriedExcess <= tr.c.Bound() {
		t.Fatalf("seed %d: carried-over debt gave analyzer 2 only %.1f messages beyond its share (bound %.1f); the no-burst check proves nothing", seed, carriedExcess, tr.c.Bound())
	}
	t.Logf("after a reset analyzer 2 stays within %.1f messages of its share; carrying its debt would have given it %.1f extra", tr.c.Bound(), carriedExcess)
}

// Extreme sizes and many members under random skips and moves: the credits stay
// within [-(N-1)*cap, cap] (so far from overflow) and the sum stays put.
func TestNoOverflowAtExtremes(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	members := 256
	w := randomWeights(rng, members)
	w[0] = 1e9 // one huge weight: the others round to the minimum of 1
	c := NewCredit(members, 3, 4)
	c.SetWeights(w)
	sum0 := sumCredits(c)
	var skip Set
	for step := range 20000 {
		skip.Clear()
		if rng.Intn(2) == 0 {
			skip.Add(0)
		}
		n := MaxPacketMessages
		if rng.Intn(4) == 0 {
			n = 1 << 30 // clamped to MaxPacketMessages
		}
		i := c.Pick(n, &skip)
		if i >= 0 && rng.Intn(2) == 0 {
			skip.Add(i)
			c.Move(i, n, &skip)
		}
		if s := sumCredits(c); s != sum0 {
			t.Fatalf("seed %d step %d: sum of credits %d, was %d", seed, step, s, sum0)
		}
		lo := -int64(len(c.idx)-1) * c.limit
		for _, v := range c.credit {
			if v > c.limit || v < lo {
				t.Fatalf("seed %d step %d: credit %d outside [%d, %d]", seed, step, v, lo, c.limit)
			}
		}
	}
	if lo := -int64(MaxMembers-1) * capFactor(MaxMembers) * weightScale * MaxPacketMessages; lo < -(1 << 56) {
		t.Fatalf("worst-case credit %d leaves less headroom than documented (2^56)", lo)
	}
}

// The design's first draft said one shard errs by "below one maximum packet". That
// holds for over-delivery ((N-1)/N*nmax) and for N <= 3, but an analyzer can be
// under-served by more than one maximum packet once N >= 4 (up to (H_N - 1)*nmax).
// This sequence (found by a search over weights and sizes on this very scheduler)
// leaves one analyzer of five 1.09 packets short; it is kept to show the bound is
// real and that ErrorBound is not over-generous.
func TestUnderServedByMoreThanOnePacket(t *testing.T) {
	w := []float64{1.6661495820167833, 0.08985045391587507, 0.5325544659075471, 0.1155090501106642, 1.557557226229383}
	sizes := []int{57, 100, 3, 100, 100, 100, 64, 90, 100, 12, 100, 100, 100, 62, 100, 100, 100, 100, 20, 100, 100, 100, 31, 1, 55, 34, 100, 100, 100, 78}
	tr := newTracker(NewCredit(5, 0, 1), w)
	worst := 0.0
	for step, n := range sizes {
		tr.pick(n)
		if err := tr.check(); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		for k := range tr.c.idx {
			worst = max(worst, -tr.dev(k))
		}
	}
	if worst <= 100 || worst > (harmonic(5)-1)*100 {
		t.Fatalf("worst under-service %.2f messages, want in (one packet = 100, (H_5-1)*100 = %.2f]", worst, (harmonic(5)-1)*100)
	}
	t.Logf("worst under-service: %.2f messages = %.3f max packets (bound %.3f)", worst, worst/100, harmonic(5)-1)
}

// The warm-up of the shard offset uses the mean packet of the epoch that ended, so
// the offsets still spread the shards' first packets when packets carry many
// messages (one-message offsets would be swamped by a 5-message packet's gains).
func TestShardOffsetsScaleWithPacketSize(t *testing.T) {
	w := []float64{0.5, 0.3, 0.2}
	first := make([]int, 3)
	for s := range 10 {
		c := NewCredit(3, s, 10)
		c.SetWeights([]float64{1, 1, 0}) // a different eligible set, so w below resets
		for range 20 {
			c.Pick(5, nil)
		}
		c.SetWeights(w)
		if c.offsetN != int64(5*min(s, 1)) {
			t.Fatalf("shard %d warmed up with %d-message packets, want 5", s, c.offsetN)
		}
		first[c.Pick(5, nil)]++
	}
	if !slices.Equal(first, []int{5, 3, 2}) {
		t.Fatalf("first 5-message packets of 10 shards: %v, want [5 3 2]", first)
	}
}

// Weights that scale to the installed ones (a new View that changed only states or
// reasons) keep the credits, so the sequence goes on exactly as without the call; a
// real change resets.
func TestSameWeightsKeepCredits(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	a, b := NewCredit(4, 2, 3), NewCredit(4, 2, 3)
	a.SetWeights([]float64{0.4, 0.3, 0.2, 0.1})
	b.SetWeights([]float64{0.4, 0.3, 0.2, 0.1})
	for step := range 1000 {
		if step%7 == 0 {
			b.SetWeights([]float64{4, 3, 2, 1, 99}) // same shares; entries past members ignored
		}
		n := 1 + rng.Intn(50)
		if x, y := a.Pick(n, nil), b.Pick(n, nil); x != y {
			t.Fatalf("seed %d step %d: re-setting the same weights changed the pick: %d vs %d", seed, step, x, y)
		}
	}
	if b.resets != 1 {
		t.Fatalf("%d resets, want 1 (the first SetWeights)", b.resets)
	}
	before := slices.Clone(b.credit)
	b.SetWeights([]float64{0.4, 0.3, 0.1, 0.2})
	if b.resets != 1 || !slices.Equal(before, b.credit) || b.weight[2] >= b.weight[3] {
		t.Fatal("new weights over the same analyzers did not carry the credits over")
	}
	b.SetWeights([]float64{0.4, 0.3, 0.1, 0})
	if b.resets != 2 || b.Eligible() != 3 {
		t.Fatal("a change of the eligible set did not reset the credits")
	}
}

// Weights always scale to exactly W = weightScale, whatever floats come in.
func TestScaledWeightsSumExactly(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	for rep := range 2000 {
		members := 1 + rng.Intn(300)
		w := randomWeights(rng, members)
		if rep%5 == 0 {
			for i := range w {
				w[i] *= 1e-9 // tiny weights round to the minimum of 1
			}
			w[0] = 1
		}
		c := NewCredit(members, 0, 1)
		c.SetWeights(w)
		if c.total != weightScale {
			t.Fatalf("seed %d rep %d: weights scaled to %d, want %d", seed, rep, c.total, weightScale)
		}
		sum := 0.0
		for _, x := range w {
			sum += x
		}
		// Weights that round below 1 are raised to 1; what that adds is taken back
		// from the others, so they may be off by that much on top of rounding.
		pinned := 0
		for _, x := range c.weight {
			if x == 1 {
				pinned++
			}
		}
		for k, i := range c.idx {
			if exact := w[i] / sum * weightScale; math.Abs(float64(c.weight[k])-exact) >= float64(1+pinned) {
				t.Fatalf("seed %d rep %d: analyzer %d scaled to %d, exact %.3f", seed, rep, i, c.weight[k], exact)
			}
		}
	}
}

// A slow-start ramp updates the weights every few packets: the credits are carried,
// so the bound holds against the share integrated over the ramp (no burst for the
// ramping analyzer, and no restart of the sequence at every step).
func TestRampCarriesCredits(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	for shard := range 4 {
		base := []float64{0.5, 0.3, 0.2}
		w := slices.Clone(base)
		w[2] = 0
		tr := newTracker(NewCredit(3, shard, 4), w)
		for range 200 {
			tr.pick(1 + rng.Intn(50))
		}
		w[2] = Ramp(base[2], 0, 100, 0.1)
		tr = newTracker(tr.c, w) // analyzer 2 rejoins: a reset
		resets := tr.c.resets
		for step := range 3000 {
			if step%3 == 0 {
				w[2] = Ramp(base[2], time.Duration(step/3), 1000, 0.1)
				tr.c.SetWeights(w)
			}
			tr.pick(1 + rng.Intn(50))
			if err := tr.check(); err != nil {
				t.Fatalf("seed %d shard %d step %d: %v", seed, shard, step, err)
			}
		}
		if tr.c.resets != resets {
			t.Fatalf("ramp steps reset the credits %d times", tr.c.resets-resets)
		}
	}
}
