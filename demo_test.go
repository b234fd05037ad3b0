package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicelog/sluice/proxy"
)

func TestDemoConfigLayers(t *testing.T) {
	env := map[string]string{"SLUICE_DEMO_PORT": "18080", "SLUICE_DEMO_RATE": "500", "SLUICE_DEMO_WEIGHTS": "2,1"}
	c, err := loadDemoConfig([]string{"-rate", "750", "-plain"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.port != 18080 || c.rate != 750 || !c.plain || len(c.weights) != 2 || c.metricsPort != 9100 || c.analyzerPort != 9001 || c.messages != "uniform:1-10" {
		t.Fatalf("defaults < env < flags not applied: %+v", c)
	}
	for _, bad := range []struct {
		env, val, blame string
	}{
		{"SLUICE_DEMO_PORT", "70000", "SLUICE_DEMO_PORT"},
		{"SLUICE_DEMO_WEIGHTS", "0.5,-1", "SLUICE_DEMO_WEIGHTS"},
		{"SLUICE_DEMO_WEIGHTS", "1,1,1,1,1,1,1,1,1,1", "SLUICE_DEMO_WEIGHTS"},
		{"SLUICE_DEMO_DURATION", "soon", "SLUICE_DEMO_DURATION"},
		{"SLUICE_DEMO_ANALYZER_PORT", "65535", "65535"}, // three analyzers from 65535 run past the last port
	} {
		_, err := loadDemoConfig(nil, func(k string) string {
			if k == bad.env {
				return bad.val
			}
			return ""
		}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), bad.blame) {
			t.Errorf("%s=%s: error %v, want one naming %s", bad.env, bad.val, err, bad.blame)
		}
	}
}

// TestDemoRejectReasonsClassified keeps the view's 503 count honest: every
// rejection reason the distributor reports must be known to be a 503 or a 4xx.
func TestDemoRejectReasonsClassified(t *testing.T) {
	specs, err := proxy.ParseAnalyzers("http://127.0.0.1:1=1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := proxy.DefaultConfig()
	cfg.Analyzers = specs
	srv, err := proxy.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	client4xx := map[string]bool{"invalid": true, "too_large": true, "protocol": true, "rate_limited": true}
	m := srv.MetricsJSON()
	if len(m.Rejected) == 0 {
		t.Fatal("no rejection reasons reported")
	}
	for reason := range m.Rejected {
		if !demoRejected503[reason] && !client4xx[reason] {
			t.Errorf("rejection reason %q is neither a known 503 nor a known 4xx: classify it in demoRejected503", reason)
		}
	}
}

func TestDemoFrame(t *testing.T) {
	at := time.Now()
	mk := func(at time.Time, d1, d2, rejFull, rejInvalid int64) demoSample {
		return demoSample{at: at, killed: []bool{false, true}, failing: []bool{true, false}, m: proxy.MetricsJSON{
			TotalPackets: d1 + d2, TotalMessages: 3 * (d1 + d2), DeliveredMessages: 3 * (d1 + d2),
			Rejected: map[string]int64{"full": rejFull, "invalid": rejInvalid},
			Analyzers: map[string]proxy.AnalyzerStats{
				"a-1": {State: "healthy", Weight: 0.75, EffectiveWeight: 0.75, DeliveredMessages: 3 * d1, Queued: 4, InFlight: 5},
				"a-2": {State: "open", Weight: 0.25, DeliveredMessages: 3 * d2},
			},
		}}
	}
	prev, cur := mk(at, 100, 100, 1, 1), mk(at.Add(2*time.Second), 400, 100, 11, 50)
	lines := buildDemoFrame([]string{"a-1", "a-2"}, &prev, &cur)
	b, err := parseDemoBlock(append([]string{"--- 2s ---"}, lines...))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]int64{"accepted/s": 150, "msg/s": 450, "503/s": 5, "accepted": 500} {
		if b.totals[k] != want {
			t.Errorf("totals %s = %d, want %d (%s)", k, b.totals[k], want, lines[0])
		}
	}
	want := map[string]map[string]string{
		"a-1": {"process": "failing", "state": "healthy", "weight": "0.750", "share": "1.000", "share-all": "0.800", "msg/s": "450", "queue": "4", "in-flight": "5", "delivered": "1200"},
		"a-2": {"process": "killed", "state": "open", "effective": "0.000", "share": "0.000", "share-all": "0.200", "msg/s": "0"},
	}
	for name, cols := range want {
		for col, v := range cols {
			if got := b.rows[name][col]; got != v {
				t.Errorf("%s %s = %q, want %q", name, col, got, v)
			}
		}
	}
}

func TestTidyDemoLogLine(t *testing.T) {
	for in, want := range map[string]string{
		`time=09:42:08 level=WARN msg="connection lost" analyzer=analyzer-1 err="read: EOF"`: `09:42:08 WARN connection lost: analyzer=analyzer-1 err="read: EOF"`,
		`time=09:42:08 level=INFO msg=stopped`:                                               `09:42:08 INFO stopped`,
		`analyzer: gnet: something`:                                                          `analyzer: gnet: something`,
	} {
		if got := tidyDemoLogLine(in); got != want {
			t.Errorf("tidyDemoLogLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// demoBlock is one plain-mode frame of the live view.
type demoBlock struct {
	err     error // the frame did not parse
	elapsed string
	totals  map[string]int64
	rows    map[string]map[string]string // analyzer -> column -> value
}

// parseDemoBlock reads the lines of one frame: the "--- Ns ---" line, the
// totals line of name/value pairs, the column header and one row per analyzer.
func parseDemoBlock(lines []string) (demoBlock, error) {
	b := demoBlock{totals: map[string]int64{}, rows: map[string]map[string]string{}}
	if len(lines) < 3 {
		return b, fmt.Errorf("frame of %d lines: %q", len(lines), lines)
	}
	b.elapsed = strings.Trim(lines[0], "- ")
	tot := strings.Fields(lines[1])
	if len(tot) == 0 || tot[0] != "totals" || len(tot)%2 != 1 {
		return b, fmt.Errorf("totals line %q", lines[1])
	}
	for i := 1; i+1 < len(tot); i += 2 {
		n, err := strconv.ParseInt(tot[i+1], 10, 64)
		if err != nil {
			return b, fmt.Errorf("totals line %q: %s is %q", lines[1], tot[i], tot[i+1])
		}
		b.totals[tot[i]] = n
	}
	header := strings.Fields(lines[2])
	if strings.Join(header, " ") != strings.Join(demoColumns, " ") {
		return b, fmt.Errorf("header %q, want %q", lines[2], demoColumns)
	}
	for _, l := range lines[3:] {
		f := strings.Fields(l)
		if len(f) != len(header) {
			return b, fmt.Errorf("row %q has %d fields, want %d", l, len(f), len(header))
		}
		row := map[string]string{}
		for i, h := range header {
			row[h] = f[i]
		}
		b.rows[f[0]] = row
	}
	return b, nil
}

func (b demoBlock) num(t testing.TB, analyzer, col string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(b.rows[analyzer][col], 64)
	if err != nil {
		t.Fatalf("block %s: %s %s = %q", b.elapsed, analyzer, col, b.rows[analyzer][col])
	}
	return v
}

// demoRun is `make run` started by a test, with its output read line by line.
type demoRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	blocks chan demoBlock
	mu     sync.Mutex
	out    []string // every stdout line
	lines  chan string
	exited chan error
	stderr *strings.Builder
}

func (r *demoRun) transcript() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.out
	if len(out) > 120 {
		out = out[len(out)-120:]
	}
	return "stdout (last lines):\n" + strings.Join(out, "\n") + "\nstderr:\n" + r.stderr.String()
}

// read splits stdout into lines and frames.
func (r *demoRun) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	var frame []string
	for sc.Scan() {
		l := sc.Text()
		r.mu.Lock()
		r.out = append(r.out, l)
		r.mu.Unlock()
		switch {
		case strings.HasPrefix(l, "--- ") && strings.HasSuffix(l, " ---"):
			frame = []string{l}
		case frame != nil && strings.HasPrefix(l, "keys "):
			b, err := parseDemoBlock(frame)
			b.err = err
			frame = nil
			select {
			case r.blocks <- b:
			default: // nobody is reading: drop the oldest, the newest matter
				select {
				case <-r.blocks:
				default:
				}
				r.blocks <- b
			}
		case frame != nil:
			frame = append(frame, l)
		default:
			select {
			case r.lines <- l:
			default:
			}
		}
	}
	close(r.blocks)
}

// waitFor reads frames until ok accepts one or the deadline passes.
func (r *demoRun) waitFor(what string, within time.Duration, ok func(demoBlock) bool) demoBlock {
	r.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case b, open := <-r.blocks:
			if !open {
				r.t.Fatalf("demo output ended while waiting for %s\n%s", what, r.transcript())
			}
			if b.err != nil {
				r.t.Fatalf("live view frame: %v\n%s", b.err, r.transcript())
			}
			if ok(b) {
				r.t.Logf("%s: seen at %s", what, b.elapsed)
				return b
			}
		case <-deadline:
			r.t.Fatalf("no frame within %s shows %s\n%s", within, what, r.transcript())
		}
	}
}

