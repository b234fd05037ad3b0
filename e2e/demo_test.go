package e2e

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

	"github.com/sluicelog/sluice/demo"
	"github.com/sluicelog/sluice/proxy"
)

// demoBlock is one frame of the live view as `make run` printed it.
type demoBlock struct {
	demo.Frame
	err error // the frame did not parse
}

func (b demoBlock) num(t testing.TB, analyzer, col string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(b.Rows[analyzer][col], 64)
	if err != nil {
		t.Fatalf("block %s: %s %s = %q", b.Elapsed, analyzer, col, b.Rows[analyzer][col])
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
			f, err := demo.ParseFrame(frame)
			b := demoBlock{Frame: f, err: err}
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
				r.t.Logf("%s: seen at %s", what, b.Elapsed)
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
	systemTest(t)
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
	flowing := func(b demoBlock, name string) bool { return b.Rows[name] != nil && b.num(t, name, "msg/s") > 0 }

	// Traffic reaches all three, in proportion to the weights.
	b := r.waitFor("all analyzers healthy and taking traffic, 20000 messages delivered", 30*time.Second, func(b demoBlock) bool {
		for _, n := range names {
			if !flowing(b, n) || b.Rows[n]["state"] != "healthy" {
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
	if b.Totals["dropped"] != 0 || b.Totals["accepted/s"] <= 0 {
		t.Errorf("totals %v: want traffic accepted and nothing dropped", b.Totals)
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
	if page := demoGet(t, admin+"/"); !strings.Contains(page, "<title>sluice console</title>") {
		t.Errorf("%s/ is not the console", admin)
	}

	// Kill analyzer-1: it goes out, the others take its traffic.
	r.send("k 1")
	r.waitFor("analyzer-1 killed and out, the others taking traffic", 20*time.Second, func(b demoBlock) bool {
		a := b.Rows["analyzer-1"]
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
		a := b.Rows["analyzer-1"]
		return a["process"] == "up" && (a["state"] == "healthy" || a["state"] == "slow_start") && flowing(b, "analyzer-1")
	})

	// Drain analyzer-2 through the admin API, then undrain it.
	r.send("d 2")
	r.waitFor("analyzer-2 drained", 20*time.Second, func(b demoBlock) bool {
		return b.Rows["analyzer-2"]["state"] == "drained" && b.num(t, "analyzer-2", "msg/s") == 0 && flowing(b, "analyzer-1") && flowing(b, "analyzer-3")
	})
	r.send("u 2")
	r.waitFor("analyzer-2 back", 20*time.Second, func(b demoBlock) bool {
		s := b.Rows["analyzer-2"]["state"]
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
