package sched

import (
	"math"
	"math/bits"
)

// Scaling and limits of the integer credit arithmetic. No credit leaves
// [-(N-1)*cap, cap] with cap = capFactor*W*maxN <= 10 * 2^20 * 2^20 < 2^44, so with at
// most 2^12 members every credit stays within ±2^56 (docs/scheduler.md).
const (
	// weightScale is what the eligible weights are scaled to sum to, exactly (about
	// parts per million), so W = 2^20 whatever the configured floats are.
	weightScale = 1 << 20
	// MaxPacketMessages is the largest message count the scheduler accounts for; a
	// bigger n is charged as this many. No packet under any sane body limit comes
	// near it (2^20 messages are more than 40 MB of JSON).
	MaxPacketMessages = 1 << 20
	// MaxMembers is the largest number of analyzers a Credit accepts.
	MaxMembers = 1 << 12
)

// Credit is one shard's message-weighted smooth weighted round robin: to place a
// packet of n messages every eligible analyzer i gains w_i*n credit, the one with the
// largest credit wins and pays W*n (W = sum of eligible weights, scaled to 2^20).
// Each analyzer's credit is, exactly, W times how many messages it is owed against its
// share (less what it owed at the shard offset), so bounding credits bounds the error
// of the message split (docs/scheduler.md).
//
// A Credit belongs to one event loop: it is not safe for concurrent use and takes no
// locks. Pick and Move do not allocate.
type Credit struct {
	members int
	shard   int
	shards  int

	// The eligible analyzers, compacted so Pick walks only those: member index,
	// scaled weight and credit of the k-th eligible analyzer.
	idx    []int32
	weight []int64
	credit []int64
	pos    []int32 // member index -> position in idx, or -1 when ineligible

	total int64 // W: sum of weight, exactly weightScale whenever anyone is eligible
	// capFactor*W*maxN caps every credit (limit). Without skips and moves credits
	// provably stay below H_N*W*maxN, so the cap never changes a decision then; with
	// them it stops an analyzer that is skipped for a long time from being owed an
	// unbounded debt (and from a catch-up burst when it comes back), and keeps the
	// arithmetic far from overflow.
	capFactor int64
	maxN      int64 // largest packet charged since the last SetWeights
	limit     int64

	// Packets and messages placed since the last reset: their mean is the warm-up
	// packet size of the next reset's shard offset.
	placed, packets int64
	warm            int64  // warm-up packet size used by the last reset
	offsetN         int64  // warm if the last reset warmed up (shard > 0), else 0
	resets          uint64 // how many times SetWeights reset the credits

	next []int64 // SetWeights' scratch: the new scaled weight of every member
}

// NewCredit makes the scheduler for shard `shard` of `shards` over `members`
// analyzers. All analyzers are ineligible until SetWeights.
func NewCredit(members, shard, shards int) *Credit {
	if members < 0 || members > MaxMembers {
		panic("sched: NewCredit: members out of range [0, MaxMembers]")
	}
	if shards < 1 {
		shards = 1
	}
	shard %= shards
	if shard < 0 {
		shard += shards
	}
	c := &Credit{
		members: members,
		shard:   shard,
		shards:  shards,
		idx:     make([]int32, 0, members),
		weight:  make([]int64, 0, members),
		credit:  make([]int64, 0, members),
		pos:     make([]int32, members),
		next:    make([]int64, members),
	}
	for i := range c.pos {
		c.pos[i] = -1
	}
	return c
}

// Grow makes room for members analyzers (ids below members), for analyzers added at
// run time. The new ones are ineligible until SetWeights makes them eligible, so
// credits and the eligible set do not change. It allocates (the control path, not
// per packet); fewer members than there are is a no-op.
func (c *Credit) Grow(members int) {
	if members <= c.members {
		return
	}
	if members > MaxMembers {
		panic("sched: Credit.Grow: members above MaxMembers")
	}
	for range members - c.members {
		c.pos = append(c.pos, -1)
		c.next = append(c.next, 0)
	}
	c.members = members
}

