package proxy

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/sluicelog/sluice/codec"
	"github.com/sluicelog/sluice/sched"
	"github.com/sluicelog/sluice/spool"
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
	aff   *sched.Affinity // AFFINITY=emitter_id (affinity.go); nil when off
	dests []*dest

	// emitter is the emitter_id of the packet being accepted (a slice of the read
	// buffer, set by ingest for accept's route; valid only during that call).
	emitter     []byte
	confWeights []float64 // scratch: configured weights for the affinity ring

	weights []float64 // scratch for View.Effective
	skip    sched.Set // scratch for Pick/Move
	full    sched.Set // scratch: dests whose queue limit is reached (spill mode skips them)

	free    []*parcel // parcel free list
	dirty   []*dest   // dests with queued packets to flush at the end of the event
	inFlush bool      // flush in progress: re-entrant closes only mark dirty

	out     []byte          // scratch: the answers of one event
	gunzip  codec.Gunzipper // reused for gzip request bodies
	heads   []byte          // scratch: request heads of one flush
	iov     [][]byte        // scratch: what one Writev sends
	spans   []span          // scratch: the requests of one Writev
	framing []int           // framing[n]: bytes codec's batch framing adds to n packets (batchFraming)

	ingresses []*ingress // inbound connections, for timeouts
	lingerers []*ingress // inbound connections in their lingering close (linger.go)
	expired   int64      // nanotime of the last expire()

	stats    Stats
	lastSnap Stats // last copy taken on the loop; read by Server.snapshotShard under snapMu
	now      int64 // nanotime at the start of the current event
	// wallOffset is the wall clock (Unix ns) minus nanotime, so s.now+wallOffset is
	// the wall clock of s.now without reading the clock again: the deadline header
	// (plan) costs an add per request. Refreshed every tick, so a stepped wall clock
	// shows within 10 ms.
	wallOffset int64

	closing bool // shutdown: accept nothing new
	ticking bool // in tick(): flush whatever waits, coalescing or not

	lingerWake  chan struct{} // starts the linger timer (Server.lingerShard)
	lingerArmed bool          // the timer runs: lingerFire will follow
	lingerDue   bool          // in lingerFire: nothing waits any longer

	// The spool (spool.go); log is nil without SPOOL_DIR.
	log      *spool.Log
	placed   *parcel    // the parcel the last acceptOK placed (its spool Ref is set after)
	waiting  []*ingress // connections whose answers wait for a group's sync
	holdFrom int        // in the pass being handled: offset in out from which answers are held (-1: none)
	marks    []heldMark // held 202s of the pass being handled, offsets in out
	// spoolDone is the log writer's completion: written by the writer goroutine
	// before it Executes spoolRun, read by spoolRun on the loop (newLog).
	spoolDone spool.Completion
	spoolRun  gnet.Runnable
	synced    uint64 // groups completed (the next completion's group number): idle when log.Group() == synced
	// Bytes of records not yet written: appended to the group being filled, and in
	// the group with the writer (spool.go, unwrittenLimit).
	spoolFill, spoolBusy int64
	handed               uint64 // log.Group() after the last flushSpool
	// The tick's pace (Server.tickShard): every tickEvery (10 ms) while the shard
	// holds anything timed, every quietEvery (1 s) once a tick found it quiet
	// (shard.quiet). slow is the loop's own copy of tickQuiet, so the per-packet
	// check (enqueue) is a plain load; busy clears both and nudges tickWake.
	slow      bool        // loop-owned
	tickQuiet atomic.Bool // read by the tick goroutine to choose its next wait
	tickWake  chan struct{}
	ticks     int64 // loop-owned: ticks run, for tests
}

// dest is one analyzer as seen by one shard.
type dest struct {
	id       int
	name     string
	host     string
	addr     string
	outbox   ring[*parcel]
	conns    []*upstream
	eligible bool
	batch    bool
	trial    bool // breaker half-open: every answer is reported to the controller
	removed  bool // a tombstone in the View: its connections close once they have nothing in flight
	dirty    bool
	win      window // the adaptive bound on packets in flight (window.go)
	// answered is the nanotime of the last answer (any status) on any of d's
	// connections on this loop: a timed-out request spends its packet an attempt
	// only when the analyzer answered something after it was sent (shard.closed).
	answered int64
	// gen counts the addresses this id has had: the controller may give a
	// tombstone's id to another URL (reclaimableLocked), and a dial begun for the
	// old address is dropped when it lands (upstream.dialGen).
	gen uint64
	st  *DestStats
}

