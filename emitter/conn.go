package emitter

import (
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicelog/sluice/codec"
)

// A slot holds one packet from its first send until it is settled: in flight,
// waiting to be re-sent, or (drop) waiting out a backoff after its last answer so the
// connection honours Retry-After even for a packet it gives up on.
type slotState uint8

const (
	slotFree slotState = iota
	slotInFlight
	slotWaiting
)

type slot struct {
	state    slotState
	drop     bool  // waiting: already counted as given up; free at due, do not re-send
	attempts int   // sends so far
	due      int64 // waiting: ns since the start when it may go again
	sentAt   int64 // ns since the start of the latest send
	seq      uint64
	messages int
	body     []byte // kept for re-sends: the same bytes, the same packet_id
}

// conn is one keep-alive connection and the goroutine that drives it: it writes up
// to Pipeline requests, reads their answers in order, and re-sends what must be
// re-sent. All its state is its own; other goroutines only read st and, to cut a
// blocked read short at shutdown, set the socket's deadline under mu.
type conn struct {
	// deadlineMoved is set by interrupt, from another goroutine: the socket's read
	// deadline is no longer the one c.deadline remembers.
	deadlineMoved atomic.Bool
	// readDeadline is the socket's read deadline (ns on the run's clock, 0 = none),
	// so interrupt can tell whether the drain's deadline is earlier. Setting the
	// socket's deadline and recording it here happen together under mu: were they
	// apart, interrupt could read the old value between them and put back a later
	// deadline over the one just set (a request timeout then waited for the grace).
	readDeadline atomic.Int64

	r       *run
	st      *stats
	gen     *generator
	rng     *rand.Rand
	slots   []slot
	free    []int // indexes of free slots
	queue   []int // slot indexes in flight, oldest first (answers come back in order)
	waiting int   // slots in slotWaiting

	mu sync.Mutex // guards nc, and setting its read deadline with readDeadline, against interrupt; the owner reads nc freely
	nc net.Conn

	wbuf, rbuf   []byte
	parser       codec.ResponseParser
	resp         codec.Response
	deadline     int64 // read deadline last set on nc, ns since the start; 0 = none
	nextAt       int64 // reserved send time of the next new packet; -1 = none reserved
	noMore       bool  // no new packets will be started
	idleSince    int64 // when the last answer emptied the window, ns since the start
	mayBeStale   bool  // see staleAfter; cleared by the first answer byte
	dialFailures int   // consecutive failed connects
	redialAt     int64 // no connect before this, ns since the start
	timer        *time.Timer
}

func newConn(r *run, gen *generator, rng *rand.Rand) *conn {
	c := &conn{
		r:      r,
		st:     new(stats),
		gen:    gen,
		rng:    rng,
		slots:  make([]slot, r.cfg.Pipeline),
		free:   make([]int, 0, r.cfg.Pipeline),
		queue:  make([]int, 0, r.cfg.Pipeline),
		wbuf:   make([]byte, 0, 4<<10),
		rbuf:   make([]byte, 0, 16<<10),
		nextAt: -1,
		timer:  time.NewTimer(time.Hour),
	}
	c.timer.Stop()
	for i := len(c.slots) - 1; i >= 0; i-- {
		c.free = append(c.free, i)
	}
	return c
}

// loop runs the connection until it has nothing left to do.
func (c *conn) loop() {
	defer c.close()
	r := c.r
	for {
		now := r.now()
		stopped := r.stopped(now)
		if stopped {
			// A slot reserved before the end of --duration is still sent if this
			// connection was busy when it came due: with --rate R --duration D the
			// run sends R·D packets, not R·D less one per connection.
			if r.interrupted() || c.nextAt < 0 || c.nextAt >= r.stopAt {
				c.noMore = true
			}
			c.abandon(slotWaiting)
			if now >= r.drainDeadline() {
				c.abandon(slotInFlight)
			}
		}
		idle := len(c.queue) == 0 && c.nc != nil && now-c.idleSince > int64(staleAfter)
		c.fill(now)
		if len(c.free) == len(c.slots) && c.noMore {
			return
		}
		if len(c.wbuf) > 0 {
			if idle {
				c.mayBeStale = true
			}
			if err := c.send(); err != nil {
				c.failed(r.now())
				continue
			}
		}

		wake := c.wakeAt(r.now(), stopped)
		if len(c.queue) == 0 {
			c.sleepUntil(wake)
			continue
		}
		if err := c.receive(wake, stopped); err != nil {
			c.failed(r.now())
		}
	}
}

