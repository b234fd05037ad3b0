package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"
	"github.com/valyala/bytebufferpool"

	"github.com/sluicelog/sluice/sched"
	"github.com/sluicelog/sluice/spool"
)

// Server is the distributor: a gnet engine whose event loops are the shards, the
// controller, and the metrics/admin HTTP server.
type Server struct {
	cfg   Config
	log   *slog.Logger
	board sched.Board
	ctl   *controller
	prom  *promSet
	limit *emitterLimit // nil when EMITTER_RATE_LIMIT is 0
	// budget holds the whole distributor's packets against its buffer limits; every loop uses it.
	budget *budget
	auth   *ingestAuth // nil when no INGEST_TOKENS: /ingest is open
	dns    *discovery  // nil without ANALYZERS_DNS
	// bodies holds packet buffers. Its own pool, not the package default: the pool
	// calibrates the buffer size it keeps to what this distributor's packets need
	// (buffers far above the 95th percentile are let go rather than pinned).
	bodies bytebufferpool.Pool

	retryAfter atomic.Int32 // seconds, for 503 answers
	drainSec   atomic.Int32 // backlog ÷ delivery rate, refreshed every second
	conns      atomic.Int64 // inbound connections, for MAX_CONNS
	perIP      *ipConns     // inbound connections per client address, for MAX_CONNS_PER_IP

	// inForce is each setting as written once a reload applied some live (reload.go);
	// nil until then: cfg.raw.
	inForce atomic.Pointer[map[string]string]
	knobs   knobs // settings the loops read that a reload may change (live.go)

	mu       sync.Mutex // guards byLoop and shards (loops add their shard on first use)
	snapMu   sync.Mutex // guards each shard's lastSnap
	byLoop   map[gnet.EventLoop]*shard
	shards   []*shard
	eng      gnet.Engine
	addr     string
	booted   chan struct{}
	runErr   chan error
	stopped  atomic.Bool
	closing  atomic.Bool
	ctx      context.Context
	cancel   context.CancelFunc
	adminSrv *http.Server
	adminLn  net.Listener

	// The spool (SPOOL_DIR, spool.go): nil without one. recovered is what Open found
	// unsettled, replayed by one goroutine after Start (replayWG).
	spool      *spool.Spool
	recovered  []*spool.Recovered
	spoolSyncs syncHist
	replayWG   sync.WaitGroup

	dropLog rateLog
	upLog   rateLog
	inLog   rateLog
	shedLog rateLog // SHED_BELOW refusals (shed.go)

	// tickEvery and quietEvery are the shards' tick periods, busy and quiet:
	// tickInterval and quietInterval, set by New; tests set them before Start.
	tickEvery, quietEvery time.Duration
}

// New checks cfg and builds a Server; Start runs it.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if len(cfg.Analyzers) == 0 && cfg.AnalyzersDNS == "" {
		return nil, errors.New("proxy: no analyzers configured (ANALYZERS or ANALYZERS_DNS)")
	}
	if len(cfg.Analyzers) > maxAnalyzers {
		return nil, fmt.Errorf("proxy: %d analyzers configured, at most %d", len(cfg.Analyzers), maxAnalyzers)
	}
	if cfg.Loops <= 0 {
		cfg.Loops = 1
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		cfg:    cfg,
		log:    log,
		byLoop: map[gnet.EventLoop]*shard{},
		booted: make(chan struct{}),
		runErr: make(chan error, 1),

		tickEvery:  tickInterval,
		quietEvery: quietInterval,
	}
	s.limit = newEmitterLimit(cfg.EmitterRate, cfg.EmitterBurst)
	s.budget = newBudget(maxAnalyzers) // ids of analyzers added at run time index it too
	s.budget.setLimits(&cfg)
	s.budget.bufferBytes, s.budget.bytesOn = cfg.MaxBufferBytes, cfg.MaxBufferBytes > 0
	s.knobs.store(&cfg)
	s.perIP = newIPConns()
	var err error
	if s.auth, err = newIngestAuth(&cfg); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.ctl = newController(cfg, &s.board, log, s.updateRetryAfter, s.drainSeconds)
	s.ctl.retired = func(id int) bool { return s.budget.dests[id].n.Load() == 0 }
	s.ctl.budget = s.budget
	s.ctl.publish(time.Now())
	s.ctl.published = s.viewPublished
	s.prom = newPromSet(s)
	if cfg.AnalyzersDNS != "" {
		s.dns = newDiscovery(s)
	}
	s.retryAfter.Store(1)
	if cfg.SpoolDir != "" {
		if err := s.openSpool(); err != nil {
			s.cancel()
			return nil, err
		}
	}
	return s, nil
}

