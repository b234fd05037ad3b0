package proxy

import "sync/atomic"

// liveSettings is every setting a reload (SIGHUP, reload.go) applies while
// serving, with how: the one place that decides. Any other setting that changed is
// logged and reported as taking effect on restart; docs/operations.md's Reload
// table lists the same split (TestReloadDocsTable checks it).
//
// An apply func runs on Main's goroutine (reloads run one at a time) and must be
// race-free against the loops: it never writes a Config field a loop reads. It
// stores into an atomic the loops read (the budget's limits, the controller's
// maxFailures), changes the controller's own copy under its lock, or sets
// something only Main's goroutine reads. ANALYZERS (weights) is applied apart, by
// reloader.analyzers.
var liveSettings = map[string]func(r *reloader, next *Config){
	"INGEST_BUFFER_SIZE":       func(r *reloader, n *Config) { r.srv.budget.ingestLimit.Store(int64(n.IngestBufferSize)) },
	"PER_ANALYZER_QUEUE_SIZE":  func(r *reloader, n *Config) { r.srv.budget.queueLimit.Store(int64(n.QueueSize)) },
	"PER_ANALYZER_QUEUE_BYTES": func(r *reloader, n *Config) { r.srv.budget.bytesLimit.Store(n.QueueBytes) },

	"MAX_FAILURES":              controlSetting(func(c, n *Config) { c.MaxFailures = n.MaxFailures }),
	"SLOW_START_SEC":            controlSetting(func(c, n *Config) { c.SlowStart = n.SlowStart }),
	"HEALTH_CHECK_INTERVAL_SEC": controlSetting(func(c, n *Config) { c.HealthInterval = n.HealthInterval }),
	"DOWN_PROBE_INTERVAL_MS":    controlSetting(func(c, n *Config) { c.DownProbeInterval = n.DownProbeInterval }),
	"BREAKER_BACKOFF_MAX_SEC":   controlSetting(func(c, n *Config) { c.BreakerBackoffMax = n.BreakerBackoffMax }),
	"ROUTING":                   controlSetting(func(c, n *Config) { c.Routing = n.Routing }),
	"CAPACITY_MIN_SHARE":        controlSetting(func(c, n *Config) { c.CapacityMinShare = n.CapacityMinShare }),

	"SENDER_RETRIES":      func(r *reloader, n *Config) { r.srv.knobs.senderRetries.Store(int32(n.SenderRetries)) },
	"SPILL":               func(r *reloader, n *Config) { r.srv.knobs.spill.Store(n.Spill) },
	"SHED_BELOW":          func(r *reloader, n *Config) { r.srv.knobs.shedBelow.Store(int32(n.ShedBelow)) },
	"SHED_AT":             func(r *reloader, n *Config) { r.srv.knobs.shedAt.Store(shedAtFixed(n.ShedAt)) },
	"MAX_CONNS":           func(r *reloader, n *Config) { r.srv.knobs.maxConns.Store(int64(n.MaxConns)) },
	"MAX_CONNS_PER_IP":    func(r *reloader, n *Config) { r.srv.knobs.maxConnsPerIP.Store(int64(n.MaxConnsPerIP)) },
	"REQUEST_TIMEOUT_SEC": func(r *reloader, n *Config) { r.srv.knobs.requestTimeout.Store(int64(n.RequestTimeout)) },
	"IDLE_TIMEOUT_SEC":    func(r *reloader, n *Config) { r.srv.knobs.idleTimeout.Store(int64(n.IdleTimeout)) },

	"LOG_LEVEL":            func(r *reloader, n *Config) { r.level.Set(logLevel(n.LogLevel)) },
	"SHUTDOWN_TIMEOUT_SEC": func(r *reloader, n *Config) { r.shutdown.Store(int64(n.ShutdownTimeout)) }, // Main reads it after serve

	// Not here, so restart-only: SPOOL_DIR, SPOOL_SYNC, SPOOL_SYNC_INTERVAL_MS,
	// SPOOL_SEGMENT_BYTES, SPOOL_MAX_BYTES. The spool is opened, locked and read
	// once, at start, and its writers keep the mode and sizes they started with.
}

// knobs are the settings (other than the buffer limits) that the loops read and a
// reload may change: each is read with one atomic load where Config's field was.
// SENDER_RETRIES when a send failed, SPILL per packet, MAX_CONNS and MAX_CONNS_PER_IP per accepted
// connection, the two timeouts by each loop's once-a-second expiry. A change
// applies from the next read: a lower MAX_CONNS or MAX_CONNS_PER_IP closes no open connection, a
// shorter timeout applies to connections already open at their next check.
type knobs struct {
	senderRetries  atomic.Int32
	spill          atomic.Bool
	maxConns       atomic.Int64
	maxConnsPerIP  atomic.Int64 // 0: no limit
	requestTimeout atomic.Int64 // ns
	idleTimeout    atomic.Int64 // ns
	shedBelow      atomic.Int32 // SHED_BELOW as a ShedLevel (ShedOff: off), read per packet (shed.go)
	shedAt         atomic.Int64 // SHED_AT × shedScale, read per packet while shedBelow is set
}

func (k *knobs) store(cfg *Config) {
	k.senderRetries.Store(int32(cfg.SenderRetries))
	k.spill.Store(cfg.Spill)
	k.maxConns.Store(int64(cfg.MaxConns))
	k.maxConnsPerIP.Store(int64(cfg.MaxConnsPerIP))
	k.requestTimeout.Store(int64(cfg.RequestTimeout))
	k.idleTimeout.Store(int64(cfg.IdleTimeout))
	k.shedBelow.Store(int32(cfg.ShedBelow))
	k.shedAt.Store(shedAtFixed(cfg.ShedAt))
}

// setLimits stores the buffer limits of cfg, where every loop reads them.
func (b *budget) setLimits(cfg *Config) {
	b.ingestLimit.Store(int64(cfg.IngestBufferSize))
	b.queueLimit.Store(int64(cfg.QueueSize))
	b.bytesLimit.Store(cfg.QueueBytes)
}

// controlSetting applies a setting of the controller: set copies it from the new
// configuration into the controller's own.
func controlSetting(set func(ctl, next *Config)) func(*reloader, *Config) {
	return func(r *reloader, next *Config) {
		r.srv.ctl.reconfigure(func(c *Config) { set(c, next) })
	}
}

// reconfigure changes the controller's copy of its settings (set writes the new
// values into it) under mu: the controller goroutine and the admin calls read them
// only under mu, and the loops read MAX_FAILURES only through maxFailures. A new
// breaker backoff cap applies from the next trip, a new slow start to the ramps
// under way; a probe scheduled further out than a new interval allows is brought
// forward. The controller is then nudged, so a step runs with the new values.
func (c *controller) reconfigure(set func(cfg *Config)) {
	c.mu.Lock()
	set(&c.cfg)
	c.maxFailures.Store(int32(c.cfg.MaxFailures))
	now := c.now()
	for _, m := range c.members {
		every := c.cfg.HealthInterval
		if m.br.state == StateOpen || m.br.state == StateUnknown {
			every = c.cfg.DownProbeInterval
		}
		if due := now.Add(every); m.nextProbe.After(due) {
			m.nextProbe = due
		}
	}
	c.mu.Unlock()
	c.nudge()
}
