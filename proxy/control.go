package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicelog/sluice/sched"
)

// controller owns everything about analyzers that is not per packet: breakers,
// health probes, slow start, operator overrides. It runs on one goroutine and
// speaks to the loops only by publishing Views; loops speak to it through failed
// and answered, which touch an atomic counter and, when something changed, set a
// flag and nudge it without blocking.
type controller struct {
	cfg           Config       // its own copy; the fields a reload changes (live.go) are written under mu
	maxFailures   atomic.Int32 // MAX_FAILURES, for the loops' failed (a reload changes it)
	board         *sched.Board
	log           *slog.Logger
	setRetryAfter func(sec int32)  // where the Retry-After of 503s goes
	drainSeconds  func() int32     // Retry-After while some analyzer takes packets
	now           func() time.Time // the clock: time.Now, a fake one in tests
	launch        func(id int)     // starts analyzer id's probe: go c.probe, a recorder in tests
	// retired reports whether no loop holds anything for analyzer id (queued or
	// in flight): its id may then go to another URL (reclaimableLocked). Set
	// before the controller is shared; nil: ids are never reclaimed.
	retired      func(id int) bool
	reclaimAfter time.Duration // reclaimAfter; tests shorten it before sharing
	published    func()        // after each View published, under mu: wakes quiet shards (nil: none); set before run starts

	// slots holds every member ever added, by id; its length (maxAnalyzers) is fixed
	// at construction and it is never reassigned, so loops index it unlocked
	// (failed, answered) for ids they learnt from a published View: slot id was
	// written, under mu, before the View that first showed id was published.
	slots []*member
	// mu guards members (slots[:n], the ids in use, removed ones included) and the
	// members' controller-side fields (everything but their atomics) between the
	// controller goroutine, admin calls (add, remove, drain, weight), DNS discovery
	// and metrics reads.
	mu      sync.Mutex
	members []*member
	wake    chan struct{}
	probes  chan probeResult
	quit    chan struct{} // closed when run returns: a probe answering after that drops its result
	client  *http.Client

	// budget is the distributor's per-analyzer held packets, read once per step for
	// capacity-aware routing and the limiting analyzer (capacity.go); nil in tests
	// that run a controller alone. Set by New before the controller runs.
	budget   *budget
	loads    []float64 // scratch of capacityLocked, under mu
	limitLog rateLog   // "analyzer limits the distributor" lines
}

// member is the controller's record of one analyzer. The atomics are written by
// the loops; everything else is guarded by controller.mu.
type member struct {
	spec       AnalyzerSpec
	weight     float64 // configured (or operator-set) weight before normalisation
	br         breaker
	rejoined   time.Time // when it last closed or was undrained, for slow start
	ramping    bool      // in slow start: each step republishes until the ramp's end is published
	drained    bool
	removed    bool      // a tombstone: never eligible, not probed, hidden
	removedAt  time.Time // when it was removed: its id may go to another URL reclaimAfter later (reclaimableLocked)
	joinRamp   bool      // added at run time: the first answered probe starts slow start, not full weight
	batch      bool
	probing    bool
	probeFails int       // probes in a row without an answer
	nextProbe  time.Time // no probe starts before this
	shown      sched.State
	why        string // what made the last transition, for its log line
	// Capacity-aware routing (capacity.go), under mu: heldAvg is the moving average
	// of its held packets, capLoad its last load (held over effective weight; -1 when
	// not judged), capFactor what its effective weight is multiplied by (1: full).
	heldAvg   float64
	capLoad   float64
	capFactor float64
	// limiting: its backlog is what fills the buffer (written by the controller each
	// step, read by the metrics and the console).
	limiting atomic.Bool

	streak  atomic.Int32 // failures in a row across all loops; any 2xx answer resets it
	tripped atomic.Bool  // MAX_FAILURES in a row (or a trial failure): open the breaker
	trialOK atomic.Int32 // trial packets answered while half-open
}