// release frees slot i.
func (c *conn) release(i int) {
	c.slots[i].state = slotFree
	c.free = append(c.free, i)
}

// park makes slot i wait until due.
func (c *conn) park(i int, due int64, drop bool) {
	s := &c.slots[i]
	s.state = slotWaiting
	s.due = due
	s.drop = drop
	c.waiting++
}

// fill appends to wbuf the re-sends that are due and as many new packets as the
// window and the pacer allow now.
func (c *conn) fill(now int64) {
	r := c.r
	c.wbuf = c.wbuf[:0]
	if c.nc == nil && now < c.redialAt {
		return
	}
	for i := 0; c.waiting > 0 && i < len(c.slots); i++ {
		s := &c.slots[i]
		if s.state != slotWaiting || s.due > now {
			continue
		}
		c.waiting--
		if s.drop {
			c.release(i)
			continue
		}
		c.st.retries.Add(1)
		c.push(i, now)
	}
	for len(c.free) > 0 && !c.noMore {
		if c.nextAt < 0 {
			c.nextAt = now
			if r.pacer != nil {
				c.nextAt = r.pacer.reserve(now)
			}
		}
		if c.nextAt >= r.stopAt {
			c.noMore = true
			break
		}
		if c.nextAt > now {
			break
		}
		if !r.claim() {
			c.noMore = true
			break
		}
		c.nextAt = -1
		i := c.free[len(c.free)-1]
		c.free = c.free[:len(c.free)-1]
		s := &c.slots[i]
		s.seq = r.seq.Add(1)
		s.messages = c.gen.counts.next()
		s.body = c.gen.appendPacket(s.body[:0], s.seq, s.messages, r.startMs+now/1e6)
		s.attempts = 0
		s.drop = false
		c.st.sent.Add(1)
		c.push(i, now)
	}
}

// push puts slot i in flight: its request goes into wbuf.
func (c *conn) push(i int, now int64) {
	s := &c.slots[i]
	s.state = slotInFlight
	s.attempts++
	s.sentAt = now
	c.wbuf = codec.AppendPostHeadWith(c.wbuf, c.r.cfg.path, c.r.cfg.host, c.r.cfg.headers, len(s.body))
	c.wbuf = append(c.wbuf, s.body...)
	c.queue = append(c.queue, i)
}

// send writes wbuf, dialling first if there is no connection. Failed connects
// are spaced out by backoff, so a target that refuses them is not dialled in a
// tight loop by packets that are new or whose own backoff is short.
func (c *conn) send() error {
	if c.nc == nil {
		d := net.Dialer{Timeout: c.r.cfg.Timeout}
		nc, err := d.DialContext(c.r.ctx, "tcp", c.r.cfg.addr)
		if err != nil {
			now := c.r.now()
			c.dialFailures++
			c.redialAt = now + int64(backoff(c.dialFailures, 0, c.rng))
			c.r.connectFailed(now, err)
			return err
		}
		c.dialFailures = 0
		c.r.targetUp()
		c.mu.Lock()
		c.nc = nc
		c.readDeadline.Store(0)
		if c.r.interrupted() { // the stop may have come before nc was visible to it
			at := c.r.drainDeadline()
			_ = nc.SetReadDeadline(c.r.timeAt(at))
			c.readDeadline.Store(at)
		}
		c.mu.Unlock()
		c.deadline = 0
		c.rbuf = c.rbuf[:0]
		c.parser.Reset()
	}
	_, err := c.nc.Write(c.wbuf)
	return err
}

