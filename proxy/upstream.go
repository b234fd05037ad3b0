package proxy

import (
	"context"
	"net"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicelog/sluice/codec"
)

// Upstream connection states.
const (
	connIdle = iota
	connDialing
	connOpen
)

// upstream is one keep-alive connection from a shard to an analyzer. Requests are
// pipelined: each flight is one request (one packet, or a batch) and responses
// settle flights strictly in order, so the parcels in flight are a FIFO too.
type upstream struct {
	sh      *shard
	d       *dest
	c       gnet.Conn
	state   int
	flights ring[flight]
	parcels ring[*parcel] // in flight, in the order they were written
	parser  codec.ResponseParser
	resp    codec.Response
	closing bool // answered "Connection: close" or failed: no new requests
	failed  int  // failure kind that closed it, -1 for a clean close

	progress int64 // nanotime of the last answer: the deadline runs from here or the oldest send, whichever is later
	redialAt int64 // nanotime before which no new dial is tried
	backoff  int64 // current redial backoff, doubles per failed dial
}

// Redial backoff after a failed connect: a dead analyzer's port is not hammered,
// and the breaker (not this) decides when it may take traffic again.
const (
	redialMin = int64(50 * time.Millisecond)
	redialMax = int64(2 * time.Second)
)

// flight is one request on the wire: n parcels (1 unless batched), sent at sent.
type flight struct {
	n     int
	batch bool
	sent  int64
}

var (
	batchOpen  = []byte("[")
	batchComma = []byte(",")
	batchClose = []byte("]")
)

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
	if n := d.outbox.len(); n == 0 || n >= s.lingerFill(d) {
		return false // nothing to wait for, or a full request's worth
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
			p := d.outbox.pop()
			d.st.Queued--
			d.st.InFlight++
			if batch && k > 0 {
				iov = append(iov, batchComma)
			}
			iov = append(iov, p.body.B)
			s.stats.BytesOut += int64(p.body.Len())
			u.parcels.push(p)
		}
		if batch {
			iov = append(iov, batchClose)
		}
		u.flights.push(flight{n: sp.n, batch: batch, sent: s.now})
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

// dial opens u's connection off the loop (a blocking connect with the sender
// timeout) and hands the socket to this loop with Enroll; OnOpen finishes the job.
func (s *shard) dial(u *upstream) {
	u.state = connDialing
	timeout := s.srv.cfg.SenderTimeout
	addr := u.d.addr
	loop := s.loop
	go func() {
		conn, err := net.DialTimeout("tcp", addr, timeout)
		if err == nil {
			var res <-chan gnet.RegisteredResult
			if res, err = loop.Enroll(gnet.NewContext(context.Background(), u), conn); err != nil {
				_ = conn.Close()
			} else if r := <-res; r.Err != nil {
				err = r.Err // dup, address or registration failed: gnet closed conn
			}
		}
		if err != nil {
			_ = loop.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
				s.dialFailed(u, err)
				return nil
			}))
		}
	}()
}

func (s *shard) dialFailed(u *upstream, err error) {
	s.now = nanotime()
	u.state = connIdle
	u.backoff = min(max(2*u.backoff, redialMin), redialMax)
	u.redialAt = s.now + u.backoff
	d := u.d
	d.st.Failures[failConnect]++
	s.srv.logUpstream(d.name, "connect failed", err)
	s.failure(d)
	s.flushDirty()
}

// opened runs on the loop when an enrolled upstream connection is registered.
func (s *shard) opened(u *upstream, c gnet.Conn) {
	u.c, u.state, u.closing, u.failed = c, connOpen, false, -1
	u.backoff = 0
	u.parser = codec.ResponseParser{}
	u.d.st.Conns++
	s.markDirty(u.d)
}

