package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// analyzerWeights are the three analyzers.
var analyzerWeights = []float64{0.5, 0.3, 0.2}

// Port offsets from Config.PortBase.
const (
	portBatchAnalyzers = 0  // +0, +1, +2
	portPlainAnalyzers = 10 // +10, +11, +12
	portSluice         = 20 // +21 its METRICS_ADDR
	portSluicePlain    = 30 // +31 its METRICS_ADDR
	portCeiling        = 40
	portNginx          = 50
)

// target is one server under test.
type target struct {
	name       string
	url        string // where packets are posted
	server     *proc
	analyzers  []*proc
	metricsURL string // the distributor's METRICS_ADDR as a URL; "" for peers
	spool      bool   // a distributor with SPOOL_DIR: its syncs are read around each run

	// delivered counts packets forwarded so far; nil for a server that forwards nothing.
	delivered func(context.Context) (int64, error)
	// analyzerStats are the /stats URLs of the analyzers behind the target.
	analyzerStats []string
}

type harness struct {
	cfg      Config
	log      io.Writer
	dir      string
	nonce    string // in every packet id of the run
	procs    []*proc
	commands []string
	skipped  []string
	notes    []string
}

// Run performs the benchmark and returns its report; progress goes to log.
func Run(ctx context.Context, cfg Config, log io.Writer) (*Report, error) {
	h := &harness{cfg: cfg, log: log, nonce: "b" + strconv.FormatInt(time.Now().UnixNano()/1e6, 36)}
	defer h.stopAll()
	if err := h.prepareDir(); err != nil {
		return nil, err
	}
	h.commands = append(h.commands, "# servers (make build; sluice-bench ceiling is bench/cmd/sluice-bench)")
	targets, drivers, err := h.start(ctx)
	if err != nil {
		return nil, err
	}
	rep := &Report{When: time.Now(), Machine: machineLine(), Settings: cfg.settingsLine()}

	for _, t := range targets {
		if _, _, err := h.measure(ctx, t, drivers[0], 0, cfg.Warmup, "warmup-"+t.name); err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "warm-up     %-7s %-13s done\n", drivers[0].Name(), t.name)
	}

	var samples []Sample
	loadCommands := map[string]string{}
	h.commands = append(h.commands, "", fmt.Sprintf("# full load: %s; each round the same with packet ids <run>-r<round>-<driver>-<target>- (round %d shown)",
		plural(cfg.Rounds, "round"), cfg.Rounds))
	for r := 0; r < cfg.Rounds; r++ {
		for di := range drivers {
			d := drivers[(di+r)%len(drivers)]
			for ti := range targets {
				t := targets[(ti+r)%len(targets)]
				s, load, err := h.measure(ctx, t, d, 0, cfg.Duration, fmt.Sprintf("r%d-%s-%s", r+1, d.Name(), t.name))
				if err != nil {
					return nil, err
				}
				s.Round = r + 1
				samples = append(samples, s)
				loadCommands[d.Name()+" "+t.name] = d.Command(load)
				fmt.Fprintf(log, "round %d/%d   %-7s %-13s %s\n", r+1, cfg.Rounds, d.Name(), t.name, progressLine(s))
			}
		}
	}
	for _, t := range targets {
		for _, d := range drivers {
			rep.Rows = append(rep.Rows, Summarize(filter(samples, t.name, d.Name(), false)))
			h.commands = append(h.commands, loadCommands[d.Name()+" "+t.name])
		}
	}
	if cfg.Spool {
		// The disk's own sync, right after the rounds that used it.
		dir, err := h.spoolDir("fdatasync")
		if err != nil {
			return nil, err
		}
		if rep.Disk, err = measureDiskSync(dir, 3*time.Second); err != nil {
			return nil, fmt.Errorf("bare fdatasync loop: %w", err)
		}
		fmt.Fprintf(log, "disk        fdatasync     p50 %s  p99 %s  (%d syncs in %s)\n", Latency(rep.Disk.P50), Latency(rep.Disk.P99), rep.Disk.Syncs, dir)
		h.commands = append(h.commands, "", "# the disk's bare write+fdatasync: bench/spool.go measureDiskSync, 3 s of 1116-byte writes each followed by fdatasync in "+dir)
	}

	// Every target at one constant rate, half of what the distributor sustained: the
	// open-loop latency a user sees at that load when the distributor is not
	// saturated. The ceiling's row is the floor that the load generator and machine
	// can show at the same rate; a peer slower than the distributor is nearer its own
	// limit there, which is the point of comparing at one rate. vegeta runs at half
	// the distributor's vegeta throughput, for information: its own cost per request
	// dominates the tail on a small machine. The emitter, far cheaper,
	// runs at half the distributor's best throughput over the full-load drivers (the
	// real maximum, wrk's when wrk ran), and the 1 ms check is read there.
	vegeta := drivers[0]
	rate := Summarize(filter(samples, TargetSluice, vegeta.Name(), false)).Accepted / 2
	h.commands = append(h.commands, "", "# constant rate, every target, vegeta: half the distributor's median vegeta throughput")
	if err := h.halfLoad(ctx, rep, targets, vegeta, rate); err != nil {
		return nil, err
	}
	best, bestDriver := bestThroughput(samples, TargetSluice, drivers)
	emitter := Emitter{Path: cfg.Sluice}
	h.commands = append(h.commands, "", fmt.Sprintf("# constant rate, every target, emitter: half the distributor's best median throughput (%s, %s pkt/s)",
		bestDriver, Count(best)))
	if err := h.halfLoad(ctx, rep, targets, emitter, best/2); err != nil {
		return nil, err
	}

	if cfg.Profile {
		for _, t := range targets {
			if t.name == TargetSluice {
				prof, err := h.profile(ctx, t, drivers[len(drivers)-1])
				if err != nil {
					h.notes = append(h.notes, "no profile: "+err.Error())
				}
				rep.Profile = prof
			}
		}
	}

	for _, t := range targets {
		pids, err := t.server.pids()
		if err != nil {
			return nil, err
		}
		peak, err := peakRSSOf(pids)
		if err != nil {
			return nil, err
		}
		for i := range rep.Rows {
			if rep.Rows[i].Target == t.name {
				rep.Rows[i].PeakRSS = peak
			}
		}
		for i := range rep.Latency {
			if rep.Latency[i].Target == t.name {
				rep.Latency[i].PeakRSS = peak
			}
		}
	}

	for _, d := range drivers {
		for _, pair := range [][2]string{{TargetSluice, TargetCeiling}, {TargetSluice, TargetNginx}, {TargetSluicePlain, TargetNginx},
			{TargetSpoolInterval, TargetSluice}, {TargetSpoolAlways, TargetSluice},
			{TargetShed, TargetSluice}, {TargetCapacity, TargetSluice}, {TargetAffinity, TargetSluice}} {
			if r, ok := RoundRatios(samples, d.Name(), pair[0], pair[1]); ok {
				rep.Ratios = append(rep.Ratios, r)
			}
		}
	}
	rep.Checks = append(Checks(rep.Ratios, rep.Latency), spoolChecks(rep.Ratios, rep.Rows, rep.Disk)...)
	rep.Others = othersMedian(samples)
	if others := othersNote(samples); others != "" {
		h.notes = append(h.notes, others)
	}
	rep.Versions = h.versions(ctx, drivers)
	rep.Skipped = h.skipped
	rep.Notes = h.notes
	rep.Commands = h.commands
	return rep, nil
}

