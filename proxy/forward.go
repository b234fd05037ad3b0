package proxy

// The forwarding path: what leaves an outbox, when (the linger and coalescing
// rules), and how it is framed into requests and written with one Writev per
// connection. Everything here runs on the shard's loop.

import (
	"time"

	"github.com/sluicelog/sluice/codec"
)

// flight is one request on the wire: n parcels (1 unless batched), sent at sent.
type flight struct {
	n     int
	batch bool
	sent  int64
	trial bool // sent while the analyzer was half-open: its answer is a trial result
}

// The batch framing is codec's, taken from codec.AppendBatchRequest itself: a
// batch of two empty packets is its head followed by "[,]", which gives the bytes
// that open a batch, separate its packets and close it. So the bytes that go out
// are the ones codec's tests check, while the packets themselves still go out from
// their buffers with Writev (no second copy). TestShardLingerFill compares a
// written batch with codec.AppendBatchRequest byte for byte.
var batchOpen, batchComma, batchClose = batchFraming()

func batchFraming() (open, comma, close []byte) {
	b := codec.AppendBatchRequest(nil, "", [][]byte{nil, nil})
	body := b[len(codec.AppendBatchHead(nil, "", codec.BatchBodyLen([][]byte{nil, nil}))):]
	if len(body) != 3 {
		panic("proxy: codec's batch framing is not one byte before, between and after packets: " + string(body))
	}
	return body[0:1], body[1:2], body[2:3]
}

// flush writes as much of d's outbox as its open connections' windows take, each
// connection in one Writev. Closed slots are redialled.
func (s *shard) flush(d *dest) {
	if !d.eligible {
		return
	}
	if s.lingering(d) {
		return
	}
	depth := s.srv.cfg.PipelineDepth
	// Coalescing (only when BATCH_LINGER_US is 0): a connection that is still
	// waiting for answers only takes more once a full request's worth is queued;
	// otherwise the packets wait for an idle connection, the next answer, or the
	// tick (10 ms). With a linger, whatever is due goes to every open window.
	busyOK := s.srv.cfg.BatchLinger > 0 || d.outbox.len() >= coalesceMin || s.ticking || s.closing
	for _, u := range d.conns {
		if d.outbox.len() == 0 {
			d.win.limited = false // everything went: the window held nothing back
			return
		}
		if s.windowRoom(d) <= 0 {
			d.win.limited = true // packets wait for the window (window.go): it may grow
			return
		}
		switch u.state {
		case connIdle:
			if s.now >= u.redialAt {
				s.dial(u)
			}
			continue
		case connDialing:
			continue
		}
		if u.closing || (u.flights.len() > 0 && !busyOK) {
			continue
		}
		room := depth - u.flights.len()
		if room <= 0 {
			continue
		}
		s.writeFlights(u, room)
	}
	if d.outbox.len() == 0 {
		d.win.limited = false
	} else if s.windowRoom(d) <= 0 {
		d.win.limited = true
	}
}

// lingering reports whether d's outbox should wait for more packets instead of
// being written now, and if so makes sure the linger timer will flush it. Every
// write to an analyzer wakes it and costs a system call on both sides whether it
// carries one packet or sixty; waiting up to BATCH_LINGER_US for a full batch (or a
// full window of pipelined requests) is what lets both sides pay those once per
// batch under load. The emitter's 202 does not wait: only delivery does. The
// 10 ms tick does not cut a linger short; the linger timer alone ends it.
func (s *shard) lingering(d *dest) bool {
	if s.srv.cfg.BatchLinger <= 0 || s.closing || s.lingerDue {
		return false
	}
	n := d.outbox.len()
	if n == 0 || n >= s.lingerFill(d) {
		return false // nothing to wait for, or a full request's worth
	}
	if s.srv.budget.nearFull(d.id, d.outbox.at(n-1).body.Len()) {
		// One more packet would fill the analyzer's queue: waiting would make it
		// refuse packets (503, or spill elsewhere) while it may have nothing in
		// flight. The linger trades latency for fewer writes; it must never be the
		// reason an analyzer counts as full.
		return false
	}
	if !s.lingerArmed {
		s.lingerArmed = true
		select {
		case s.lingerWake <- struct{}{}:
		default: // already signalled
		}
	}
	return true
}

// lingerFill is how many queued packets make d's outbox worth writing without
// waiting: one full batch, or one connection's window of pipelined requests.
func (s *shard) lingerFill(d *dest) int {
	if d.batch {
		return s.srv.cfg.BatchMax
	}
	return s.srv.cfg.PipelineDepth
}

// lingerFire runs on the loop when the linger timer ends: everything queued goes.
func (s *shard) lingerFire() {
	s.lingerArmed = false
	s.lingerDue = true
	s.now = nanotime()
	for _, d := range s.dests {
		if d.outbox.len() > 0 {
			s.markDirty(d)
		}
	}
	s.flushDirty()
	s.lingerDue = false
}

