package proxy

import (
	"errors"
	"strconv"
	"strings"

	"github.com/sluicelog/sluice/codec"
)

// Priority shedding (SHED_BELOW, SHED_AT; issue #19): once the backlog passes
// SHED_AT of its bound, a packet whose most severe message is below SHED_BELOW is
// answered 503 + Retry-After, while packets holding a message at SHED_BELOW or
// above are accepted up to the hard bound (INGEST_BUFFER_SIZE). Off (SHED_BELOW
// empty), the per-packet cost is one atomic load (a plain load on amd64) of
// knobs.shedBelow: the body is validated by ValidatePacket exactly as before.

// ShedLevel is SHED_BELOW: the least severe level that is never shed, or ShedOff
// (the zero value, so a Config without it sheds nothing). A level l is
// ShedLevel(l+1) (shedLevelOf); codec.LevelOther is not a valid setting.
type ShedLevel uint8

// ShedOff is SHED_BELOW unset: no packet is shed for its level.
const ShedOff ShedLevel = 0

// shedLevelOf is the ShedLevel of a codec level, for comparing a packet's most
// severe level with SHED_BELOW. LevelOther maps above every valid setting.
func shedLevelOf(l codec.Level) ShedLevel { return ShedLevel(l) + 1 }

// String is the level's name (SHED_BELOW's value as written in upper case), "" when off.
func (l ShedLevel) String() string {
	switch {
	case l == ShedOff:
		return ""
	case l <= shedLevelOf(codec.LevelFatal):
		return codec.Level(l - 1).String()
	}
	return "ShedLevel(" + strconv.Itoa(int(l)) + ")"
}

// parseShedLevel reads SHED_BELOW: empty is off, else a level name TRACE..FATAL in
// any case (WARNING and ERR as codec.ClassifyLevel reads them).
func parseShedLevel(v string) (ShedLevel, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return ShedOff, nil
	}
	if l := codec.ClassifyLevel([]byte(v)); l != codec.LevelOther {
		return shedLevelOf(l), nil
	}
	return ShedOff, errors.New("want TRACE, DEBUG, INFO, WARN, ERROR or FATAL (empty: off)")
}

// shedScale is the fixed point of knobs.shedAt: SHED_AT × 2^16, so the per-packet
// comparison is integer.
const shedScale = 1 << 16

// shedAtFixed is SHED_AT in knobs.shedAt's fixed point.
// At least 1: a SHED_AT so small it rounds to 0 would shed with nothing held.
func shedAtFixed(x float64) int64 { return max(int64(x*shedScale), 1) }

// parseShedAt reads SHED_AT: a fraction in (0, 1].
func parseShedAt(v string) (float64, error) {
	x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || x != x || x <= 0 || x > 1 {
		return 0, errors.New("want a fraction greater than 0 and at most 1, e.g. 0.8")
	}
	return x, nil
}

// validate is the ingest path's validation: ValidatePacket while shedding is off;
// with SHED_BELOW set, ValidatePacketLevels, which tallies the messages by level in
// the same single pass (no second scan of the body), and the packet's most severe
// level. top is codec.LevelOther when shedding is off or a message's level is not
// one of the named ones: what cannot be ranked is never shed.
func (s *shard) validate(body []byte, pkt *codec.Packet) (top codec.Level, err error) {
	if ShedLevel(s.srv.knobs.shedBelow.Load()) == ShedOff {
		return codec.LevelOther, codec.ValidatePacket(body, pkt)
	}
	var lv codec.Levels
	if err := codec.ValidatePacketLevels(body, pkt, &lv); err != nil {
		return codec.LevelOther, err
	}
	return mostSevere(&lv), nil
}

// mostSevere is the most severe level with a message in lv; LevelOther (above
// FATAL in codec's order) when any message's level is unknown, TRACE for none.
func mostSevere(lv *codec.Levels) codec.Level {
	for l := codec.NumLevels - 1; l > 0; l-- {
		if lv[l] > 0 {
			return codec.Level(l)
		}
	}
	return codec.LevelTrace
}

// shed reports whether a packet whose most severe level is top is refused for its
// level: SHED_BELOW is set, top is below it, and the backlog has passed SHED_AT of
// its bound. Refusals are counted by level and logged (rate-limited) here.
func (s *shard) shed(top codec.Level) bool {
	below := ShedLevel(s.srv.knobs.shedBelow.Load())
	if below == ShedOff || shedLevelOf(top) >= below {
		return false
	}
	used, bound := s.srv.backlog()
	if used*shedScale < bound*s.srv.knobs.shedAt.Load() {
		return false
	}
	s.stats.Shed[top]++
	s.stats.Rejected[rejectShed]++
	if ok, held := s.srv.shedLog.allow(); ok {
		s.srv.log.Warn("shedding packets below SHED_BELOW", "shed_below", below.String(), "level", top.String(),
			"backlog", used, "bound", bound, "suppressed", held)
	}
	return true
}

// backlog is what shedding measures and its bound: packets held (queued and in
// flight, all loops) against INGEST_BUFFER_SIZE, or, with a spool, its bytes
// against SPOOL_MAX_BYTES when those are the fuller of the two: either bound
// refuses first, so shedding starts when either passes SHED_AT. Two or three
// atomic loads; the products stay far below overflow (bytes ≤ 2^40 × packets ≤ 2^20).
func (srv *Server) backlog() (used, bound int64) {
	used, bound = srv.budget.held.Load(), srv.budget.ingestLimit.Load()
	if sp := srv.spool; sp != nil {
		if b, limit := sp.Bytes(), srv.cfg.SpoolMaxBytes; b*bound > used*limit {
			return b, limit
		}
	}
	return used, bound
}