// probeErrorsToOpen is how many probes in a row must fail to connect or time out
// before they alone open a closed breaker. An analyzer that answers /health with an
// error status is taken out at once: it said so itself. One that was never heard
// from (unknown) or is open gets no benefit of the doubt.
const probeErrorsToOpen = 2

type probeResult struct {
	id     int
	ok     bool
	status int // HTTP status, 0 when there was no answer
	batch  bool
	err    string
}

// controlInterval is how often the controller re-evaluates slow start, breaker
// timers and Retry-After without being nudged.
const controlInterval = 100 * time.Millisecond

// firstProbeWait bounds how long Start waits for the first probe round.
const firstProbeWait = time.Second

func newController(cfg Config, board *sched.Board, log *slog.Logger, setRetryAfter func(int32), drainSeconds func() int32) *controller {
	c := &controller{
		cfg:           cfg,
		board:         board,
		log:           log,
		setRetryAfter: setRetryAfter,
		drainSeconds:  drainSeconds,
		now:           time.Now,
		wake:          make(chan struct{}, 1),
		probes:        make(chan probeResult, max(len(cfg.Analyzers), 16)),
		quit:          make(chan struct{}),
		slots:         make([]*member, maxAnalyzers),
		reclaimAfter:  reclaimAfter,
		client: &http.Client{
			Timeout:   max(cfg.SenderTimeout, 2*time.Second),
			Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true},
		},
	}
	c.members = c.slots[:0]
	c.launch = func(id int) { go c.probe(id, c.members[id].spec.URL) }
	c.maxFailures.Store(int32(cfg.MaxFailures))
	for _, a := range cfg.Analyzers {
		c.addLocked(a, false) // not yet shared: no lock needed
	}
	return c
}

// maxAnalyzers bounds the analyzer ids (removed ones included): the budget's and
// the controller's per-analyzer arrays are this long, so loops index them without
// a lock. Once all are taken, an add takes over the id of an analyzer removed
// long enough ago with nothing held (reclaimableLocked); with none such it is
// refused (errMembersFull).
const maxAnalyzers = 1024

// Membership errors; the admin API answers them 409, 507 and 404.
var (
	errMemberExists = errors.New("an analyzer with this name or URL exists")
	errMembersFull  = fmt.Errorf("analyzer ids exhausted: at most %d analyzers, removed ones included until %v after their removal with nothing held for them", maxAnalyzers, reclaimAfter)
	errNoMember     = errors.New("no such analyzer")
)

// addLocked makes spec a member: unknown, taking nothing, with its first probe due
// at once (firstProbes or the next step starts it), so it becomes eligible as soon
// as a probe answers. This is the path of every membership change. A member added
// at run time (joinRamp) ramps up in slow start when its probe answers, like one
// that rejoins; one configured at start takes its full weight at once. A URL that
// was removed before gets its old id back (its counters continue); a new URL gets
// the next id. It returns the id.
func (c *controller) addLocked(spec AnalyzerSpec, joinRamp bool) (int, error) {
	for _, m := range c.members {
		if !m.removed && (m.spec.Name == spec.Name || m.spec.Addr == spec.Addr) {
			return -1, fmt.Errorf("add %s (%s): %w: %s (%s)", spec.Name, spec.URL, errMemberExists, m.spec.Name, m.spec.URL)
		}
	}
	for id, m := range c.members {
		if m.removed && m.spec.Addr == spec.Addr && !m.probing {
			m.reset(spec, joinRamp) // the tombstone comes back to life
			return id, nil
		}
	}
	if len(c.members) == len(c.slots) {
		id := c.reclaimableLocked(c.now())
		if id < 0 {
			return -1, fmt.Errorf("add %s (%s): %w", spec.Name, spec.URL, errMembersFull)
		}
		c.log.Info("analyzer id reclaimed", "id", id, "was", c.members[id].spec.URL, "now", spec.URL)
		c.members[id].reset(spec, joinRamp)
		return id, nil
	}
	m := &member{spec: spec, weight: spec.configuredWeight(), shown: StateUnknown, joinRamp: joinRamp, why: "added", capFactor: 1}
	m.br.state = StateUnknown
	c.members = append(c.members, m)
	return len(c.members) - 1, nil
}

