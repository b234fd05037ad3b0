package proxy

import (
	"testing"
	"time"

	"github.com/sluicelog/sluice/sched"
)

func TestBreakerTransitions(t *testing.T) {
	const limit = 4 * time.Second
	t0 := time.Unix(1000, 0)
	b := breaker{state: StateHealthy}
	if !b.closed() {
		t.Fatal("a new breaker must be closed")
	}
	if !b.trip(t0, "boom", limit) || b.state != StateOpen || b.backoff != breakerBase {
		t.Fatalf("first trip: state %s backoff %v, want open with %v", b.state, b.backoff, breakerBase)
	}
	if b.trip(t0, "again", limit) {
		t.Fatal("tripping an open breaker must not report a change")
	}
	if b.delay < breakerBase*8/10 || b.delay > breakerBase*12/10 {
		t.Fatalf("jittered delay %v outside ±20%% of %v", b.delay, breakerBase)
	}
	if b.probeOK(t0.Add(b.delay / 2)) {
		t.Fatal("a probe before the backoff ran out must not half-open the breaker")
	}
	if !b.probeOK(t0.Add(b.delay)) || b.state != StateHalfOpen {
		t.Fatalf("after the backoff a passing probe must half-open it; state %s", b.state)
	}
	if b.trials != 1 {
		t.Fatalf("half-open entered once, counted %d", b.trials)
	}
	// A trial failure re-opens with a doubled backoff.
	t1 := t0.Add(2 * time.Second)
	b.trip(t1, "trial failed", limit)
	if b.state != StateOpen || b.backoff != 2*breakerBase {
		t.Fatalf("half-open failure: state %s backoff %v, want open with %v", b.state, b.backoff, 2*breakerBase)
	}
	// Doubling stops at the cap.
	tt := t1
	for i := 0; i < 10; i++ {
		tt = tt.Add(time.Minute) // past each backoff; a half-open trip always doubles
		b.probeOK(tt)
		b.trip(tt, "flap", limit)
	}
	if b.backoff != limit {
		t.Fatalf("backoff %v after many flaps, want the cap %v", b.backoff, limit)
	}
	// Trial successes close it.
	t2 := tt.Add(time.Hour)
	b.probeOK(t2)
	for i := 1; i < trialNeeded; i++ {
		if b.success(t2) {
			t.Fatalf("closed after %d trial successes, want %d", i, trialNeeded)
		}
	}
	if !b.success(t2) || !b.closed() {
		t.Fatalf("not closed after %d trial successes", trialNeeded)
	}
	// Calm: after staying closed for twice the cap, the next trip starts from the base.
	b.trip(t2.Add(2*limit+time.Second), "new incident", limit)
	if b.backoff != breakerBase {
		t.Fatalf("after a calm period the backoff is %v, want %v", b.backoff, breakerBase)
	}
}

func TestBreakerUnknownUntilProbed(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := breaker{state: StateUnknown}
	if b.closed() {
		t.Fatalf("a new breaker is %s, want unknown and not closed", b.state)
	}
	if !b.probeOK(t0) || !b.closed() {
		t.Fatalf("an answered first probe must close an unknown breaker; state %s", b.state)
	}
	down := breaker{state: StateUnknown}
	if !down.trip(t0, "connection refused", 10*time.Second) || down.state != StateOpen || down.backoff != breakerBase {
		t.Fatalf("a failed first probe: state %s backoff %v, want open with %v", down.state, down.backoff, breakerBase)
	}
}

func TestStateNames(t *testing.T) {
	want := map[sched.State]string{StateHealthy: "healthy", StateSlowStart: "slow_start", StateHalfOpen: "half_open", StateOpen: "open", StateDrained: "drained", StateUnknown: "unknown", StateRemoved: "removed"}
	for s, name := range want {
		if s.String() != name {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), name)
		}
		var back sched.State
		if err := back.UnmarshalText([]byte(name)); err != nil || back != s {
			t.Errorf("UnmarshalText(%q) = %v, %v", name, back, err)
		}
		if s.Healthy() != (s == StateHealthy || s == StateSlowStart) {
			t.Errorf("%s.Healthy() = %v: healthy means closed (full weight or slow start) and not drained", s, s.Healthy())
		}
	}
}