// wakeAt is the next moment the loop has something to do other than read: a new
// packet's slot, a re-send, the stop, or the end of the drain.
func (c *conn) wakeAt(now int64, stopped bool) int64 {
	r := c.r
	work := int64(math.MaxInt64)
	for i := 0; c.waiting > 0 && i < len(c.slots); i++ {
		if s := &c.slots[i]; s.state == slotWaiting && s.due < work {
			work = s.due
		}
	}
	if !c.noMore && c.nextAt >= 0 && c.nextAt < work && len(c.queue) < len(c.slots) {
		work = c.nextAt
	}
	if c.nc == nil && work < c.redialAt {
		work = c.redialAt // nothing can be sent before the next connect
	}
	if stopped {
		return min(work, r.drainDeadline())
	}
	return min(work, r.stopAt)
}

// sleepUntil waits for wake (ns since the start) or the context.
func (c *conn) sleepUntil(wake int64) {
	d := time.Duration(wake - c.r.now())
	if d <= 0 {
		return
	}
	c.timer.Reset(d)
	select {
	case <-c.timer.C:
	case <-c.r.ctx.Done():
		c.timer.Stop()
	}
}

// errTimeout is an answer that did not come within Timeout.
var errTimeout = errors.New("response timeout")

// receive reads until at least one answer is settled, the wake time comes, or the
// connection fails.
func (c *conn) receive(wake int64, stopped bool) error {
	r := c.r
	timeoutAt := c.slots[c.queue[0]].sentAt + int64(r.cfg.Timeout)
	deadline := min(wake, timeoutAt)
	if c.deadlineMoved.Swap(false) {
		c.deadline = 0 // interrupt may have set a later one: set ours again
	}
	// A deadline later than needed could oversleep a wake-up, so it is always
	// lowered; one that is merely early only costs an extra turn of the loop, so it
	// is raised only when it would fire within half a timeout. Under steady load
	// that sets the socket deadline about once per Timeout/2 instead of per request.
	if c.deadline == 0 || c.deadline > deadline || c.deadline < deadline-int64(r.cfg.Timeout)/2 {
		c.mu.Lock()
		err := c.nc.SetReadDeadline(r.timeAt(deadline))
		if err == nil {
			c.readDeadline.Store(deadline)
		}
		c.mu.Unlock()
		if err != nil {
			return err
		}
		c.deadline = deadline
		if !stopped && r.interrupted() {
			return nil // the stop raced with the deadline just set: go round again
		}
	}
	for {
		if len(c.rbuf) == cap(c.rbuf) {
			c.rbuf = append(c.rbuf, 0)[:len(c.rbuf)]
		}
		n, err := c.nc.Read(c.rbuf[len(c.rbuf):cap(c.rbuf)])
		c.rbuf = c.rbuf[:len(c.rbuf)+n]
		if n > 0 {
			c.mayBeStale = false
			settled, perr := c.settle(r.now())
			if perr != nil {
				return perr
			}
			if settled {
				return nil
			}
		}
		if err != nil {
			if isTimeout(err) {
				c.deadline = 0
				if r.now() >= timeoutAt {
					return errTimeout
				}
				return nil
			}
			return err
		}
	}
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// settle parses every complete answer in rbuf and settles the oldest packets in
// flight with them. It reports whether any was settled.
func (c *conn) settle(now int64) (bool, error) {
	off := 0
	settled := false
	for len(c.queue) > 0 {
		n, err := c.parser.Parse(c.rbuf[off:], &c.resp)
		if err != nil {
			return settled, err
		}
		if n == 0 {
			break
		}
		off += n
		settled = true
		i := c.queue[0]
		c.queue = c.queue[:copy(c.queue, c.queue[1:])]
		c.answer(i, now)
		if len(c.queue) == 0 {
			c.idleSince = now
		}
		if !c.resp.KeepAlive {
			// The server will read nothing more on this connection: what is still
			// in flight was never looked at, so it goes again at once, as if new.
			for _, j := range c.queue {
				c.slots[j].attempts--
				c.park(j, now, false)
			}
			c.queue = c.queue[:0]
			c.close()
			return true, nil
		}
	}
	if off > 0 {
		c.rbuf = c.rbuf[:copy(c.rbuf, c.rbuf[off:])]
	}
	return settled, nil
}

// answer settles slot i with the response in c.resp.
func (c *conn) answer(i int, now int64) {
	s := &c.slots[i]
	c.st.answered(uint64(now-s.sentAt)/1000, c.resp.Status)
	c.r.targetUp()
	switch status := c.resp.Status; {
	case status >= 200 && status < 300:
		c.st.accepted.Add(1)
		c.st.messagesAccepted.Add(uint64(s.messages))
		if f := c.r.cfg.OnAccepted; f != nil {
			f(c.gen.packetID(s.seq), s.messages)
		}
		c.release(i)
	case status == 503, status == 429:
		if status == 503 {
			c.st.rejected503.Add(1)
		} else {
			c.st.rejected429.Add(1)
		}
		c.retryOrGiveUp(i, now, retryAfter(c.resp.RetryAfter))
	case status >= 500:
		c.st.otherErrors.Add(1)
		c.retryOrGiveUp(i, now, 0)
	default: // 4xx and the like: sending it again would get the same answer
		c.st.otherErrors.Add(1)
		c.st.gaveUp.Add(1)
		c.release(i)
	}
}

// retryOrGiveUp parks s for its backoff, to be re-sent if the packet still has
// retries and the run's budget allows one, and dropped otherwise.
func (c *conn) retryOrGiveUp(i int, now int64, retryAfter time.Duration) {
	s := &c.slots[i]
	drop := s.attempts > c.r.cfg.Retries || !c.r.budget.take(c.r.totalSent())
	if drop {
		c.st.gaveUp.Add(1)
	}
	c.park(i, now+int64(backoff(s.attempts, retryAfter, c.rng)), drop)
}

// staleAfter is how long a keep-alive connection may sit idle before the emitter
// suspects the server closed it meanwhile (servers close idle connections, and the
// close can cross a new request on the wire). When the first requests after such a
// pause fail before any answer byte arrives, the server never looked at them: they
// go again at once on a new connection, counted as re-sends but not as errors or
// attempts, as HTTP clients do for requests on a reused connection. A connection
// that breaks while busy, or right after an answer, is a real error. (A variable
// only so that a test can turn the rule off.)
var staleAfter = 100 * time.Millisecond

// failed handles a broken connection: every packet in flight lost its attempt.
func (c *conn) failed(now int64) {
	c.close()
	if c.mayBeStale {
		c.mayBeStale = false
		for _, i := range c.queue {
			c.slots[i].attempts--
			c.park(i, now, false)
		}
		c.queue = c.queue[:0]
		return
	}
	for _, i := range c.queue {
		c.st.otherErrors.Add(1)
		c.retryOrGiveUp(i, now, 0)
	}
	c.queue = c.queue[:0]
}

// abandon counts the packets in slots of the given state as unfinished and frees them.
func (c *conn) abandon(state slotState) {
	for i := range c.slots {
		s := &c.slots[i]
		if s.state != state {
			continue
		}
		if state == slotWaiting {
			c.waiting--
		}
		if state == slotInFlight || !s.drop {
			c.st.unfinished.Add(1)
		}
		c.release(i)
	}
	if state == slotInFlight {
		c.queue = c.queue[:0]
		c.close()
	}
}

func (c *conn) close() {
	if c.nc == nil {
		return
	}
	c.mu.Lock()
	_ = c.nc.Close()
	c.nc = nil
	c.mu.Unlock()
}

// interrupt cuts a blocked read short when the run is stopped from outside: the
// read must end by the drain's deadline, atNs. It never moves an earlier deadline
// later (a request's own timeout must still fire on time).
func (c *conn) interrupt(atNs int64) {
	if d := c.readDeadline.Load(); d > 0 && d <= atNs {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.readDeadline.Load(); c.nc == nil || (d > 0 && d <= atNs) {
		return // checked again under mu: the loop may have just set an earlier one
	}
	_ = c.nc.SetReadDeadline(c.r.timeAt(atNs))
	c.readDeadline.Store(atNs)
	c.deadlineMoved.Store(true)
}