// reset makes m the record of spec, unknown and taking nothing: a tombstone that
// comes back (its URL is added again) or whose id is reclaimed for another URL.
// Loops may still touch its atomics (answers of packets sent before the
// removal), so the record is reset in place, never replaced. Under c.mu.
func (m *member) reset(spec AnalyzerSpec, joinRamp bool) {
	m.spec, m.weight, m.removed, m.joinRamp = spec, spec.configuredWeight(), false, joinRamp
	m.br = breaker{state: StateUnknown}
	m.drained, m.ramping, m.batch, m.probeFails, m.nextProbe = false, false, false, 0, time.Time{}
	m.heldAvg, m.capFactor = 0, 1
	m.limiting.Store(false)
	m.why = "added"
	m.removedAt = time.Time{}
	m.streak.Store(0)
	m.tripped.Store(false)
	m.trialOK.Store(0)
}

// reclaimAfter is how long a tombstone's id stays its own before another URL may
// take it over: long enough for every loop to have applied the removal and closed
// its connections, and for a scrape or two to see the removed analyzer's last
// counters before its series go.
const reclaimAfter = 10 * time.Second

// reclaimableLocked returns the id of the tombstone removed longest ago that
// another URL may take (-1: none): removed at least reclaimAfter ago, no probe of
// its own running, and nothing held for it in any loop (retired). Ids are only
// reclaimed once all maxAnalyzers are taken, so a removed analyzer keeps its id
// (and its counters) as long as there is room. A service discovered through DNS
// whose pods come and go with new addresses would otherwise run out of ids.
func (c *controller) reclaimableLocked(now time.Time) int {
	best := -1
	for id, m := range c.members {
		if !m.removed || m.probing || now.Sub(m.removedAt) < c.reclaimAfter || c.retired == nil || !c.retired(id) {
			continue
		}
		if best < 0 || m.removedAt.Before(c.members[best].removedAt) {
			best = id
		}
	}
	return best
}

// add makes spec a member (admin API, DNS discovery; by says who, for the log) and
// publishes the View that shows it, unknown. At run time it is probed at once and
// ramps up when the probe answers; atStart (DNS discovery's first answer, before
// Start's first probe round) it is probed with the configured analyzers and, like
// them, takes its full weight when it answers.
func (c *controller) add(spec AnalyzerSpec, by string, atStart bool) (sched.Member, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, err := c.addLocked(spec, !atStart)
	if err != nil {
		return sched.Member{}, err
	}
	now := c.now()
	if m := c.members[id]; !atStart {
		m.nextProbe = now
		c.startProbeLocked(id, m)
	}
	c.publishLocked(now)
	c.log.Info("analyzer added", "analyzer", spec.Name, "url", spec.URL, "weight", spec.Weight, "id", id, "by", by)
	return c.board.Load().Members[id], nil
}

// remove makes the analyzer called name a tombstone (state removed): it takes
// nothing new from the View that is published here on, the shards move its queued
// packets to the others when they apply that View, its probes stop. It returns its
// id and how it was before.
func (c *controller) remove(name, by string) (int, sched.Member, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.lookupLocked(name)
	if id < 0 {
		return -1, sched.Member{}, fmt.Errorf("remove %q: %w", name, errNoMember)
	}
	before := c.board.Load().Members[id]
	m := c.members[id]
	now := c.now()
	m.removed, m.ramping, m.why, m.removedAt = true, false, "removed", now
	c.publishLocked(now)
	c.log.Info("analyzer removed", "analyzer", name, "url", m.spec.URL, "was", before.State.String(), "id", id, "by", by)
	return id, before, nil
}

// lookup returns the id of the analyzer called name, -1 when there is none (removed
// ones are none).
func (c *controller) lookup(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lookupLocked(name)
}

func (c *controller) lookupLocked(name string) int {
	for id, m := range c.members {
		if !m.removed && m.spec.Name == name {
			return id
		}
	}
	return -1
}

