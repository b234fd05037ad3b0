package sched

import (
	"errors"
	"strconv"
	"sync/atomic"
)

// State is an analyzer's state as every surface reports it: the View, /health,
// /metrics-json and the distributor_breaker_state gauge, whose value is the State's
// number (so the order below is part of the metrics contract).
type State uint8

const (
	StateHealthy   State = iota // breaker closed, full weight
	StateSlowStart              // breaker closed, weight still ramping after a rejoin
	StateHalfOpen               // a probe passed; a trickle of trial packets decides
	StateOpen                   // taking nothing; probed until it answers again
	StateDrained                // taken out by an operator
	StateUnknown                // not yet probed: taking nothing until a probe answers
	StateRemoved                // removed at run time: a tombstone, never eligible again, its id never reused
)

var stateNames = [...]string{"healthy", "slow_start", "half_open", "open", "drained", "unknown", "removed"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Healthy is the one definition of a healthy analyzer, used by /health's
// healthy_analyzers, the distributor_healthy_analyzers gauge and /metrics-json: its
// breaker is closed (full weight or ramping up in slow start) and no operator
// drained it. Half-open (trial traffic only), open, drained and unknown are not.
func (s State) Healthy() bool { return s == StateHealthy || s == StateSlowStart }

// MarshalText writes the State's name, so JSON carries "healthy", not a number.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a State's name.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return errors.New("sched: unknown analyzer state " + strconv.Quote(string(b)))
}

// Member is one analyzer as every shard sees it in a View. Index in View.Members is
// the analyzer's id for the life of the process.
type Member struct {
	Name string // "analyzer-1" (from the URL host) or "analyzer-<n>"
	URL  string // as configured, e.g. "http://analyzer-1:9001"
	Addr string // host:port to dial
	// Configured is the weight as configured or set by an operator, before
	// normalisation (0 when removed).
	Configured float64
	Weight     float64 // configured weight, normalised so the members' weights sum to 1
	// Effective is the weight the scheduler uses now: Weight while the analyzer is
	// healthy, a ramp during slow start, 0 while it must not take new packets.
	Effective float64
	Eligible  bool // Effective > 0
	State     State
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

// Healthy counts healthy members (State.Healthy). Half-open members can take
// trial packets (Eligible) but are not counted; removed ones are not members.
func (v *View) Healthy() int {
	n := 0
	for i := range v.Members {
		if v.Members[i].State.Healthy() {
			n++
		}
	}
	return n
}

// Live counts the members that are not removed: what /health and the metrics call
// the analyzers.
func (v *View) Live() int {
	n := 0
	for i := range v.Members {
		if v.Members[i].State != StateRemoved {
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
