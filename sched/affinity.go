package sched

import (
	"math"
	"slices"
)

// Affinity routes all packets of one emitter to the same analyzer, for analyzers
// that keep per-source state (AFFINITY=emitter_id). It is consistent hashing with
// bounded loads (Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with
// Bounded Loads", SODA 2018) applied to message counts:
//
//   - Each eligible analyzer owns points on a hash ring in proportion to its
//     configured weight. An emitter's home is the owner of the first point at or
//     after the emitter's hash.
//   - Each analyzer's capacity is bound × its effective weight × the messages placed,
//     plus affinitySlack largest packets (so a packet always fits somewhere, and the
//     first packets, while few messages were placed, do not move emitters about). An emitter is
//     placed on the first analyzer, walking the ring from its hash, that has room
//     for the packet: its home unless the home is full.
//   - The placement is remembered (a fixed table of emitters, no allocation), so an
//     emitter stays where it was placed while that analyzer is eligible and has
//     room; it goes back to its home once the home is under its plain weight share
//     (between the two thresholds nothing moves, so nothing flaps).
//   - When an analyzer leaves, its ring points go and only the emitters placed on it
//     move (to the next point's owner); when it returns, its points come back and
//     the emitters whose home it is return to it. Other emitters stay.
//
// The bound: after every placement each analyzer holds at most
// bound·w_i·T + affinitySlack·nmax messages (T all messages placed, nmax the
// largest packet), because an analyzer that is not over its capacity always
// exists: Σ L_i = T ≤ bound·(T+n)·Σ w_i. So its share is at most bound × its
// weight, plus affinitySlack packets over T. The loads are halved whenever T reaches affinityDecay, so they follow
// the recent traffic; halving keeps the inequality. When the eligible set changes
// the loads restart balanced (each at its weight's share of T), which keeps it too.
//
// An Affinity belongs to one event loop, like Credit: not safe for concurrent use.
// Each loop has its own loads and table, so two connections of one emitter on
// different loops agree on its analyzer whenever its home has room.
type Affinity struct {
	bound float64   // AFFINITY_LOAD_BOUND, >= 1
	w     []float64 // effective weights normalised over the eligible (0: ineligible)
	conf  []float64 // configured weights the ring was built with
	load  []float64 // messages placed per analyzer, halved with total
	total float64   // Σ load over eligible analyzers
	nmax  float64   // largest packet placed
	elig  int       // eligible analyzers

	ring  []vnode // eligible analyzers' points, sorted by point
	epoch uint32  // bumped when the ring changes: remembered placements are checked again
	tick  uint32  // placements so far (wraps), for the table's least-recently-used choice
	slots []entry // open addressing, len a power of two
	tried Set     // scratch of walk

	// Moves counts remembered emitters placed on another analyzer than before
	// (their analyzer left, was full, or their home had room again).
	Moves int64
}

type vnode struct {
	point uint64
	id    int32
}

// entry is one remembered emitter: its hash (0: empty), where it is placed, its
// home when it was placed, the ring epoch then, and when it was last used.
type entry struct {
	key   uint64
	a     int32
	home  int32
	epoch uint32
	seen  uint32
}

const (
	affinityRingPoints = 4096    // ring points, shared by the configured analyzers in proportion to their weights
	affinityMinPoints  = 16      // ring points of any eligible analyzer
	affinityProbe      = 8       // table slots looked at per emitter
	affinityDecay      = 1 << 24 // messages after which loads are halved
	affinitySlack      = 16      // largest packets an analyzer may hold beyond its bound
)

// NewAffinity makes the affinity router over members analyzers (grown by Grow)
// with the load bound (values below 1 count as 1) and room to remember about
// tableSize emitters (rounded up to a power of two, at least 64). It allocates
// here and in Grow and SetWeights when the ring changes, never in Pick.
func NewAffinity(members int, bound float64, tableSize int) *Affinity {
	if !(bound >= 1) {
		bound = 1
	}
	size := 64
	for size < tableSize {
		size <<= 1
	}
	a := &Affinity{bound: bound, slots: make([]entry, size)}
	a.Grow(members)
	return a
}

