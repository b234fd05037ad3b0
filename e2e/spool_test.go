package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The spool (SPOOL_DIR) against real processes: the distributor is the binary,
// killed with SIGKILL and started again on the same directory; analyzers record
// every packet_id they answered 200, so delivery is checked by id.

// spoolAnalyzer is a seed-contract analyzer (one packet per POST /ingest) that
// records the packet_ids it answered 200 and may be slow.
type spoolAnalyzer struct {
	srv   *http.Server
	addr  string
	mu    sync.Mutex
	ids   map[string]int
	delay atomic.Int64 // ns before each answer
}

func startSpoolAnalyzer(t *testing.T) *spoolAnalyzer {
	t.Helper()
	a := &spoolAnalyzer{ids: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"status":"healthy"}`)
	})
	mux.HandleFunc("POST /ingest", func(w http.ResponseWriter, r *http.Request) {
		if d := a.delay.Load(); d > 0 {
			time.Sleep(time.Duration(d)) // a slow analyzer: the backlog under test
		}
		var p struct {
			ID string `json:"packet_id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil || p.ID == "" {
			http.Error(w, "bad packet", 400)
			return
		}
		a.mu.Lock()
		a.ids[p.ID]++
		a.mu.Unlock()
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.addr = ln.Addr().String()
	a.srv = &http.Server{Handler: mux}
	go func() { _ = a.srv.Serve(ln) }()
	t.Cleanup(func() { _ = a.srv.Close() })
	return a
}

func (a *spoolAnalyzer) received() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.ids)
}

// spoolRig is a distributor binary on one SPOOL_DIR, restarted at will, and its
// analyzers.
type spoolRig struct {
	t         *testing.T
	bin       string
	dir       string
	ingest    string
	metrics   string
	analyzers []*spoolAnalyzer
	extra     []string
	cmd       *exec.Cmd
	exited    chan struct{}
	logs      bytes.Buffer // every run's log, for a failure
	logMu     sync.Mutex
}

func (r *spoolRig) Write(p []byte) (int, error) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	return r.logs.Write(p)
}

var spoolBin struct {
	once sync.Once
	path string
	err  error
}

// buildSluice builds the binary once for the spool tests.
func buildSluice(t *testing.T) string {
	t.Helper()
	spoolBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-spool-e2e-")
		if err != nil {
			spoolBin.err = err
			return
		}
		spoolBin.path = filepath.Join(dir, "sluice")
		if out, err := exec.Command("go", "build", "-o", spoolBin.path, ".").CombinedOutput(); err != nil {
			spoolBin.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if spoolBin.err != nil {
		t.Fatal(spoolBin.err)
	}
	return spoolBin.path
}

func newSpoolRig(t *testing.T, analyzers int, extra ...string) *spoolRig {
	t.Helper()
	r := &spoolRig{t: t, bin: buildSluice(t), dir: filepath.Join(t.TempDir(), "spool"),
		ingest: freeLoopbackAddr(t), metrics: freeLoopbackAddr(t), extra: extra}
	for range analyzers {
		r.analyzers = append(r.analyzers, startSpoolAnalyzer(t))
	}
	t.Cleanup(func() {
		r.stop(syscall.SIGKILL)
		if t.Failed() || testing.Verbose() {
			t.Logf("distributor logs:\n%s", r.logs.String())
		}
	})
	return r
}

func (r *spoolRig) env() []string {
	var specs []string
	for _, a := range r.analyzers {
		specs = append(specs, "http://"+a.addr+"=1")
	}
	return append([]string{"ANALYZERS=" + strings.Join(specs, ","), "LISTEN_ADDR=" + r.ingest,
		"METRICS_ADDR=" + r.metrics, "SPOOL_DIR=" + r.dir, "LOOPS=2", "HEALTH_CHECK_INTERVAL_SEC=0.2",
		"SLOW_START_SEC=0"}, r.extra...)
}

// start runs the distributor and waits until it answers /readyz.
func (r *spoolRig) start() {
	t := r.t
	t.Helper()
	r.cmd = exec.Command(r.bin, "distributor")
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	r.cmd.Env = r.env()
	r.cmd.Stdout, r.cmd.Stderr = r, r
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { _ = cmd.Wait(); close(exited) }(r.cmd, r.exited)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + r.ingest + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-r.exited:
			t.Fatalf("distributor exited at start: %v", r.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("distributor not ready after 15 s")
		}
		time.Sleep(20 * time.Millisecond) // polling readiness with a deadline
	}
}