// failed is called by a loop for each failed flight to analyzer id: MAX_FAILURES in
// a row across all loops, or one while trial says the analyzer is half-open, open
// its breaker. One atomic add per failure; it never blocks.
func (c *controller) failed(id int, trial bool) {
	m := c.slots[id]
	if n := m.streak.Add(1); n >= c.maxFailures.Load() || trial {
		m.streak.Store(0)
		m.tripped.Store(true)
		c.nudge()
	}
}

// answered is called by a loop for each flight answered 2xx: it ends the failure
// streak (one atomic load, a store only when there was a streak) and counts a
// trial success while half-open. It never blocks.
func (c *controller) answered(id int, trial bool) {
	m := c.slots[id]
	if m.streak.Load() != 0 {
		m.streak.Store(0)
	}
	if trial {
		m.trialOK.Add(1)
		c.nudge()
	}
}

func (c *controller) nudge() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// firstProbes starts every due probe (at Start: every analyzer, all at once) and
// folds in the answers that arrive within wait, so analyzers that are up are
// eligible when Start returns. It runs before run; later answers reach run.
func (c *controller) firstProbes(wait time.Duration) {
	c.mu.Lock()
	n := 0
	now := c.now()
	for id, m := range c.members {
		if c.probeDue(m, now) {
			c.startProbeLocked(id, m)
			n++
		}
	}
	c.mu.Unlock()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for ; n > 0; n-- {
		select {
		case r := <-c.probes:
			c.probed(r, c.now())
		case <-timer.C:
			return
		}
	}
}

// run is the controller's goroutine.
func (c *controller) run(ctx context.Context) {
	t := time.NewTicker(controlInterval)
	defer t.Stop()
	defer close(c.quit)
	for {
		c.step(c.now())
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case r := <-c.probes:
			c.probed(r, c.now())
		case <-t.C:
		}
	}
}

// step folds in what the loops reported, starts due probes and publishes a View
// when anything an event loop cares about changed (always while a ramp runs, and
// once more when it ends).
func (c *controller) step(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	for id, m := range c.members {
		if m.removed {
			m.tripped.Store(false)
			m.trialOK.Store(0)
			continue
		}
		if m.tripped.Swap(false) && c.tripLocked(m, now, "failing requests") {
			changed = true
		}
		if n := m.trialOK.Swap(0); n > 0 {
			for range n {
				if m.br.success(now) {
					c.rejoinLocked(m, now, "trial requests answered")
					changed = true
					break
				}
			}
		}
		if m.ramping {
			changed = true // the ramp moves
			if now.Sub(m.rejoined) >= c.cfg.SlowStart {
				m.ramping, m.why = false, "slow start over"
			}
		}
		if c.probeDue(m, now) {
			c.startProbeLocked(id, m)
		}
	}
	if c.capacityLocked(now) {
		changed = true
	}
	if changed {
		c.publishLocked(now)
	}
	c.setRetryAfter(c.retryAfterLocked(now))
}

// tripLocked opens m's breaker; it reports whether it was not open already.
func (c *controller) tripLocked(m *member, now time.Time, reason string) bool {
	if !m.br.trip(now, reason, c.cfg.BreakerBackoffMax) {
		return false
	}
	m.ramping, m.why = false, reason+"; trial after "+m.br.delay.Round(time.Millisecond).String()
	m.nextProbe = now // probed as soon as the backoff has passed
	return true
}

// rejoinLocked starts slow start for m (a closed breaker or an undrain).
func (c *controller) rejoinLocked(m *member, now time.Time, why string) {
	m.rejoined, m.ramping, m.why = now, c.cfg.SlowStart > 0, why
	m.streak.Store(0)
}

// probeDue reports whether m's next probe should start: its interval has passed
// and, while its breaker is open, so has the backoff.
func (c *controller) probeDue(m *member, now time.Time) bool {
	if m.removed || m.probing || now.Before(m.nextProbe) {
		return false
	}
	return m.br.state != StateOpen || m.br.due(now)
}

