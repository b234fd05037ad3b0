package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/sluicelog/sluice/cli"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// loadedServer starts a distributor from a config file, as Main would: through
// LoadConfig, so the file, the values as written and the reloader are all real.
func loadedServer(t *testing.T, path string, logTo io.Writer) (*Server, *reloader) {
	t.Helper()
	e := env(map[string]string{"CONFIG_FILE": path})
	cfg, err := LoadConfig(nil, e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	level := &slog.LevelVar{}
	level.Set(logLevel(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: level}))
	srv := startServer(t, cfg, log)
	return srv, newReloader(srv, nil, func(k string) (string, bool) { v := e(k); return v, v != "" }, log, level)
}

func reloadYAML(fakes []*fakeAnalyzer, w0, w1 string, extra string) string {
	return "port: 0\nmetrics_addr: 127.0.0.1:0\nloops: 2\nslow_start_sec: 0\nhealth_check_interval_sec: 0.2\n" + extra +
		"analyzers:\n  - {url: '" + fakes[0].url() + "', weight: " + w0 + ", name: left}\n  - {url: '" + fakes[1].url() + "', weight: " + w1 + ", name: right}\n"
}

func healthWeights(h HealthJSON) []float64 {
	var out []float64
	for _, a := range h.Analyzers {
		out = append(out, a.Weight)
	}
	return out
}

func metricLine(t *testing.T, metricsURL, series string) string {
	t.Helper()
	resp, err := http.Get(metricsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return v
		}
	}
	return "absent"
}

