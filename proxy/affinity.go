package proxy

import (
	"errors"
	"strconv"
	"strings"

	"github.com/sluicelog/sluice/sched"
)

// Emitter affinity (AFFINITY=emitter_id, AFFINITY_LOAD_BOUND; issue #19): every
// packet of one emitter_id goes to the same analyzer, by sched.Affinity (consistent
// hashing with bounded loads over message counts). Packets without an emitter_id
// are routed by the credit scheduler as without affinity. Off, the per-packet cost
// is one nil check in route.

// AffinityMode is AFFINITY.
type AffinityMode uint8

const (
	AffinityOff       AffinityMode = iota // the message-weighted split alone (default)
	AffinityEmitterID                     // an emitter's packets stay on one analyzer
	numAffinityModes
)

var affinityNames = [numAffinityModes]string{"", "emitter_id"}

func (m AffinityMode) String() string {
	if m < numAffinityModes {
		return affinityNames[m]
	}
	return "AffinityMode(" + strconv.Itoa(int(m)) + ")"
}

func parseAffinity(v string) (AffinityMode, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "off", "none":
		return AffinityOff, nil
	case "emitter_id":
		return AffinityEmitterID, nil
	}
	return AffinityOff, errors.New("want emitter_id (empty: off)")
}

func parseLoadBound(v string) (float64, error) {
	x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || x != x || x < 1 || x > 100 {
		return 0, errors.New("want a number from 1 to 100, e.g. 1.25")
	}
	return x, nil
}

// affinityTable is how many emitters each event loop remembers (24 bytes each);
// beyond it the least recently seen in a probe window is forgotten, and placed
// again (most likely on the same analyzer) when it sends again.
const affinityTable = 1 << 15

// newAffinity is the shard's affinity router, nil when AFFINITY is off.
func newAffinity(cfg *Config) *sched.Affinity {
	if cfg.Affinity != AffinityEmitterID {
		return nil
	}
	return sched.NewAffinity(0, cfg.AffinityLoadBound, affinityTable)
}

// setAffinityWeights gives the affinity router the view's effective weights (its
// bound) and configured weights (its ring). Runs in sync, after s.weights is set.
func (s *shard) setAffinityWeights(v *sched.View) {
	s.confWeights = s.confWeights[:0]
	for i := range v.Members {
		s.confWeights = append(s.confWeights, v.Members[i].Weight)
	}
	s.aff.SetWeights(s.weights, s.confWeights)
}

// route picks the analyzer for a packet of msgs messages among those not in
// s.full, -1 when none can take it. With AFFINITY on and an emitter_id, the
// emitter's analyzer (a full one is passed over: the emitter moves); else the
// credit scheduler: with SPILL a full analyzer is skipped (it keeps gaining
// credit, up to the cap, and catches up when its queue drains), without it the
// emitter waits when it is the full one's turn.
func (s *shard) route(msgs int) int {
	if s.aff != nil && len(s.emitter) > 0 {
		a := s.aff.Pick(sched.HashEmitter(s.emitter), msgs, &s.full)
		s.stats.AffinityMoves = s.aff.Moves
		return a
	}
	if s.srv.knobs.spill.Load() {
		return s.cred.Pick(msgs, &s.full)
	}
	a := s.cred.Peek(msgs)
	if s.full.Has(a) {
		return -1 // strict: its turn, its queue is full, so the emitter waits
	}
	s.cred.Pick(msgs, nil)
	return a
}