// stop sends sig and waits for the exit.
func (r *spoolRig) stop(sig syscall.Signal) {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(sig)
	select {
	case <-r.exited:
	case <-time.After(20 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
	r.cmd = nil
}

// metricsJSON reads /metrics-json from the admin port.
func (r *spoolRig) metricsJSON() (map[string]any, error) {
	resp, err := http.Get("http://" + r.metrics + "/metrics-json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

// received sums what the analyzers answered 200, by packet_id.
func (r *spoolRig) received() map[string]int {
	got := map[string]int{}
	for _, a := range r.analyzers {
		for id, n := range a.received() {
			got[id] += n
		}
	}
	return got
}

// awaitDelivered waits until every id in accepted reached an analyzer; it returns
// how many ids arrived more than once.
func (r *spoolRig) awaitDelivered(accepted map[string]bool, within time.Duration) (dups int) {
	t := r.t
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := r.received()
		var missing []string
		for id := range accepted {
			if got[id] == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			for _, n := range got {
				if n > 1 {
					dups++
				}
			}
			return dups
		}
		if time.Now().After(deadline) {
			if len(missing) > 5 {
				missing = missing[:5]
			}
			t.Fatalf("%d of %d packets answered 202 never reached an analyzer (e.g. %v)", len(accepted)-len(got), len(accepted), missing)
		}
		time.Sleep(50 * time.Millisecond) // polling delivery with a deadline
	}
}

// emitter posts packets with unique ids over conns keep-alive connections until
// stopped, recording every id answered 202. With retry, a packet answered
// otherwise (503, a lost connection) is sent again under the same id until it is
// accepted, as a real emitter does.
type spoolEmitter struct {
	url      string
	prefix   string
	retry    bool
	stopping atomic.Bool
	wg       sync.WaitGroup
	mu       sync.Mutex
	accepted map[string]bool
	statuses map[string]int
	seq      atomic.Int64
}

func startSpoolEmitter(ingest, prefix string, conns int, retry bool) *spoolEmitter {
	e := &spoolEmitter{url: "http://" + ingest + "/ingest", prefix: prefix, retry: retry,
		accepted: map[string]bool{}, statuses: map[string]int{}}
	for range conns {
		e.wg.Add(1)
		go e.run()
	}
	return e
}

func (e *spoolEmitter) run() {
	defer e.wg.Done()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	for !e.stopping.Load() {
		id := e.prefix + strconv.FormatInt(e.seq.Add(1), 10)
		for {
			status := e.post(client, id)
			e.mu.Lock()
			e.statuses[status]++
			if status == "202" {
				e.accepted[id] = true
			}
			e.mu.Unlock()
			if status == "202" || !e.retry || e.stopping.Load() {
				break
			}
			time.Sleep(20 * time.Millisecond) // back off before the retry, as an emitter does
		}
	}
}

func (e *spoolEmitter) post(client *http.Client, id string) string {
	body := `{"emitter_id":"spool-e2e","packet_id":"` + id + `","messages":[{"timestamp":1640995200000,"level":"INFO","message":"spooled ` + id + `"},{"timestamp":1640995200001,"level":"WARN","message":"second"}]}`
	resp, err := client.Post(e.url, "application/json", strings.NewReader(body))
	if err != nil {
		return "error"
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 202 && !bytes.Contains(b, []byte(`"`+id+`"`)) {
		return "202 for another id"
	}
	if resp.StatusCode == 503 {
		var m struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &m)
		return "503 " + m.Error
	}
	return strconv.Itoa(resp.StatusCode)
}

func (e *spoolEmitter) stop() (map[string]bool, map[string]int) {
	e.stopping.Store(true)
	e.wg.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.accepted, e.statuses
}

func (e *spoolEmitter) acceptedCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.accepted)
}

// kill -9 under load with one slow analyzer (a backlog in memory), then a restart
// on the same SPOOL_DIR: every packet answered 202 reaches an analyzer.
func TestSpoolKill9UnderLoad(t *testing.T) {
	systemTest(t)
	r := newSpoolRig(t, 2, "PER_ANALYZER_QUEUE_SIZE=400", "SENDER_TIMEOUT_MS=3000", "BATCH_MAX=1")
	slow := r.analyzers[1]
	slow.delay.Store(int64(10 * time.Millisecond))
	r.start()
	em := startSpoolEmitter(r.ingest, "k9-", 16, false)
	deadline := time.Now().Add(20 * time.Second)
	var backlog float64
	for time.Now().Before(deadline) {
		if m, err := r.metricsJSON(); err == nil {
			backlog, _ = m["queued"].(float64)
			if backlog >= 100 && em.acceptedCount() >= 2000 {
				break
			}
		}
		time.Sleep(50 * time.Millisecond) // polling the backlog with a deadline
	}
	if backlog < 100 {
		t.Fatalf("no backlog built up: queued %v", backlog)
	}
	r.stop(syscall.SIGKILL)
	accepted, statuses := em.stop()
	t.Logf("killed with %v packets queued; %d answered 202; answers %v", backlog, len(accepted), statuses)
	before := r.received()
	slow.delay.Store(0)
	r.start()
	dups := r.awaitDelivered(accepted, 60*time.Second)
	t.Logf("every one of %d packets answered 202 delivered; %d delivered before the kill; %d ids delivered more than once", len(accepted), len(before), dups)
	// Duplicates come from packets delivered whose ack was not yet written when the
	// process died: at most what was in flight and settled in the last group of
	// each loop. Far below the backlog that was replayed.
	if dups > int(backlog)+2*32*2*2 {
		t.Fatalf("%d duplicates, more than the in-flight window", dups)
	}
}

// kill -9 ten times at random moments while an emitter with retries runs: every
// packet answered 202 is delivered.
func TestSpoolKill9Repeated(t *testing.T) {
	systemTest(t)
	r := newSpoolRig(t, 2, "SENDER_TIMEOUT_MS=2000")
	r.analyzers[1].delay.Store(int64(2 * time.Millisecond))
	r.start()
	em := startSpoolEmitter(r.ingest, "r9-", 8, true)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	for i := 0; i < 10; i++ {
		time.Sleep(time.Duration(100+rng.IntN(600)) * time.Millisecond) // a random moment under load
		r.stop(syscall.SIGKILL)
		r.start()
	}
	time.Sleep(300 * time.Millisecond) // some traffic after the last restart too
	accepted, statuses := em.stop()
	if len(accepted) < 100 {
		t.Fatalf("only %d packets accepted across the restarts: %v", len(accepted), statuses)
	}
	dups := r.awaitDelivered(accepted, 60*time.Second)
	t.Logf("10 kills: %d packets answered 202, all delivered; %d ids delivered more than once; answers %v", len(accepted), dups, statuses)
}

// SIGTERM with a stalled analyzer: what SHUTDOWN_TIMEOUT_SEC could not deliver
// stays on disk (counted as left in the spool, not dropped), and the next start
// delivers it.
func TestSpoolSIGTERMLeavesBacklog(t *testing.T) {
	systemTest(t)
	r := newSpoolRig(t, 1, "SHUTDOWN_TIMEOUT_SEC=1", "SENDER_TIMEOUT_MS=10000", "BATCH_MAX=1")
	r.analyzers[0].delay.Store(int64(30 * time.Second)) // stalled: takes requests, answers none
	r.start()
	em := startSpoolEmitter(r.ingest, "term-", 4, false)
	for em.acceptedCount() < 200 {
		time.Sleep(20 * time.Millisecond) // polling; the emitter runs
	}
	accepted, _ := em.stop()
	r.stop(syscall.SIGTERM)
	log := r.logs.String()
	if !strings.Contains(log, "left_in_spool=") || strings.Contains(log, "left_in_spool=0 ") {
		t.Fatalf("the stop did not report packets left in the spool")
	}
	_ = r.analyzers[0].srv.Close()
	r.analyzers[0] = startSpoolAnalyzer(t)
	r.start()
	dups := r.awaitDelivered(accepted, 30*time.Second)
	t.Logf("%d packets left on disk at SIGTERM delivered by the next start (%d duplicates)", len(accepted), dups)
}

// Two distributors on one SPOOL_DIR: the second exits 2 with one line saying why;
// a SPOOL_DIR that cannot be created exits 2 with one line too.
func TestSpoolDirRefused(t *testing.T) {
	systemTest(t)
	r := newSpoolRig(t, 1)
	r.start()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, dir, want string }{
		{"locked", r.dir, "in use by another process"},
		{"not a directory", filepath.Join(file, "spool"), "cannot create"},
	} {
		cmd := exec.Command(r.bin, "distributor")
		cmd.Env = append(r.env(), "SPOOL_DIR="+tc.dir, "LISTEN_ADDR="+freeLoopbackAddr(t), "METRICS_ADDR=")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) || !strings.Contains(lines[0], "SPOOL_DIR=") {
			t.Errorf("%s: %v, stderr %q; want exit 2 and one line naming SPOOL_DIR and %q", tc.name, err, stderr.String(), tc.want)
		}
	}
}

