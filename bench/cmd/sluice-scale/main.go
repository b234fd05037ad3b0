// Command sluice-scale measures distributor replicas behind HAProxy
// (deploy/haproxy/haproxy.cfg) on loopback, as docs/scaling.md reports them. `make
// scale` runs -mode leave and -mode die; `make scale-measure` runs throughput and
// probes.
//
//   - leave: two replicas under a flat-out emitter, one of them sent SIGTERM a third
//     of the way in. Every packet the emitter had answered 202 must reach an
//     analyzer (checked by packet_id: the analyzers run in this process and record
//     every id), HAProxy must move the traffic to the other replica, and the
//     emitter re-sends what got 503 or a reset. Exit 1 otherwise.
//   - die: two replicas with a spool each (SPOOL_DIR) under a flat-out emitter
//     with retries, one analyzer answering 50 ms late so a backlog builds; replica
//     2 is killed with SIGKILL a third of the way in and started again on the same
//     spool a second later. Every packet the emitter had
//     answered 202 must reach an analyzer, the ones replica 2 held in memory at the
//     kill included (its replay). Exit 1 otherwise.
//   - throughput: accepted packets/s with 1, 2 and 3 replicas, the emitter flat out
//     (bin/sluice emitter -rate 0), rounds alternating the order; and the
//     established connections each replica holds to the analyzers, counted in
//     /proc/net/tcp by socket inode.
//   - probes: GET /health per second at each analyzer from N replicas, healthy and
//     then with one analyzer answering 503, counted by analyzers this program
//     serves.
//
// Everything binds 127.0.0.1 ports from -port up, and every process it starts is
// stopped before it returns.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluicelog/sluice/analyzer"
	"github.com/sluicelog/sluice/emitter"
)

var (
	bin         = flag.String("sluice", "bin/sluice", "the sluice binary")
	haproxyCfg  = flag.String("haproxy-config", "deploy/haproxy/haproxy.cfg", "HAProxy configuration; its distributor server lines are replaced by one per replica")
	mode        = flag.String("mode", "leave", "leave, die, throughput or probes")
	basePort    = flag.Int("port", 38180, "first of the loopback ports used")
	duration    = flag.Duration("duration", 6*time.Second, "load per run (leave, throughput) or counting window (probes)")
	rounds      = flag.Int("rounds", 3, "throughput: rounds, each over every replica count, order alternating")
	replicas    = flag.String("replicas", "1,2,3", "throughput and probes: replica counts; 0 (throughput) is one replica without HAProxy, the emitter straight at it")
	concurrency = flag.Int("concurrency", 64, "emitter connections")
	loops       = flag.Int("loops", 0, "LOOPS of each replica (0: the distributor's default, one per CPU but one on 1 or 2 CPUs)")
	outDir      = flag.String("out", "bench/out", "logs go here")
)

const weights = "0.5,0.3,0.2"

func main() {
	flag.Parse()
	var err error
	switch *mode {
	case "leave":
		err = leave()
	case "die":
		err = die()
	case "throughput":
		err = throughput()
	case "probes":
		err = probes()
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-scale:", err)
		os.Exit(1)
	}
}

// --- processes

type fleet struct {
	procs []*exec.Cmd
	names []string
}

// procDone holds, for each started process, a channel closed once Wait returned.
var (
	procDoneMu sync.Mutex
	procDone   = map[*exec.Cmd]chan struct{}{}
)

func (f *fleet) start(name string, env []string, path string, args ...string) (*exec.Cmd, error) {
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(*outDir, "scale-"+name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	procDoneMu.Lock()
	procDone[cmd] = done
	procDoneMu.Unlock()
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	f.procs = append(f.procs, cmd)
	f.names = append(f.names, name)
	return cmd, nil
}

// stop sends SIGTERM to every process still running and waits up to 10 s for
// each, then kills it.
func (f *fleet) stop() {
	for _, c := range f.procs {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range f.procs {
		waitExit(c, 10*time.Second)
	}
	f.procs, f.names = nil, nil
}

// waitExit waits for c (whose Wait runs in start's goroutine) to exit, killing it
// after timeout; it returns how long that took. c.ProcessState is set once it
// returns.
func waitExit(c *exec.Cmd, timeout time.Duration) time.Duration {
	t0 := time.Now()
	procDoneMu.Lock()
	done := procDone[c]
	procDoneMu.Unlock()
	select {
	case <-done:
	case <-time.After(timeout):
		_ = c.Process.Kill()
		<-done
	}
	return time.Since(t0)
}

func waitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %v", url, timeout, err)
		}
		time.Sleep(100 * time.Millisecond) // polling readiness, bounded by the deadline
	}
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// Ports: front at base, analyzers base+1..3, replica d ingest base+10+d, metrics
// base+20+d.
func front() string            { return addr(*basePort) }
func analyzerPort(i int) int   { return *basePort + i }
func ingestAddr(d int) string  { return addr(*basePort + 10 + d) }
func metricsAddr(d int) string { return addr(*basePort + 20 + d) }