// SetWeights installs effective weights, one per member (missing entries count as 0).
// Any non-negative floats will do: 0 (or negative, NaN, ±Inf) means ineligible, and
// they need not sum to 1. What happens to the credits depends on what changed:
//
//   - The set of eligible analyzers changed: credits are reset, so an analyzer that
//     comes back gets no burst. The reset state is not all zeros but the state this
//     shard's scheduler reaches from zero after `shard` picks of the warm-up size (the
//     mean packet since the previous reset; 1 at first), so that S shards begin at S
//     consecutive points of one smooth sequence instead of all sending their first
//     packet to the heaviest analyzer. It is a state the scheduler reaches by itself,
//     so every credit bound holds from it.
//   - Only the weights changed (a slow-start ramp step, a reweighting): credits are
//     kept. The weights always sum to exactly the same W, so the bounds keep holding,
//     now against each analyzer's share integrated over the changing weights; a reset
//     here would restart the sequence at every ramp step, and every restart favours
//     the analyzers early in it.
//   - Nothing changed after scaling (a new View that changed only states or reasons):
//     nothing happens.
//
// docs/scheduler.md has the proofs.
func (c *Credit) SetWeights(w []float64) {
	sum := 0.0
	for i := 0; i < c.members && i < len(w); i++ {
		if usable(w[i]) {
			sum += w[i]
		}
	}
	if !(sum > 0) || math.IsInf(sum, 0) {
		sum = 0 // nobody eligible
	}
	next := c.next
	scaleWeights(w, sum, next)
	sameSet, sameWeights := true, true
	for i, p := range c.pos {
		switch {
		case (next[i] > 0) != (p >= 0):
			sameSet, sameWeights = false, false
		case p >= 0 && c.weight[p] != next[i]:
			sameWeights = false
		}
	}
	if sameWeights {
		return
	}
	if sameSet {
		for k, i := range c.idx {
			c.weight[k] = next[i]
		}
		return
	}

	warm := c.warm
	if c.packets > 0 {
		warm = (c.placed + c.packets/2) / c.packets
	}
	warm = max(warm, 1)
	c.idx = c.idx[:0]
	c.weight = c.weight[:0]
	c.credit = c.credit[:0]
	c.total = 0
	for i := range c.pos {
		c.pos[i] = -1
		if next[i] == 0 {
			continue
		}
		c.pos[i] = int32(len(c.idx))
		c.idx = append(c.idx, int32(i))
		c.weight = append(c.weight, next[i])
		c.credit = append(c.credit, 0)
		c.total += next[i]
	}
	c.capFactor = capFactor(len(c.idx))
	c.maxN, c.limit = 0, 0
	c.warm, c.offsetN = warm, 0
	c.resets++
	if len(c.idx) > 0 && c.shard > 0 {
		for range c.shard {
			c.pick(warm, nil)
		}
		c.offsetN = warm
	}
	c.placed, c.packets = 0, 0
}

// scaleWeights writes into dst (one entry per member) the usable weights of w, which
// sum to sum, as integers summing to exactly weightScale (largest remainders get the
// rounding; a tiny positive weight stays eligible as 1), and 0 for the others. With
// sum == 0 every entry is 0.
func scaleWeights(w []float64, sum float64, dst []int64) {
	share := func(i int) float64 { return w[i] / sum * weightScale }
	var total int64
	for i := range dst {
		dst[i] = 0
		if sum > 0 && i < len(w) && usable(w[i]) {
			dst[i] = max(int64(share(i)), 1)
			total += dst[i]
		}
	}
	if total == 0 {
		return
	}
	// Fewer than len(dst) units to hand out or take back: O(members^2) at worst, on a
	// View change, never per packet.
	for total != weightScale {
		best, bestGap := -1, 0.0
		for i := range dst {
			if dst[i] == 0 {
				continue
			}
			gap := share(i) - float64(dst[i]) // how much i is short of its exact share
			if total > weightScale {
				if dst[i] == 1 {
					continue
				}
				gap = -gap
			}
			if best < 0 || gap > bestGap {
				best, bestGap = i, gap
			}
		}
		if total < weightScale {
			dst[best]++
			total++
		} else {
			dst[best]--
			total--
		}
	}
}

