package proxy

import (
	"math/rand/v2"
	"time"

	"github.com/sluicelog/sluice/sched"
)

// Analyzer states, as exported in the View, /health and the metrics. The type and
// its names live in sched (sched.State); these are the same constants.
const (
	StateHealthy   = sched.StateHealthy   // closed, full weight
	StateSlowStart = sched.StateSlowStart // closed, weight still ramping after a rejoin
	StateOpen      = sched.StateOpen      // taking nothing; probed every DOWN_PROBE_INTERVAL_MS
	StateHalfOpen  = sched.StateHalfOpen  // a probe passed; a trickle of trial packets decides
	StateDrained   = sched.StateDrained   // taken out by an operator
	StateUnknown   = sched.StateUnknown   // not probed yet: takes nothing until a probe answers
	StateRemoved   = sched.StateRemoved   // removed at run time: a tombstone, never eligible
)

// breaker is one analyzer's circuit breaker. Its state is one of StateUnknown,
// StateHealthy (closed), StateOpen and StateHalfOpen; slow start and drained are
// the controller's, not the breaker's.
//
// unknown → closed: the first health probe answers 2xx. unknown → open: it does not.
// closed → open: MAX_FAILURES failures in a row across all loops (connect errors,
// timeouts, 5xx, malformed answers, lost connections), or failed health probes.
// open → half-open: the backoff has passed and a GET /health probe succeeds. A
// probe alone never closes it, so an analyzer whose /health is fine but whose
// /ingest fails goes straight back to open on its first trial failure.
// half-open → closed: trialNeeded trial packets were answered 2xx.
// half-open → open: any failure; the backoff doubles (with jitter) up to a cap, so
// a flapping analyzer gets trial traffic less and less often. It returns to its base
// after the analyzer has stayed closed for calm. Failed probes while open do not
// double it: the controller probes an open analyzer at the steady
// DOWN_PROBE_INTERVAL_MS once the backoff has passed.
type breaker struct {
	state    sched.State
	openedAt time.Time
	closedAt time.Time
	backoff  time.Duration // doubles per re-open, up to the cap
	delay    time.Duration // backoff with jitter, drawn when it opened
	trialOK  int
	opens    int64 // times opened, for the metrics
	trials   int64 // times moved to half-open
	reason   string
}

const (
	breakerBase = 500 * time.Millisecond
	trialNeeded = 3
)

// trip opens the breaker; limit caps the backoff. It reports whether the state
// changed.
func (b *breaker) trip(now time.Time, reason string, limit time.Duration) bool {
	b.reason = reason
	if b.state == StateOpen {
		return false
	}
	calm := 2 * limit
	switch {
	case b.state == StateHalfOpen:
		b.backoff = min(2*b.backoff, limit)
	case b.backoff == 0 || now.Sub(b.closedAt) > calm:
		b.backoff = breakerBase
	default:
		b.backoff = min(2*b.backoff, limit)
	}
	// ±20 % jitter, so analyzers that failed together are not retried together.
	b.delay = time.Duration(float64(b.backoff) * (0.8 + 0.4*rand.Float64()))
	b.state, b.openedAt, b.trialOK = StateOpen, now, 0
	b.opens++
	return true
}

// readyAt is when an open breaker has waited out its backoff.
func (b *breaker) readyAt() time.Time { return b.openedAt.Add(b.delay) }

// due reports whether an open breaker has waited out its backoff.
func (b *breaker) due(now time.Time) bool {
	return b.state == StateOpen && !now.Before(b.readyAt())
}

// probeOK folds in a passing health probe: an unknown breaker closes, an open one
// whose backoff has passed moves to half-open. It reports whether the state changed.
func (b *breaker) probeOK(now time.Time) bool {
	switch {
	case b.state == StateUnknown:
		b.state, b.closedAt = StateHealthy, now
		return true
	case b.due(now):
		b.state, b.trialOK = StateHalfOpen, 0
		b.trials++
		return true
	}
	return false
}

// success counts one answered trial packet; it reports whether the breaker closed.
func (b *breaker) success(now time.Time) bool {
	if b.state != StateHalfOpen {
		return false
	}
	b.trialOK++
	if b.trialOK >= trialNeeded {
		b.state, b.closedAt, b.reason = StateHealthy, now, ""
		return true
	}
	return false
}

// closed reports whether packets may flow normally.
func (b *breaker) closed() bool { return b.state == StateHealthy }
