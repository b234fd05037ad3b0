package spool

import (
	"math/bits"
	"os"
)

// segment is one segment file. Its fields are in three groups by owner.
type segment struct {
	id      uint64
	path    string // <Dir>/<16 hex id>.seg, set at creation (no I/O)
	ackPath string

	// The owning loop's (the Log that appended to it or adopted it):
	owner     *Log
	records   uint32   // indexes handed out (Append) or the index bound (recovered)
	committed uint32   // records below this index are written (their group completed)
	bytes     int64    // bytes appended, including groups not yet written (rotation)
	done      []uint64 // bit i set: record i is settled, or needs no settling (rolled back, absent)
	open      int      // records not settled: the segment goes once it is sealed and open is 0
	sealed    bool     // no more appends
	deleted   bool     // deletion handed to the writer; done is nil from then on

	// The owning log's writer goroutine's (before a writer exists: Open's):
	f       *os.File // the segment file, open while the log may still append to it
	af      *os.File // the ack file, opened at the first ack
	ackSize int64    // the ack file's size: a failed append is cut back to it
	size    int64    // bytes on disk
	created bool     // the file exists (counted in Spool.segments)
	pre     int64    // size before the group being written (for the cut after a failure)
	dirty   bool     // written since the last fdatasync (SyncInterval)
	dying   bool     // deleted by the group being written: its acks are not worth writing
}

// chunk is a run of records of one segment in a group's data.
type chunk struct {
	seg      *segment
	off, end int    // the run's bytes in group.data
	first    uint32 // index of its first record
	n        uint32 // records in it
}

// ackRef is one settled record to append to its segment's ack file.
type ackRef struct {
	seg *segment
	idx uint32
}

// group is what a Log hands its writer: records, acks and deletions, written in that
// order. A Log has two and swaps them, so the steady state allocates nothing: the
// loop fills one while the writer writes the other.
type group struct {
	num     uint64
	data    []byte
	chunks  []chunk
	acks    []ackRef
	deletes []*segment
	records int
}

func (g *group) empty() bool {
	return len(g.chunks) == 0 && len(g.acks) == 0 && len(g.deletes) == 0
}

func (g *group) reset() {
	g.data = g.data[:0]
	clear(g.chunks)
	g.chunks = g.chunks[:0]
	clear(g.acks)
	g.acks = g.acks[:0]
	clear(g.deletes)
	g.deletes = g.deletes[:0]
	g.records = 0
}

// Log is one event loop's part of the spool. Every method is for the loop
// goroutine only.
type Log struct {
	sp *Spool
	w  *writer

	// The loop's:
	cur          *segment // segment being appended to; nil or sealed: the next Append starts one
	fill         *group   // group being filled
	spare        *group   // the other group: idle, or in flight while busy
	busy         bool     // spare is with the writer (set at hand-off, cleared in Completed)
	group        uint64   // number of the group being filled
	pendingDelta int64    // change of Spool.pending not yet published (one atomic per Flush)
	freeBits     [][]uint64
}

// Append copies body into the group being filled and returns its Ref. It does not
// allocate once buffers have grown; no I/O. A body over MaxRecordBytes is a bug of
// the caller (packets are limited far below it) and panics.
func (l *Log) Append(body []byte) Ref {
	if len(body) > MaxRecordBytes {
		panic("spool: record over MaxRecordBytes")
	}
	need := int64(headerSize + len(body))
	s := l.cur
	if s == nil || s.sealed || (s.bytes > 0 && s.bytes+need > l.sp.opt.SegmentBytes) || s.records == 1<<32-1 {
		s = l.rotate()
	}
	idx := s.records
	s.records++
	s.bytes += need
	s.open++
	if int(idx>>6) >= len(s.done) {
		s.done = append(s.done, 0)
	}
	g := l.fill
	if n := len(g.chunks); n == 0 || g.chunks[n-1].seg != s {
		g.chunks = append(g.chunks, chunk{seg: s, off: len(g.data), end: len(g.data), first: idx})
	}
	g.data = appendRecordNoCRC(g.data, idx, body)
	c := &g.chunks[len(g.chunks)-1]
	c.end = len(g.data)
	c.n++
	g.records++
	return Ref{seg: s, idx: idx}
}

// rotate seals the current segment and starts the next one (no I/O: the writer
// creates the file with the segment's first group).
func (l *Log) rotate() *segment {
	if l.cur != nil {
		l.seal(l.cur)
	}
	id := l.sp.nextID.Add(1) - 1
	name := segName(id)
	s := &segment{
		id:      id,
		path:    l.sp.opt.Dir + "/" + name + ".seg",
		ackPath: l.sp.opt.Dir + "/" + name + ".ack",
		owner:   l,
	}
	if n := len(l.freeBits); n > 0 {
		s.done = l.freeBits[n-1][:0]
		l.freeBits[n-1] = nil
		l.freeBits = l.freeBits[:n-1]
	}
	l.cur = s
	return s
}