// Bound returns how many messages, at most, this shard's split can differ from the
// weights for any analyzer since the weights were last set, while no Pick skipped an
// analyzer and no Move ran: (H_N - 1)*nmax + (N-1)/N*m, with nmax the largest packet
// so far (or m if larger) and m the warm-up packet size of the shard offset (0 for
// shard 0). Tests and benchmarks sum it over shards to bound the global split.
func (c *Credit) Bound() float64 {
	n := len(c.idx)
	if n <= 1 {
		return 0
	}
	return (harmonic(n)-1)*float64(c.maxN) + float64(n-1)/float64(n)*float64(c.offsetN)
}

// ErrorBound returns how many messages, at most, one shard's split can differ from the
// weights for any analyzer since the weights were last set, when `eligible` analyzers
// share it, no Pick skipped an analyzer, no Move ran, and maxPacket is at least every
// packet placed and at least the shard's warm-up packet: (H_N - 1/N)*maxPacket, H_N
// the N-th harmonic number (docs/scheduler.md derives it; Credit.Bound is the exact
// form). For N <= 3 that is below one maxPacket, beyond it is not (H_8 - 1/8 = 2.59,
// H_64 - 1/64 = 4.73). Over S shards the errors add up to at most S times this.
func ErrorBound(eligible, maxPacket int) float64 {
	if eligible <= 1 {
		return 0
	}
	return (harmonic(eligible) - 1/float64(eligible)) * float64(maxPacket)
}

func harmonic(n int) float64 {
	h := 0.0
	for k := n; k >= 1; k-- {
		h += 1 / float64(k)
	}
	return h
}

// usable reports whether w makes an analyzer eligible.
func usable(w float64) bool { return w > 0 && !math.IsInf(w, 1) }

// capFactor is floor(H_N)+2 (H_N the N-th harmonic number): strictly above H_N, the
// largest credit (after adding, in units of W*maxN) the scheduler reaches on its own.
func capFactor(n int) int64 { return int64(harmonic(n)) + 2 }

// Eligible returns the number of analyzers with weight > 0.
func (c *Credit) Eligible() int { return len(c.idx) }

// Pick chooses the analyzer for a packet of n >= 1 messages among eligible analyzers
// not in skip, charges it, and returns its index; -1 when none is eligible (nothing is
// charged then). skip may be nil. Skipped analyzers still gain their credit: they are
// owed the messages they could not take (up to the cap), so the message split stays
// exact when they can take packets again.
func (c *Credit) Pick(n int, skip *Set) int {
	if len(c.idx) == 0 {
		return -1
	}
	return c.pick(clampN(n), skip)
}

// Move re-charges a packet of n messages that was charged to `from` (its outbox was
// full, its connection failed...) to the best eligible analyzer not in skip and never
// `from` itself: from gets the charge back, the new analyzer pays it, so the sum of
// credits stays where it was. It returns the new index, or -1 (charge left on from)
// when there is none. If from is no longer eligible (the weights were reset since the
// packet was charged, so the old charge is already forgotten), the packet is placed
// as a new one, as Pick would.
func (c *Credit) Move(from, n int, skip *Set) int {
	if len(c.idx) == 0 {
		return -1
	}
	nn := clampN(n)
	if from < 0 || from >= c.members || c.pos[from] < 0 {
		return c.pick(nn, skip)
	}
	f := int(c.pos[from])
	c.grow(nn)
	// The best candidate is the one with the largest credit as things are: the others
	// gained their share of this packet when it was first charged, and did not pay.
	best := -1
	var bestCredit int64
	for k := range c.idx {
		if k == f || skip.Has(int(c.idx[k])) {
			continue
		}
		if best < 0 || c.credit[k] > bestCredit {
			best, bestCredit = k, c.credit[k]
		}
	}
	if best < 0 {
		return -1
	}
	charge := c.total * nn
	if room := c.limit - c.credit[f]; charge > room {
		// from is already owed as much as the cap allows; transfer only what it can
		// take back so the sum of credits stays put.
		charge = max(room, 0)
	}
	c.credit[f] += charge
	c.credit[best] -= charge
	return int(c.idx[best])
}

