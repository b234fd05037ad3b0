package analyzer

import (
	"bytes"
	"errors"
	"strconv"
	"time"
)

// Fault is the misbehaviour an analyzer is told to show, for tests and demos. The
// zero Fault is a healthy analyzer.
type Fault struct {
	Fail       bool          // POST /ingest and /ingest/batch answer 500 and count nothing
	Slow       time.Duration // added to every ingest answer, on top of Config.Delay
	HealthFail bool          // GET /health answers 503
	Down       time.Duration // close every connection now and refuse new ones for this long
	Flap       time.Duration // alternate down and up, this long each, starting down, until cleared
}

// faultState is a Fault pinned to the moment it was set. It is immutable once
// published; the hot path reads it with one atomic load, and a nil state means no
// fault at all.
type faultState struct {
	fail       bool
	slow       time.Duration
	healthFail bool
	downUntil  int64 // monotonic ns (Analyzer.now); 0 = not down
	flapPeriod time.Duration
	flapStart  int64         // monotonic ns when flapping began (down first)
	done       chan struct{} // closed when this state is replaced; ends its flap goroutine
}

func (f *faultState) empty() bool {
	return !f.fail && f.slow == 0 && !f.healthFail && f.downUntil == 0 && f.flapPeriod == 0
}

// down reports whether connections are being refused at time now.
func (f *faultState) down(now int64) bool {
	if f.downUntil != 0 && now < f.downUntil {
		return true
	}
	if f.flapPeriod > 0 && now >= f.flapStart {
		return ((now-f.flapStart)/int64(f.flapPeriod))%2 == 0
	}
	return false
}

// fault returns the fault as the Fault that would set it again from now.
func (f *faultState) fault(now int64) Fault {
	if f == nil {
		return Fault{}
	}
	out := Fault{Fail: f.fail, Slow: f.slow, HealthFail: f.healthFail, Flap: f.flapPeriod}
	if f.downUntil > now {
		out.Down = time.Duration(f.downUntil - now)
	}
	return out
}

// FaultStatus is the fault part of Stats and of the /internal/simulate answers.
type FaultStatus struct {
	Fail            bool  `json:"fail"`
	SlowMS          int64 `json:"slow_ms"`
	HealthFail      bool  `json:"health_fail"`
	Down            bool  `json:"down"` // refusing connections right now (down or a flap's down half)
	DownRemainingMS int64 `json:"down_remaining_ms"`
	FlapPeriodMS    int64 `json:"flap_period_ms"`
}

func (a *Analyzer) faultStatus() FaultStatus {
	now := a.now()
	f := a.fault.Load()
	if f == nil {
		return FaultStatus{}
	}
	cur := f.fault(now)
	return FaultStatus{
		Fail:            cur.Fail,
		SlowMS:          cur.Slow.Milliseconds(),
		HealthFail:      cur.HealthFail,
		Down:            f.down(now),
		DownRemainingMS: cur.Down.Milliseconds(),
		FlapPeriodMS:    cur.Flap.Milliseconds(),
	}
}

// SetFault replaces the analyzer's fault as a whole; SetFault(Fault{}) clears it.
// Down and Flap close every open connection when they take effect.
func (a *Analyzer) SetFault(f Fault) {
	a.faultMu.Lock()
	defer a.faultMu.Unlock()
	a.setFaultLocked(f)
}

// Fault is the fault in force, with Down as the time it has left.
func (a *Analyzer) Fault() Fault { return a.fault.Load().fault(a.now()) }

func (a *Analyzer) setFaultLocked(f Fault) {
	now := a.now()
	old := a.fault.Load()
	next := &faultState{fail: f.Fail, slow: f.Slow, healthFail: f.HealthFail, flapPeriod: f.Flap}
	if f.Down > 0 {
		next.downUntil = now + int64(f.Down)
	}
	if f.Flap > 0 {
		if old != nil && old.flapPeriod == f.Flap {
			next.flapStart = old.flapStart // changing another fault must not restart the flap
		} else {
			next.flapStart = now
		}
	}
	if old != nil && old.done != nil {
		close(old.done)
	}
	if next.empty() {
		a.fault.Store(nil)
		return
	}
	if next.flapPeriod > 0 {
		next.done = make(chan struct{})
	}
	a.fault.Store(next)

	if f.Down > 0 || (next.flapPeriod > 0 && (old == nil || old.flapPeriod != next.flapPeriod)) {
		a.closeAllConns()
	}
	if next.flapPeriod > 0 {
		go a.flapLoop(next)
	}
}

// flapLoop closes every connection at the start of each down half of a flap, so
// idle keep-alive connections notice too, until the state is replaced.
func (a *Analyzer) flapLoop(f *faultState) {
	period := int64(f.flapPeriod)
	for {
		now := a.now()
		// Next down half starts at flapStart + 2k·period for the smallest such time after now.
		k := (now-f.flapStart)/(2*period) + 1
		t := time.NewTimer(time.Duration(f.flapStart + 2*k*period - now))
		select {
		case <-f.done:
			t.Stop()
			return
		case <-t.C:
			a.closeAllConns()
		}
	}
}

// simulate applies one /internal/simulate/<action> request and reports the fault
// that results. Each action changes only its own part of the fault; "begin" clears
// everything (the names are those of the seed analyzers).
func (a *Analyzer) simulate(action string, query []byte) error {
	a.faultMu.Lock()
	defer a.faultMu.Unlock()
	f := a.fault.Load().fault(a.now())
	switch action {
	case "begin":
		f = Fault{}
	case "fail":
		f.Fail = true
	case "health-fail":
		f.HealthFail = true
	case "health-ok":
		f.HealthFail = false
	case "slow":
		d, err := queryMillis(query, "ms")
		if err != nil {
			return err
		}
		f.Slow = d
	case "down":
		d, err := queryMillis(query, "ms")
		if err != nil {
			return err
		}
		if d <= 0 {
			return errors.New("ms must be positive")
		}
		f.Down = d
	case "flap":
		d, err := queryMillis(query, "period_ms")
		if err != nil {
			return err
		}
		f.Flap = d
	default:
		return errUnknownAction
	}
	a.setFaultLocked(f)
	return nil
}

var errUnknownAction = errors.New("unknown simulate action")

// queryMillis reads a non-negative integer parameter, in milliseconds, from a raw
// query string.
func queryMillis(query []byte, name string) (time.Duration, error) {
	v, ok := queryValue(query, name)
	if !ok {
		return 0, errors.New("missing query parameter " + name)
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || n < 0 || n > int64(24*time.Hour/time.Millisecond) {
		return 0, errors.New("query parameter " + name + " must be milliseconds between 0 and 86400000")
	}
	return time.Duration(n) * time.Millisecond, nil
}

// queryValue finds name=value in a raw query string. Values are used as they are
// (the parameters are plain integers, nothing needs unescaping).
func queryValue(query []byte, name string) ([]byte, bool) {
	for len(query) > 0 {
		var pair []byte
		if i := bytes.IndexByte(query, '&'); i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			pair, query = query, nil
		}
		if len(pair) > len(name) && pair[len(name)] == '=' && string(pair[:len(name)]) == name {
			return pair[len(name)+1:], true
		}
	}
	return nil, false
}