// Grow makes room for members analyzers; new ones are ineligible until SetWeights.
func (a *Affinity) Grow(members int) {
	for len(a.w) < members {
		a.w = append(a.w, 0)
		a.conf = append(a.conf, 0)
		a.load = append(a.load, 0)
	}
}

// SetWeights installs the effective weights (what the split uses now; 0, negative
// or NaN: ineligible) and the configured weights (what the ring is built from, so a
// slow-start ramp does not move ring points). The ring is rebuilt, and remembered
// placements checked again at their next packet, only when the eligible set or a
// configured weight changed.
func (a *Affinity) SetWeights(effective, configured []float64) {
	a.Grow(max(len(effective), len(configured)))
	sum, changed, eligChanged := 0.0, false, false
	for i := range a.w {
		e, c := at(effective, i), at(configured, i)
		if !usable(e) {
			e = 0
		}
		if !usable(c) {
			c = 0
		}
		if (e > 0) != (a.w[i] > 0) {
			changed, eligChanged = true, true
		} else if e > 0 && c != a.conf[i] {
			changed = true
		}
		a.w[i], a.conf[i] = e, c
		sum += e
	}
	a.elig, a.total = 0, 0
	for i := range a.w {
		if a.w[i] > 0 {
			a.w[i] /= sum
			a.elig++
			a.total += a.load[i]
		}
	}
	if changed {
		// A new ring: the loads restart balanced (each analyzer at its weight's
		// share of what was placed), so analyzers that absorbed a leaver's emitters
		// do not push their own emitters away when it returns, and a returning one
		// takes its home emitters back without a burst past its bound.
		if eligChanged {
			for i := range a.w {
				a.load[i] = a.w[i] * a.total
			}
		}
		a.buildRing()
	}
}

func at(w []float64, i int) float64 {
	if i < len(w) {
		return w[i]
	}
	return 0
}

// buildRing places affinityRingPoints × its share of the configured weights (at
// least affinityMinPoints) for every eligible analyzer. Point k of analyzer i is always
// the same number, so a change adds or removes only that analyzer's points.
func (a *Affinity) buildRing() {
	csum := 0.0 // over every configured analyzer, eligible or not: one leaving moves no other's points
	for _, c := range a.conf {
		csum += c
	}
	a.ring = a.ring[:0]
	for i, w := range a.w {
		if w <= 0 {
			continue
		}
		pts := affinityMinPoints
		if csum > 0 {
			pts = max(pts, int(math.Round(affinityRingPoints*a.conf[i]/csum)))
		}
		for k := range pts {
			a.ring = append(a.ring, vnode{point: mix64(uint64(i)<<32 | uint64(k) + 0x9e3779b97f4a7c15), id: int32(i)})
		}
	}
	slices.SortFunc(a.ring, func(x, y vnode) int {
		switch {
		case x.point < y.point:
			return -1
		case x.point > y.point:
			return 1
		}
		return int(x.id - y.id)
	})
	a.epoch++
}

// Eligible is the number of analyzers that can be chosen.
func (a *Affinity) Eligible() int { return a.elig }

// Pick places a packet of n messages from the emitter whose hash is h (HashEmitter)
// and returns the analyzer, or -1 when no eligible analyzer outside skip exists.
// Analyzers in skip (full queues) are passed over as if full: the emitter moves.
func (a *Affinity) Pick(h uint64, n int, skip *Set) int {
	if a.elig == 0 {
		return -1
	}
	if h == 0 {
		h = 1 // 0 marks an empty slot
	}
	nn := float64(max(n, 1))
	a.nmax = max(a.nmax, nn)
	a.tick++
	e := a.lookup(h)
	if e != nil && e.key == h {
		prev := e.a
		if e.epoch != a.epoch { // the ring changed since: is its home still its home?
			if home := a.home(h); home != int(e.home) {
				e.home, e.a = int32(home), -1 // re-placed below, from the new home
			}
			e.epoch = a.epoch
		}
		to := int(e.a)
		switch {
		case to >= 0 && int(e.home) != to && a.under(int(e.home), nn, 1) && !skip.Has(int(e.home)):
			to = int(e.home) // back home: it is under its plain share again
		case to >= 0 && a.w[to] > 0 && !skip.Has(to) && a.under(to, nn, a.bound):
			// stays
		default:
			to = a.walk(h, nn, skip)
		}
		if to < 0 {
			return -1
		}
		if to != int(prev) {
			a.Moves++
		}
		e.a, e.seen = int32(to), a.tick
		a.charge(to, nn)
		return to
	}
	to := a.walk(h, nn, skip)
	if to < 0 {
		return -1
	}
	if e != nil { // an empty slot, or the least recently used one of the probe window
		*e = entry{key: h, a: int32(to), home: int32(a.home(h)), epoch: a.epoch, seen: a.tick}
	}
	a.charge(to, nn)
	return to
}