func analyzerSpec() string {
	var s []string
	for i, w := range strings.Split(weights, ",") {
		s = append(s, "http://"+addr(analyzerPort(i+1))+"="+w)
	}
	return strings.Join(s, ",")
}

// startReplicas starts n distributors and HAProxy in front of them, and waits
// until each replica and the front answer /readyz.
// replicaEnv is replica d's environment.
func replicaEnv(d int, extra ...string) []string {
	env := []string{"LISTEN_ADDR=" + ingestAddr(d), "METRICS_ADDR=" + metricsAddr(d), "ANALYZERS=" + analyzerSpec(),
		"LOOPS=" + strconv.Itoa(*loops), "SHUTDOWN_TIMEOUT_SEC=5"}
	for _, e := range extra {
		env = append(env, strings.ReplaceAll(e, "{d}", strconv.Itoa(d)))
	}
	return env
}

// startReplicas starts n replicas and HAProxy in front of them; "{d}" in an extra
// variable is the replica's number.
func startReplicas(f *fleet, n int, extra ...string) ([]*exec.Cmd, error) {
	var ds []*exec.Cmd
	for d := 1; d <= n; d++ {
		c, err := f.start("distributor-"+strconv.Itoa(d), replicaEnv(d, extra...), *bin, "distributor")
		if err != nil {
			return nil, err
		}
		ds = append(ds, c)
	}
	cfg, err := haproxyConfig(n)
	if err != nil {
		return nil, err
	}
	env := []string{"SCALE_FRONT=" + front()}
	for d := 1; d <= n; d++ {
		env = append(env, "SCALE_D"+strconv.Itoa(d)+"="+ingestAddr(d))
	}
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		haproxy = "/usr/sbin/haproxy"
	}
	if _, err := f.start("haproxy", env, haproxy, "-f", cfg, "-db"); err != nil {
		return nil, err
	}
	for d := 1; d <= n; d++ {
		if err := waitHTTP("http://"+ingestAddr(d)+"/readyz", 10*time.Second); err != nil {
			return nil, err
		}
	}
	return ds, waitHTTP("http://"+front()+"/readyz", 10*time.Second)
}

// haproxyConfig writes the repository's HAProxy configuration with one server
// line per replica (distributor-1 ... distributor-n), the rest unchanged.
func haproxyConfig(n int) (string, error) {
	b, err := os.ReadFile(*haproxyCfg)
	if err != nil {
		return "", err
	}
	var out []string
	found := false
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "server distributor-") {
			out = append(out, l)
			continue
		}
		if !found && strings.Contains(l, "distributor-1 ") && strings.Contains(l, "${SCALE_D1}") {
			for d := 1; d <= n; d++ {
				s := strings.Replace(l, "distributor-1", "distributor-"+strconv.Itoa(d), 1)
				out = append(out, strings.Replace(s, "${SCALE_D1}", "${SCALE_D"+strconv.Itoa(d)+"}", 1))
			}
			found = true
		}
	}
	if !found {
		return "", fmt.Errorf("%s: no server distributor-1 \"${SCALE_D1}\" line", *haproxyCfg)
	}
	p := filepath.Join(*outDir, "scale-haproxy.cfg")
	return p, os.WriteFile(p, []byte(strings.Join(out, "\n")+"\n"), 0o644)
}

// metric adds up every series of a family on a replica's /metrics (one, for an
// unlabelled metric).
func metric(d int, name string) (float64, error) {
	resp, err := http.Get("http://" + metricsAddr(d) + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	sum, found := 0.0, false
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		if err != nil {
			return 0, err
		}
		sum, found = sum+v, true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("replica %d: no %s", d, name)
	}
	return sum, nil
}

