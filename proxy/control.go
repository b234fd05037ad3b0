package proxy

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicelog/sluice/sched"
)

// controller owns everything about analyzers that is not per packet: breakers,
// health probes, slow start, operator overrides. It runs on one goroutine and
// speaks to the loops only by publishing Views; loops speak to it through trip and
// success, which set a flag and nudge it without blocking.
type controller struct {
	srv     *Server
	mu      sync.Mutex // guards members against admin calls
	members []*member
	wake    chan struct{}
	probes  chan probeResult
	client  *http.Client
}

// member is the controller's record of one analyzer.
type member struct {
	spec       AnalyzerSpec
	weight     float64 // configured (or operator-set) weight before normalisation
	br         breaker
	rejoined   time.Time // when it last closed, for slow start
	drained    bool
	batch      bool
	probing    bool
	probeFails int // probes in a row without an answer
	nextProbe  time.Time
	tripped    atomic.Bool  // set by a loop: MAX_FAILURES in a row
	trialOK    atomic.Int32 // set by loops: trial packets answered while half-open
}

// probeErrorsToOpen is how many probes in a row must fail to connect or time out
// before they alone open a breaker. An analyzer that answers /health with an error
// status is taken out at once: it said so itself.
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

func newController(srv *Server) *controller {
	c := &controller{
		srv:    srv,
		wake:   make(chan struct{}, 1),
		probes: make(chan probeResult, len(srv.cfg.Analyzers)),
		client: &http.Client{
			Timeout:   max(srv.cfg.SenderTimeout, 2*time.Second),
			Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true},
		},
	}
	now := time.Now()
	for _, a := range srv.cfg.Analyzers {
		m := &member{spec: a, weight: a.Weight, nextProbe: now}
		m.br.state = StateHealthy
		c.members = append(c.members, m)
	}
	return c
}

// trip is called by a loop when an analyzer failed MAX_FAILURES times in a row on
// it (or once during its trial). It never blocks.
func (c *controller) trip(id int) {
	c.members[id].tripped.Store(true)
	c.nudge()
}

// success is called by a loop for each trial packet answered 2xx while half-open.
func (c *controller) success(id int) {
	c.members[id].trialOK.Add(1)
	c.nudge()
}

func (c *controller) nudge() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// run is the controller's goroutine.
func (c *controller) run(ctx context.Context) {
	t := time.NewTicker(controlInterval)
	defer t.Stop()
	c.publish(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case r := <-c.probes:
			c.probed(r)
		case <-t.C:
		}
		c.step(time.Now())
	}
}

// step folds in what the loops reported, starts due probes and publishes a View
// when anything an event loop cares about changed (always while a ramp runs).
func (c *controller) step(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	for id, m := range c.members {
		if m.tripped.Swap(false) && m.br.trip(now, "failing requests", c.srv.cfg.BreakerBackoffMax) {
			c.srv.log.Warn("analyzer breaker opened", "analyzer", m.spec.Name, "reason", m.br.reason, "backoff", m.br.delay.String())
			changed = true
		}
		if n := m.trialOK.Swap(0); n > 0 {
			for range n {
				if m.br.success(now) {
					m.rejoined = now
					c.srv.log.Info("analyzer breaker closed", "analyzer", m.spec.Name, "slow_start", c.srv.cfg.SlowStart.String())
					changed = true
					break
				}
			}
		}
		if m.br.state == StateHealthy && now.Sub(m.rejoined) < c.srv.cfg.SlowStart {
			changed = true // the ramp moves
		}
		if !m.probing && (now.After(m.nextProbe) || m.br.due(now)) {
			m.probing = true
			m.nextProbe = now.Add(c.srv.cfg.HealthInterval)
			go c.probe(id, m.spec.URL)
		}
	}
	if changed {
		c.publishLocked(now)
	}
	c.srv.updateRetryAfter(c.retryAfterLocked(now))
}