// Start probes every analyzer (waiting up to a second for the answers, so those
// that are up take packets from the first request), listens on LISTEN_ADDR or PORT
// (and METRICS_ADDR) and returns once both accept connections.
func (s *Server) Start() error {
	if s.dns != nil {
		_ = s.dns.refresh(s.ctx, true) // a failure is logged and counted; the refresh loop tries again
	}
	s.ctl.firstProbes(min(s.ctl.client.Timeout, firstProbeWait))
	// METRICS_ADDR is bound before the ingest port opens, so a client that sees
	// the ingest port answer (its /readyz, say) finds the admin port accepting
	// too: connections wait in its backlog the moment until it serves.
	if s.cfg.MetricsAddr != "" {
		if err := s.listenAdmin(); err != nil {
			return err
		}
	}
	go func() {
		err := gnet.Run(&handler{srv: s}, "tcp://"+s.cfg.IngestAddr(),
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(s.cfg.Loops),
			gnet.WithReusePort(false),
			gnet.WithReuseAddr(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLoadBalancing(gnet.LeastConnections),
			gnet.WithLogger(&gnetLog{log: s.log}),
			gnet.WithLogLevel(logging.DebugLevel), // gnetLog decides what is shown
		)
		s.runErr <- err
	}()
	select {
	case <-s.booted:
	case err := <-s.runErr:
		if s.adminLn != nil {
			_ = s.adminLn.Close()
		}
		if s.spool != nil {
			_ = s.spool.Close()
		}
		return fmt.Errorf("listen on %s: %w", s.cfg.IngestAddr(), err)
	}
	go s.ctl.run(s.ctx)
	go s.drainEstimator(s.ctx, time.Now())
	if s.dns != nil {
		go s.dns.run(s.ctx)
	}
	if s.adminLn != nil {
		s.serveAdmin()
	}
	if s.spool != nil {
		s.replayWG.Add(1)
		go s.replay(s.recovered)
		s.recovered = nil
	}
	s.log.Info("distributor listening", "addr", s.addr, "metrics", s.MetricsAddr(), "loops", s.cfg.Loops, "gomaxprocs", runtime.GOMAXPROCS(0), "analyzers", s.View().Live())
	return nil
}

// Addr is the ingest listener's address.
func (s *Server) Addr() string { return s.addr }

// MetricsAddr is the metrics/admin listener's address ("" when off).
func (s *Server) MetricsAddr() string {
	if s.adminLn == nil {
		return ""
	}
	return s.adminLn.Addr().String()
}

// shardFor returns (making it on first use) the shard of a loop. It runs on that
// loop, so the shard is built by the goroutine that will own it.
func (s *Server) shardFor(loop gnet.EventLoop) *shard {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sh, ok := s.byLoop[loop]; ok {
		return sh
	}
	sh := newShard(s, len(s.shards), loop)
	s.byLoop[loop] = sh
	s.shards = append(s.shards, sh)
	go s.tickShard(sh)
	if s.cfg.BatchLinger > 0 {
		go s.lingerShard(sh)
	}
	return sh
}

// lingerShard flushes the shard's outboxes BATCH_LINGER_US after the loop first
// held packets back (shard.lingering). It sleeps while nothing lingers, so an idle
// distributor pays nothing for it.
func (s *Server) lingerShard(sh *shard) {
	t := time.NewTimer(s.cfg.BatchLinger)
	t.Stop()
	run := gnet.RunnableFunc(func(context.Context) error { sh.lingerFire(); return nil })
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-sh.lingerWake:
		}
		t.Reset(s.cfg.BatchLinger)
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if err := sh.loop.Execute(s.ctx, run); err != nil {
			return
		}
	}
}

// tickShard runs the shard's timers on its own loop: every tickEvery while the
// shard holds packets or anything else timed, every quietEvery once a tick found
// it quiet (shard.quiet), and at once when nudged through tickWake: by the loop
// when work appears on a quiet shard (shard.busy), or by the controller when it
// publishes a View (viewPublished), which the quiet shard applies in that tick.
// An idle distributor's loops so wake about once a second, not a hundred times.
func (s *Server) tickShard(sh *shard) {
	t := time.NewTimer(s.tickEvery)
	defer t.Stop()
	run := gnet.RunnableFunc(func(context.Context) error { sh.tick(); return nil })
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-sh.tickWake:
		}
		if err := sh.loop.Execute(s.ctx, run); err != nil {
			return
		}
		// The tick just queued may turn the shard quiet: then this wait is short
		// once more, and the next one long.
		next := s.tickEvery
		if sh.tickQuiet.Load() {
			next = s.quietEvery
		}
		t.Reset(next)
	}
}