func TestReloadAppliesWeightsAndListsRestartSettings(t *testing.T) {
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	path := writeConfig(t, reloadYAML(fakes, "1", "1", ""))
	logs := &syncWriter{w: &bytes.Buffer{}}
	srv, r := loadedServer(t, path, logs)
	metricsURL := "http://" + srv.MetricsAddr()

	// Weights changed, a live setting changed, a restart-only setting changed, a
	// value written differently but meaning the same (SENDER_TIMEOUT_MS 500 vs
	// 500.0) is no change.
	if err := os.WriteFile(path, []byte(reloadYAML(fakes, "3", "1", "per_analyzer_queue_size: 5\npipeline_depth: 5\nsender_timeout_ms: 500.0\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	res := r.reload()
	if !res.OK || len(res.Applied) != 2 || res.Applied[0] != "PER_ANALYZER_QUEUE_SIZE: 10000 -> 5" || res.Applied[1] != "weight of left: 1 -> 3" || strings.Join(res.Restart, ",") != "PIPELINE_DEPTH" {
		t.Fatalf("reload: %+v; want PER_ANALYZER_QUEUE_SIZE and left's weight (the one the file changed) applied and only PIPELINE_DEPTH needing a restart", res)
	}
	if ec := srv.EffectiveConfig(); ec.Settings["PER_ANALYZER_QUEUE_SIZE"] != "5" || ec.Settings["PIPELINE_DEPTH"] != "32" {
		t.Fatalf("/admin/config after reload: PER_ANALYZER_QUEUE_SIZE %s (want the new 5), PIPELINE_DEPTH %s (want the running 32)",
			ec.Settings["PER_ANALYZER_QUEUE_SIZE"], ec.Settings["PIPELINE_DEPTH"])
	}
	if srv.cfg.PipelineDepth != 32 || srv.budget.queueLimit.Load() != 5 {
		t.Fatalf("in force: PIPELINE_DEPTH %d (want 32), queue limit %d (want 5)", srv.cfg.PipelineDepth, srv.budget.queueLimit.Load())
	}
	h, _ := srv.Health()
	if w := healthWeights(h); w[0] != 0.75 || w[1] != 0.25 {
		t.Fatalf("/health weights %v after reload, want [0.75 0.25]", w)
	}
	if v := metricLine(t, metricsURL, `distributor_config_reloads_total{result="success"}`); v != "1" {
		t.Fatalf("success counter %s, want 1", v)
	}

	// A bad file: nothing changes, every problem is reported, failure counted.
	if err := os.WriteFile(path, []byte(reloadYAML(fakes, "1", "9", "port: nope\nbogus: 1\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	res = r.reload()
	if res.OK || len(res.Problems) != 2 || !strings.Contains(res.Problems[0], path) {
		t.Fatalf("bad file: %+v; want two problems naming the file", res)
	}
	h, _ = srv.Health()
	if w := healthWeights(h); w[0] != 0.75 || w[1] != 0.25 {
		t.Fatalf("/health weights %v after a refused reload, want the old [0.75 0.25]", w)
	}
	if v := metricLine(t, metricsURL, `distributor_config_reloads_total{result="failure"}`); v != "1" {
		t.Fatalf("failure counter %s, want 1", v)
	}

	// Adding an analyzer to the file adds it live: probed, then it takes packets.
	third := newFakeAnalyzer(t, false)
	withThird := reloadYAML(fakes, "3", "1", "") + "  - {url: '" + third.url() + "', weight: 1, name: third}\n"
	if err := os.WriteFile(path, []byte(withThird), 0o600); err != nil {
		t.Fatal(err)
	}
	if res = r.reload(); !res.OK || len(res.Restart) != 0 || !strings.Contains(strings.Join(res.Applied, ";"), "added third") {
		t.Fatalf("added analyzer: %+v; want it added live, nothing needing a restart", res)
	}
	s := newSender(ingestURL(srv), 1)
	waitFor(t, "the added analyzer to receive packets", 10*time.Second, func() bool {
		s.send(t, "after-add-"+strconv.Itoa(int(time.Now().UnixNano())), 3)
		n, _, _ := third.counts()
		return n > 0
	})

	// Taking it out of the file removes it live: it gets nothing afterwards.
	if err := os.WriteFile(path, []byte(reloadYAML(fakes, "3", "1", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if res = r.reload(); !res.OK || !strings.Contains(strings.Join(res.Applied, ";"), "removed third") {
		t.Fatalf("removed analyzer: %+v; want it removed live", res)
	}
	before, _, _ := third.counts()
	for i := range 30 {
		if code, _ := s.send(t, "after-remove-"+strconv.Itoa(i), 3); code != 202 {
			t.Fatalf("POST after the removal: %d", code)
		}
	}
	if after, _, _ := third.counts(); after != before {
		t.Fatalf("the removed analyzer received %d packets after the reload that removed it", after-before)
	}
	if !strings.Contains(logs.String(), "analyzer removed") || !strings.Contains(logs.String(), "config reload") {
		t.Fatalf("log does not say the reload removed the analyzer:\n%s", logs.String())
	}

	// GET /admin/config: the configuration in force, weights included.
	resp, err := http.Get(metricsURL + "/admin/config")
	if err != nil {
		t.Fatal(err)
	}
	var ec EffectiveConfig
	err = json.NewDecoder(resp.Body).Decode(&ec)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/admin/config: %d %v", resp.StatusCode, err)
	}
	if ec.ConfigFile != path || ec.Settings["PORT"] != "0" || ec.Settings["PER_ANALYZER_QUEUE_SIZE"] != "10000" ||
		ec.Settings["LOOPS"] != "2" || len(ec.Analyzers) != 2 || ec.Analyzers[0].Name != "left" || math.Abs(ec.Analyzers[0].Weight-0.75) > 1e-9 ||
		len(ec.Settings) != len(settings()) {
		t.Fatalf("/admin/config = %+v", ec)
	}
}

// A secret (any setting named like a token) never reaches /admin/config.
func TestEffectiveConfigRedactsSecrets(t *testing.T) {
	all := append(settings(), setting{env: "ADMIN_TOKEN", flag: "admin-token", set: func(*Config, string) error { return nil }})
	cfg := DefaultConfig()
	cfg.raw["ADMIN_TOKEN"] = "hunter2"
	ec := effectiveConfig(cfg, nil, all)
	b, _ := json.Marshal(ec)
	if strings.Contains(string(b), "hunter2") || ec.Settings["ADMIN_TOKEN"] != "[redacted]" || ec.Settings["PORT"] != "8080" {
		t.Fatalf("effective config %s: the token must read [redacted]", b)
	}
	if cli.Redact("INGEST_TOKENS", "a,b") != "[redacted]" || cli.Redact("INGEST_TOKENS", "") != "" || cli.Redact("PORT", "1") != "1" {
		t.Fatal("redacted: tokens hidden, empty shown as empty, others as they are")
	}
	for _, err := range []error{
		&ConfigError{Name: "ADMIN_TOKEN", Value: "hunter2", Problem: "too short"},
		&ConfigError{Name: "-admin-token", Value: "hunter2", Problem: "too short"},
		&FileError{File: "f.yaml", Key: "ingest_tokens", Value: "hunter2", Problem: "too short"},
	} {
		if msg := err.Error(); strings.Contains(msg, "hunter2") || !strings.Contains(msg, "[redacted]") {
			t.Errorf("error %q shows a secret", msg)
		}
	}
}

// syncWriter lets a test read a log written by several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

// mainChild runs Main in a child process of the test binary (real signals, real
// exit), reading its JSON log lines.
type mainChild struct {
	cmd     *exec.Cmd
	lines   chan map[string]any
	exited  chan struct{}
	ingest  string // http://127.0.0.1:port
	metrics string // http://host:port
}

const mainChildEnv = "SLUICE_MAIN_CHILD"

// runMainChild is the child's side: called first in each test that starts one.
func runMainChild() {
	if os.Getenv(mainChildEnv) == "1" {
		os.Exit(Main(nil))
	}
}

func startMainChild(t *testing.T, test string, env ...string) *mainChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), append([]string{mainChildEnv + "=1", "LOG_FORMAT=json", "PORT=0", "METRICS_ADDR=127.0.0.1:0", "LOOPS=2"}, env...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &mainChild{cmd: cmd, lines: make(chan map[string]any, 10000), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			m := map[string]any{}
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"msg": sc.Text()}
			}
			if testing.Verbose() {
				fmt.Fprintln(os.Stderr, "child:", sc.Text()) // not t.Log: this may outlive the test
			}
			select {
			case c.lines <- m:
			default: // nobody is reading (the test ended): never block the child's stderr
			}
		}
		close(c.lines)
	}()
	go func() { _ = cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.exited
	})
	up := c.await(t, "distributor listening", 20*time.Second)
	_, port, _ := net.SplitHostPort(up["addr"].(string))
	c.ingest = "http://127.0.0.1:" + port
	c.metrics = "http://" + up["metrics"].(string)
	return c
}

// await reads the child's log until a line whose message contains msg.
func (c *mainChild) await(t *testing.T, msg string, within time.Duration) map[string]any {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m, ok := <-c.lines:
			if !ok {
				select {
				case <-c.exited:
				case <-time.After(5 * time.Second):
				}
				t.Fatalf("the distributor exited (%v) before logging %q", c.cmd.ProcessState, msg)
			}
			if s, _ := m["msg"].(string); strings.Contains(s, msg) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q in the distributor's log within %v", msg, within)
		}
	}
}

// stop sends SIGTERM and wants exit status 0 (it drained and stopped cleanly).
func (c *mainChild) stop(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the distributor did not stop within 30s of SIGTERM")
	}
	if code := c.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
}