func (c *controller) startProbeLocked(id int, m *member) {
	m.probing = true
	c.launch(id)
}

// probed folds in one health probe.
func (c *controller) probed(r probeResult, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[r.id]
	m.probing = false
	if m.removed {
		return // removed while the probe ran
	}
	changed := false
	switch {
	case r.ok:
		m.batch = r.batch && c.cfg.BatchMax > 1
		m.probeFails = 0
		if m.br.probeOK(now) {
			m.streak.Store(0)
			m.why = "health probe answered"
			if m.joinRamp && m.br.closed() {
				m.joinRamp = false // added at run time: ramp up like a rejoining analyzer
				c.rejoinLocked(m, now, "added; health probe answered")
			}
			changed = true
		}
	case r.status == 0 && (m.br.closed() || m.br.state == StateHalfOpen) && m.probeFails+1 < probeErrorsToOpen:
		m.probeFails++ // one lost probe on a busy machine is not an outage; traffic would show one
	default:
		m.probeFails = 0
		if c.tripLocked(m, now, "health check failed: "+r.err) {
			changed = true
		} else {
			c.log.Debug("analyzer still down", "analyzer", m.spec.Name, "reason", m.br.reason)
		}
	}
	// An analyzer that is down (or was never heard from) is probed at the steady
	// DOWN_PROBE_INTERVAL_MS, so one that returns is back within about that long.
	if m.br.state == StateOpen || m.br.state == StateUnknown {
		m.nextProbe = now.Add(c.cfg.DownProbeInterval)
	} else {
		m.nextProbe = now.Add(c.cfg.HealthInterval)
	}
	if changed || m.batch != c.board.Load().Members[r.id].Batch {
		c.publishLocked(now)
	}
}

// probe is GET /health with a timeout; 2xx is healthy. An analyzer that answers
// "Sluice-Batch: 1" takes batches. It runs on a goroutine of its own and hands its
// result to the controller goroutine.
func (c *controller) probe(id int, base string) {
	r := probeResult{id: id}
	resp, err := c.client.Get(base + "/health")
	if err != nil {
		r.err = err.Error()
	} else {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		r.status = resp.StatusCode
		r.ok = resp.StatusCode/100 == 2
		r.batch = resp.Header.Get("Sluice-Batch") == "1"
		if !r.ok {
			r.err = "status " + resp.Status
		}
	}
	select {
	case c.probes <- r:
	case <-c.quit: // shut down: nobody reads probes any more (more in flight than it holds)
	}
}

func (c *controller) publish(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.publishLocked(now)
}

// publishLocked builds and publishes the View, and logs each analyzer whose state
// changed since the last one (so every state change is logged exactly once).
// Weights are normalised over all configured analyzers (not only the healthy ones),
// so shares among survivors keep their ratios and /metrics-json shows what was
// configured.
func (c *controller) publishLocked(now time.Time) {
	sum := 0.0
	for _, m := range c.members {
		if !m.removed {
			sum += m.weight
		}
	}
	v := &sched.View{Members: make([]sched.Member, len(c.members))}
	for i, m := range c.members {
		w := m.weight / sum
		mv := sched.Member{Name: m.spec.Name, URL: m.spec.URL, Addr: m.spec.Addr, Configured: m.weight, Weight: w, Batch: m.batch}
		switch {
		case m.removed:
			mv.State, mv.Reason, mv.Weight, mv.Configured, mv.Batch = StateRemoved, "removed", 0, 0, false
		case m.drained:
			mv.State, mv.Reason = StateDrained, "drained by operator"
		case m.br.state == StateUnknown:
			mv.State, mv.Reason = StateUnknown, "no health probe answered yet"
		case m.br.state == StateOpen:
			mv.State, mv.Reason = StateOpen, m.br.reason
		case m.br.state == StateHalfOpen:
			mv.State, mv.Reason = StateHalfOpen, "trial after: "+m.br.reason
			mv.Effective = w * trialFraction
		case m.ramping:
			mv.State = StateSlowStart
			mv.Effective = sched.Ramp(w, now.Sub(m.rejoined), c.cfg.SlowStart, slowStartFloor) * m.capFactor
		default:
			mv.State, mv.Effective = StateHealthy, w*m.capFactor // capFactor: 1 unless ROUTING=weighted-capacity lowered it
		}
		mv.Eligible = mv.Effective > 0
		v.Members[i] = mv
		if mv.State != m.shown {
			level := slog.LevelInfo
			if mv.State == StateOpen {
				level = slog.LevelWarn
			}
			c.log.Log(context.Background(), level, "analyzer state changed", "analyzer", m.spec.Name, "from", m.shown.String(), "to", mv.State.String(), "reason", m.why)
			m.shown = mv.State
		}
	}
	c.board.Publish(v)
	if c.published != nil {
		c.published()
	}
}