// checkRatio writes a ratio checked against target with two decimals, or three
// when two would round a miss up to the target: "missed … 0.80×" reads as a
// mistake, "missed … 0.797×" does not.
func checkRatio(v, target float64) string {
	if v < target && fmt.Sprintf("%.2f", v) == fmt.Sprintf("%.2f", target) {
		return fmt.Sprintf("%.3f×", v)
	}
	return fmt.Sprintf("%.2f×", v)
}

// Checks states the targets against what was measured.
func Checks(ratios []Ratio, latency []Row) []Check {
	var cs []Check
	for _, r := range ratios {
		switch {
		case r.Num == TargetSluice && r.Den == TargetCeiling:
			cs = append(cs, Check{What: fmt.Sprintf("sluice ≥ 0.8 × ceiling (%s)", r.Driver), Got: checkRatio(r.Median, 0.8), Met: r.Median >= 0.8})
		case r.Num == TargetSluicePlain && r.Den == TargetNginx:
			cs = append(cs, Check{What: fmt.Sprintf("sluice over plain analyzers ≥ 1.5 × nginx (%s)", r.Driver), Got: checkRatio(r.Median, 1.5), Met: r.Median >= 1.5})
		}
	}
	// The latency target is read on the emitter's rows only (half the real maximum);
	// vegeta's rows are information.
	driver := Emitter{}.Name()
	floor := ""
	for _, l := range latency {
		if l.Target == TargetCeiling && l.Driver == driver {
			floor = " (the ceiling at the same rate: " + Latency(l.P99) + ")"
		}
	}
	for _, l := range latency {
		if l.Target == TargetSluice && l.Driver == driver {
			cs = append(cs, Check{What: fmt.Sprintf("sluice p99 ≤ 1 ms at half load (%s, %s pkt/s)", driver, Count(l.Rate)),
				Got: Latency(l.P99) + floor, Met: l.P99 > 0 && l.P99 <= time.Millisecond})
		}
	}
	return cs
}