// --- leave

func leave() error {
	var ans []*analyzer.Analyzer
	for i := 1; i <= 3; i++ {
		a := analyzer.New(analyzer.Config{Addr: addr(analyzerPort(i)), ID: "analyzer-" + strconv.Itoa(i), RecordIDs: true, Batch: true})
		if err := a.Start(); err != nil {
			return err
		}
		defer func() { _ = a.Stop() }()
		ans = append(ans, a)
	}
	f := &fleet{}
	defer f.stop()
	ds, err := startReplicas(f, 2, "LOOPS=1")
	if err != nil {
		return err
	}

	var (
		mu            sync.Mutex
		accepted      = map[string]bool{}
		termed        atomic.Bool
		exited        atomic.Bool
		afterTerm     int
		afterExit     int
		beforeTermAcc int
	)
	var rep emitter.Report
	var runErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		rep, runErr = emitter.Run(context.Background(), emitter.Config{
			Target: "http://" + front(), Rate: 0, Concurrency: *concurrency, Duration: *duration,
			EmitterID: "scale-leave", RetryBudget: -1,
			OnAccepted: func(id string, _ int) {
				mu.Lock()
				accepted[id] = true
				if exited.Load() {
					afterExit++
				}
				if termed.Load() {
					afterTerm++
				} else {
					beforeTermAcc++
				}
				mu.Unlock()
			},
		}, io.Discard)
	}()

	time.Sleep(*duration / 3)
	r1Before, err := metric(1, "distributor_total_packets_total")
	if err != nil {
		return err
	}
	termed.Store(true)
	_ = ds[1].Process.Signal(syscall.SIGTERM)
	took := waitExit(ds[1], 15*time.Second)
	// Replica 1's count first, then the flag: whatever is accepted after the
	// flag, replica 1 has counted after this scrape.
	r1AtExit, err := metric(1, "distributor_total_packets_total")
	if err != nil {
		return err
	}
	exited.Store(true)
	<-done
	if runErr != nil {
		return fmt.Errorf("emitter: %w", runErr)
	}
	exit := -1
	if ds[1].ProcessState != nil {
		exit = ds[1].ProcessState.ExitCode()
	}
	// Replica 1 drains what it holds.
	deadline := time.Now().Add(10 * time.Second)
	for {
		q, err1 := metric(1, "distributor_queued")
		fl, err2 := metric(1, "distributor_in_flight")
		if err1 == nil && err2 == nil && q+fl == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica 1 still holds packets 10 s after the load: queued %v in flight %v (%v %v)", q, fl, err1, err2)
		}
		time.Sleep(50 * time.Millisecond) // polling a gauge, bounded by the deadline
	}
	r1After, _ := metric(1, "distributor_total_packets_total")
	r1Dropped, _ := metric(1, "distributor_dropped_total")

	delivered, missing, dup := tally(accepted, ans)
	fmt.Printf("two replicas (LOOPS=1) behind HAProxy, emitter -rate 0 -concurrency %d for %v, replica 2 sent SIGTERM at %v\n",
		*concurrency, *duration, *duration/3)
	fmt.Printf("emitter: sent %d packets, accepted (202) %d, 503 answers %d, connection errors/other %d, re-sends %d, gave up %d, unfinished %d\n",
		rep.Sent, rep.Accepted, rep.Rejected503, rep.OtherErrors, rep.Retries, rep.GaveUp, rep.Unfinished)
	fmt.Printf("replica 2: exited %d, %.2f s after SIGTERM (SHUTDOWN_TIMEOUT_SEC=5)\n", exit, took.Seconds())
	fmt.Printf("emitter accepted before SIGTERM %d, after %d, after replica 2 exited %d; replica 1 accepted %.0f after SIGTERM and %.0f after the exit (%.0f in all), dropped %.0f\n",
		beforeTermAcc, afterTerm, afterExit, r1After-r1Before, r1After-r1AtExit, r1After, r1Dropped)
	fmt.Printf("analyzers: %d distinct packet_ids received; of the %d accepted: %d missing, %d received more than once\n",
		len(delivered), len(accepted), missing, dup)
	var bad []string
	if uint64(len(accepted)) != rep.Accepted {
		bad = append(bad, fmt.Sprintf("OnAccepted saw %d ids, the report says %d", len(accepted), rep.Accepted))
	}
	if missing > 0 {
		bad = append(bad, fmt.Sprintf("%d accepted packets never reached an analyzer", missing))
	}
	if exit != 0 {
		bad = append(bad, fmt.Sprintf("replica 2 exit status %d after SIGTERM", exit))
	}
	// A packet replica 1 counted just before the scrape can be answered just
	// after the flag, so allow 1 %.
	if afterExit == 0 || r1After-r1AtExit < 0.99*float64(afterExit) {
		bad = append(bad, fmt.Sprintf("the balancer did not move the traffic: %d accepted after replica 2 exited, replica 1 counted %.0f", afterExit, r1After-r1AtExit))
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	fmt.Println("ok: every accepted packet was delivered")
	return nil
}