// coalesceMin is how many queued packets make it worth writing to a connection
// that still has requests in flight.
const coalesceMin = 16

// maxIov keeps one Writev under the kernel's IOV_MAX (1024).
const maxIov = 1000

// batchBytes caps one batch request body.
const batchBytes = 1 << 20

func (s *shard) writeFlights(u *upstream, room int) {
	d := u.d
	batchMax := 1
	if d.batch {
		batchMax = s.srv.cfg.BatchMax
	}
	heads, spans := s.plan(d, room, batchMax)
	iov := s.iov[:0]
	for _, sp := range spans {
		iov = append(iov, heads[sp.start:sp.end])
		batch := batchMax > 1
		if batch {
			iov = append(iov, batchOpen)
		}
		for k := 0; k < sp.n; k++ {
			p := s.send(d, u)
			if batch && k > 0 {
				iov = append(iov, batchComma)
			}
			iov = append(iov, p.body.B)
			s.stats.BytesOut += int64(p.body.Len())
		}
		if batch {
			iov = append(iov, batchClose)
		}
		u.flights.push(flight{n: sp.n, batch: batch, sent: s.now, trial: d.trial})
	}
	s.iov = iov
	if len(iov) == 0 {
		return
	}
	// A failed write closes the connection from inside Writev (OnClose runs
	// re-entrantly), which sends the flights just recorded back for retry.
	_, _ = u.c.Writev(iov)
	for i := range iov {
		iov[i] = nil
	}
}

// batchFraming is how many bytes codec's framing adds to the bodies of an n-packet
// batch. codec.BatchBodyLen is the packets' bytes plus the framing, so the framing
// of n packets is BatchBodyLen of n empty ones; newShard tabulates it up to
// BATCH_MAX so plan pays a lookup, not a pass over the batch.
func (s *shard) batchFraming(n int) int {
	if n < len(s.framing) {
		return s.framing[n]
	}
	return codec.BatchBodyLen(make([][]byte, n)) // more than BATCH_MAX: only tests ask
}

// batchFramingTable is batchFraming for 0..batchMax packets.
func batchFramingTable(batchMax int) []int {
	t := make([]int, batchMax+1)
	empty := make([][]byte, batchMax)
	for n := range t {
		t[n] = codec.BatchBodyLen(empty[:n])
	}
	return t
}

// span is one planned request: its head in shard.heads and how many packets it carries.
type span struct{ start, end, n int }

// maxFlightsPerWrite caps the requests planned for one Writev.
const maxFlightsPerWrite = 64

// plan decides the next requests for d's outbox: at most room of them, batches
// of up to batchMax packets under batchBytes, and never more iovecs than one
// Writev may carry. It writes their heads into s.heads.
//
// Every head carries the request's deadline (codec.DeadlineHeader): the wall
// clock of s.now (shard.wallOffset) plus SENDER_TIMEOUT_MS. The distributor gives up
// on a request no earlier than that (the answer deadline runs from the later of
// its send and the previous answer, see upstream.stalled), so an analyzer that
// refuses what it reads after the deadline never counts a packet the distributor
// has already sent elsewhere (clocks in step assumed; docs/analyzer.md).
func (s *shard) plan(d *dest, room, batchMax int) ([]byte, []span) {
	deadline := (s.now + s.wallOffset + int64(s.srv.cfg.SenderTimeout)) / int64(time.Millisecond)
	heads := s.heads[:0]
	spans := s.spans[:0]
	taken, iovs := 0, 0
	avail := s.windowRoom(d) // a request may pass the window by less than one request
	for room > 0 && taken < d.outbox.len() && taken < avail && len(spans) < maxFlightsPerWrite {
		// A flight costs one iovec for its head and one per packet; a batch adds
		// its brackets and commas. Stop before one Writev would pass IOV_MAX.
		n, size := 0, 0
		for n < batchMax && taken+n < d.outbox.len() {
			b := d.outbox.at(taken + n).body.Len()
			cost := 2
			if batchMax > 1 {
				cost = 2*(n+1) + 2 // head, [, bodies, commas, ]
			}
			if n > 0 && (size+b+1 > batchBytes || iovs+cost > maxIov) {
				break
			}
			if n == 0 && iovs+cost > maxIov {
				break
			}
			size += b
			n++
		}
		if n == 0 {
			break
		}
		if batchMax > 1 {
			iovs += 2*n + 2
		} else {
			iovs += 2
		}
		start := len(heads)
		if batchMax > 1 {
			heads = codec.AppendBatchHeadDeadline(heads, d.host, size+s.batchFraming(n), deadline)
		} else {
			heads = codec.AppendPostHeadDeadline(heads, codec.IngestPath, d.host, size, deadline)
		}
		spans = append(spans, span{start, len(heads), n})
		taken += n
		room--
	}
	s.heads, s.spans = heads, spans
	return heads, spans
}
