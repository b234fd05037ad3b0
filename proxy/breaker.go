package proxy

import (
	"math/rand/v2"
	"time"
)

// Breaker states, as exported in the View, /health and the metrics.
const (
	StateHealthy   = "healthy"    // closed, full weight
	StateSlowStart = "slow_start" // closed, weight still ramping after a rejoin
	StateOpen      = "open"       // taking nothing; waiting out its backoff
	StateHalfOpen  = "half_open"  // a probe passed; a trickle of trial packets decides
	StateDrained   = "drained"    // taken out by an operator
)

// breaker is one analyzer's circuit breaker.
//
// closed → open: MAX_FAILURES failures in a row seen by one shard (connect errors,
// timeouts, 5xx, malformed answers, lost connections), or a failed health probe.
// open → half-open: the backoff has passed and a GET /health probe succeeds. A
// probe alone never closes it, so an analyzer whose /health is fine but whose
// /ingest fails goes straight back to open on its first trial failure.
// half-open → closed: trialNeeded trial packets were answered 2xx.
// half-open → open: any failure; the backoff doubles (with jitter) up to a cap, so
// a flapping analyzer is tried less and less often. It returns to its base after
// the analyzer has stayed closed for calm.
type breaker struct {
	state    string
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

// trip opens the breaker. It reports whether the state changed.
func (b *breaker) trip(now time.Time, reason string, max time.Duration) bool {
	b.reason = reason
	if b.state == StateOpen {
		return false
	}
	calm := 2 * max
	switch {
	case b.state == StateHalfOpen:
		b.backoff = min(2*b.backoff, max)
	case b.backoff == 0 || now.Sub(b.closedAt) > calm:
		b.backoff = breakerBase
	default:
		b.backoff = min(2*b.backoff, max)
	}
	// ±20 % jitter, so analyzers that failed together are not retried together.
	b.delay = time.Duration(float64(b.backoff) * (0.8 + 0.4*rand.Float64()))
	b.state, b.openedAt, b.trialOK = StateOpen, now, 0
	b.opens++
	return true
}

// rearm restarts an open breaker's wait with a doubled backoff: its trial probe
// failed, so the analyzer is still down.
func (b *breaker) rearm(now time.Time, reason string, limit time.Duration) {
	b.reason = reason
	b.backoff = min(2*max(b.backoff, breakerBase/2), limit)
	b.delay = time.Duration(float64(b.backoff) * (0.8 + 0.4*rand.Float64()))
	b.openedAt = now
}

// due reports whether an open breaker has waited out its backoff.
func (b *breaker) due(now time.Time) bool {
	return b.state == StateOpen && now.Sub(b.openedAt) >= b.delay
}

// probeOK moves an open breaker whose backoff has passed to half-open.
func (b *breaker) probeOK(now time.Time) bool {
	if b.due(now) {
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
func (b *breaker) closed() bool { return b.state == StateHealthy || b.state == "" }
