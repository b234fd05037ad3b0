package proxy

import (
	"strconv"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/sluicelog/sluice/codec"
	"github.com/sluicelog/sluice/sched"
)

// shard is everything one event loop owns: its scheduler, one dest per analyzer
// (outbox and upstream connections) and its counters. Only that loop's goroutine
// touches a shard, so nothing here is locked; other goroutines reach it through
// EventLoop.Execute or the published View.
type shard struct {
	srv   *Server
	idx   int
	loop  gnet.EventLoop
	gen   uint64 // generation of the View applied
	view  *sched.View
	cred  *sched.Credit
	dests []*dest

	weights []float64 // scratch for View.Effective
	skip    sched.Set // scratch for Pick/Move
	full    sched.Set // dests whose queue limit is reached (spill mode skips them)

	owned     int // packets queued or in flight on this shard (≤ ingestCap)
	ingestCap int // this shard's part of INGEST_BUFFER_SIZE
	queueCap  int // this shard's part of PER_ANALYZER_QUEUE_SIZE
	bytesCap  int64

	free    []*parcel // parcel free list
	dirty   []*dest   // dests with queued packets to flush at the end of the event
	inFlush bool      // flush in progress: re-entrant closes only mark dirty

	out    []byte          // scratch: the answers of one event
	gunzip codec.Gunzipper // reused for gzip request bodies
	heads  []byte          // scratch: request heads of one flush
	iov    [][]byte        // scratch: what one Writev sends
	spans  []span          // scratch: the requests of one Writev

	ingresses []*ingress // inbound connections, for timeouts
	expired   int64      // nanotime of the last expire()

	stats    Stats
	lastSnap Stats // last copy taken on the loop; read by Server.snapshotShard under snapMu
	now      int64 // nanotime at the start of the current event

	closing bool // shutdown: accept nothing new
	ticking bool // in tick(): flush whatever waits, coalescing or not

	lingerWake  chan struct{} // starts the linger timer (Server.lingerShard)
	lingerArmed bool          // the timer runs: lingerFire will follow
	lingerDue   bool          // in lingerFire: nothing waits any longer
}

// dest is one analyzer as seen by one shard.
type dest struct {
	id       int
	name     string
	host     string
	addr     string
	outbox   ring[*parcel]
	owned    int   // packets queued or in flight
	bytes    int64 // their bytes
	conns    []*upstream
	eligible bool
	batch    bool
	trial    bool // breaker half-open: every answer is reported to the controller
	streak   int  // consecutive failures seen by this shard
	dirty    bool
	st       *DestStats
}

// parcel is one accepted packet. It is in exactly one place at a time: a dest's
// outbox or an upstream connection's in-flight list, until it is settled or dropped.
type parcel struct {
	body     *bytebufferpool.ByteBuffer
	msgs     int
	attempts int // failed sends so far
}