// halfLoad runs d against every target at rate and adds the rows to rep.Latency.
func (h *harness) halfLoad(ctx context.Context, rep *Report, targets []*target, d Driver, rate float64) error {
	if !(rate > 0) {
		return fmt.Errorf("constant-rate run with %s: no rate (the distributor accepted nothing at full load)", d.Name())
	}
	for _, t := range targets {
		s, load, err := h.measure(ctx, t, d, rate, h.cfg.LatencyDuration, "half-"+d.Name()+"-"+t.name)
		if err != nil {
			return err
		}
		h.commands = append(h.commands, d.Command(load))
		fmt.Fprintf(h.log, "half load   %-7s %-13s %s\n", d.Name(), t.name, progressLine(s))
		rep.Latency = append(rep.Latency, Summarize([]Sample{s}))
	}
	return nil
}

// bestThroughput is target's highest median full-load throughput over the drivers,
// and the driver that gave it.
func bestThroughput(samples []Sample, target string, drivers []Driver) (float64, string) {
	best, name := 0.0, ""
	for _, d := range drivers {
		if a := Summarize(filter(samples, target, d.Name(), false)).Accepted; a > best {
			best, name = a, d.Name()
		}
	}
	return best, name
}

func filter(samples []Sample, target, driver string, constantRate bool) []Sample {
	var out []Sample
	for _, s := range samples {
		if s.Target == target && s.Driver == driver && (s.Rate > 0) == constantRate {
			out = append(out, s)
		}
	}
	return out
}

func progressLine(s Sample) string {
	line := fmt.Sprintf("%9s pkt/s accepted", Count(s.AcceptedPerSec()))
	if s.Delivered >= 0 {
		line += fmt.Sprintf(", %9s delivered", Count(perSec(s.Delivered, s.Elapsed)))
	}
	per := func(d time.Duration) time.Duration {
		if s.OK == 0 {
			return 0
		}
		return d / time.Duration(s.OK)
	}
	return line + fmt.Sprintf("  p99 %8s  non-2xx %7s  CPU/pkt server %8s load %8s  others %s",
		Latency(s.P99), Percent(share(s.Requests-s.OK, s.Requests)), Micros(per(s.ProxyCPU)), Micros(per(s.LoadCPU)), Percent(s.OthersShare()))
}

// prepareDir makes the work directory; each run overwrites the files of the last.
func (h *harness) prepareDir() error {
	h.dir = h.cfg.WorkDir
	if h.dir == "" {
		h.dir = "."
	}
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(h.log, "sluice-bench: logs, wrk script, nginx.conf and profile in %s\n", h.dir)
	return nil
}

// lookPeer finds a peer's binary: the configured path, or PATH; "off" skips it.
func lookPeer(configured, name string) (string, string) {
	if configured == "off" {
		return "", "BENCH_" + strings.ToUpper(name) + "=off"
	}
	if configured == "" {
		configured = name
	}
	path, err := exec.LookPath(configured)
	if err != nil {
		return "", name + " not installed: make bench-peers"
	}
	return path, ""
}