// --- die

func die() error {
	var ans []*analyzer.Analyzer
	for i := 1; i <= 3; i++ {
		// analyzer-3 is slow, so the replicas hold a backlog when one is killed.
		delay := time.Duration(0)
		if i == 3 {
			delay = 50 * time.Millisecond
		}
		a := analyzer.New(analyzer.Config{Addr: addr(analyzerPort(i)), ID: "analyzer-" + strconv.Itoa(i), RecordIDs: true, Batch: true, Delay: delay})
		if err := a.Start(); err != nil {
			return err
		}
		defer func() { _ = a.Stop() }()
		ans = append(ans, a)
	}
	spools, err := filepath.Abs(filepath.Join(*outDir, "scale-spool"))
	if err != nil {
		return err
	}
	if err := os.RemoveAll(spools); err != nil {
		return err
	}
	extra := []string{"LOOPS=1", "SPOOL_DIR=" + filepath.Join(spools, "{d}")}
	f := &fleet{}
	defer f.stop()
	ds, err := startReplicas(f, 2, extra...)
	if err != nil {
		return err
	}
	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
	)
	var rep emitter.Report
	var runErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		rep, runErr = emitter.Run(context.Background(), emitter.Config{
			Target: "http://" + front(), Rate: 0, Concurrency: *concurrency, Duration: *duration,
			EmitterID: "scale-die", RetryBudget: -1,
			OnAccepted: func(id string, _ int) {
				mu.Lock()
				accepted[id] = true
				mu.Unlock()
			},
		}, io.Discard)
	}()

	time.Sleep(*duration / 3)
	held, err := heldBy(2)
	if err != nil {
		return err
	}
	_ = ds[1].Process.Signal(syscall.SIGKILL)
	waitExit(ds[1], 5*time.Second)
	time.Sleep(time.Second) // down for a moment: HAProxy moves the traffic
	if _, err := f.start("distributor-2-restarted", replicaEnv(2, extra...), *bin, "distributor"); err != nil {
		return err
	}
	if err := waitHTTP("http://"+ingestAddr(2)+"/readyz", 10*time.Second); err != nil {
		return err
	}
	<-done
	if runErr != nil {
		return fmt.Errorf("emitter: %w", runErr)
	}
	// Both replicas deliver what they hold, the restarted one its replay too.
	deadline := time.Now().Add(20 * time.Second)
	for d := 1; d <= 2; d++ {
		for {
			h, err := heldBy(d)
			if err == nil && h == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("replica %d still holds %v packets 20 s after the load (%v)", d, h, err)
			}
			time.Sleep(50 * time.Millisecond) // polling gauges, bounded by the deadline
		}
	}
	replayed, err := metric(2, "distributor_spool_replayed_packets_total")
	if err != nil {
		return err
	}
	delivered, missing, dup := tally(accepted, ans)
	fmt.Printf("two replicas (LOOPS=1, SPOOL_DIR each, SPOOL_SYNC=always) behind HAProxy, emitter -rate 0 -concurrency %d for %v, replica 2 killed (SIGKILL) at %v holding %.0f packets, restarted 1 s later\n",
		*concurrency, *duration, *duration/3, held)
	fmt.Printf("emitter: sent %d packets, accepted (202) %d, 503 answers %d, connection errors/other %d, re-sends %d, gave up %d, unfinished %d\n",
		rep.Sent, rep.Accepted, rep.Rejected503, rep.OtherErrors, rep.Retries, rep.GaveUp, rep.Unfinished)
	fmt.Printf("replica 2 after the restart: %.0f packets replayed from its spool\n", replayed)
	fmt.Printf("analyzers: %d distinct packet_ids received; of the %d accepted: %d missing, %d received more than once\n",
		len(delivered), len(accepted), missing, dup)
	if missing > 0 {
		return fmt.Errorf("%d accepted packets never reached an analyzer", missing)
	}
	if held > 0 && replayed == 0 {
		return fmt.Errorf("replica 2 held %.0f packets at the kill and replayed none", held)
	}
	fmt.Println("ok: every accepted packet was delivered, the killed replica's included")
	return nil
}