// onResponses settles every complete response buffered on u.
func (s *shard) onResponses(u *upstream, c gnet.Conn) gnet.Action {
	buf, _ := c.Peek(-1)
	off := 0
	d := u.d
	for off < len(buf) {
		n, err := u.parser.Parse(buf[off:], &u.resp)
		if err != nil || (n > 0 && u.flights.len() == 0) {
			// Framing is lost: close from here (gnet.Close), and OnClose sends what
			// was in flight back through the scheduler.
			_, _ = c.Discard(len(buf))
			u.markFailed(failMalformed)
			return gnet.Close
		}
		if n == 0 {
			break
		}
		off += n
		u.progress = s.now
		f := u.flights.pop()
		status := u.resp.Status
		switch {
		case status >= 200 && status < 300:
			s.observeUpstream(d, s.now-f.sent)
			for k := 0; k < f.n; k++ {
				s.settle(u.parcels.pop(), d)
			}
			if f.batch {
				d.st.Batches++
			}
			s.srv.ctl.answered(d.id, d.trial)
		default:
			kind := failStatus5xx
			if status >= 400 && status < 500 && status != 429 && status != 408 {
				kind = failStatus4xx
			}
			d.st.Failures[kind]++
			for k := 0; k < f.n; k++ {
				s.retry(u.parcels.pop(), d)
			}
			if kind != failStatus4xx {
				s.failure(d)
			}
		}
		if !u.resp.KeepAlive || u.resp.UntilClose {
			u.closing = true
		}
	}
	if off > 0 { // Discard(0) would drop a partial response (see onRequests)
		_, _ = c.Discard(off)
	}
	if u.closing && u.flights.len() == 0 {
		return gnet.Close
	}
	s.markDirty(d)
	return gnet.None
}

// stalled reports whether u owes answers and has made no progress for timeout:
// with pipelining, a request waits behind the ones before it, so the deadline runs
// from the later of its own send and the previous answer.
func (u *upstream) stalled(now, timeout int64) bool {
	if u.state != connOpen || u.flights.len() == 0 {
		return false
	}
	return now-max(u.flights.peek().sent, u.progress) > timeout
}

// fail closes u because of a failure of the given kind. What was in flight goes
// back through the scheduler when OnClose runs.
func (u *upstream) fail(kind int) {
	if u.markFailed(kind) {
		_ = u.sh.loop.Close(u.c)
	}
}

// markFailed records a failure that is about to close u; false if u is already
// closing because of one.
func (u *upstream) markFailed(kind int) bool {
	if u.state != connOpen || u.failed >= 0 {
		return false
	}
	u.failed = kind
	u.closing = true
	u.d.st.Failures[kind]++
	u.sh.failure(u.d)
	return true
}

// closed runs on the loop when u's connection is gone, for whatever reason.
func (s *shard) closed(u *upstream, err error) {
	d := u.d
	if u.state == connOpen {
		d.st.Conns--
	}
	// gnet reports even an orderly close as an error (read: EOF), so only a close
	// with requests in flight is a failure; a dead idle analyzer shows on redial.
	unexpected := u.failed < 0 && u.flights.len() > 0
	if unexpected {
		d.st.Failures[failClosed]++
		s.failure(d)
		s.srv.logUpstream(d.name, "connection lost", err)
	}
	for u.flights.len() > 0 {
		f := u.flights.pop()
		for k := 0; k < f.n; k++ {
			s.retry(u.parcels.pop(), d)
		}
	}
	u.c, u.state, u.closing, u.failed = nil, connIdle, false, -1
	s.markDirty(d)
}

// failure counts one failure against d; MAX_FAILURES in a row, counted across
// all loops, trip the analyzer's breaker.
func (s *shard) failure(d *dest) { s.srv.ctl.failed(d.id, d.trial) }

// span is one planned request: its head in shard.heads and how many packets it carries.
type span struct{ start, end, n int }

// maxFlightsPerWrite caps the requests planned for one Writev.
const maxFlightsPerWrite = 64

// plan decides the next requests for d's outbox: at most room of them, batches
// of up to batchMax packets under batchBytes, and never more iovecs than one
// Writev may carry. It writes their heads into s.heads.
func (s *shard) plan(d *dest, room, batchMax int) ([]byte, []span) {
	heads := s.heads[:0]
	spans := s.spans[:0]
	taken, iovs := 0, 0
	for room > 0 && taken < d.outbox.len() && len(spans) < maxFlightsPerWrite {
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
			heads = codec.AppendPostHead(heads, codec.BatchPath, d.host, size+n+1)
		} else {
			heads = codec.AppendPostHead(heads, codec.IngestPath, d.host, size)
		}
		spans = append(spans, span{start, len(heads), n})
		taken += n
		room--
	}
	s.heads, s.spans = heads, spans
	return heads, spans
}