// parcel is one accepted packet. It is in exactly one place at a time: a dest's
// outbox or an upstream connection's in-flight list, until it is settled or dropped.
type parcel struct {
	body     *bytebufferpool.ByteBuffer
	msgs     int
	attempts int       // failed sends so far
	ref      spool.Ref // its spool record (zero without SPOOL_DIR), settled when it leaves
}

func newShard(srv *Server, idx int, loop gnet.EventLoop) *shard {
	cfg := &srv.cfg
	s := &shard{
		srv:  srv,
		idx:  idx,
		loop: loop,
		cred: sched.NewCredit(0, idx, cfg.Loops), // grown by sync to the View's members
		aff:  newAffinity(cfg),

		framing: batchFramingTable(cfg.BatchMax),

		lingerWake: make(chan struct{}, 1),
		tickWake:   make(chan struct{}, 1),
	}
	s.closing = srv.closing.Load()
	s.now = nanotime()
	s.wallOffset = time.Now().UnixNano() - s.now
	s.holdFrom = -1
	if srv.spool != nil {
		s.log = srv.newLog(s)
	}
	s.sync()
	return s
}

// grow gives the shard a dest (and counters, and scheduler room) for every member of
// v it does not know yet: analyzers added at run time. It allocates, on the loop,
// once per added analyzer (bounded by maxAnalyzers); the per-packet path never
// does. Counters move when their slice grows, so every dest's pointer is redone.
func (s *shard) grow(v *sched.View) {
	n := len(v.Members)
	if n <= len(s.dests) {
		return
	}
	s.cred.Grow(n)
	if s.aff != nil {
		s.aff.Grow(n)
	}
	for len(s.stats.Dests) < n {
		s.stats.Dests = append(s.stats.Dests, DestStats{})
	}
	for i := len(s.dests); i < n; i++ {
		m := &v.Members[i]
		spec, _ := analyzerURL(m.URL) // the controller took only URLs that parse
		d := &dest{id: i, name: m.Name, host: spec.Host, addr: m.Addr}
		d.conns = make([]*upstream, s.srv.cfg.UpstreamConns)
		for k := range d.conns {
			d.conns[k] = &upstream{sh: s, d: d, failed: failNone}
		}
		s.dests = append(s.dests, d)
	}
	for i, d := range s.dests {
		d.st = &s.stats.Dests[i]
	}
}

// sync applies a new View: new members (grow), weights (credits restart when the
// eligible set changed, so a returning analyzer gets no burst, and carry over a
// mere reweighting), eligibility, batching; it moves packets queued for analyzers
// that may no longer take them and starts closing the connections of removed ones.
func (s *shard) sync() {
	v := s.srv.board.Load()
	if v == nil || v.Gen == s.gen {
		return
	}
	s.gen, s.view = v.Gen, v
	s.grow(v)
	s.weights = v.Effective(s.weights)
	s.cred.SetWeights(s.weights)
	if s.aff != nil {
		s.setAffinityWeights(v)
	}
	for i, d := range s.dests {
		m := &v.Members[i]
		if d.addr != m.Addr {
			s.readdress(d, m)
		}
		d.eligible, d.batch, d.trial = m.Eligible, m.Batch, m.State == StateHalfOpen
		d.removed, d.name = m.State == StateRemoved, m.Name
		if d.eligible {
			s.markDirty(d) // dial and flush anything that waited
		}
	}
	for _, d := range s.dests {
		if !d.eligible {
			s.evacuate(d)
		}
		if d.removed {
			s.retire(d)
		}
	}
}

// readdress points d at the analyzer that took its id over: a tombstone's id
// reclaimed for another URL. The controller reclaims only an id nothing is held
// for, so d's connections carry nothing: open ones are closed (and redialled at
// the new address when it takes packets), one being dialled is closed when it
// lands (opened). d's counters continue: the id's series get the new name.
func (s *shard) readdress(d *dest, m *sched.Member) {
	spec, _ := analyzerURL(m.URL) // the controller took only URLs that parse
	d.addr, d.host, d.name = m.Addr, spec.Host, m.Name
	d.gen++
	d.win = window{} // another analyzer: its window starts afresh
	for _, u := range d.conns {
		u.backoff, u.redialAt = 0, 0
		if u.state == connOpen {
			u.closing = true
			_ = s.loop.Close(u.c)
		}
	}
}

