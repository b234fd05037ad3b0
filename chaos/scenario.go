package main

// The scenarios and the runner that turns one into a row of the table.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicelog/sluice/proxy"
)

// cluster is one scenario's processes. The runner owns it; inject and heal run on
// the runner's goroutine, except flap's toggler, which ends before heal returns.
type cluster struct {
	dir      string
	ns       []*netns
	an       []*proc
	dist     *proc
	proxy    *faultProxy // in front of analyzer 0, or nil
	listen   string
	urls     []string
	distEnv  []string
	stopFlap chan struct{}
	flapDone sync.WaitGroup
	restarts int
}

// scenario is one fault. Faults hit analyzer 0 (analyzer-1 in the distributor's
// names) unless they say otherwise.
type scenario struct {
	name     string
	what     string
	proxy    faultKind // route analyzer 0 through the fault proxy, and this is its fault
	distEnv  []string  // extra distributor settings
	minBytes int       // packet message padding
	maxBytes int
	rate     int // packets/s; 0: the run's default
	inject   func(c *cluster) error
	heal     func(c *cluster) error
	lostOK   bool // lost packets are expected (kill -9 without a spool): reported, not an error
	spool    bool // the distributor runs with SPOOL_DIR in the scenario's directory
}

// scenarios in table order.
var scenarios = []scenario{
	{name: "baseline", what: "no fault: the reference for the p99 and the 503 share",
		inject: func(*cluster) error { return nil }, heal: func(*cluster) error { return nil }},
	{name: "partition", what: "full partition of analyzer-1 (blackhole routes both ways), then heal",
		inject: func(c *cluster) error {
			if err := c.ns[0].blackhole(toAnalyzer); err != nil {
				return err
			}
			return c.ns[0].blackhole(toHost)
		},
		heal: func(c *cluster) error { c.ns[0].heal(); return nil }},
	{name: "asymmetric", what: "only analyzer-1's packets to the host are lost (its answers, SYN-ACKs, ACKs)",
		inject: func(c *cluster) error { return c.ns[0].blackhole(toHost) },
		heal:   func(c *cluster) error { c.ns[0].heal(); return nil }},
	{name: "latency", what: "every chunk to and from analyzer-1 held 200 ms ± 50 ms (fault proxy)", proxy: fkLatency},
	{name: "bandwidth", what: "1 Mbit/s each way to analyzer-1 (fault proxy)", proxy: fkBandwidth},
	{name: "slice", what: "analyzer-1's answers cut into 1-byte writes (fault proxy)", proxy: fkSlice},
	{name: "reset", what: "one answer chunk in five of analyzer-1 cut halfway by a reset (fault proxy)", proxy: fkReset},
	{name: "freeze", what: "analyzer-1 frozen with SIGSTOP, then SIGCONT",
		inject: func(c *cluster) error { c.an[0].signal(syscall.SIGSTOP); return nil },
		heal:   func(c *cluster) error { c.an[0].signal(syscall.SIGCONT); return nil }},
	{name: "flap", what: "analyzer-1 partitioned and healed every 200 ms",
		inject: func(c *cluster) error {
			c.stopFlap = make(chan struct{})
			c.flapDone.Add(1)
			go func() {
				defer c.flapDone.Done()
				t := time.NewTicker(200 * time.Millisecond)
				defer t.Stop()
				cut := false
				for {
					select {
					case <-c.stopFlap:
						return
					case <-t.C:
					}
					if cut = !cut; cut {
						_ = c.ns[0].blackhole(toAnalyzer)
						_ = c.ns[0].blackhole(toHost)
					} else {
						c.ns[0].heal()
					}
				}
			}()
			return nil
		},
		heal: func(c *cluster) error {
			close(c.stopFlap)
			c.flapDone.Wait()
			c.ns[0].heal()
			return nil
		}},
	{name: "memory", what: "both analyzers frozen, packets of 1 KB-1 MiB, distributor with MAX_BUFFER_BYTES=32MiB (so GOMEMLIMIT=128MiB); peak RSS against memoryBound",
		distEnv:  []string{"MAX_BUFFER_BYTES=" + strconv.Itoa(memoryBufferBytes)},
		minBytes: 1 << 10, maxBytes: 1<<20 - 256, rate: 100,
		inject: func(c *cluster) error {
			for _, a := range c.an {
				a.signal(syscall.SIGSTOP)
			}
			return nil
		},
		heal: func(c *cluster) error {
			for _, a := range c.an {
				a.signal(syscall.SIGCONT)
			}
			return nil
		}},
	{name: "gogc10", what: "the distributor under GOGC=10 (compare the p99 with baseline)", distEnv: []string{"GOGC=10"},
		inject: func(*cluster) error { return nil }, heal: func(*cluster) error { return nil }},
	{name: "kill9", what: "distributor killed with SIGKILL and restarted 1 s later, without a spool", lostOK: true,
		inject: kill9, heal: func(*cluster) error { return nil }},
	{name: "kill9-spool", what: "the same with SPOOL_DIR: the restarted distributor delivers what the killed one accepted", spool: true,
		inject: kill9, heal: func(*cluster) error { return nil }},
}