// A disk that refuses writes (RLIMIT_FSIZE set on the running distributor):
// 503 (never a 202 that is not on disk), then 202s again once writes succeed, and
// every packet answered 202 is delivered.
func TestSpoolWriteFailure(t *testing.T) {
	systemTest(t)
	r := newSpoolRig(t, 1, "SPOOL_SEGMENT_BYTES=65536")
	r.start()
	pid := r.cmd.Process.Pid
	em := startSpoolEmitter(r.ingest, "fsz-", 4, false)
	for em.acceptedCount() < 100 {
		time.Sleep(10 * time.Millisecond) // polling; the emitter runs
	}
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: 64, Max: unix.RLIM_INFINITY}, &old); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	waitStatus := func(what string, ok func(map[string]int) bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			em.mu.Lock()
			done := ok(em.statuses)
			st := fmt.Sprint(em.statuses)
			em.mu.Unlock()
			if done {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not seen within 15 s; answers %s", what, st)
			}
			time.Sleep(20 * time.Millisecond) // polling with a deadline
		}
	}
	failed := func(s map[string]int) int { return s["503 spool write failed"] + s["503 spool unavailable"] }
	waitStatus("503 while writes fail", func(s map[string]int) bool { return failed(s) > 0 })
	em.mu.Lock()
	acceptedThen := len(em.accepted)
	em.mu.Unlock()
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &old, nil); err != nil {
		t.Fatalf("prlimit back: %v", err)
	}
	waitStatus("202s again once writes succeed", func(s map[string]int) bool { return len(em.accepted) > acceptedThen+50 })
	accepted, statuses := em.stop()
	m, err := r.metricsJSON()
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := m["spool"].(map[string]any)
	if sp == nil || sp["disk_errors"].(float64) == 0 {
		t.Fatalf("disk errors not counted: %v", sp)
	}
	r.awaitDelivered(accepted, 30*time.Second)
	t.Logf("answers %v; spool %v", statuses, sp)
}