const (
	trialFraction  = 0.05 // weight share of a half-open analyzer's trial traffic
	slowStartFloor = 0.1  // slow start begins at this fraction of the weight
)

// retryAfterLocked is the Retry-After for 503s. With nowhere to send, the whole
// seconds until the soonest analyzer that is not drained can be back: its next
// probe (and, while its backoff runs, the end of the backoff), 1 while a probe is
// under way or none was answered yet. It only counts down between probes and is
// never below 1. Otherwise how long the queued packets take to drain at the
// recent delivery rate.
func (c *controller) retryAfterLocked(now time.Time) int32 {
	v := c.board.Load()
	soonest := time.Duration(-1)
	for i, m := range c.members {
		if v.Members[i].Eligible {
			return c.drainSeconds()
		}
		if m.drained || m.removed {
			continue
		}
		left := time.Duration(0)
		if m.br.state == StateOpen && !m.probing {
			next := m.nextProbe
			if r := m.br.readyAt(); r.After(next) {
				next = r
			}
			left = next.Sub(now)
		}
		if soonest < 0 || left < soonest {
			soonest = left
		}
	}
	if soonest < 0 {
		return c.drainSeconds() // everything drained: no probe brings one back
	}
	return int32(max((soonest+time.Second-1)/time.Second, 1))
}

// breakerCounts is what the metrics read of one analyzer's breaker.
type breakerCounts struct {
	opens  int64 // times opened
	trials int64 // times moved to half-open
}

// breakerCounts copies every breaker's counters, in member order.
func (c *controller) breakerCounts() []breakerCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]breakerCounts, len(c.members))
	for i, m := range c.members {
		out[i] = breakerCounts{opens: m.br.opens, trials: m.br.trials}
	}
	return out
}

// setDrained takes the analyzer called name out of (or back into) rotation. It
// looks the name up and acts under one hold of c.mu, so an analyzer removed (or
// removed and added again under the same name) in between is never acted on by
// a stale id. It returns the member as published before and after.
func (c *controller) setDrained(name string, drained bool) (before, after sched.Member, err error) {
	return c.change(name, func(m *member, now time.Time) bool {
		if m.drained == drained {
			return false
		}
		m.drained, m.why = drained, "drained by operator"
		if !drained {
			c.rejoinLocked(m, now, "undrained by operator")
		}
		return true
	})
}

// setWeight changes the configured weight of the analyzer called name at run
// time, looked up and set under one hold of c.mu (see setDrained).
func (c *controller) setWeight(name string, w float64) (before, after sched.Member, err error) {
	return c.change(name, func(m *member, _ time.Time) bool {
		m.weight = w
		return true
	})
}

// change applies f to the live (not removed) analyzer called name under c.mu and
// publishes a View when f reports a change. errNoMember when there is none.
func (c *controller) change(name string, f func(m *member, now time.Time) bool) (before, after sched.Member, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.lookupLocked(name)
	if id < 0 {
		return before, after, fmt.Errorf("analyzer %q: %w", name, errNoMember)
	}
	before = c.board.Load().Members[id]
	now := c.now()
	if f(c.members[id], now) {
		c.publishLocked(now)
	}
	return before, c.board.Load().Members[id], nil
}