// kill9 kills the distributor and starts it again a second later on the same
// address, with the same settings (and spool directory, if any).
func kill9(c *cluster) error {
	c.dist.signal(syscall.SIGKILL)
	<-c.dist.done
	time.Sleep(time.Second)
	c.restarts++
	d, err := startDistributor(c.dir, "distributor-"+strconv.Itoa(c.restarts), c.listen, c.urls, c.distEnv...)
	if err != nil {
		return err
	}
	c.dist = d
	return nil
}

// proxyFault makes the proxy scenarios' inject and heal.
func init() {
	for i := range scenarios {
		if k := scenarios[i].proxy; k != fkNone {
			scenarios[i].inject = func(c *cluster) error { c.proxy.set(k); return nil }
			scenarios[i].heal = func(c *cluster) error { c.proxy.set(fkNone); return nil }
		}
	}
}

// runCfg is what a whole run shares.
type runCfg struct {
	rate           int
	warm, fault    time.Duration // load before the fault, and the fault's length
	after          time.Duration // load after the heal
	ignoreDeadline bool          // analyzers process requests read after their deadline
	port           int           // distributor's ingest port on loopback
}

// row is one scenario's result.
type row struct {
	name                         string
	offered, accepted, delivered int
	duplicates, lost             int
	max503                       float64
	detect, recover              time.Duration // -1: not seen
	p99                          time.Duration
	peakRSS                      int64 // distributor's VmHWM, bytes
	notes                        string
	lostOK                       bool
}

// sample is one look at analyzer-1 from the distributor's /metrics-json.
type sample struct {
	at        time.Time
	state     string
	failures  int64
	delivered int64
}

func runScenario(ctx context.Context, sc scenario, rc runCfg, nss []*netns, workDir string) (r row, err error) {
	r = row{name: sc.name, detect: -1, recover: -1, lostOK: sc.lostOK}
	if rc.ignoreDeadline {
		r.name += " (no deadline)"
	}
	dir := filepath.Join(workDir, sc.name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return r, err
	}
	port := rc.port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return r, err
		}
	}
	c := &cluster{dir: dir, ns: nss, listen: "127.0.0.1:" + strconv.Itoa(port), distEnv: sc.distEnv}
	if sc.spool {
		c.distEnv = append(append([]string(nil), sc.distEnv...), "SPOOL_DIR="+filepath.Join(dir, "spool"))
	}
	defer func() {
		// Whatever happened: every child stopped, every fault healed.
		c.proxyClose()
		for _, n := range nss {
			n.heal()
		}
		if c.dist != nil {
			_ = c.dist.stop(15 * time.Second)
		}
		for _, a := range c.an {
			_ = a.stop(5 * time.Second)
		}
	}()
	for i, n := range nss {
		a, err := startAnalyzer(dir, n, i, rc.ignoreDeadline)
		if err != nil {
			return r, err
		}
		c.an = append(c.an, a)
		c.urls = append(c.urls, "http://"+n.nsAddr+":9001")
	}
	if sc.proxy != fkNone {
		p, err := newFaultProxy(nss[0].nsAddr + ":9001")
		if err != nil {
			return r, err
		}
		c.proxy = p
		c.urls[0] = "http://" + p.addr()
	}
	if err := waitListening(c.urls, 5*time.Second); err != nil {
		return r, err
	}
	d, err := startDistributor(dir, "distributor", c.listen, c.urls, c.distEnv...)
	if err != nil {
		return r, err
	}
	c.dist = d
	base := "http://" + c.listen
	if err := waitHealthy(ctx, base, len(nss), 10*time.Second); err != nil {
		return r, fmt.Errorf("%w (log %s)", err, d.log)
	}

	// Load, and a monitor of analyzer-1 every 50 ms.
	rate := rc.rate
	if sc.rate > 0 {
		rate = sc.rate
	}
	lc := loadCfg{url: base + "/ingest", rate: rate, workers: 64, prefix: sc.name + strconv.FormatInt(time.Now().UnixNano()%1e6, 36),
		minBytes: max(sc.minBytes, 64), maxBytes: max(sc.maxBytes, 64)}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	resCh := make(chan *loadResult, 1)
	go func() { resCh <- load(loadCtx, lc) }()
	var mu sync.Mutex
	var samples []sample
	monCtx, stopMon := context.WithCancel(ctx)
	defer stopMon()
	monDone := make(chan struct{})
	go func() {
		defer close(monDone)
		for monCtx.Err() == nil {
			if m, err := getMetrics(base); err == nil {
				a := m.Analyzers["analyzer-1"]
				var f int64
				for _, n := range a.Failures {
					f += n
				}
				mu.Lock()
				samples = append(samples, sample{time.Now(), a.State, f, a.DeliveredPackets})
				mu.Unlock()
			}
			select {
			case <-monCtx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	sleep(ctx, rc.warm)
	tInject := time.Now()
	if err := sc.inject(c); err != nil {
		return r, fmt.Errorf("inject: %w", err)
	}
	sleep(ctx, rc.fault)
	tHeal := time.Now()
	if err := sc.heal(c); err != nil {
		return r, fmt.Errorf("heal: %w", err)
	}
	sleep(ctx, rc.after)
	r.peakRSS = peakRSS(c.dist.pid())
	stopLoad()
	res := <-resCh
	if err := waitDrained(base, 30*time.Second); err != nil {
		r.notes = err.Error() + "; "
	}
	stopMon()
	<-monDone
	r.detect, r.recover = detectRecover(samples, tInject, tHeal, strings.HasPrefix(sc.name, "kill9"))
	if resp, err := httpc.Get(base + "/metrics-json"); err == nil { // kept with the logs (CHAOS_KEEP)
		if b, err := io.ReadAll(resp.Body); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "metrics.json"), b, 0o600)
		}
		resp.Body.Close()
	}
	// A lost packet the distributor counted as dropped (retries spent) is a
	// different finding from one it believes delivered: say which.
	if m, err := getMetrics(base); err == nil && m.Dropped > 0 {
		r.notes += "distributor dropped " + strconv.FormatInt(m.Dropped, 10) + " (see metrics.json); "
	}
	if err := c.dist.stop(15 * time.Second); err != nil {
		return r, err
	}
	c.dist = nil
	delivered := map[string]int{} // packet_id → analyzers that counted it
	for i, a := range c.an {
		if err := a.stop(10 * time.Second); err != nil {
			return r, err
		}
		ids, err := readIDs(dir, i)
		if err != nil {
			return r, fmt.Errorf("analyzer %d ids: %w (log %s)", i, err, a.log)
		}
		for id := range ids {
			delivered[id]++
		}
	}
	c.an = nil
	r.offered, r.accepted = res.offered, len(res.accepted)
	for _, id := range res.accepted {
		if delivered[id] == 0 {
			r.lost++
		} else {
			r.delivered++
		}
	}
	for _, n := range delivered {
		r.duplicates += n - 1
	}
	r.max503 = res.max503Share()
	r.p99 = res.p99()
	if sc.name == "memory" {
		r.notes += "peak RSS " + strconv.FormatInt(r.peakRSS>>20, 10) + " MiB (bound " + strconv.FormatInt(memoryBound()>>20, 10) + " MiB); "
	}
	r.notes = strings.TrimSuffix(r.notes, "; ")
	return r, nil
}