// A spool damaged while the distributor was down (garbage appended to a segment, a
// byte flipped in the middle of another): the start is not refused, the damage is
// counted (torn tails, corrupt records in /metrics-json), and every other packet
// answered 202 is delivered.
func TestSpoolDamagedOnRestart(t *testing.T) {
	systemTest(t)
	r := newSpoolRig(t, 1, "SPOOL_SEGMENT_BYTES=65536", "SENDER_TIMEOUT_MS=60000", "BATCH_MAX=1")
	r.analyzers[0].delay.Store(int64(time.Minute)) // takes packets, answers none: they stay in the spool
	r.start()
	em := startSpoolEmitter(r.ingest, "dmg-", 4, false)
	for em.acceptedCount() < 1000 { // about 200 KB of records: several 64 KiB segments
		time.Sleep(10 * time.Millisecond) // polling; the emitter runs
	}
	r.stop(syscall.SIGKILL)
	accepted, _ := em.stop()
	segs, _ := filepath.Glob(filepath.Join(r.dir, "*.seg"))
	if len(segs) < 2 {
		t.Fatalf("%d segment files, want at least 2 (SPOOL_SEGMENT_BYTES=65536)", len(segs))
	}
	// Garbage after the last record of one segment, one byte flipped in the middle
	// of another.
	f, err := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte("\x00garbage after a crash\xff\xfe"))
	f.Close()
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x55
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = r.analyzers[0].srv.Close()
	r.analyzers[0] = startSpoolAnalyzer(t)
	r.start()
	deadline := time.Now().Add(30 * time.Second)
	var sp map[string]any
	for {
		m, err := r.metricsJSON()
		if err == nil {
			sp, _ = m["spool"].(map[string]any)
		}
		if sp != nil && sp["torn_tails"].(float64) >= 1 && sp["corrupt_records"].(float64) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("damage not counted: spool %v", sp)
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
	// Every packet but the one whose record was damaged arrives.
	wait := time.Now().Add(30 * time.Second)
	for {
		got := r.received()
		missing := 0
		for id := range accepted {
			if got[id] == 0 {
				missing++
			}
		}
		corrupt := int(sp["corrupt_records"].(float64))
		if missing <= corrupt {
			if m, err := r.metricsJSON(); err == nil {
				sp, _ = m["spool"].(map[string]any)
			}
			t.Logf("%d packets answered 202, %d lost to %d corrupt records, torn tails %v, replayed %v", len(accepted), missing, corrupt, sp["torn_tails"], sp["replayed_packets"])
			return
		}
		if time.Now().After(wait) {
			t.Fatalf("%d of %d packets missing with %d corrupt records", missing, len(accepted), corrupt)
		}
		time.Sleep(50 * time.Millisecond) // polling delivery with a deadline
	}
}