// viewPublished runs on the controller (under its lock) after each View it
// publishes: quiet shards tick at once to apply it, as busy ones do within
// tickEvery. It never blocks.
func (s *Server) viewPublished() {
	for _, sh := range s.shardList() {
		if sh.tickQuiet.Load() {
			select {
			case sh.tickWake <- struct{}{}:
			default:
			}
		}
	}
}

func (s *Server) shardList() []*shard {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*shard(nil), s.shards...)
}

// Snapshot sums every shard's counters, each copied on its own loop so the
// accounting invariant holds exactly in the result.
func (s *Server) Snapshot() Stats { return s.sumStats(s.shardSnapshots()) }

// shardSnapshots copies every shard's counters, each on its own loop, in loop order.
func (s *Server) shardSnapshots() []Stats {
	list := s.shardList()
	out := make([]Stats, len(list))
	for i, sh := range list {
		out[i] = s.snapshotShard(sh)
	}
	return out
}

// sumStats sums shard snapshots. Dests has an entry for every member of the View
// current when it returns, so a caller that loaded its View before the snapshots
// may index Dests by any of that View's ids (a shard that has not applied the
// newest View yet has no counters for its new members: zeros).
func (s *Server) sumStats(shards []Stats) Stats {
	var total Stats
	for i := range shards {
		total.add(&shards[i])
	}
	for len(total.Dests) < len(s.View().Members) {
		total.Dests = append(total.Dests, DestStats{})
	}
	return total
}

func (s *Server) snapshotShard(sh *shard) Stats {
	if s.stopped.Load() {
		return sh.stats.clone() // loops have exited: nothing writes any more
	}
	ch := make(chan Stats, 1)
	err := sh.loop.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		ch <- sh.stats.clone()
		return nil
	}))
	if err == nil {
		select {
		case st := <-ch:
			s.snapMu.Lock()
			sh.lastSnap = st
			s.snapMu.Unlock()
			return st
		case <-time.After(5 * time.Second):
		}
	}
	// The loop did not answer (engine stopping, or stalled): never read counters it
	// may still be writing; the last consistent copy is the honest answer.
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	return sh.lastSnap.clone()
}

// View is the analyzers' current state.
func (s *Server) View() *sched.View { return s.board.Load() }

// drainEstimator keeps the delivery rate that Retry-After is derived from. Its
// clock starts at start (Start's time), when nothing had been delivered.
func (s *Server) drainEstimator(ctx context.Context, start time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	lastDelivered, lastAt := int64(0), start
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			st := s.Snapshot()
			tot := st.Total()
			s.drainSec.Store(drainEstimate(tot.Queued+tot.InFlight, tot.DeliveredPackets-lastDelivered, now.Sub(lastAt)))
			lastDelivered, lastAt = tot.DeliveredPackets, now
		}
	}
}

// drainEstimate is the seconds a backlog takes to drain when delivered packets
// were delivered in the last elapsed: at least 1, at most maxRetryAfter.
func drainEstimate(backlog, delivered int64, elapsed time.Duration) int32 {
	switch {
	case backlog <= 0:
		return 1
	case delivered <= 0 || elapsed <= 0:
		return stalledRetryAfter // a backlog and nothing delivered: no estimate, so not "now"
	}
	sec := float64(backlog)*elapsed.Seconds()/float64(delivered) + 1
	return int32(min(sec, float64(maxRetryAfter)))
}

// stalledRetryAfter is the Retry-After while packets wait and none was delivered in
// the last second.
const stalledRetryAfter = 5

func (s *Server) drainSeconds() int32 { return max(s.drainSec.Load(), 1) }

func (s *Server) updateRetryAfter(sec int32) { s.retryAfter.Store(min(max(sec, 1), maxRetryAfter)) }

// Shutdown stops accepting packets, lets the loops flush every outbox to the
// analyzers until nothing is queued or in flight or ctx ends, then stops. What is
// still undelivered then is counted as dropped (shutdown_timeout) and logged.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.closing.CompareAndSwap(false, true) {
		return nil
	}
	for _, sh := range s.shardList() {
		_ = sh.loop.Execute(ctx, gnet.RunnableFunc(func(context.Context) error {
			sh.closing = true
			return nil
		}))
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		snap := s.Snapshot()
		tot := snap.Total()
		if tot.Queued+tot.InFlight == 0 {
			break
		}
		select {
		case <-ctx.Done():
			s.dropRemaining()
			goto stop
		case <-t.C:
		}
	}
