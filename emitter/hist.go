package emitter

import (
	"math/bits"
	"sync/atomic"
)

// Latencies are kept in a log-linear histogram (the HDR idea): values under 64 µs
// get one bucket per microsecond, and every power of two above that is split into 64
// equal buckets, so any recorded value is known to within 1/64 (1.6%). Values are
// microseconds; the top bucket takes everything from about 4.7 hours up.
const (
	histSubBits  = 6
	histSub      = 1 << histSubBits
	histMaxExp   = 27
	histBuckets  = (histMaxExp + 2) * histSub
	histMaxValue = uint64(histSub*2-1) << histMaxExp
)

// histogram is written by one goroutine and read by any: buckets are atomics so the
// progress line can read them while the owner records, without a lock. The owner's
// adds are uncontended.
type histogram struct {
	counts [histBuckets]atomic.Uint64
}

func histBucket(us uint64) int {
	if us < histSub {
		return int(us)
	}
	if us > histMaxValue {
		us = histMaxValue
	}
	e := bits.Len64(us) - histSubBits - 1 // us>>e is in [64, 128)
	return (e+1)*histSub + int(us>>e) - histSub
}

// histValue is a representative value of bucket b: its midpoint.
func histValue(b int) float64 {
	if b < histSub {
		return float64(b)
	}
	e := b/histSub - 1
	lower := uint64(b%histSub+histSub) << e
	return float64(lower) + float64(uint64(1)<<e-1)/2
}

func (h *histogram) record(us uint64) { h.counts[histBucket(us)].Add(1) }

// histSnapshot is a merged, plain copy of one or more histograms.
type histSnapshot [histBuckets]uint64

func (s *histSnapshot) add(h *histogram) {
	for i := range h.counts {
		s[i] += h.counts[i].Load()
	}
}

// sub leaves in s what was recorded after prev was taken.
func (s *histSnapshot) sub(prev *histSnapshot) {
	for i := range s {
		s[i] -= prev[i]
	}
}

func (s *histSnapshot) total() uint64 {
	var n uint64
	for _, c := range s {
		n += c
	}
	return n
}

// quantileMs returns the q-quantile (0 < q <= 1) in milliseconds, 0 when empty.
func (s *histSnapshot) quantileMs(q float64) float64 {
	total := s.total()
	if total == 0 {
		return 0
	}
	rank := uint64(q * float64(total))
	if float64(rank) < q*float64(total) {
		rank++
	}
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for b, c := range s {
		seen += c
		if seen >= rank {
			return histValue(b) / 1000
		}
	}
	return histValue(histBuckets-1) / 1000
}
