package analyzer

// idSet is a set of 64-bit hashes with open addressing and linear probing, sized once
// for a fixed number of members. Deletion shifts later members of the probe run back
// (Knuth's algorithm R), so there are no tombstones and the table never needs to be
// rebuilt: a steady stream of insert-one, delete-oldest costs the same forever.
//
// It replaces a Go map here because that stream is what maps handle worst: on the
// project machine, in one run, BenchmarkMapChurn (map[uint64]struct{}, 4096 members,
// FIFO churn) took ~100ns per step and BenchmarkIDSetChurn ~28ns. It also allocates
// its whole table up front, so the window never grows on the hot path.
type idSet struct {
	slots []uint64 // 0 = empty; members are stored with their zero value remapped
	shift uint     // 64 - log2(len(slots))
	mask  int
}

func newIDSet(members int) *idSet {
	size := 8
	for size < 2*members { // load factor at most 1/2: short probe runs
		size *= 2
	}
	bits := uint(0)
	for 1<<bits < size {
		bits++
	}
	return &idSet{slots: make([]uint64, size), shift: 64 - bits, mask: size - 1}
}

// key maps the one hash value that means "empty" to another; the collision this adds
// is as likely as any other 64-bit collision.
func key(h uint64) uint64 {
	if h == 0 {
		return 1
	}
	return h
}

// home is a member's preferred slot. The multiply mixes all bits into the top ones,
// so it does not matter which bits of the hash picked the stripe.
func (s *idSet) home(k uint64) int { return int((k * 0x9E3779B97F4A7C15) >> s.shift) }

// has reports whether h is a member.
func (s *idSet) has(h uint64) bool {
	k := key(h)
	for i := s.home(k); ; i = (i + 1) & s.mask {
		switch s.slots[i] {
		case k:
			return true
		case 0:
			return false
		}
	}
}

// add makes h a member; it must not be one yet and the set must have room.
func (s *idSet) add(h uint64) {
	k := key(h)
	i := s.home(k)
	for s.slots[i] != 0 {
		i = (i + 1) & s.mask
	}
	s.slots[i] = k
}

// remove takes h out of the set, if it is a member.
func (s *idSet) remove(h uint64) {
	k := key(h)
	i := s.home(k)
	for s.slots[i] != k {
		if s.slots[i] == 0 {
			return
		}
		i = (i + 1) & s.mask
	}
	// Slot i is now free. Walk the rest of the run; a member whose home is not
	// cyclically in (i, j] may move back into i, which frees j in turn.
	for j := i; ; {
		j = (j + 1) & s.mask
		m := s.slots[j]
		if m == 0 {
			break
		}
		h := s.home(m)
		if (i <= j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
			s.slots[i] = m
			i = j
		}
	}
	s.slots[i] = 0
}