func clampN(n int) int64 {
	if n < 1 {
		return 1
	}
	if n > MaxPacketMessages {
		return MaxPacketMessages
	}
	return int64(n)
}

// grow records a packet of nn messages for the credit cap.
func (c *Credit) grow(nn int64) {
	if nn > c.maxN {
		c.maxN = nn
		c.limit = c.capFactor * c.total * nn
	}
}

// pick is Pick for len(c.idx) > 0 and 1 <= nn <= MaxPacketMessages.
func (c *Credit) pick(nn int64, skip *Set) int {
	c.grow(nn)
	if skip.empty() {
		// Fast path: one pass, and there is always a winner.
		credit, weight, limit := c.credit, c.weight[:len(c.credit)], c.limit
		best := 0
		var forgiven int64
		bestCredit := int64(math.MinInt64)
		for k, v := range credit {
			v += weight[k] * nn
			if v > limit {
				forgiven += v - limit
				v = limit
			}
			credit[k] = v
			if v > bestCredit {
				best, bestCredit = k, v
			}
		}
		credit[best] -= c.total*nn - forgiven
		c.placed += nn
		c.packets++
		return int(c.idx[best])
	}
	// Find the winner before changing anything: with every eligible analyzer skipped
	// nothing may be charged.
	best := -1
	var bestCredit int64
	for k := range c.credit {
		if skip.Has(int(c.idx[k])) {
			continue
		}
		v := min(c.credit[k]+c.weight[k]*nn, c.limit)
		if best < 0 || v > bestCredit {
			best, bestCredit = k, v
		}
	}
	if best < 0 {
		return -1
	}
	var forgiven int64
	for k := range c.credit {
		v := c.credit[k] + c.weight[k]*nn
		if v > c.limit {
			forgiven += v - c.limit
			v = c.limit
		}
		c.credit[k] = v
	}
	c.credit[best] -= c.total*nn - forgiven
	c.placed += nn
	c.packets++
	return int(c.idx[best])
}

// Set is a small bitset of analyzer indexes. The zero value is an empty set; up to 64
// members it never allocates, beyond that it grows once and reuses the words after
// Clear. A nil *Set is an empty set for Has.
type Set struct {
	lo uint64   // members 0..63
	hi []uint64 // members 64.. , word k holds 64(k+1)..64(k+2)-1
}

// Add puts analyzer i (>= 0) in the set.
func (s *Set) Add(i int) {
	if i < 0 {
		return
	}
	if i < 64 {
		s.lo |= 1 << uint(i)
		return
	}
	w := i/64 - 1
	if w >= len(s.hi) {
		if w < cap(s.hi) {
			s.hi = s.hi[:w+1]
		} else {
			hi := make([]uint64, w+1, max(w+1, MaxMembers/64))
			copy(hi, s.hi)
			s.hi = hi
		}
	}
	s.hi[w] |= 1 << uint(i%64)
}

// Remove takes analyzer i out of the set.
func (s *Set) Remove(i int) {
	if i < 0 {
		return
	}
	if i < 64 {
		s.lo &^= 1 << uint(i)
		return
	}
	if w := i/64 - 1; w < len(s.hi) {
		s.hi[w] &^= 1 << uint(i%64)
	}
}

// Has reports whether analyzer i is in the set.
func (s *Set) Has(i int) bool {
	if s == nil || i < 0 {
		return false
	}
	if i < 64 {
		return s.lo&(1<<uint(i)) != 0
	}
	w := i/64 - 1
	return w < len(s.hi) && s.hi[w]&(1<<uint(i%64)) != 0
}

// Clear empties the set, keeping its storage.
func (s *Set) Clear() {
	s.lo = 0
	clear(s.hi)
}

// Len returns the number of analyzers in the set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	n := bits.OnesCount64(s.lo)
	for _, w := range s.hi {
		n += bits.OnesCount64(w)
	}
	return n
}

func (s *Set) empty() bool {
	if s == nil {
		return true
	}
	if s.lo != 0 {
		return false
	}
	for _, w := range s.hi {
		if w != 0 {
			return false
		}
	}
	return true
}
