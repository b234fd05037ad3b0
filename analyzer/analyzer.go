// Package analyzer is sluice's reference analyzer: the service a distributor
// forwards log packets to, and a template for writing your own.
//
// It speaks the seed analyzers' contract (POST /ingest with one packet, GET /health)
// and adds what a benchmark and a test bench need from the other end: counts by
// packet, message and level; de-duplication by packet_id for at-least-once delivery;
// a batch endpoint a distributor can negotiate; Prometheus metrics and JSON stats;
// and run-time fault injection. It is built on sluice's codec and gnet so that it is
// not the bottleneck of a benchmark. docs/analyzer.md is the contract.
package analyzer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Config is an analyzer's configuration. Main fills it from the environment and flags.
type Config struct {
	Addr        string        // listen address, ":9001" from PORT; ":0" picks a free port
	ID          string        // ANALYZER_ID, reported by /health and /stats
	Delay       time.Duration // PROCESSING_DELAY_MS: every ingest answer is held back this long
	MetricsAddr string        // METRICS_ADDR: also serve /metrics and /stats here; "" = main port only
	DedupWindow int           // packet ids remembered for de-duplication; 0 = DefaultDedupWindow
	RecordIDs   bool          // tests: remember every received packet_id with its count (unbounded)
	Batch       bool          // advertise (Sluice-Batch: 1 on /health) and serve POST /ingest/batch
	// IgnoreDeadline (tests and the chaos harness only) processes requests read
	// after their X-Sluice-Deadline, as an analyzer that does not honour it would,
	// so the duplicates the deadline prevents can be measured.
	IgnoreDeadline bool
}

// MaxBodyBytes bounds a request body on either ingest endpoint, so it bounds a batch.
// A distributor keeps its batches under it; a larger body is answered 413.
const MaxBodyBytes = 4 << 20

// Analyzer is one analyzer server. Its counters, de-duplication window and recorded
// ids belong to the Analyzer, not to a run: they survive Stop and Start.
type Analyzer struct {
	cfg   Config
	epoch time.Time // origin of now(); its monotonic reading makes now() monotonic
	dedup *dedupWindow

	fault   atomic.Pointer[faultState] // nil = healthy; read once per event
	faultMu sync.Mutex                 // serialises fault changes

	metrics  *metrics.Set
	shardsMu sync.Mutex
	shards   []*shard
	ctl      shard // counters written off the event loops

	// Precomputed /health answers' bodies and the extra header line.
	healthyBody, unhealthyBody []byte
	healthExtra                string

	idsMu sync.Mutex
	ids   map[string]int

	connsMu sync.Mutex
	conns   map[*conn]struct{} // open connections, so "down" can close them all

	lifeMu     sync.Mutex
	running    bool
	bindAddr   string // Config.Addr with the port actually bound, for restarts
	addr       string // the same, dialable: loopback when bound to all interfaces
	listenAddr string // the listening socket's address, as bound
	eng        gnet.Engine
	runDone    chan error
	delayer    *delayer
	metricsSrv *http.Server
	metricsLn  string // the address metricsSrv listens on
}

// New returns an analyzer that is not yet listening. A zero DedupWindow takes the
// default; Batch must be set explicitly (Main sets it by default).
func New(cfg Config) *Analyzer {
	a := &Analyzer{
		cfg:     cfg,
		epoch:   time.Now(),
		dedup:   newDedupWindow(cfg.DedupWindow),
		metrics: metrics.NewSet(),
		conns:   make(map[*conn]struct{}),
	}
	if cfg.RecordIDs {
		a.ids = make(map[string]int)
	}
	id, _ := json.Marshal(cfg.ID) // a string always marshals
	a.healthyBody = []byte(`{"status":"healthy","analyzer_id":` + string(id) + `}`)
	a.unhealthyBody = []byte(`{"status":"unhealthy","analyzer_id":` + string(id) + `}`)
	if cfg.Batch {
		a.healthExtra = "Sluice-Batch: 1\r\n"
	}
	a.metrics.RegisterMetricsWriter(a.writeMetrics)
	return a
}

