package emitter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// run is the state shared by a run's connections. Apart from the pacer's slot
// counter, the packet sequence and the Count claim (one atomic each per packet),
// nothing here is written on the hot path.
type run struct {
	cfg     runConfig
	ctx     context.Context
	start   time.Time
	startMs int64 // start as Unix milliseconds, for message timestamps
	stopAt  int64 // ns since the start at which no new packet starts; MaxInt64 = never
	drainBy atomic.Int64
	pacer   *pacer
	budget  *retryBudget
	seq     atomic.Uint64
	claimed atomic.Int64
	conns   []*conn

	// downSince is when the target started refusing connects (ns since the start,
	// plus one so that zero means "not down"). A connect or an answer clears it;
	// a connect that fails when it is older than DownTimeout ends the run.
	downSince atomic.Int64
	giveUp    context.CancelCauseFunc
}

// ErrTargetDown ends a run whose target refused every connect for DownTimeout.
var ErrTargetDown = errors.New("target unreachable")

// connectFailed is called by a connection whose connect failed.
func (r *run) connectFailed(now int64, err error) {
	r.downSince.CompareAndSwap(0, now+1)
	if d := int64(r.cfg.DownTimeout); d > 0 && now-(r.downSince.Load()-1) > d {
		r.giveUp(fmt.Errorf("%w: no connect to %s succeeded for %v: %v", ErrTargetDown, r.cfg.addr, r.cfg.DownTimeout, err))
	}
}

// targetUp records that the target connected or answered. It only reads the shared
// word unless the target was down, so answers do not write a shared cache line.
func (r *run) targetUp() {
	if r.downSince.Load() != 0 {
		r.downSince.Store(0)
	}
}

// now is the time since the start in ns, from the monotonic clock.
func (r *run) now() int64 { return int64(time.Since(r.start)) }

func (r *run) timeAt(ns int64) time.Time { return r.start.Add(time.Duration(ns)) }

// interrupted reports whether the context ended the run.
func (r *run) interrupted() bool { return r.drainBy.Load() != math.MaxInt64 }

// stopped reports whether new packets and re-sends are over: the duration is up or
// the context ended. Packets in flight may still be answered until drainDeadline.
func (r *run) stopped(now int64) bool { return now >= r.stopAt || r.interrupted() }

func (r *run) drainDeadline() int64 {
	d := r.drainBy.Load()
	if r.stopAt != math.MaxInt64 {
		d = min(d, r.stopAt+int64(r.cfg.Grace))
	}
	return d
}

// claim takes one packet out of Count; false once Count packets were started.
func (r *run) claim() bool {
	return r.cfg.Count == 0 || r.claimed.Add(1) <= int64(r.cfg.Count)
}

// totalSent sums first sends over all connections (for the retry budget).
func (r *run) totalSent() uint64 {
	var n uint64
	for _, c := range r.conns {
		n += c.st.sent.Load()
	}
	return n
}

func (r *run) totals() totals {
	var t totals
	for _, c := range r.conns {
		t.add(c.st)
	}
	return t
}

func (r *run) latency(dst *histSnapshot) {
	*dst = histSnapshot{}
	for _, c := range r.conns {
		dst.add(&c.st.latency)
	}
}

// Run drives the target as cfg says until Duration passes, Count packets were
// answered, or ctx ends, and reports what happened. After the stop, requests already
// in flight may be answered for up to Grace; nothing new is sent. When progress is
// not nil progress is written to it once a second: redrawn in place on a
// terminal, as lines anywhere else.
//
// The error is non-nil for a Config that cannot run (and an empty Report), or, with
// the Report of what was done, when the run was ended by ErrTargetDown. Answers the
// target gave, errors included, show in the Report only.
func Run(ctx context.Context, cfg Config, progress io.Writer) (Report, error) {
	rc, err := cfg.resolve()
	if err != nil {
		return Report{}, err
	}
	ctx, giveUp := context.WithCancelCause(ctx)
	defer giveUp(nil)
	start := time.Now()
	r := &run{
		cfg:     rc,
		ctx:     ctx,
		start:   start,
		startMs: start.UnixMilli(),
		stopAt:  math.MaxInt64,
		pacer:   newPacer(rc.Rate),
		budget:  newRetryBudget(rc.RetryBudget, rc.Concurrency*rc.Pipeline),
		giveUp:  giveUp,
	}
	r.drainBy.Store(math.MaxInt64)
	if rc.Duration > 0 {
		r.stopAt = int64(rc.Duration)
	}

	seed := rand.NewPCG(uint64(start.UnixNano()), 0x736c75696365)
	pool := newTextPool(rc.MessageBytes, rand.New(seed))
	prefix := newPacketPrefix(rc.emitterID, start.UnixNano())
	r.conns = make([]*conn, rc.Concurrency)
	for i := range r.conns {
		rng := rand.New(rand.NewPCG(seed.Uint64(), uint64(i)))
		gen := newGenerator(prefix, rc.emitterID, pool, rc.MessageBytes, rc.dist, rng)
		r.conns[i] = newConn(r, gen, rng)
	}

	var wg sync.WaitGroup
	for _, c := range r.conns {
		wg.Go(c.loop)
	}
	done := make(chan struct{})
	var watchers sync.WaitGroup
	watchers.Go(func() {
		select {
		case <-ctx.Done():
			r.drainBy.Store(r.now() + int64(rc.Grace))
			at := r.drainDeadline()
			for _, c := range r.conns {
				c.interrupt(at)
			}
		case <-done:
		}
	})
	if progress != nil {
		watchers.Go(func() { r.showProgress(progress, done) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(done)
	watchers.Wait()

	var lat histSnapshot
	r.latency(&lat)
	rep := buildReport(r.totals(), &lat, elapsed)
	if cause := context.Cause(ctx); errors.Is(cause, ErrTargetDown) {
		return rep, cause
	}
	return rep, nil
}

func (r *run) showProgress(w io.Writer, done <-chan struct{}) {
	line := progressLine{w: w, inPlace: redraws(w)}
	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	var lat histSnapshot
	for {
		select {
		case <-tick.C:
			r.latency(&lat)
			line.draw(time.Duration(r.now()), r.totals(), &lat)
		case <-done:
			line.finish()
			return
		}
	}
}