func (c *cluster) proxyClose() {
	if c.proxy != nil {
		c.proxy.close()
		c.proxy = nil
	}
}

// detectRecover reads the monitor's samples: detection is the first sample after
// the fault where the distributor had counted a new failure of analyzer-1 or
// taken it out of rotation; recovery the first sample after the heal where it is
// back in rotation and delivering again. For kill9 the distributor itself is what
// failed: recovery is its first answer after the restart.
func detectRecover(s []sample, tInject, tHeal time.Time, kill bool) (detect, recover time.Duration) {
	detect, recover = -1, -1
	var base *sample
	for i := range s {
		if s[i].at.Before(tInject) {
			base = &s[i]
		}
	}
	if kill {
		for i := range s {
			if s[i].at.After(tInject) {
				return -1, s[i].at.Sub(tInject)
			}
		}
		return -1, -1
	}
	if base == nil {
		return -1, -1
	}
	inRotation := func(st string) bool { return st == "healthy" || st == "slow_start" }
	for i := range s {
		if s[i].at.After(tInject) && (s[i].failures > base.failures || !inRotation(s[i].state)) {
			detect = s[i].at.Sub(tInject)
			break
		}
	}
	if detect < 0 {
		return -1, -1 // nothing to recover from
	}
	var atHeal *sample
	for i := range s {
		if !s[i].at.Before(tHeal) {
			if atHeal == nil {
				atHeal = &s[i]
			}
			if inRotation(s[i].state) && s[i].delivered > atHeal.delivered {
				recover = s[i].at.Sub(tHeal)
				break
			}
		}
	}
	return detect, recover
}

// peakRSS is the process's peak resident set (VmHWM), bytes; 0 if unknown.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// freePort is a loopback port free now (the distributor binds it a moment later,
// and binds it again after kill9's restart).
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// waitListening waits until every analyzer (or the proxy in front of it) answers
// GET /health.
func waitListening(urls []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, u := range urls {
		for {
			resp, err := httpc.Get(u + "/health")
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				return errors.New("analyzer " + u + " not listening: " + err.Error())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// memoryBufferBytes is the memory scenario's MAX_BUFFER_BYTES.
const memoryBufferBytes = 32 << 20

// memoryBound is the documented bound the memory scenario's distributor must stay
// under: the GOMEMLIMIT derived from MAX_BUFFER_BYTES (proxy.MemoryLimitFor: twice
// the packet bytes and a 64 MiB margin), plus 32 MiB of what the Go memory limit
// does not cover (the binary's text and data, the kernel's accounting of thread
// stacks and page-table slack).
func memoryBound() int64 {
	lim, _ := proxy.MemoryLimitFor(memoryBufferBytes, "")
	return lim + 32<<20
}