// now is monotonic nanoseconds since New; fault and delay deadlines use it.
func (a *Analyzer) now() int64 { return int64(time.Since(a.epoch)) }

// Start listens and serves in the background. It returns once the listener is bound
// (connections made from then on are queued until the loops run), or with the
// error. After Stop it can be called again and binds the same port as before, even
// when Config.Addr asked for port 0.
func (a *Analyzer) Start() error {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	if a.running {
		return errors.New("analyzer: already started")
	}
	addr := a.bindAddr
	if addr == "" {
		addr = a.cfg.Addr
	}
	h := &handler{a: a, addr: addr, booted: make(chan struct{}), delayer: newDelayer(a)}
	runDone := make(chan error, 1)
	go func() {
		runDone <- gnet.Run(h, "tcp://"+addr,
			gnet.WithMulticore(true),
			// SO_REUSEADDR so a restarted analyzer can bind the port it just left
			// while old connections sit in TIME_WAIT. SO_REUSEPORT stays off: two
			// analyzers must not silently share one port.
			gnet.WithReuseAddr(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(gnetLogger{}),
		)
	}()
	select {
	case <-h.booted:
	case err := <-runDone:
		h.delayer.shutdown()
		return fmt.Errorf("analyzer: listen on %s: %w", addr, err)
	}
	if h.bootErr != nil {
		<-runDone // OnBoot asked gnet to shut down
		h.delayer.shutdown()
		return fmt.Errorf("analyzer: listen on %s: %w", addr, h.bootErr)
	}
	a.bindAddr, a.addr, a.listenAddr = h.bindAddr, h.dialAddr, h.listenAddr
	a.eng = h.eng
	a.runDone = runDone
	a.delayer = h.delayer
	if a.cfg.MetricsAddr != "" {
		if err := a.startMetricsServer(); err != nil {
			a.stopLocked()
			return err
		}
	}
	a.running = true
	return nil
}

// canceled makes gnet's Engine.Stop only signal the shutdown; Stop then waits for
// gnet.Run to return, which is sooner than Engine.Stop's 500ms polling.
var canceled = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// ErrNotStarted is Stop's answer when the analyzer is not running.
var ErrNotStarted = errors.New("analyzer: not started")

// Stop closes the listener and every connection, drops answers still being
// delayed and clears any injected fault. Counters are kept.
func (a *Analyzer) Stop() error {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	if !a.running {
		return ErrNotStarted
	}
	a.running = false
	return a.stopLocked()
}

func (a *Analyzer) stopLocked() error {
	var errs []error
	if a.metricsSrv != nil {
		errs = append(errs, a.metricsSrv.Close())
		a.metricsSrv = nil
	}
	if err := a.eng.Stop(canceled); err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, err)
	}
	if err := <-a.runDone; err != nil {
		errs = append(errs, err)
	}
	a.delayer.shutdown()
	a.delayer = nil
	a.SetFault(Fault{})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("analyzer: stop: %w", err)
	}
	return nil
}

// ListenAddr is the address the listening socket is bound to: 0.0.0.0:P or [::]:P
// when it listens on every interface.
func (a *Analyzer) ListenAddr() string {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	return a.listenAddr
}

// Addr is the host:port to dial the analyzer at (or last listened at): loopback
// when it listens on every interface.
func (a *Analyzer) Addr() string {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	return a.addr
}

// MetricsAddr is the address the METRICS_ADDR server listens on, "" when it is off.
func (a *Analyzer) MetricsAddr() string {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	if a.metricsSrv == nil {
		return ""
	}
	return a.metricsLn
}

// IDs returns how many times each packet_id was received and answered 200
// (duplicates included), when Config.RecordIDs is set; nil otherwise. Keys are the
// raw contents of the JSON strings.
func (a *Analyzer) IDs() map[string]int {
	if a.ids == nil {
		return nil
	}
	a.idsMu.Lock()
	defer a.idsMu.Unlock()
	out := make(map[string]int, len(a.ids))
	for k, v := range a.ids {
		out[k] = v
	}
	return out
}