func (r *demoRun) send(cmd string) {
	r.t.Helper()
	if _, err := io.WriteString(r.stdin, cmd+"\n"); err != nil {
		r.t.Fatalf("typing %q: %v", cmd, err)
	}
}

// defaultDemoPortsFree reports whether the ports a new user's `make run` takes are
// free, so the test can run it exactly as they would.
func defaultDemoPortsFree() bool {
	for _, addr := range []string{":8080", "127.0.0.1:9100", "127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		_ = ln.Close()
	}
	return true
}

// TestMakeRunDemo runs `make run` as a new user would (the binary is built, the
// demo starts on the seed's ports when they are free), waits for traffic, checks
// the live view and the endpoints, kills and revives an analyzer and drains
// another through the keys, then presses Ctrl-C and checks that everything
// stopped with nothing dropped.
func TestMakeRunDemo(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is needed to run the demo as the README says:", err)
	}
	started := time.Now()
	var env []string
	for _, kv := range os.Environ() {
		// A new user's shell has no demo settings and no outer make's flags.
		if strings.HasPrefix(kv, "SLUICE_DEMO_") || strings.HasPrefix(kv, "MAKEFLAGS=") || strings.HasPrefix(kv, "MFLAGS=") || strings.HasPrefix(kv, "MAKELEVEL=") {
			continue
		}
		env = append(env, kv)
	}
	if defaultDemoPortsFree() {
		t.Log("default ports are free: running make run with no settings")
	} else {
		t.Log("a default port is taken: running make run on free ports (SLUICE_DEMO_*_PORT=0)")
		env = append(env, "SLUICE_DEMO_PORT=0", "SLUICE_DEMO_METRICS_PORT=0", "SLUICE_DEMO_ANALYZER_PORT=0")
	}

	cmd := exec.Command("make", "run")
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group, like a terminal's foreground job
	r := &demoRun{t: t, cmd: cmd, blocks: make(chan demoBlock, 4), lines: make(chan string, 256), exited: make(chan error, 1), stderr: &strings.Builder{}}
	cmd.Stderr = &demoLockedWriter{w: r.stderr, mu: &r.mu}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if r.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readDone := make(chan struct{})
	go func() { r.read(stdout); close(readDone) }()
	go func() { <-readDone; r.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // no-op after a clean exit
	})

	// Where to look: the first lines name the URLs.
	var ingest, admin string
	urls := regexp.MustCompile(`^sluice demo: distributor (http://\S+) \(metrics and admin (http://\S+)\)`)
	buildDeadline := time.After(4 * time.Minute) // a cold build of the binary comes first
	for ingest == "" {
		select {
		case l := <-r.lines:
			if m := urls.FindStringSubmatch(l); m != nil {
				ingest, admin = m[1], m[2]
			}
		case <-r.exited:
			t.Fatalf("make run exited before the demo started\n%s", r.transcript())
		case <-buildDeadline:
			t.Fatalf("demo did not start\n%s", r.transcript())
		}
	}
	t.Logf("demo up after %s: ingest %s, admin %s", time.Since(started).Round(time.Millisecond), ingest, admin)

	names := []string{"analyzer-1", "analyzer-2", "analyzer-3"}
	weights := []float64{0.5, 0.3, 0.2}
	flowing := func(b demoBlock, name string) bool { return b.rows[name] != nil && b.num(t, name, "msg/s") > 0 }

	// Traffic reaches all three, in proportion to the weights.
	b := r.waitFor("all analyzers healthy and taking traffic, 20000 messages delivered", 30*time.Second, func(b demoBlock) bool {
		for _, n := range names {
			if !flowing(b, n) || b.rows[n]["state"] != "healthy" {
				return false
			}
		}
		return b.num(t, "analyzer-1", "delivered")+b.num(t, "analyzer-2", "delivered")+b.num(t, "analyzer-3", "delivered") >= 20000
	})
	for i, n := range names {
		if w := b.num(t, n, "weight"); math.Abs(w-weights[i]) > 1e-9 {
			t.Errorf("%s weight %v, want %v", n, w, weights[i])
		}
		if s := b.num(t, n, "share-all"); math.Abs(s-weights[i]) > 0.02 {
			t.Errorf("%s delivered message share %.3f, want %.2f ± 0.02", n, s, weights[i])
		}
	}
	if b.totals["dropped"] != 0 || b.totals["accepted/s"] <= 0 {
		t.Errorf("totals %v: want traffic accepted and nothing dropped", b.totals)
	}

	// The endpoints the demo points at answer.
	var health proxy.HealthJSON
	demoGetJSON(t, ingest+"/health", &health)
	if health.Status != "healthy" || health.HealthyAnalyzers != 3 || health.TotalAnalyzers != 3 {
		t.Errorf("/health = %+v, want 3 of 3 healthy", health)
	}
	var mj proxy.MetricsJSON
	demoGetJSON(t, ingest+"/metrics-json", &mj)
	for _, n := range names {
		if mj.MessagesByAnalyzer[n] <= 0 {
			t.Errorf("/metrics-json messages_by_analyzer[%s] = %d, want > 0", n, mj.MessagesByAnalyzer[n])
		}
	}
	if prom := demoGet(t, admin+"/metrics"); !strings.Contains(prom, "distributor_total_packets_total") {
		t.Errorf("%s/metrics lacks distributor_total_packets_total", admin)
	}

	// Kill analyzer-1: it goes out, the others take its traffic.
	r.send("k 1")
	r.waitFor("analyzer-1 killed and out, the others taking traffic", 20*time.Second, func(b demoBlock) bool {
		a := b.rows["analyzer-1"]
		return a["process"] == "killed" && (a["state"] == "open" || a["state"] == "half_open") &&
			b.num(t, "analyzer-1", "msg/s") == 0 && flowing(b, "analyzer-2") && flowing(b, "analyzer-3")
	})
	demoGetJSON(t, ingest+"/health", &health)
	if health.HealthyAnalyzers != 2 || health.Status != "degraded" {
		t.Errorf("/health with analyzer-1 killed = %+v, want degraded, 2 healthy", health)
	}

	// Revive it: it is probed, ramps up and takes traffic again.
	r.send("r 1")
	r.waitFor("analyzer-1 revived and taking traffic", 20*time.Second, func(b demoBlock) bool {
		a := b.rows["analyzer-1"]
		return a["process"] == "up" && (a["state"] == "healthy" || a["state"] == "slow_start") && flowing(b, "analyzer-1")
	})

	// Drain analyzer-2 through the admin API, then undrain it.
	r.send("d 2")
	r.waitFor("analyzer-2 drained", 20*time.Second, func(b demoBlock) bool {
		return b.rows["analyzer-2"]["state"] == "drained" && b.num(t, "analyzer-2", "msg/s") == 0 && flowing(b, "analyzer-1") && flowing(b, "analyzer-3")
	})
	r.send("u 2")
	r.waitFor("analyzer-2 back", 20*time.Second, func(b demoBlock) bool {
		s := b.rows["analyzer-2"]["state"]
		return (s == "healthy" || s == "slow_start") && flowing(b, "analyzer-2")
	})

	// Ctrl-C: the terminal sends SIGINT to the whole foreground group, make included.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	select {
	case waitErr = <-r.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("make run still running 30s after Ctrl-C\n%s", r.transcript())
	}
	// make waits for its child and then dies of the same SIGINT; anything else
	// (an exit status) means the recipe failed.
	if waitErr != nil {
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
			t.Errorf("make run ended with %v, want a clean exit or make's own SIGINT\n%s", waitErr, r.transcript())
		}
	}
	r.mu.Lock()
	out := strings.Join(r.out, "\n")
	r.mu.Unlock()
	summary := regexp.MustCompile(`(?m)^  distributor  accepted (\d+)  delivered (\d+)  dropped (\d+)  queued 0  in-flight 0`).FindStringSubmatch(out)
	if summary == nil || !strings.Contains(out, "sluice demo: stopped cleanly:") {
		t.Fatalf("no clean-stop summary after Ctrl-C\n%s", r.transcript())
	}
	if summary[1] != summary[2] || summary[3] != "0" || summary[1] == "0" {
		t.Errorf("summary accepted %s delivered %s dropped %s: want every accepted packet delivered", summary[1], summary[2], summary[3])
	}
	// Everything is gone: the ports are closed.
	for _, base := range []string{ingest, admin} {
		if c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), time.Second); err == nil {
			_ = c.Close()
			t.Errorf("%s still accepts connections after the demo stopped", base)
		}
	}
	t.Logf("make run demo test took %s", time.Since(started).Round(time.Millisecond))
}

type demoLockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *demoLockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func demoGet(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return string(body)
}

func demoGetJSON(t *testing.T, url string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(demoGet(t, url)), v); err != nil {
		t.Fatalf("GET %s: %v", url, fmt.Errorf("decoding: %w", err))
	}
}