// lookup finds h's slot, or the slot to put it in: the first empty one, else the
// least recently used in the probe window.
func (a *Affinity) lookup(h uint64) *entry {
	mask := uint64(len(a.slots) - 1)
	var free, oldest *entry
	for k := uint64(0); k < affinityProbe; k++ {
		e := &a.slots[(h+k)&mask]
		if e.key == h {
			return e
		}
		if e.key == 0 {
			if free == nil {
				free = e
			}
			continue
		}
		if oldest == nil || a.tick-e.seen > a.tick-oldest.seen {
			oldest = e
		}
	}
	if free != nil {
		return free
	}
	return oldest
}

// under reports whether analyzer i can take nn more messages and stay within
// factor × its weight of all messages, plus affinitySlack largest packets.
func (a *Affinity) under(i int, nn, factor float64) bool {
	return a.w[i] > 0 && a.load[i]+nn <= factor*a.w[i]*(a.total+nn)+affinitySlack*a.nmax
}

// home is the owner of the first ring point at or after h.
func (a *Affinity) home(h uint64) int {
	return int(a.ring[a.search(h)].id)
}

func (a *Affinity) search(h uint64) int {
	lo, hi := 0, len(a.ring)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if a.ring[m].point < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(a.ring) {
		lo = 0
	}
	return lo
}

// walk is the bounded-loads placement: the first analyzer clockwise from h that is
// not in skip and has room under the bound. There always is one unless skip holds
// analyzers; then the least loaded for its weight outside skip, -1 if none.
func (a *Affinity) walk(h uint64, nn float64, skip *Set) int {
	a.tried.Clear()
	seen := 0
	for k, start := 0, a.search(h); k < len(a.ring) && seen < a.elig; k++ {
		id := int(a.ring[(start+k)%len(a.ring)].id)
		if a.tried.Has(id) {
			continue
		}
		a.tried.Add(id)
		seen++
		if !skip.Has(id) && a.under(id, nn, a.bound) {
			return id
		}
	}
	best, bestLoad := -1, 0.0
	for i, w := range a.w {
		if w > 0 && !skip.Has(i) {
			if l := a.load[i] / w; best < 0 || l < bestLoad {
				best, bestLoad = i, l
			}
		}
	}
	return best
}

func (a *Affinity) charge(i int, nn float64) {
	a.load[i] += nn
	a.total += nn
	if a.total >= affinityDecay {
		for j := range a.load {
			a.load[j] /= 2
		}
		a.total /= 2
	}
}

// Load returns the messages placed on analyzer i (halved as the loads decay).
func (a *Affinity) Load(i int) float64 { return a.load[i] }

// Total returns the messages placed on eligible analyzers (halved likewise).
func (a *Affinity) Total() float64 { return a.total }

// MaxPacket returns the largest packet placed, in messages.
func (a *Affinity) MaxPacket() float64 { return a.nmax }

// Slack returns how many messages an analyzer may hold beyond bound × its weight ×
// the messages placed: affinitySlack largest packets.
func (a *Affinity) Slack() float64 { return affinitySlack * a.nmax }

// HashEmitter hashes an emitter_id's bytes (64-bit FNV-1a, then mixed so that ring
// positions spread); it does not allocate.
func HashEmitter(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return mix64(h)
}

// mix64 is splitmix64's finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