func (a *Analyzer) recordID(id []byte) {
	a.idsMu.Lock()
	a.ids[string(id)]++
	a.idsMu.Unlock()
}

// closeAllConns asks every open connection's loop to close it.
func (a *Analyzer) closeAllConns() {
	a.connsMu.Lock()
	n := 0
	for c := range a.conns {
		_ = c.gc.Close()
		n++
	}
	a.connsMu.Unlock()
	a.ctl.refused.Add(uint64(n))
}

// startMetricsServer serves /metrics, /stats and /internal/simulate/ on
// MetricsAddr with net/http: scrapes are rare, so the plain server is enough.
func (a *Analyzer) startMetricsServer() error {
	ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("analyzer: metrics listen on %s: %w", a.cfg.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", metricsContentType)
		a.writePrometheus(w)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(a.statsJSON())
	})
	mux.HandleFunc("POST /internal/simulate/{action}", func(w http.ResponseWriter, r *http.Request) {
		status, body := a.simulateAnswer(r.PathValue("action"), []byte(r.URL.RawQuery))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	a.metricsSrv, a.metricsLn = srv, ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

func (a *Analyzer) statsJSON() []byte {
	b, _ := json.Marshal(a.Stats()) // plain struct of numbers and strings
	return b
}

// simulateAnswer runs a fault-injection action and returns the answer's status and
// JSON body.
func (a *Analyzer) simulateAnswer(action string, query []byte) (int, []byte) {
	if err := a.simulate(action, query); err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, errUnknownAction) {
			status = http.StatusNotFound
		}
		b, _ := json.Marshal(struct {
			Error  string `json:"error"`
			Status int    `json:"status"`
		}{err.Error(), status})
		return status, b
	}
	b, _ := json.Marshal(struct {
		Status string      `json:"status"`
		Fault  FaultStatus `json:"fault"`
	}{"ok", a.faultStatus()})
	return http.StatusOK, b
}

// boundAddrs reads the port a listening socket is bound to and returns the address
// to bind again on restart (the configured host with that port), the address to
// dial (the same, with loopback for an unspecified host) and the socket's own
// address (0.0.0.0 or :: when it listens on every interface).
func boundAddrs(eng gnet.Engine, configured string) (bind, dial, listen string, err error) {
	fd, err := eng.Dup()
	if err != nil {
		return "", "", "", err
	}
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", "", "", os.NewSyscallError("getsockname", err)
	}
	var ip net.IP
	var port int
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		ip, port = net.IP(sa.Addr[:]), sa.Port
	case *unix.SockaddrInet6:
		ip, port = net.IP(sa.Addr[:]), sa.Port
	default:
		return "", "", "", fmt.Errorf("unexpected socket address %T", sa)
	}
	host, _, err := net.SplitHostPort(configured)
	if err != nil {
		return "", "", "", err
	}
	p := strconv.Itoa(port)
	listen = net.JoinHostPort(ip.String(), p)
	if ip.IsUnspecified() {
		if ip.To4() != nil || host == "" || host == "0.0.0.0" {
			ip = net.IPv4(127, 0, 0, 1)
		} else {
			ip = net.IPv6loopback
		}
	}
	return net.JoinHostPort(host, p), net.JoinHostPort(ip.String(), p), listen, nil
}

// gnetLogger keeps gnet's warnings and errors and drops its chatter.
type gnetLogger struct{}

func (gnetLogger) Debugf(string, ...any)          {}
func (gnetLogger) Infof(string, ...any)           {}
func (gnetLogger) Warnf(format string, a ...any)  { log.Printf("analyzer: gnet: "+format, a...) }
func (gnetLogger) Errorf(format string, a ...any) { log.Printf("analyzer: gnet: "+format, a...) }
func (gnetLogger) Fatalf(format string, a ...any) { log.Fatalf("analyzer: gnet: "+format, a...) }