func newShard(srv *Server, idx int, loop gnet.EventLoop) *shard {
	cfg := &srv.cfg
	n := len(cfg.Analyzers)
	s := &shard{
		srv:       srv,
		idx:       idx,
		loop:      loop,
		cred:      sched.NewCredit(n, idx, cfg.Loops),
		ingestCap: ceilDiv(cfg.IngestBufferSize, cfg.Loops),
		queueCap:  ceilDiv(cfg.QueueSize, cfg.Loops),
		bytesCap:  (cfg.QueueBytes + int64(cfg.Loops) - 1) / int64(cfg.Loops),

		lingerWake: make(chan struct{}, 1),
	}
	s.stats.Dests = make([]DestStats, n)
	for i, a := range cfg.Analyzers {
		d := &dest{id: i, name: a.Name, host: a.Host, addr: a.Addr, st: &s.stats.Dests[i]}
		d.conns = make([]*upstream, cfg.UpstreamConns)
		for k := range d.conns {
			d.conns[k] = &upstream{sh: s, d: d, failed: failNone}
		}
		s.dests = append(s.dests, d)
	}
	s.closing = srv.closing.Load()
	s.now = nanotime()
	s.sync()
	return s
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// sync applies a new View: weights (credits restart when the eligible set changed,
// so a returning analyzer gets no burst, and carry over a mere reweighting),
// eligibility, batching, and moves packets queued for analyzers that may no longer
// take them.
func (s *shard) sync() {
	v := s.srv.board.Load()
	if v == nil || v.Gen == s.gen {
		return
	}
	s.gen, s.view = v.Gen, v
	s.weights = v.Effective(s.weights)
	s.cred.SetWeights(s.weights)
	for i, d := range s.dests {
		m := &v.Members[i]
		if m.Eligible && !d.eligible {
			d.streak = 0 // back in: past failures are the breaker's business now
		}
		d.eligible, d.batch, d.trial = m.Eligible, m.Batch, m.State == StateHalfOpen
		if d.eligible {
			s.markDirty(d) // dial and flush anything that waited
		}
	}
	for _, d := range s.dests {
		if !d.eligible {
			s.evacuate(d)
		}
	}
}

// evacuate moves the packets waiting in d's outbox to eligible analyzers. They were
// never sent, so no attempt is spent. With nowhere to go they stay put.
func (s *shard) evacuate(d *dest) {
	for n := d.outbox.len(); n > 0; n-- {
		p := d.outbox.peek()
		s.skip.Clear()
		s.skip.Add(d.id)
		to := s.cred.Move(d.id, p.msgs, &s.skip)
		if to < 0 {
			return
		}
		d.outbox.pop()
		d.st.Queued--
		s.transfer(p, d, s.dests[to])
		s.dests[to].outbox.push(p)
		s.dests[to].st.Queued++
		s.markDirty(s.dests[to])
	}
}

// transfer moves a parcel's ownership (not its position) from one dest to another.
func (s *shard) transfer(p *parcel, from, to *dest) {
	size := int64(p.body.Len())
	from.owned--
	from.bytes -= size
	from.st.QueuedBytes -= size
	from.st.Rerouted++
	s.updateFull(from)
	to.owned++
	to.bytes += size
	to.st.QueuedBytes += size
	to.st.RoutedPackets++
	to.st.RoutedMessages += int64(p.msgs)
	s.updateFull(to)
}

func (s *shard) updateFull(d *dest) {
	if d.owned >= s.queueCap || d.bytes >= s.bytesCap {
		s.full.Add(d.id)
	} else if s.full.Has(d.id) {
		s.full.Remove(d.id)
	}
}

// acceptResult is the outcome of offering a packet to the shard.
type acceptResult uint8

const (
	acceptOK         acceptResult = iota
	acceptFull                    // INGEST_BUFFER_SIZE reached
	acceptNoAnalyzer              // no analyzer eligible
	acceptQueueFull               // the analyzer's queue is full, nowhere to spill
	acceptShutdown                // the distributor is stopping
	numAcceptResults
)

var acceptNames = [numAcceptResults]string{"ok", "full", "no_analyzer", "queue_full", "shutdown"}

func (r acceptResult) String() string {
	if r < numAcceptResults {
		return acceptNames[r]
	}
	return "acceptResult(" + strconv.Itoa(int(r)) + ")"
}

// accept places a validated packet: route, copy into the chosen outbox, account.
// This is the whole hot path after parsing; it does not allocate once the free
// list and rings have warmed up.
func (s *shard) accept(body []byte, msgs int) acceptResult {
	if s.closing {
		return acceptShutdown
	}
	if s.owned >= s.ingestCap {
		return acceptFull
	}
	if s.cred.Eligible() == 0 {
		return acceptNoAnalyzer
	}
	var a int
	if s.srv.cfg.Spill {
		// A full analyzer is skipped; it keeps gaining credit (up to the cap) and
		// catches up when its queue drains.
		a = s.cred.Pick(msgs, &s.full)
	} else if a = s.cred.Peek(msgs); s.full.Has(a) {
		a = -1 // strict: its turn, its queue is full, so the emitter waits
	} else {
		s.cred.Pick(msgs, nil)
	}
	if a < 0 {
		return acceptQueueFull
	}
	d := s.dests[a]
	p := s.newParcel(body, msgs)
	size := int64(len(body))
	s.owned++
	d.owned++
	d.bytes += size
	s.updateFull(d)
	d.outbox.push(p)
	st := d.st
	st.RoutedPackets++
	st.RoutedMessages += int64(msgs)
	st.Queued++
	st.QueuedBytes += size
	s.stats.AcceptedPackets++
	s.stats.AcceptedMessages += int64(msgs)
	s.markDirty(d)
	return acceptOK
}

func (s *shard) newParcel(body []byte, msgs int) *parcel {
	var p *parcel
	if n := len(s.free); n > 0 {
		p = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		p = &parcel{}
	}
	p.body = s.srv.bodies.Get()
	p.body.B = append(p.body.B[:0], body...)
	p.msgs, p.attempts = msgs, 0
	return p
}

func (s *shard) release(p *parcel) {
	s.srv.bodies.Put(p.body)
	p.body = nil
	s.free = append(s.free, p)
}

// settle counts a parcel delivered by d and frees it.
func (s *shard) settle(p *parcel, d *dest) {
	size := int64(p.body.Len())
	d.owned--
	d.bytes -= size
	s.owned--
	s.updateFull(d)
	st := d.st
	st.InFlight--
	st.QueuedBytes -= size
	st.DeliveredPackets++
	st.DeliveredMessages += int64(p.msgs)
	s.release(p)
}

// retry takes back a parcel whose send to d failed (it was in flight) and gives it
// to the best other eligible analyzer, or back to d when there is none. After
// SENDER_RETRIES failed re-sends it is dropped, counted and logged.
func (s *shard) retry(p *parcel, d *dest) {
	d.st.InFlight--
	p.attempts++
	d.st.Retries++
	if p.attempts > s.srv.cfg.SenderRetries {
		s.drop(p, d, dropRetries)
		return
	}
	to := d
	s.skip.Clear()
	s.skip.Add(d.id)
	if i := s.cred.Move(d.id, p.msgs, &s.skip); i >= 0 {
		to = s.dests[i]
		s.transfer(p, d, to)
	}
	to.outbox.pushFront(p)
	to.st.Queued++
	s.markDirty(to)
}

// drop gives up on a parcel that d owned and was not queued.
func (s *shard) drop(p *parcel, d *dest, reason dropReason) {
	size := int64(p.body.Len())
	d.owned--
	d.bytes -= size
	s.owned--
	s.updateFull(d)
	d.st.QueuedBytes -= size
	d.st.Dropped[reason]++
	s.srv.logDrop(d.name, reason.String(), p)
	s.release(p)
}

func (s *shard) markDirty(d *dest) {
	if !d.dirty {
		d.dirty = true
		s.dirty = append(s.dirty, d)
	}
}

// flushDirty writes what the event queued. It runs once at the end of every event;
// a connection closed while writing only marks its dest dirty again, and the loop
// here picks that up.
func (s *shard) flushDirty() {
	if s.inFlush {
		return
	}
	s.inFlush = true
	for i := 0; i < len(s.dirty); i++ {
		d := s.dirty[i]
		d.dirty = false
		s.flush(d)
	}
	s.dirty = s.dirty[:0]
	s.inFlush = false
}

// tick runs on the loop every tickInterval: view changes, answer deadlines,
// redials, and the flush of anything left waiting.
func (s *shard) tick() {
	s.ticking = true
	defer func() { s.ticking = false }()
	s.now = nanotime()
	s.sync()
	timeout := int64(s.srv.cfg.SenderTimeout)
	for _, d := range s.dests {
		for _, u := range d.conns {
			if u.stalled(s.now, timeout) {
				u.fail(failTimeout)
			}
		}
		if d.outbox.len() > 0 {
			s.markDirty(d)
		}
	}
	// By the clock, not by counting ticks: a loaded machine skips ticks.
	if s.now-s.expired >= int64(time.Second) {
		s.expired = s.now
		s.expire()
	}
	s.flushDirty()
}

// dropAll gives up on everything this shard still holds: the shutdown timeout ran
// out. Each packet is counted under shutdown_timeout and the first is logged.
func (s *shard) dropAll() {
	for _, d := range s.dests {
		for d.outbox.len() > 0 {
			p := d.outbox.pop()
			d.st.Queued--
			s.drop(p, d, dropShutdown)
		}
		for _, u := range d.conns {
			for u.flights.len() > 0 {
				f := u.flights.pop()
				for range f.n {
					p := u.parcels.pop()
					d.st.InFlight--
					s.drop(p, d, dropShutdown)
				}
			}
			if u.state == connOpen {
				u.failed = failClosed // a late answer must not be read as one without a request
				_ = s.loop.Close(u.c)
			}
		}
	}
}

const tickInterval = 10 * time.Millisecond

var epoch = time.Now()

// nanotime is monotonic nanoseconds since start.
func nanotime() int64 { return int64(time.Since(epoch)) }