// seal marks s as taking no more records and deletes it if nothing in it is
// waiting (also when it was sealed before: a rollback may have emptied it).
func (l *Log) seal(s *segment) {
	s.sealed = true
	if l.cur == s {
		l.cur = nil
	}
	l.maybeDelete(s)
}

func (l *Log) maybeDelete(s *segment) {
	if !s.sealed || s.open != 0 || s.deleted {
		return
	}
	s.deleted = true
	if cap(s.done) > 0 && len(l.freeBits) < 4 {
		clear(s.done)
		l.freeBits = append(l.freeBits, s.done[:0])
	}
	s.done = nil
	l.fill.deletes = append(l.fill.deletes, s)
}

// Group is the number of the group being filled: Append's records go out with it.
func (l *Log) Group() uint64 { return l.group }

// Flush hands the group being filled (and the acks gathered) to the writer if the
// writer is idle and there is anything to hand. Call it at the end of every loop
// event and after Completed; it costs a branch when there is nothing to do.
func (l *Log) Flush() {
	if l.pendingDelta != 0 {
		l.sp.pending.Add(l.pendingDelta)
		l.pendingDelta = 0
	}
	if l.busy || l.fill.empty() {
		return
	}
	g := l.fill
	g.num = l.group
	l.group++
	l.busy = true
	l.fill, l.spare = l.spare, g
	l.w.ch <- g // never blocks: capacity 1 and at most one group in flight
}

// Completed takes a Completion back on the loop: the writer is idle again. On an
// error the segment being written is sealed and the next Append starts a new one.
func (l *Log) Completed(c Completion) {
	g := l.spare
	l.busy = false
	if c.Err == nil {
		for i := range g.chunks {
			ch := &g.chunks[i]
			s := ch.seg
			end := ch.first + ch.n
			if end > s.committed {
				s.committed = end
			}
			if s.done != nil {
				// Records settled while their group was in flight are not pending.
				l.pendingDelta += int64(ch.n) - int64(countBits(s.done, ch.first, end))
			}
		}
	} else {
		// The writer cut the group's records off again: they will never be read
		// back, so they need no settling. Their segments take no more records.
		for i := range g.chunks {
			ch := &g.chunks[i]
			s := ch.seg
			if s.done != nil {
				for j := ch.first; j < ch.first+ch.n; j++ {
					if m := uint64(1) << (j & 63); s.done[j>>6]&m == 0 {
						s.done[j>>6] |= m
						s.open--
					}
				}
			}
			l.seal(s)
		}
		if l.cur != nil {
			l.seal(l.cur)
		}
	}
	g.reset()
}

// countBits counts the set bits of b in [from, to).
func countBits(b []uint64, from, to uint32) int {
	n := 0
	for from < to {
		w := from >> 6
		lo := from & 63
		hi := uint32(64)
		if w == (to-1)>>6 {
			hi = (to-1)&63 + 1
		}
		mask := ^uint64(0) << lo
		if hi < 64 {
			mask &= (uint64(1) << hi) - 1
		}
		n += bits.OnesCount64(b[w] & mask)
		from = (w + 1) << 6
	}
	return n
}

// Settle records that r's packet has left the distributor (delivered, or given up
// and counted as dropped). The ack is written with a later group; the segment is
// deleted once it is sealed and every record in it is settled. r must come from
// this log's Append or from a segment this log adopted; settling a record twice,
// or a record whose write failed, does nothing.
func (l *Log) Settle(r Ref) {
	s := r.seg
	if s == nil {
		return
	}
	w := r.idx >> 6
	if int(w) >= len(s.done) {
		return // segment deleted already
	}
	m := uint64(1) << (r.idx & 63)
	if s.done[w]&m != 0 {
		return
	}
	s.done[w] |= m
	s.open--
	if r.idx < s.committed {
		l.pendingDelta--
	}
	l.fill.acks = append(l.fill.acks, ackRef{seg: s, idx: r.idx})
	l.maybeDelete(s)
}

// Adopt makes rec's segment this log's: the acks of its records go out with this
// log's groups, and this log deletes it once every record is settled. No I/O.
func (l *Log) Adopt(rec *Recovered) {
	rec.seg.owner = l
}

const hexDigits = "0123456789abcdef"

// segName is the 16-hex-digit file name stem of segment id.
func segName(id uint64) string {
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = hexDigits[id&15]
		id >>= 4
	}
	return string(b[:])
}
