package proxy

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Capacity-aware routing (ROUTING=weighted-capacity, CAPACITY_MIN_SHARE; issue
// #19) and the limiting analyzer (both modes). Both run on the controller's
// goroutine, once per step (controlInterval), from the budget's per-analyzer
// counts; the loops pay nothing for them beyond applying a new View.
//
// The signal is each analyzer's held packets (queued and in flight, all loops:
// budget.dests[i].n) over its effective weight. With the split the scheduler keeps,
// analyzer i takes λ·e_i/Σe packets per second, so by Little's law
// held_i / e_i = λ/Σe · T_i, where T_i is the time a packet spends held for i
// (queueing plus answer latency): the ratio of two analyzers' loads is the ratio of
// their delays, whatever weights they have. An analyzer whose load is more than
// capacityOutOfLine times the median of the others' (and that holds at least
// capacityMinHeld packets, so a light load's noise decides nothing) has its capacity
// factor cut by capacityCut per step, never below CAPACITY_MIN_SHARE; once its load
// is back within capacityBackIn of the others' (or it holds almost nothing) the
// factor grows by capacityStep per step back to 1. Its effective weight in the View
// is its weight × the factor, so shards apply it in sync() like a slow-start step.

// RoutingMode is ROUTING.
type RoutingMode uint8

const (
	RoutingWeighted         RoutingMode = iota // the exact message-weighted split (default)
	RoutingWeightedCapacity                    // weights lowered for analyzers whose delay is out of line
	numRoutingModes
)

var routingNames = [numRoutingModes]string{"weighted", "weighted-capacity"}

func (m RoutingMode) String() string {
	if m < numRoutingModes {
		return routingNames[m]
	}
	return "RoutingMode(" + strconv.Itoa(int(m)) + ")"
}

func parseRouting(v string) (RoutingMode, error) {
	v = strings.ToLower(strings.TrimSpace(v))
	for i, n := range routingNames {
		if v == n {
			return RoutingMode(i), nil
		}
	}
	return RoutingWeighted, errors.New("want weighted or weighted-capacity")
}

func parseMinShare(v string) (float64, error) {
	x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || x != x || x <= 0 || x > 1 {
		return 0, errors.New("want a fraction greater than 0 and at most 1, e.g. 0.5")
	}
	return x, nil
}

const (
	capacityOutOfLine = 2.0  // load over the others' median that cuts
	capacityBackIn    = 1.25 // load under the others' median that restores
	capacityMinHeld   = 32   // packets held before an analyzer's load is judged
	capacityCut       = 0.8  // factor × this per step while out of line
	capacityStep      = 0.05 // factor + this per step once back in line
	capacitySmooth    = 0.3  // weight of the newest held count in its moving average

	// limitingBuffer: the ingest buffer counts as filling at this fraction of
	// INGEST_BUFFER_SIZE.
	limitingBuffer = 0.9
)

// capacityLocked runs once per controller step: it smooths each analyzer's held
// packets, marks the limiting analyzer (both modes) and, with
// ROUTING=weighted-capacity, moves the capacity factors. It reports whether a
// factor changed (a View must be published). Without a budget (controller tests)
// it does nothing.
func (c *controller) capacityLocked(now time.Time) bool {
	b := c.budget
	v := c.board.Load()
	if b == nil || v == nil {
		return false
	}
	held, limit := b.held.Load(), b.ingestLimit.Load()
	for id, m := range c.members {
		n := float64(b.dests[id].n.Load())
		m.heldAvg += capacitySmooth * (n - m.heldAvg)
		limiting := !m.removed && n*2 > float64(held) && (float64(held) >= limitingBuffer*float64(limit) || b.full(id))
		if limiting && !m.limiting.Load() {
			if ok, suppressed := c.limitLog.allow(); ok {
				c.log.Warn("analyzer limits the distributor: its backlog fills the buffer", "analyzer", m.spec.Name,
					"held", int64(n), "buffer_held", held, "buffer", limit, "routing", c.cfg.Routing.String(), "suppressed", suppressed)
			}
		}
		m.limiting.Store(limiting)
	}
	changed := false
	if c.cfg.Routing != RoutingWeightedCapacity {
		for _, m := range c.members {
			if m.capFactor != 1 {
				m.capFactor, changed = 1, true
			}
		}
		return changed
	}
	// load_i = held_i / e_i over the analyzers that take packets now.
	loads := c.loads[:0]
	for id, m := range c.members {
		m.capLoad = -1
		if id < len(v.Members) && v.Members[id].Eligible && v.Members[id].State.Healthy() {
			m.capLoad = (m.heldAvg + 1) / v.Members[id].Effective
			loads = append(loads, m.capLoad)
		}
	}
	c.loads = loads
	floor := c.cfg.CapacityMinShare
	for _, m := range c.members {
		if m.capLoad < 0 {
			continue
		}
		ref, ok := medianOthers(loads, m.capLoad)
		f := max(m.capFactor, floor) // a CAPACITY_MIN_SHARE raised by a reload applies at once
		switch {
		case !ok:
			f = 1 // alone: nobody to compare with
		case m.heldAvg >= capacityMinHeld && m.capLoad > capacityOutOfLine*ref:
			f = max(f*capacityCut, floor)
		case m.capLoad < capacityBackIn*ref || m.heldAvg < capacityMinHeld/4:
			f = min(f+capacityStep, 1)
		}
		if f != m.capFactor {
			m.capFactor, changed = f, true
		}
	}
	return changed
}

// medianOthers is the median of loads without one occurrence of own; false when
// there is no other.
func medianOthers(loads []float64, own float64) (float64, bool) {
	var buf [16]float64
	others := buf[:0]
	skipped := false
	for _, l := range loads {
		if !skipped && l == own {
			skipped = true
			continue
		}
		others = append(others, l)
	}
	if len(others) == 0 {
		return 0, false
	}
	slices.Sort(others)
	n := len(others)
	if n%2 == 1 {
		return others[n/2], true
	}
	return (others[n/2-1] + others[n/2]) / 2, true
}

// limiting reports whether analyzer id's backlog is what fills the buffer (set by
// the last step). Safe on any goroutine for an id a published View showed.
func (c *controller) limiting(id int) bool { return c.slots[id].limiting.Load() }
