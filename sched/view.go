package sched

import "sync/atomic"

// Member is one analyzer as every shard sees it in a View. Index in View.Members is
// the analyzer's id for the life of the process.
type Member struct {
	Name   string  // "analyzer-1" (from the URL host) or "analyzer-<n>"
	URL    string  // as configured, e.g. "http://analyzer-1:9001"
	Addr   string  // host:port to dial
	Weight float64 // configured weight, normalised so all weights sum to 1
	// Effective is the weight the scheduler uses now: Weight while the analyzer is
	// healthy, a ramp during slow start, 0 while it must not take new packets.
	Effective float64
	Eligible  bool   // Effective > 0
	State     string // "healthy", "slow_start", "open", "half_open", "drained", "unknown"
	Reason    string // why it is out, for /health; empty when healthy
	Batch     bool   // analyzer accepts POST /ingest/batch
}

// View is an immutable snapshot of the analyzers. A new View gets a new Gen; shards
// compare Gen on each event and reset what depends on it.
type View struct {
	Gen     uint64
	Members []Member
}

// Effective returns the effective weights in member order, for Credit.SetWeights.
func (v *View) Effective(dst []float64) []float64 {
	dst = dst[:0]
	for i := range v.Members {
		w := 0.0
		if v.Members[i].Eligible {
			w = v.Members[i].Effective
		}
		dst = append(dst, w)
	}
	return dst
}

// Healthy counts members that can take packets.
func (v *View) Healthy() int {
	n := 0
	for i := range v.Members {
		if v.Members[i].Eligible {
			n++
		}
	}
	return n
}

// Board publishes Views. Readers never block; Publish copies nothing the reader holds.
type Board struct {
	cur atomic.Pointer[View]
	gen atomic.Uint64
}

// Publish stamps v with the next generation and makes it current. v must not be
// changed afterwards.
func (b *Board) Publish(v *View) {
	v.Gen = b.gen.Add(1)
	b.cur.Store(v)
}

// Load returns the current View (nil before the first Publish).
func (b *Board) Load() *View { return b.cur.Load() }
