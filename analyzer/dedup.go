package analyzer

import (
	"hash/maphash"
	"sync"
)

// DefaultDedupWindow is how many packet ids an analyzer remembers by default.
const DefaultDedupWindow = 1 << 20

// dedupStripeMin is the smallest window that is split into stripes. Smaller windows
// (the ones tests use) are a single exact FIFO.
const (
	dedupStripes   = 64
	dedupStripeMin = 64 << 10
)

// dedupWindow remembers the most recent packet ids so that a packet delivered twice
// (the distributor is at-least-once) is processed once.
//
// An id is kept as a 64-bit maphash of its raw JSON bytes, never as a string: the
// window costs 8 bytes in a ring plus 16 in an idSet per id (24 MiB at the default),
// all allocated when the window is made, and remembering an id allocates nothing.
// Two distinct ids collide with probability about window/2^64 per packet (≈6e-14 at
// 2^20), which would count a new packet as a duplicate; that is accepted.
//
// Eviction is FIFO by first sight: each stripe is a ring of hashes plus an idSet; when
// the ring is full the oldest hash leaves the set. Re-sending an id does not refresh
// it, so the window is "the last N distinct ids", independent of retries.
//
// The window is shared by every event loop (a retry usually arrives on another
// connection), so it needs synchronisation. It is striped 64 ways by hash, each
// stripe behind its own mutex: with one loop per core the chance that two loops want
// the same stripe at the same moment is tiny, and an uncontended lock is ~15ns next
// to a few µs of parsing and validation. A lock-free set with FIFO eviction was
// considered and rejected: concurrent deletion needs tombstones or epochs, which is a
// lot of subtle code for no measurable gain at this rate.
// Striping makes a large window approximate: each stripe forgets after N/64 newer ids
// of its own, so an id is forgotten after N newer distinct ids on average (±a few
// percent), never much sooner. Windows under 64Ki ids use a single stripe and are exact.
type dedupWindow struct {
	seed    maphash.Seed
	stripes []dedupStripe
	mask    uint64 // len(stripes)-1
}

type dedupStripe struct {
	mu   sync.Mutex
	ring []uint64 // hashes in arrival order, oldest at next once full
	next int
	full bool
	set  *idSet
	_    [64]byte // keep neighbouring stripes' mutexes off one cache line
}

func newDedupWindow(size int) *dedupWindow {
	if size <= 0 {
		size = DefaultDedupWindow
	}
	n := 1
	if size >= dedupStripeMin {
		n = dedupStripes
	}
	per := (size + n - 1) / n
	w := &dedupWindow{seed: maphash.MakeSeed(), stripes: make([]dedupStripe, n), mask: uint64(n - 1)}
	for i := range w.stripes {
		w.stripes[i].ring = make([]uint64, per)
		w.stripes[i].set = newIDSet(per)
	}
	return w
}

// hash is the key an id is remembered by.
func (w *dedupWindow) hash(id []byte) uint64 { return maphash.Bytes(w.seed, id) }

// seen reports whether h is in the window, and remembers it if it was not.
func (w *dedupWindow) seen(h uint64) bool {
	// The low bits pick the stripe; idSet mixes all bits for its slot.
	s := &w.stripes[h&w.mask]
	s.mu.Lock()
	if s.set.has(h) {
		s.mu.Unlock()
		return true
	}
	if s.full {
		s.set.remove(s.ring[s.next])
	}
	s.ring[s.next] = h
	s.set.add(h)
	s.next++
	if s.next == len(s.ring) {
		s.next = 0
		s.full = true
	}
	s.mu.Unlock()
	return false
}

// size is how many ids the window can hold in total.
func (w *dedupWindow) size() int { return len(w.stripes) * len(w.stripes[0].ring) }

// held is how many ids the window holds now.
func (w *dedupWindow) held() int {
	n := 0
	for i := range w.stripes {
		s := &w.stripes[i]
		s.mu.Lock()
		if s.full {
			n += len(s.ring)
		} else {
			n += s.next
		}
		s.mu.Unlock()
	}
	return n
}
