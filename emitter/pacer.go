package emitter

import (
	"math"
	"sync/atomic"
	"time"
)

// pacerSlack is how far behind schedule the pacer lets senders fall and still catch
// up. It absorbs timer and scheduler lateness (a sender that wakes 3 ms late sends
// the packets it owes at once), but after a longer stall, e.g. every connection
// waiting out a Retry-After, the missed slots are dropped instead of released as one
// burst at the distributor.
const pacerSlack = 100 * time.Millisecond

// pacer hands out send times for a global rate shared by all connections. Slot k is
// due at k/rate seconds after the start, computed from k rather than by adding an
// interval per packet, so the schedule does not drift however long the run. It is a
// GCRA-style token bucket: one atomic slot counter, no lock; a sender reserves the
// next slot and sleeps until it is due.
type pacer struct {
	rate  float64 // slots per second
	slack int64   // ns
	next  atomic.Int64
}

// newPacer returns nil for rate <= 0 (no pacing).
func newPacer(rate float64) *pacer {
	if rate <= 0 {
		return nil
	}
	return &pacer{rate: rate, slack: int64(pacerSlack)}
}

// at is when slot k is due, in ns since the start.
func (p *pacer) at(k int64) int64 { return int64(float64(k) * 1e9 / p.rate) }

// reserve takes the next slot and returns when it is due (ns since the start); the
// caller sends at that time, or at once if it has passed. now is ns since the start.
func (p *pacer) reserve(now int64) int64 {
	for {
		cur := p.next.Load()
		k := cur
		t := p.at(k)
		if floor := now - p.slack; t < floor {
			// Too far behind: skip to the first slot inside the slack window.
			k = int64(math.Ceil(float64(floor) * p.rate / 1e9))
			t = p.at(k)
		}
		if p.next.CompareAndSwap(cur, k+1) {
			return t
		}
	}
}