// start launches every server, waits until each is ready, and returns the targets
// in table order and the drivers (vegeta first).
func (h *harness) start(ctx context.Context) ([]*target, []Driver, error) {
	cfg := h.cfg
	base := cfg.PortBase
	wrkPath, wrkWhy := lookPeer(cfg.Wrk, "wrk")
	nginxPath, nginxWhy := lookPeer(cfg.Nginx, "nginx")
	if wrkWhy != "" {
		h.skipped = append(h.skipped, "every wrk row ("+wrkWhy+")")
	}
	if nginxWhy != "" {
		h.skipped = append(h.skipped, "the nginx rows and ratios ("+nginxWhy+")")
	}
	ports := []int{base + portSluice, base + portSluice + 1, base + portSluicePlain, base + portSluicePlain + 1, base + portCeiling}
	if cfg.Spool {
		ports = append(ports, base+portSpoolInterval, base+portSpoolInterval+1, base+portSpoolAlways, base+portSpoolAlways+1)
	}
	for i := range analyzerWeights {
		ports = append(ports, base+portBatchAnalyzers+i, base+portPlainAnalyzers+i)
	}
	if nginxPath != "" {
		ports = append(ports, base+portNginx)
	}
	if err := portsFree(ports...); err != nil {
		return nil, nil, err
	}

	packet := NewPacket("bench-emitter", 1_700_000_000_000)
	drivers := []Driver{Vegeta{Packet: packet}}
	if wrkPath != "" {
		script, err := WrkScript(packet)
		if err != nil {
			return nil, nil, err
		}
		scriptPath := filepath.Join(h.dir, "ingest.lua")
		if err := os.WriteFile(scriptPath, []byte(script), 0o644); err != nil {
			return nil, nil, err
		}
		drivers = append(drivers, Wrk{Path: wrkPath, Script: scriptPath, Threads: cfg.WrkThreads})
	}

	batch, err := h.startAnalyzers(ctx, "analyzer", base+portBatchAnalyzers, true)
	if err != nil {
		return nil, nil, err
	}
	plain, err := h.startAnalyzers(ctx, "plain-analyzer", base+portPlainAnalyzers, false)
	if err != nil {
		return nil, nil, err
	}
	sluice, err := h.startSluice(ctx, TargetSluice, base+portSluice, batch, true)
	if err != nil {
		return nil, nil, err
	}
	sluicePlain, err := h.startSluice(ctx, TargetSluicePlain, base+portSluicePlain, plain, false)
	if err != nil {
		return nil, nil, err
	}
	ceiling, err := h.startCeiling(ctx, base+portCeiling)
	if err != nil {
		return nil, nil, err
	}
	targets := []*target{ceiling, sluice, sluicePlain}
	if cfg.Spool {
		spooled, err := h.startSpoolTargets(ctx, batch)
		if err != nil {
			return nil, nil, err
		}
		targets = append(targets, spooled...)
	} else {
		h.skipped = append(h.skipped, "the spool rows (BENCH_SPOOL=0)")
	}
	if cfg.Overload {
		modes, err := h.startOverloadTargets(ctx, batch)
		if err != nil {
			return nil, nil, err
		}
		targets = append(targets, modes...)
	} else {
		h.skipped = append(h.skipped, "the overload-mode rows (BENCH_OVERLOAD=0)")
	}
	if nginxPath != "" {
		ngx, err := h.startNginx(ctx, nginxPath, base+portNginx, batch)
		if err != nil {
			return nil, nil, err
		}
		targets = append(targets, ngx)
	}
	return targets, drivers, nil
}

func (h *harness) spawn(name string, env []string, bin string, args ...string) (*proc, error) {
	p, err := startProc(h.dir, name, env, bin, args...)
	if err != nil {
		return nil, err
	}
	h.procs = append(h.procs, p)
	h.commands = append(h.commands, p.line)
	return p, nil
}

