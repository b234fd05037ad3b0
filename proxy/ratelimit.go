package proxy

import (
	"sync/atomic"
)

// emitterLimit is the optional per-emitter rate limit (EMITTER_RATE_LIMIT packets/s
// with a burst of EMITTER_BURST), keyed by the packet's emitter_id.
//
// It is a generic cell rate algorithm over a fixed table of slots addressed by a
// hash of the id: each slot holds one atomic "theoretical arrival time", so a check
// is one load and one compare-and-swap, no lock, no allocation, and memory does not
// grow with the number of emitters. Two emitters whose ids share a slot share a
// budget; with 65536 slots that is rare, and it only ever makes the limit stricter.
type emitterLimit struct {
	interval int64 // ns between packets at the limit
	slack    int64 // burst × interval
	slots    []paddedTAT
}

type paddedTAT struct {
	tat atomic.Int64
	_   [56]byte // one slot per cache line: emitters on different loops do not share lines
}

const emitterSlots = 1 << 16

func newEmitterLimit(perSecond float64, burst int) *emitterLimit {
	if perSecond <= 0 {
		return nil
	}
	interval := int64(1e9 / perSecond)
	return &emitterLimit{interval: interval, slack: int64(max(burst, 1)) * interval, slots: make([]paddedTAT, emitterSlots)}
}

// allow charges one packet to the emitter id at time now (ns). When the emitter is
// over its rate it returns false and how many seconds to wait.
func (l *emitterLimit) allow(id []byte, now int64) (bool, int32) {
	slot := &l.slots[fnv1a(id)&(emitterSlots-1)].tat
	for {
		tat := slot.Load()
		next := max(tat, now) + l.interval
		if wait := next - now - l.slack; wait > 0 {
			return false, int32(wait/1e9) + 1
		}
		if slot.CompareAndSwap(tat, next) {
			return true, 0
		}
	}
}

func fnv1a(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}
