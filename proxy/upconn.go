package proxy

// The upstream connection: dialing, reading answers, and what a failure or a
// close does to the requests in flight. Everything here runs on the shard's loop
// except the connect itself (dial's goroutine).

import (
	"context"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicelog/sluice/codec"
)

// connState is where an upstream connection is in its life.
type connState uint8

const (
	connIdle    connState = iota // no connection; dialled when packets wait and redialAt passed
	connDialing                  // dial's goroutine is connecting; OnOpen or dialFailed follows
	connOpen                     // registered on the loop, carrying requests
	numConnStates
)

var connStateNames = [numConnStates]string{"idle", "dialing", "open"}

func (c connState) String() string {
	if c < numConnStates {
		return connStateNames[c]
	}
	return "connState(" + strconv.Itoa(int(c)) + ")"
}

// upstream is one keep-alive connection from a shard to an analyzer. Requests are
// pipelined: each flight is one request (one packet, or a batch) and responses
// settle flights strictly in order, so the parcels in flight are a FIFO too.
type upstream struct {
	sh      *shard
	d       *dest
	c       gnet.Conn
	state   connState
	flights ring[flight]
	parcels ring[*parcel] // in flight, in the order they were written
	parser  codec.ResponseParser
	resp    codec.Response
	closing bool     // answered "Connection: close" or failed: no new requests
	failed  failKind // failure that closed it, failNone for a clean close

	progress int64  // nanotime of the last answer: the deadline runs from here or the oldest send, whichever is later
	redialAt int64  // nanotime before which no new dial is tried
	backoff  int64  // current redial backoff, doubles per failed dial
	dialGen  uint64 // dest.gen when the current or last dial began
}

// Redial backoff after a failed connect: a dead analyzer's port is not hammered,
// and the breaker (not this) decides when it may take traffic again.
const (
	redialMin = int64(50 * time.Millisecond)
	redialMax = int64(2 * time.Second)
)

// dial opens u's connection off the loop (a blocking connect with the sender
// timeout) and hands the socket to this loop with Enroll; OnOpen finishes the job.
func (s *shard) dial(u *upstream) {
	u.state, u.dialGen = connDialing, u.d.gen
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
	if u.dialGen != u.d.gen {
		s.markDirty(u.d) // a dial to the id's old address: no failure of the new one
		s.flushDirty()
		return
	}
	u.backoff = min(max(2*u.backoff, redialMin), redialMax)
	u.redialAt = s.now + u.backoff
	d := u.d
	d.st.Failures[failConnect]++
	s.srv.logUpstream(d.name, "connect failed", err)
	s.failure(d, d.trial) // nothing was sent: it fails now, in the state the analyzer is in now
	s.flushDirty()
}

// opened runs on the loop when an enrolled upstream connection is registered.
func (s *shard) opened(u *upstream, c gnet.Conn) {
	u.c, u.state, u.closing, u.failed = c, connOpen, false, failNone
	u.backoff = 0
	u.parser = codec.ResponseParser{}
	u.d.st.Conns++
	if u.dialGen != u.d.gen {
		// Dialled to the address the id had before it was reclaimed: closed
		// unused, and redialled at the new one (closed marks the dest dirty).
		u.closing = true
		_ = s.loop.Close(c)
		return
	}
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
		u.progress, d.answered = s.now, s.now
		f := u.flights.pop()
		status := u.resp.Status
		switch {
		case status >= 200 && status < 300:
			s.observeUpstream(d, s.now-f.sent)
			s.windowAnswered(d, f.n, s.now-f.sent)
			for k := 0; k < f.n; k++ {
				s.settle(u.parcels.pop(), d)
			}
			if f.batch {
				d.st.Batches++
			}
			s.srv.ctl.answered(d.id, f.trial) // as sent: an answer to a request from before a trip is no trial
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
				s.failure(d, f.trial)
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
func (u *upstream) fail(kind failKind) {
	if u.markFailed(kind) {
		_ = u.sh.loop.Close(u.c)
	}
}

// markFailed records a failure that is about to close u; false if u is already
// closing because of one.
func (u *upstream) markFailed(kind failKind) bool {
	if u.state != connOpen || u.failed != failNone {
		return false
	}
	u.failed = kind
	u.closing = true
	u.d.st.Failures[kind]++
	u.sh.failure(u.d, u.trialInFlight())
	return true
}

// trialInFlight reports whether a failure of u's connection is a trial result: a
// request sent while the analyzer was half-open is in flight on it (or nothing is,
// and the analyzer is half-open now). A request sent before a trip that fails
// later is not one: it would reopen the breaker without a trial.
func (u *upstream) trialInFlight() bool {
	if u.flights.len() == 0 {
		return u.d.trial
	}
	for i := 0; i < u.flights.len(); i++ {
		if u.flights.at(i).trial {
			return true
		}
	}
	return false
}

// closed runs on the loop when u's connection is gone, for whatever reason.
func (s *shard) closed(u *upstream, err error) {
	d := u.d
	if u.state == connOpen {
		d.st.Conns--
	}
	// gnet reports even an orderly close as an error (read: EOF), so only a close
	// with requests in flight is a failure; a dead idle analyzer shows on redial.
	unexpected := u.failed == failNone && u.flights.len() > 0
	if unexpected {
		d.st.Failures[failClosed]++
		s.failure(d, u.trialInFlight())
		s.srv.logUpstream(d.name, "connection lost", err)
	}
	// A connection timed out because its oldest request went unanswered for
	// SENDER_TIMEOUT_MS; requests written behind it more recently have not had
	// their own deadline. They go back without spending an attempt: with every
	// analyzer stalled, packets bounced from one stalled connection to the next
	// spent their 1 + SENDER_RETRIES attempts within a few ticks and were dropped
	// before the breakers opened (make chaos, "memory"). Nor does a timeout spend
	// one once the analyzer's breaker has taken it out (d no longer eligible): the
	// analyzer is known to be stalled, the packet is not at fault, and with every
	// analyzer frozen for seconds the connections still open time out one after
	// another. The failure itself is charged to the breaker once per connection
	// (markFailed), so such packets bounce no longer than the breakers take to open.
	// Nor, last, does a timeout spend one when the analyzer has answered nothing
	// on any connection since the request was sent: it is stalled (frozen,
	// partitioned), which is its breaker's business, not the packet's; before its
	// breaker opened, a packet could meet four such timeouts in a few hundred ms
	// and be dropped (make chaos, "memory"). A timeout does spend one when the
	// analyzer answered other requests meanwhile: this one alone hangs it, and
	// SENDER_RETRIES bounds how often a packet may do that.
	timeout := u.failed == failTimeout
	young := int64(math.MaxInt64) // sent after this: not charged an attempt
	if timeout {
		young = s.now - int64(s.srv.cfg.SenderTimeout)
		if !d.eligible {
			young = math.MinInt64
		}
	}
	for u.flights.len() > 0 {
		f := u.flights.pop()
		spare := f.sent > young || (timeout && d.answered <= f.sent)
		for k := 0; k < f.n; k++ {
			if spare {
				s.resend(u.parcels.pop(), d)
			} else {
				s.retry(u.parcels.pop(), d)
			}
		}
	}
	u.c, u.state, u.closing, u.failed = nil, connIdle, false, failNone
	s.markDirty(d)
}

// failure counts one failure against d; MAX_FAILURES in a row, counted across
// all loops, trip the analyzer's breaker, and one trial failure reopens it.
func (s *shard) failure(d *dest, trial bool) {
	s.windowFailed(d)
	s.srv.ctl.failed(d.id, trial)
}