// retire closes the connections of a removed analyzer that have nothing in flight;
// the others close after their last answer (closing), which settles or retries
// what they carried. It runs at every View change and tick while d is removed.
func (s *shard) retire(d *dest) {
	for _, u := range d.conns {
		if u.state != connOpen || u.closing {
			continue // none, or closing already (onResponses closes it after its last answer)
		}
		u.closing = true
		if u.flights.len() == 0 {
			_ = s.loop.Close(u.c)
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
		s.release(p, d, heldQueued)
		s.reroute(p, d, s.dests[to], false)
	}
}

// reroute gives a packet released by from to another analyzer: counted as moved
// away from one and routed to the other (the accounting's rerouted_a term), and
// queued there, at the front when it comes back from a failed send.
func (s *shard) reroute(p *parcel, from, to *dest, front bool) {
	from.st.Rerouted++
	to.st.RoutedPackets++
	to.st.RoutedMessages += int64(p.msgs)
	s.enqueue(p, to, front)
}

// Where a packet a dest owns is: these three helpers are the only code that moves
// a packet in or out of a dest's counters (Queued, InFlight, QueuedBytes) and the
// distributor's budget for that analyzer, so the two cannot disagree.
type heldAt uint8

const (
	heldQueued   heldAt = iota // in the dest's outbox
	heldInFlight               // on a connection's in-flight list
)

func (h heldAt) String() string {
	if h == heldInFlight {
		return "in_flight"
	}
	return "queued"
}

// enqueue makes d own p, queued in its outbox (at the front for a packet coming
// back from a failed send, so it is not starved).
func (s *shard) enqueue(p *parcel, d *dest, front bool) {
	size := int64(p.body.Len())
	if front {
		d.outbox.pushFront(p)
	} else {
		d.outbox.push(p)
	}
	d.st.Queued++
	d.st.QueuedBytes += size
	b := &s.srv.budget.dests[d.id]
	b.n.Add(1)
	b.bytes.Add(size)
	s.markDirty(d)
	if s.slow {
		s.busy() // answer deadlines, redials and flushes need the fast tick again
	}
}

// send takes the oldest packet of d's outbox onto u's in-flight list.
func (s *shard) send(d *dest, u *upstream) *parcel {
	p := d.outbox.pop()
	d.st.Queued--
	d.st.InFlight++
	u.parcels.push(p)
	return p
}

// release ends d's ownership of p, which the caller has already taken out of the
// outbox or the in-flight list where it was held.
func (s *shard) release(p *parcel, d *dest, at heldAt) {
	size := int64(p.body.Len())
	if at == heldInFlight {
		d.st.InFlight--
	} else {
		d.st.Queued--
	}
	d.st.QueuedBytes -= size
	b := &s.srv.budget.dests[d.id]
	b.n.Add(-1)
	b.bytes.Add(-size)
}

// refreshFull marks the analyzers whose queue limit the whole distributor has
// reached (other loops change it, so it is read afresh for every packet).
func (s *shard) refreshFull() {
	s.full.Clear()
	for i, d := range s.dests {
		if d.eligible && s.srv.budget.full(i) {
			s.full.Add(i)
		}
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
	// The packet takes its place in INGEST_BUFFER_SIZE first, with an add that no
	// other loop can race past, and gives it back if it is refused below.
	if !s.srv.budget.reserve(len(body)) {
		return acceptFull
	}
	if s.cred.Eligible() == 0 {
		s.srv.budget.unreserve(len(body))
		return acceptNoAnalyzer
	}
	s.refreshFull()
	a := s.route(msgs) // affinity.go
	if a < 0 {
		s.srv.budget.unreserve(len(body))
		return acceptQueueFull
	}
	d := s.dests[a]
	p := s.newParcel(body, msgs)
	s.srv.budget.grew(cap(p.body.B) - len(body)) // MAX_BUFFER_BYTES counts the pooled buffer's capacity
	d.st.RoutedPackets++
	d.st.RoutedMessages += int64(msgs)
	s.enqueue(p, d, false)
	s.placed = p
	s.stats.AcceptedPackets++
	s.stats.AcceptedMessages += int64(msgs)
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

// recycle returns a parcel that left the distributor (delivered or dropped) to the
// free list and its buffer to the pool, and settles its spool record.
func (s *shard) recycle(p *parcel) {
	if p.ref.Valid() {
		s.log.Settle(p.ref)
		p.ref = spool.Ref{}
	}
	s.srv.bodies.Put(p.body)
	p.body = nil
	s.free = append(s.free, p)
}

// settle counts a parcel delivered by d (taken off a connection's in-flight list)
// and frees it.
func (s *shard) settle(p *parcel, d *dest) {
	s.release(p, d, heldInFlight)
	d.st.DeliveredPackets++
	d.st.DeliveredMessages += int64(p.msgs)
	s.srv.budget.unreserve(cap(p.body.B))
	s.recycle(p)
}

// retry takes back a parcel whose send to d failed (taken off a connection's
// in-flight list) and gives it to the best other eligible analyzer, or back to d
// when there is none. After SENDER_RETRIES failed re-sends it is dropped, counted
// and logged.
func (s *shard) retry(p *parcel, d *dest) {
	p.attempts++
	s.resend(p, d)
}

// resend is retry without spending an attempt, for a packet whose send failed
// through no fault of its own (see shard.closed).
func (s *shard) resend(p *parcel, d *dest) {
	s.release(p, d, heldInFlight)
	d.st.Retries++
	if p.attempts > int(s.srv.knobs.senderRetries.Load()) {
		s.drop(p, d, dropRetries)
		return
	}
	s.skip.Clear()
	s.skip.Add(d.id)
	if i := s.cred.Move(d.id, p.msgs, &s.skip); i >= 0 {
		s.reroute(p, d, s.dests[i], true)
		return
	}
	s.enqueue(p, d, true)
}

// drop gives up on a parcel d owned and has released: counted under reason on d,
// logged (rate-limited), freed.
func (s *shard) drop(p *parcel, d *dest, reason dropReason) {
	d.st.Dropped[reason]++
	s.srv.budget.unreserve(cap(p.body.B))
	s.srv.logDrop(d.name, reason.String(), p)
	s.recycle(p)
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

// tick runs on the loop every tickInterval (every quietInterval while the shard is
// quiet): view changes, answer deadlines, redials, and the flush of anything left
// waiting.
func (s *shard) tick() {
	s.ticking = true
	defer func() { s.ticking = false }()
	s.ticks++
	s.now = nanotime()
	s.wallOffset = time.Now().UnixNano() - s.now
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
		if d.removed {
			s.retire(d) // a connection dialled before the removal, or one that was busy
		}
	}
	if len(s.lingerers) > 0 {
		s.lingerTick()
	}
	// By the clock, not by counting ticks: a loaded machine skips ticks. A tick
	// early by less than one fast tick still counts, so the quiet pace (one tick
	// a second) does not stretch the timeouts' check to every other second.
	if s.now-s.expired >= int64(time.Second-tickInterval) {
		s.expired = s.now
		s.expire()
	}
	s.flushDirty()
	if s.log != nil {
		s.flushSpool()
	}
	if !s.slow && s.quiet() {
		s.slow = true
		s.tickQuiet.Store(true)
	}
}

// quiet reports whether nothing on the shard needs the fast tick: no packet
// queued or in flight (so no answer deadline, redial or flush is due), nothing
// lingering, no lingering close, not shutting down. Inbound timeouts (expire) are
// checked by the quiet tick too, once a second as always.
func (s *shard) quiet() bool {
	if len(s.lingerers) > 0 || s.lingerArmed || s.closing {
		return false
	}
	for _, d := range s.dests {
		if d.st.Queued != 0 || d.st.InFlight != 0 {
			return false
		}
	}
	return true
}

// busy puts the tick back on its fast pace at once: the loop calls it when work
// appears on a quiet shard (a packet queued, a lingering close begun).
func (s *shard) busy() {
	s.slow = false
	s.tickQuiet.Store(false)
	select {
	case s.tickWake <- struct{}{}:
	default: // a nudge is pending already
	}
}

// dropAll gives up on everything this shard still holds: the shutdown timeout ran
// out. Each packet is counted under shutdown_timeout and the first is logged; with
// a spool it is left there instead (leave), for the next start.
func (s *shard) dropAll() {
	for _, d := range s.dests {
		for d.outbox.len() > 0 {
			p := d.outbox.pop()
			s.release(p, d, heldQueued)
			s.giveUp(p, d)
		}
		for _, u := range d.conns {
			for u.flights.len() > 0 {
				f := u.flights.pop()
				for range f.n {
					p := u.parcels.pop()
					s.release(p, d, heldInFlight)
					s.giveUp(p, d)
				}
			}
			if u.state == connOpen {
				u.failed = failClosed // a late answer must not be read as one without a request
				_ = s.loop.Close(u.c)
			}
		}
	}
}

// giveUp ends the shard's hold on p at the shutdown timeout: dropped, or left in
// the spool when there is one.
func (s *shard) giveUp(p *parcel, d *dest) {
	if p.ref.Valid() {
		s.leave(p, d)
		return
	}
	s.drop(p, d, dropShutdown)
}

// tickInterval is the tick's pace while a shard holds packets; quietInterval
// while it holds nothing timed (shard.quiet).
const (
	tickInterval  = 10 * time.Millisecond
	quietInterval = time.Second
)

var epoch = time.Now()

// nanotime is monotonic nanoseconds since start.
func nanotime() int64 { return int64(time.Since(epoch)) }