// heldBy is what replica d holds: queued and in flight.
func heldBy(d int) (float64, error) {
	q, err1 := metric(d, "distributor_queued")
	fl, err2 := metric(d, "distributor_in_flight")
	return q + fl, errors.Join(err1, err2)
}

// --- throughput

func replicaCounts() ([]int, error) {
	var ns []int
	for _, s := range strings.Split(*replicas, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 || n > 9 {
			return nil, fmt.Errorf("-replicas %q", *replicas)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

func throughput() error {
	ns, err := replicaCounts()
	if err != nil {
		return err
	}
	af := &fleet{}
	defer af.stop()
	for i := 1; i <= 3; i++ {
		if _, err := af.start("analyzer-"+strconv.Itoa(i), nil, *bin, "analyzer", "-port", addr(analyzerPort(i))); err != nil {
			return err
		}
		if err := waitHTTP("http://"+addr(analyzerPort(i))+"/health", 10*time.Second); err != nil {
			return err
		}
	}
	pps := map[int][]float64{}
	for r := 0; r < *rounds; r++ {
		order := slices.Clone(ns)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, n := range order {
			p, conns, gauge, err := throughputRun(n)
			if err != nil {
				return err
			}
			pps[n] = append(pps[n], p)
			fmt.Printf("round %d, %d replica(s): %.0f accepted packets/s; established connections to the analyzers per replica: %v (/proc/net/tcp), distributor_upstream_connections %v\n", r+1, n, p, conns, gauge)
		}
	}
	fmt.Printf("medians over %d rounds (emitter -rate 0 -concurrency %d, %v each):\n", *rounds, *concurrency, *duration)
	one := median(pps[ns[0]])
	for _, n := range ns {
		m := median(pps[n])
		what := fmt.Sprintf("%d replica(s) behind HAProxy", n)
		if n == 0 {
			what = "1 replica, no HAProxy"
		}
		fmt.Printf("  %s: %.0f packets/s (%.2f x the first) runs %v\n", what, m, m/one, rounded(pps[n]))
	}
	return nil
}

func throughputRun(n int) (float64, []int, []float64, error) {
	f := &fleet{}
	defer f.stop()
	target := "http://" + front()
	var ds []*exec.Cmd
	var err error
	if n == 0 {
		var d *exec.Cmd
		d, err = f.start("distributor-1", []string{"LISTEN_ADDR=" + ingestAddr(1), "METRICS_ADDR=" + metricsAddr(1), "ANALYZERS=" + analyzerSpec(),
			"LOOPS=" + strconv.Itoa(*loops), "SHUTDOWN_TIMEOUT_SEC=5"}, *bin, "distributor")
		if err == nil {
			ds, target = []*exec.Cmd{d}, "http://"+ingestAddr(1)
			err = waitHTTP(target+"/readyz", 10*time.Second)
		}
	} else {
		ds, err = startReplicas(f, n)
	}
	if err != nil {
		return 0, nil, nil, err
	}
	time.Sleep(500 * time.Millisecond)
	out, err := os.Create(filepath.Join(*outDir, fmt.Sprintf("scale-emitter-%d.json", n)))
	if err != nil {
		return 0, nil, nil, err
	}
	defer out.Close()
	em := exec.Command(*bin, "emitter", "-target", target, "-rate", "0", "-concurrency", strconv.Itoa(*concurrency),
		"-duration", duration.String(), "-json")
	em.Stdout, em.Stderr = out, out
	if err := em.Start(); err != nil {
		return 0, nil, nil, err
	}
	time.Sleep(*duration / 2)
	var conns []int
	var gauge []float64
	for i, d := range ds {
		c, err := analyzerConns(d.Process.Pid)
		if err != nil {
			return 0, nil, nil, err
		}
		g, err := metric(i+1, "distributor_upstream_connections")
		if err != nil {
			return 0, nil, nil, err
		}
		conns, gauge = append(conns, c), append(gauge, g)
	}
	_ = em.Wait()
	b, _ := os.ReadFile(out.Name())
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var rep emitter.Report
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		return 0, nil, nil, fmt.Errorf("emitter output %s: %v", out.Name(), err)
	}
	return rep.RatePPS, conns, gauge, nil
}

// analyzerConns counts the established TCP connections process pid holds to the
// analyzers' ports: sockets of its file descriptors (by inode) in /proc/net/tcp in
// state 01 whose remote port is an analyzer's.
func analyzerConns(pid int) (int, error) {
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + fd.Name())
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	ports := map[string]bool{}
	for i := 1; i <= 3; i++ {
		ports[fmt.Sprintf("%04X", analyzerPort(i))] = true
	}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) < 10 || f[3] != "01" {
			continue
		}
		_, port, _ := strings.Cut(f[2], ":")
		if ports[port] && inodes[f[9]] {
			n++
		}
	}
	return n, nil
}