func (h *harness) startAnalyzers(ctx context.Context, name string, port int, batch bool) ([]*proc, error) {
	var ps []*proc
	for i := range analyzerWeights {
		addr := fmt.Sprintf("127.0.0.1:%d", port+i)
		p, err := h.spawn(fmt.Sprintf("%s-%d", name, i+1),
			[]string{"PORT=" + addr, fmt.Sprintf("ANALYZER_ID=%s-%d", name, i+1), "ANALYZER_BATCH=" + strconv.FormatBool(batch)},
			h.cfg.Sluice, "analyzer")
		if err != nil {
			return nil, err
		}
		if err := waitReady(ctx, p, "http://"+addr+"/health", 10*time.Second, nil); err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func analyzersEnv(analyzers []*proc, port int) string {
	items := make([]string, len(analyzers))
	for i := range analyzers {
		items[i] = fmt.Sprintf("http://127.0.0.1:%d=%g", port+i, analyzerWeights[i])
	}
	return strings.Join(items, ",")
}

// sluiceHealth is the part of the distributor's /health the harness waits on.
type sluiceHealth struct {
	HealthyAnalyzers int `json:"healthy_analyzers"`
	Analyzers        []struct {
		Batch bool `json:"batch"`
	} `json:"analyzers"`
}

// sluiceMetrics is the part of /metrics-json the harness reads.
type sluiceMetrics struct {
	DeliveredPackets int64 `json:"delivered_packets"`
	Queued           int64 `json:"queued"`
	InFlight         int64 `json:"in_flight"`
}

func (h *harness) startSluice(ctx context.Context, name string, port int, analyzers []*proc, batch bool, extraEnv ...string) (*target, error) {
	analyzerPort := h.cfg.PortBase + portBatchAnalyzers
	if !batch {
		analyzerPort = h.cfg.PortBase + portPlainAnalyzers
	}
	metrics := fmt.Sprintf("127.0.0.1:%d", port+1)
	p, err := h.spawn(name, append([]string{
		fmt.Sprintf("PORT=%d", port), "METRICS_ADDR=" + metrics,
		"ANALYZERS=" + analyzersEnv(analyzers, analyzerPort), "LOG_LEVEL=warn",
	}, extraEnv...), h.cfg.Sluice, "distributor")
	if err != nil {
		return nil, err
	}
	// Ready when every analyzer is healthy and its batch support is known, so no
	// round measures the distributor before it negotiated batches.
	err = waitReady(ctx, p, "http://"+metrics+"/health", 20*time.Second, func(body json.RawMessage) error {
		var hj sluiceHealth
		if err := json.Unmarshal(body, &hj); err != nil {
			return err
		}
		if hj.HealthyAnalyzers != len(analyzers) {
			return fmt.Errorf("%d of %d analyzers healthy", hj.HealthyAnalyzers, len(analyzers))
		}
		for i, a := range hj.Analyzers {
			if a.Batch != batch {
				return fmt.Errorf("analyzer %d: batch %t, want %t", i+1, a.Batch, batch)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	metricsURL := "http://" + metrics
	return &target{
		name: name, url: fmt.Sprintf("http://127.0.0.1:%d/ingest", port), server: p, analyzers: analyzers, metricsURL: metricsURL,
		analyzerStats: statsURLs(analyzerPort, len(analyzers)),
		delivered: func(ctx context.Context) (int64, error) {
			var m sluiceMetrics
			err := getJSON(ctx, metricsURL+"/metrics-json", &m)
			return m.DeliveredPackets, err
		},
	}, nil
}

// settle waits until a distributor has delivered everything it accepted, so one
// measurement's backlog is not the next one's load.
func (t *target) settle(ctx context.Context, timeout time.Duration) error {
	if t.metricsURL == "" {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		var m sluiceMetrics
		if err := getJSON(ctx, t.metricsURL+"/metrics-json", &m); err != nil {
			return err
		}
		if m.Queued == 0 && m.InFlight == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d packets queued and %d in flight after %s", t.name, m.Queued, m.InFlight, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (h *harness) startCeiling(ctx context.Context, port int) (*target, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, self); err == nil && !strings.HasPrefix(rel, "..") {
			self = rel
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := h.spawn(TargetCeiling, nil, self, "ceiling", "-addr", addr)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, p, "http://"+addr+"/health", 10*time.Second, nil); err != nil {
		return nil, err
	}
	return &target{name: TargetCeiling, url: "http://" + addr + "/ingest", server: p}, nil
}

// analyzerStats is the part of an analyzer's /stats the harness reads.
type analyzerStats struct {
	Packets      int64 `json:"packets"`
	Batches      int64 `json:"batches"`
	BatchPackets int64 `json:"batch_packets"`
}

// analyzerTotals sums the /stats of analyzers: packets counted, and the requests
// that carried them (a batch is one request, a packet outside batches another).
func analyzerTotals(ctx context.Context, statsURLs []string) (packets, requests int64, err error) {
	for _, u := range statsURLs {
		var st analyzerStats
		if err := getJSON(ctx, u, &st); err != nil {
			return 0, 0, err
		}
		packets += st.Packets
		requests += st.Batches + st.Packets - st.BatchPackets
	}
	return packets, requests, nil
}

func statsURLs(base, n int) []string {
	urls := make([]string, n)
	for i := range urls {
		urls[i] = fmt.Sprintf("http://127.0.0.1:%d/stats", base+i)
	}
	return urls
}

func (h *harness) startNginx(ctx context.Context, bin string, port int, analyzers []*proc) (*target, error) {
	// nginx resolves relative paths against its prefix: give it absolute ones.
	dir, err := filepath.Abs(filepath.Join(h.dir, "nginx"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	weights, err := NginxWeights(analyzerWeights)
	if err != nil {
		return nil, err
	}
	c := NginxConfig{Dir: dir, Listen: fmt.Sprintf("127.0.0.1:%d", port), Workers: runtime.NumCPU()}
	for i := range analyzers {
		c.Upstreams = append(c.Upstreams, NginxUpstream{Addr: fmt.Sprintf("127.0.0.1:%d", h.cfg.PortBase+portBatchAnalyzers+i), Weight: weights[i]})
	}
	conf, err := c.Render()
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	p, err := h.spawn(TargetNginx, nil, bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", confPath)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, p, "http://"+c.Listen+"/health", 10*time.Second, nil); err != nil {
		return nil, err
	}
	stats := statsURLs(h.cfg.PortBase+portBatchAnalyzers, len(analyzers))
	return &target{
		name: TargetNginx, url: "http://" + c.Listen + "/ingest", server: p, analyzers: analyzers, analyzerStats: stats,
		delivered: func(ctx context.Context) (int64, error) {
			packets, _, err := analyzerTotals(ctx, stats)
			return packets, err
		},
	}, nil
}

// measure runs one load against t and samples the processes around it.
func (h *harness) measure(ctx context.Context, t *target, d Driver, rate float64, dur time.Duration, tag string) (Sample, Load, error) {
	load := Load{URL: t.url, Conns: h.cfg.Conns, Duration: dur, Rate: rate, IDPrefix: h.nonce + "-" + tag + "-"}
	serverPIDs, err := t.server.pids()
	if err != nil {
		return Sample{}, load, err
	}
	var analyzerPIDs []int
	for _, a := range t.analyzers {
		if err := a.check(); err != nil {
			return Sample{}, load, err
		}
		analyzerPIDs = append(analyzerPIDs, a.pid())
	}
	server0, err1 := cpuOf(serverPIDs)
	analyzers0, err2 := cpuOf(analyzerPIDs)
	delivered0, err3 := t.countDelivered(ctx)
	machine0, err4 := readMachineCPU()
	upPackets0, upRequests0, err5 := t.upstreamTotals(ctx)
	syncs0, synced0, err6 := t.spoolTotals(ctx)
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil {
		return Sample{}, load, fmt.Errorf("%s before %s: %w", t.name, tag, err)
	}

	o, err := d.Run(ctx, load)
	if err != nil {
		return Sample{}, load, fmt.Errorf("%s against %s: %w", d.Name(), t.name, err)
	}

	// A server that died during the run (crashed, or killed from outside) is named
	// with its log, not reported as a missing /proc file.
	for _, p := range append([]*proc{t.server}, t.analyzers...) {
		if err := p.check(); err != nil {
			return Sample{}, load, fmt.Errorf("during %s: %w", tag, err)
		}
	}
	machine1, err4 := readMachineCPU()
	server1, err1 := cpuOf(serverPIDs)
	analyzers1, err2 := cpuOf(analyzerPIDs)
	delivered1, err3 := t.countDelivered(ctx)
	syncs1, synced1, err7 := t.spoolTotals(ctx)
	err5 = t.settle(ctx, 10*time.Second)
	upPackets1, upRequests1, err6 := t.upstreamTotals(ctx)
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7); err != nil {
		return Sample{}, load, fmt.Errorf("%s after %s: %w", t.name, tag, err)
	}
	s := Sample{
		Target: t.name, Driver: d.Name(), Rate: rate, Outcome: o,
		Delivered: -1, ProxyCPU: server1 - server0, AnalyzerCPU: analyzers1 - analyzers0, CPUs: runtime.NumCPU(),
		MachineBusy: machine1.Busy - machine0.Busy, MachineTotal: machine1.Total - machine0.Total,
		UpstreamPackets: upPackets1 - upPackets0, UpstreamRequests: upRequests1 - upRequests0,
		Syncs: syncs1 - syncs0, SyncedRecords: synced1 - synced0,
	}
	if t.delivered != nil {
		s.Delivered = delivered1 - delivered0
	}
	return s, load, nil
}

// upstreamTotals is what the target's analyzers counted so far (zeros without analyzers).
func (t *target) upstreamTotals(ctx context.Context) (packets, requests int64, err error) {
	if len(t.analyzerStats) == 0 {
		return 0, 0, nil
	}
	return analyzerTotals(ctx, t.analyzerStats)
}

func (t *target) countDelivered(ctx context.Context) (int64, error) {
	if t.delivered == nil {
		return -1, nil
	}
	return t.delivered(ctx)
}

// profile takes a CPU profile of the distributor while d loads it at full speed
// (a run of its own: profiling costs a little CPU) and returns the top of it.
func (h *harness) profile(ctx context.Context, t *target, d Driver) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("go is not on PATH for `go tool pprof`")
	}
	secs := max(1, int(h.cfg.Duration.Seconds()))
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", t.metricsURL, secs)
	file := filepath.Join(h.dir, "sluice-cpu.pprof")
	fetched := make(chan error, 1)
	go func() { fetched <- download(ctx, url, file, time.Duration(secs+30)*time.Second) }()
	// The load outlasts the profile a little at both ends.
	s, load, err := h.measure(ctx, t, d, 0, time.Duration(secs)*time.Second+time.Second, "profile")
	if err != nil {
		return "", err
	}
	if err := <-fetched; err != nil {
		return "", err
	}
	fmt.Fprintf(h.log, "profile     %-7s %-13s %s\n", d.Name(), t.name, progressLine(s))
	out, err := exec.CommandContext(ctx, goBin, "tool", "pprof", "-top", "-cum", "-nodecount=30", h.cfg.Sluice, file).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %w: %s", err, out)
	}
	h.commands = append(h.commands, "", "# CPU profile of the distributor: the load and, at the same time, the profile",
		d.Command(load),
		"curl -o "+file+" '"+url+"'",
		"go tool pprof -top -cum -nodecount=30 "+h.cfg.Sluice+" "+file)
	return strings.TrimRight(string(out), "\n"), nil
}

func download(ctx context.Context, url, file string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return f.Close()
}

func (h *harness) versions(ctx context.Context, drivers []Driver) string {
	v := []string{"sluice " + gitRevision(ctx), runtime.Version(), "vegeta " + vegetaVersion() + " (library)"}
	for _, d := range drivers {
		if w, ok := d.(Wrk); ok {
			// "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"
			line, _, _ := strings.Cut(firstLine(ctx, w.Path, "-v"), " [")
			v = append(v, line)
		}
	}
	for _, p := range h.procs {
		if p.name == TargetNginx {
			v = append(v, strings.TrimPrefix(firstLine(ctx, p.cmd.Path, "-v"), "nginx version: "))
		}
	}
	return strings.Join(v, ", ")
}

// stopAll stops every process, the last started first.
func (h *harness) stopAll() {
	for i := len(h.procs) - 1; i >= 0; i-- {
		h.procs[i].stop(15 * time.Second)
	}
}

func othersMedian(samples []Sample) float64 {
	xs := make([]float64, len(samples))
	for i, s := range samples {
		xs[i] = s.OthersShare()
	}
	return Median(xs)
}

// othersNote warns when processes outside the benchmark took a noticeable share of
// the machine during the measured runs, so nobody reads noise as a result.
func othersNote(samples []Sample) string {
	xs := make([]float64, 0, len(samples))
	worst := 0.0
	for _, s := range samples {
		xs = append(xs, s.OthersShare())
		worst = max(worst, s.OthersShare())
	}
	if m := Median(xs); m >= 0.05 {
		return fmt.Sprintf("other processes used %s of the machine's CPU during the median run (%s in the worst); "+
			"every number here is disturbed by that", Percent(m), Percent(worst))
	}
	return ""
}