func (c *mainChild) health(t *testing.T) HealthJSON {
	t.Helper()
	resp, err := http.Get(c.metrics + "/health")
	if err != nil {
		t.Fatalf("/health: %v (is the distributor still alive?)", err)
	}
	defer resp.Body.Close()
	var h HealthJSON
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/health: %d %v", resp.StatusCode, err)
	}
	return h
}

func TestSIGHUPWithoutConfigFileKeepsServing(t *testing.T) {
	runMainChild()
	fake := newFakeAnalyzer(t, false)
	c := startMainChild(t, "TestSIGHUPWithoutConfigFileKeepsServing", "ANALYZERS="+fake.url()+"=1")
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	c.await(t, "nothing to reload", 10*time.Second)
	c.health(t)
	s := newSender(c.ingest, 1)
	if code, _ := s.send(t, "after-sighup", 3); code != 202 {
		t.Fatalf("POST /ingest after SIGHUP: %d, want 202", code)
	}
	c.stop(t)
	if _, _, ids := fake.counts(); ids["after-sighup"] != 1 {
		t.Fatalf("the packet sent after SIGHUP was not delivered: %v", ids)
	}
}

// SIGHUP with a config file while a client posts packets: new weights show in
// /health, a bad file keeps them and is counted, nothing accepted is lost.
func TestSIGHUPReloadUnderLoad(t *testing.T) {
	runMainChild()
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	path := writeConfig(t, reloadYAML(fakes, "1", "1", ""))
	c := startMainChild(t, "TestSIGHUPReloadUnderLoad", "CONFIG_FILE="+path)
	if w := healthWeights(c.health(t)); w[0] != 0.5 || w[1] != 0.5 {
		t.Fatalf("starting weights %v, want [0.5 0.5]", w)
	}

	// One client, distinct packet ids, bounded in count and time.
	s := newSender(c.ingest, 1)
	var sent atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(60 * time.Second)
		for i := 0; i < 50000 && time.Now().Before(deadline); i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.send(t, "reload-"+strconv.Itoa(i), 1+i%5)
			sent.Add(1)
		}
	}()
	stopLoad := sync.OnceFunc(func() { close(stop); <-done })
	t.Cleanup(stopLoad) // a failing test stops its client before it ends
	waitFor(t, "100 packets sent", 20*time.Second, func() bool { return sent.Load() >= 100 })

	if err := os.WriteFile(path, []byte(reloadYAML(fakes, "4", "1", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	c.await(t, "config reloaded", 10*time.Second)
	waitFor(t, "weights 0.8/0.2 in /health", 5*time.Second, func() bool {
		w := healthWeights(c.health(t))
		return w[0] == 0.8 && w[1] == 0.2
	})

	if err := os.WriteFile(path, []byte("port: nope\n"+reloadYAML(fakes, "1", "1", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	failed := c.await(t, "config reload failed", 10*time.Second)
	if failed["file"] != path || !strings.Contains(fmtAny(failed["problems"]), "port") {
		t.Fatalf("the failure log must name the file and the problem: %v", failed)
	}
	if w := healthWeights(c.health(t)); w[0] != 0.8 || w[1] != 0.2 {
		t.Fatalf("weights %v after a refused reload, want the old [0.8 0.2]", w)
	}
	if v := metricLine(t, c.metrics, `distributor_config_reloads_total{result="failure"}`); v != "1" {
		t.Fatalf("failure counter %s, want 1", v)
	}
	if v := metricLine(t, c.metrics, `distributor_config_reloads_total{result="success"}`); v != "1" {
		t.Fatalf("success counter %s, want 1", v)
	}
	after := sent.Load()
	waitFor(t, "100 more packets sent after the reloads", 20*time.Second, func() bool { return sent.Load() >= after+100 })
	stopLoad()
	c.stop(t) // drains every queue before exiting 0
	s.mu.Lock()
	accepted := s.accepted
	s.mu.Unlock()
	if len(accepted) < 200 || s.errors.Load() != 0 {
		t.Fatalf("%d packets accepted, %d transport errors", len(accepted), s.errors.Load())
	}
	checkDelivered(t, accepted, fakes, true)
}

func fmtAny(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return errors.New("unprintable").Error()
	}
	return string(b)
}

// A reload changes only the weights the file changed: one set through the admin
// API stays. The file's weights are compared as written, since changing one of
// them moves every normalised weight (found in review: 0.5 -> 0.6 on one analyzer
// reset the other's operator weight).
func TestReloadKeepsOperatorWeightTheFileDidNotChange(t *testing.T) {
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	path := writeConfig(t, reloadYAML(fakes, "0.5", "0.5", ""))
	srv, r := loadedServer(t, path, io.Discard)
	// The operator's weight, as PUT /admin/analyzers/left sets it.
	if _, _, err := srv.ctl.setWeight("left", 0.9); err != nil {
		t.Fatal(err)
	}
	left := srv.ctl.lookup("left")
	if err := os.WriteFile(path, []byte(reloadYAML(fakes, "0.5", "0.6", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	res := r.reload()
	if !res.OK || len(res.Applied) != 1 || !strings.HasPrefix(res.Applied[0], "weight of right:") {
		t.Fatalf("reload: %+v; want only right's weight applied", res)
	}
	if w := srv.View().Members[left].Configured; w != 0.9 {
		t.Fatalf("left's configured weight after a reload that did not change it: %v, want the operator's 0.9", w)
	}
}