// tally counts the packets the analyzers received, by packet_id, against those
// answered 202: the accepted ids none received, and those received more than once.
func tally(accepted map[string]bool, ans []*analyzer.Analyzer) (delivered map[string]int, missing, dup int) {
	delivered = map[string]int{}
	for _, a := range ans {
		for id, n := range a.IDs() {
			delivered[id] += n
		}
	}
	for id := range accepted {
		switch n := delivered[id]; {
		case n == 0:
			missing++
		case n > 1:
			dup++
		}
	}
	return delivered, missing, dup
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func rounded(v []float64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x + 0.5)
	}
	return out
}

// --- probes

// countingAnalyzer answers GET /health (200, or 503 when down) and counts it.
type countingAnalyzer struct {
	health atomic.Int64
	down   atomic.Bool
	srv    *http.Server
}

func startCounting(port int) (*countingAnalyzer, error) {
	c := &countingAnalyzer{}
	ln, err := net.Listen("tcp", addr(port))
	if err != nil {
		return nil, err
	}
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			c.health.Add(1)
			if c.down.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

func probes() error {
	ns, err := replicaCounts()
	if err != nil {
		return err
	}
	const healthSec, downMs = 1, 250
	var cs []*countingAnalyzer
	for i := 1; i <= 3; i++ {
		c, err := startCounting(analyzerPort(i))
		if err != nil {
			return err
		}
		defer c.srv.Close()
		cs = append(cs, c)
	}
	window := func() []float64 {
		before := make([]int64, len(cs))
		for i, c := range cs {
			before[i] = c.health.Load()
		}
		t0 := time.Now()
		time.Sleep(*duration)
		el := time.Since(t0).Seconds()
		out := make([]float64, len(cs))
		for i, c := range cs {
			out[i] = float64(c.health.Load()-before[i]) / el
		}
		return out
	}
	fmt.Printf("HEALTH_CHECK_INTERVAL_SEC=%d DOWN_PROBE_INTERVAL_MS=%d, GET /health counted at each analyzer over %v\n", healthSec, downMs, *duration)
	for _, n := range ns {
		for _, c := range cs {
			c.down.Store(false)
		}
		f := &fleet{}
		if _, err := startReplicas(f, n, "HEALTH_CHECK_INTERVAL_SEC="+strconv.Itoa(healthSec), "DOWN_PROBE_INTERVAL_MS="+strconv.Itoa(downMs)); err != nil {
			f.stop()
			return err
		}
		healthy := window()
		cs[2].down.Store(true)
		time.Sleep(2 * time.Second) // every replica has seen a failing probe
		down := window()
		f.stop()
		// The next probe is due an interval after the answer, and starts on the
		// controller's next 100 ms tick (proxy/control.go, controlInterval).
		fmt.Printf("%d replica(s): healthy %.2f %.2f %.2f probes/s (N x 1/%ds = %.2f; with the 100 ms tick N/1.1s = %.2f); analyzer-3 answering 503: %.2f probes/s (N x 1/%dms = %.2f; with the tick N/0.3s = %.2f), the others %.2f %.2f\n",
			n, healthy[0], healthy[1], healthy[2], healthSec, float64(n)/healthSec, float64(n)/1.1, down[2], downMs, float64(n)*1000/downMs, float64(n)/0.3, down[0], down[1])
	}
	return nil
}