stop:
	if s.spool != nil {
		s.quiesceSpool()
	}
	s.cancel()
	if s.adminSrv != nil {
		_ = s.adminSrv.Close()
	}
	err := s.eng.Stop(context.Background())
	s.stopped.Store(true)
	<-s.runErr
	s.ctl.client.CloseIdleConnections()
	snap := s.Snapshot()
	tot := snap.Total()
	if s.spool != nil {
		s.replayWG.Wait() // its Execute fails now that the loops are gone
		// The loops are stopped: this goroutine owns the logs now. Their last
		// settles go out, then the writers stop and the lock is released.
		for _, sh := range s.shardList() {
			sh.log.Flush()
		}
		if cerr := s.spool.Close(); cerr != nil {
			s.log.Error("spool: close", "err", cerr)
		}
		s.log.Info("distributor stopped", "delivered", tot.DeliveredPackets, "dropped", tot.DroppedTotal(),
			"left_in_spool", tot.LeftInSpool, "spool_dir", s.cfg.SpoolDir)
		return err
	}
	s.log.Info("distributor stopped", "delivered", tot.DeliveredPackets, "dropped", tot.DroppedTotal())
	return err
}

// dropRemaining counts what the shutdown timeout left behind, on each loop (with a
// spool: left on disk, not dropped).
func (s *Server) dropRemaining() {
	var wg sync.WaitGroup
	for _, sh := range s.shardList() {
		wg.Add(1)
		err := sh.loop.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			defer wg.Done()
			sh.dropAll()
			return nil
		}))
		if err != nil {
			wg.Done()
		}
	}
	wg.Wait()
}

// handler is the gnet EventHandler; it only dispatches to the shard that owns the
// connection.
type handler struct {
	gnet.BuiltinEventEngine
	srv *Server
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	s := h.srv
	s.eng = eng
	s.addr = boundAddr(eng, s.cfg.Port)
	close(s.booted)
	return gnet.None
}

// boundAddr finds the port the kernel chose for ":0".
func boundAddr(eng gnet.Engine, port int) string {
	fd, err := eng.Dup()
	if err != nil {
		return net.JoinHostPort("", strconv.Itoa(port))
	}
	defer syscall.Close(fd)
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return net.JoinHostPort("", strconv.Itoa(port))
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
	case *syscall.SockaddrInet6:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
	}
	return net.JoinHostPort("", strconv.Itoa(port))
}

func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if u, ok := c.Context().(*upstream); ok {
		u.sh.now = nanotime()
		u.sh.opened(u, c)
		u.sh.flushDirty()
		return nil, gnet.None
	}
	s := h.srv
	sh := s.shardFor(c.EventLoop())
	ip := remoteIP(c.RemoteAddr())
	if ip.IsValid() && !s.perIP.open(ip, s.knobs.maxConnsPerIP.Load()) {
		sh.stats.Rejected[rejectConnsPerIP]++
		return sh.refuseOpen(c, "too many connections from this address")
	}
	if s.conns.Add(1) > s.knobs.maxConns.Load() {
		// Make room by closing this loop's longest-idle connection (its OnClose,
		// run by Close, gives its place back); refuse only when it has none.
		if v := sh.longestIdle(); v != nil {
			sh.stats.Closed[closeEvicted]++
			_ = sh.loop.Close(v.c)
		} else {
			s.conns.Add(-1)
			if ip.IsValid() {
				s.perIP.close(ip)
			}
			sh.stats.Rejected[rejectConns]++
			return sh.refuseOpen(c, "too many connections")
		}
	}
	now := nanotime()
	in := &ingress{sh: sh, c: c, ip: ip, last: now, opened: now, started: now}
	in.parser.Init(s.cfg.Limits())
	c.SetContext(in)
	sh.addIngress(in)
	return nil, gnet.None
}

func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *ingress:
		return x.sh.onRequests(x, c)
	case *upstream:
		sh := x.sh
		sh.now = nanotime()
		a := sh.onResponses(x, c)
		sh.flushDirty()
		return a
	}
	return gnet.Close
}

func (h *handler) OnClose(c gnet.Conn, err error) gnet.Action {
	switch x := c.Context().(type) {
	case *ingress:
		if !x.refusedAtOpen { // not counted in conns nor perIP
			h.srv.conns.Add(-1)
			if x.ip.IsValid() {
				h.srv.perIP.close(x.ip)
			}
		}
		x.sh.removeIngress(x)
	case *upstream:
		sh := x.sh
		sh.now = nanotime()
		sh.closed(x, err)
		sh.flushDirty()
	}
	return gnet.None
}