// probed folds in one health probe.
func (c *controller) probed(r probeResult) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[r.id]
	m.probing = false
	if r.ok {
		m.batch = r.batch && c.srv.cfg.BatchMax > 1
	}
	changed := false
	if r.ok || r.status != 0 {
		m.probeFails = 0
	} else if m.probeFails++; m.probeFails < probeErrorsToOpen && m.br.state != StateOpen {
		return // one lost probe on a busy machine is not an outage; traffic would show one
	}
	if !r.ok && m.br.state == StateOpen {
		m.br.rearm(now, "health check failed: "+r.err, c.srv.cfg.BreakerBackoffMax)
		changed = true
	} else if !r.ok {
		if m.br.trip(now, "health check failed: "+r.err, c.srv.cfg.BreakerBackoffMax) {
			c.srv.log.Warn("analyzer breaker opened", "analyzer", m.spec.Name, "reason", m.br.reason, "backoff", m.br.delay.String())
		}
		changed = true
	} else if m.br.probeOK(now) {
		c.srv.log.Info("analyzer half-open: trial traffic", "analyzer", m.spec.Name)
		changed = true
	}
	if changed || m.batch != c.srv.board.Load().Members[r.id].Batch {
		c.publishLocked(now)
	}
}

// probe is GET /health with a timeout; 2xx is healthy. An analyzer that answers
// "Sluice-Batch: 1" takes batches.
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
	c.probes <- r
}

func (c *controller) publish(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.publishLocked(now)
}

// publishLocked builds and publishes the View. Weights are normalised over all
// configured analyzers (not only the healthy ones), so shares among survivors keep
// their ratios and /metrics-json shows what was configured.
func (c *controller) publishLocked(now time.Time) {
	sum := 0.0
	for _, m := range c.members {
		sum += m.weight
	}
	v := &sched.View{Members: make([]sched.Member, len(c.members))}
	for i, m := range c.members {
		w := m.weight / sum
		mv := sched.Member{Name: m.spec.Name, URL: m.spec.URL, Addr: m.spec.Addr, Weight: w, Batch: m.batch}
		switch {
		case m.drained:
			mv.State, mv.Reason = StateDrained, "drained by operator"
		case m.br.state == StateOpen:
			mv.State, mv.Reason = StateOpen, m.br.reason
		case m.br.state == StateHalfOpen:
			mv.State, mv.Reason = StateHalfOpen, "trial after: "+m.br.reason
			mv.Effective = w * trialFraction
		default:
			mv.State, mv.Effective = StateHealthy, w
			if since := now.Sub(m.rejoined); since < c.srv.cfg.SlowStart {
				mv.State = StateSlowStart
				mv.Effective = sched.Ramp(w, since, c.srv.cfg.SlowStart, slowStartFloor)
			}
		}
		mv.Eligible = mv.Effective > 0
		v.Members[i] = mv
	}
	c.srv.board.Publish(v)
}

const (
	trialFraction  = 0.05 // weight share of a half-open analyzer's trial traffic
	slowStartFloor = 0.1  // slow start begins at this fraction of the weight
)

// retryAfterLocked is the Retry-After for 503s: with nowhere to send, the time
// until the next breaker trial; otherwise how long the queued packets take to
// drain at the recent delivery rate. One second at least.
func (c *controller) retryAfterLocked(now time.Time) int32 {
	eligible := false
	var soonest time.Duration = -1
	for _, m := range c.members {
		if !m.drained && m.br.state != StateOpen {
			eligible = true
		}
		if m.br.state == StateOpen {
			left := m.br.delay - now.Sub(m.br.openedAt)
			if soonest < 0 || left < soonest {
				soonest = left
			}
		}
	}
	if !eligible && soonest > 0 {
		return int32(soonest/time.Second) + 1
	}
	return c.srv.drainSeconds()
}

// setDrained takes an analyzer out of (or back into) rotation.
func (c *controller) setDrained(id int, drained bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[id]
	if m.drained == drained {
		return
	}
	m.drained = drained
	if !drained {
		m.rejoined = time.Now()
	}
	c.publishLocked(time.Now())
}

// setWeight changes an analyzer's configured weight at run time.
func (c *controller) setWeight(id int, w float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members[id].weight = w
	c.publishLocked(time.Now())
}
