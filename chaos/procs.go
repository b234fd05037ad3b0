package main

// The processes of a scenario: the distributor on the host and one analyzer per
// namespace. Both are this binary run again (childEnv names the role), so the
// harness needs no separately built sluice binary and the analyzer can record
// every packet_id it counted and write them out when it stops.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluicelog/sluice/analyzer"
	"github.com/sluicelog/sluice/proxy"
)

// childEnv is set in a child's environment to its role: "distributor" or "analyzer".
const childEnv = "SLUICE_CHAOS_CHILD"

// runChild runs this process as a child if childEnv says so, and exits.
func runChild() {
	switch os.Getenv(childEnv) {
	case "":
		return
	case "distributor":
		os.Exit(proxy.Main(os.Args[1:]))
	case "analyzer":
		os.Exit(analyzerChild())
	default:
		fmt.Fprintln(os.Stderr, "chaos: unknown", childEnv, os.Getenv(childEnv))
		os.Exit(2)
	}
}

// analyzerChild serves as a reference analyzer recording ids, and on SIGTERM writes
// {"packet_id": times counted as new} (always 1: duplicates within the analyzer are
// answered but not counted, and IDs counts receipts) to CHAOS_IDS_FILE.
func analyzerChild() int {
	a := analyzer.New(analyzer.Config{
		Addr:           os.Getenv("CHAOS_ADDR"),
		ID:             os.Getenv("CHAOS_ID"),
		RecordIDs:      true,
		Batch:          true,
		IgnoreDeadline: os.Getenv("CHAOS_IGNORE_DEADLINE") == "1",
	})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	if err := a.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos analyzer:", err)
		return 1
	}
	<-sig
	_ = a.Stop()
	ids := a.IDs()
	b, _ := json.Marshal(ids)
	if err := os.WriteFile(os.Getenv("CHAOS_IDS_FILE"), b, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "chaos analyzer:", err)
		return 1
	}
	return 0
}

// proc is a started child.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when Wait returned
	log  string
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) signal(s syscall.Signal) { _ = p.cmd.Process.Signal(s) }

// stop sends SIGCONT (it may be frozen) and SIGTERM and waits up to timeout, then
// kills it.
func (p *proc) stop(timeout time.Duration) error {
	p.signal(syscall.SIGCONT)
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		p.signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("pid %d did not stop within %v (killed); log %s", p.pid(), timeout, p.log)
	}
}

func start(dir, name string, env []string, argv ...string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		argv = []string{self}
	} else {
		argv = append(argv, self)
	}
	logPath := filepath.Join(dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// startAnalyzer starts analyzer i in its namespace.
func startAnalyzer(dir string, n *netns, i int, ignoreDeadline bool) (*proc, error) {
	ign := "0"
	if ignoreDeadline {
		ign = "1"
	}
	return start(dir, "analyzer-"+strconv.Itoa(i), []string{
		childEnv + "=analyzer",
		"CHAOS_ADDR=" + n.nsAddr + ":9001",
		"CHAOS_ID=a" + strconv.Itoa(i),
		"CHAOS_IDS_FILE=" + filepath.Join(dir, "ids-"+strconv.Itoa(i)+".json"),
		"CHAOS_IGNORE_DEADLINE=" + ign,
	}, "ip", "netns", "exec", n.name)
}

// readIDs reads what analyzer i wrote when it stopped.
func readIDs(dir string, i int) (map[string]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "ids-"+strconv.Itoa(i)+".json"))
	if err != nil {
		return nil, err
	}
	var ids map[string]int
	return ids, json.Unmarshal(b, &ids)
}

// startDistributor starts the distributor on listen with the analyzers at urls
// (equal weights) and extra environment.
func startDistributor(dir, name, listen string, urls []string, extra ...string) (*proc, error) {
	var an []string
	for _, u := range urls {
		an = append(an, u+"=1")
	}
	env := append([]string{
		childEnv + "=distributor",
		"LISTEN_ADDR=" + listen,
		"METRICS_ADDR=",
		"ANALYZERS=" + strings.Join(an, ","),
		"HEALTH_CHECK_INTERVAL_SEC=1",
		"LOG_LEVEL=warn",
		"CONFIG_FILE=",
	}, extra...)
	return start(dir, name, env)
}

// metricsJSON is the part of the distributor's /metrics-json the harness reads.
type metricsJSON struct {
	Queued    int64 `json:"queued"`
	InFlight  int64 `json:"in_flight"`
	Dropped   int64 `json:"dropped"`
	Analyzers map[string]struct {
		State            string           `json:"state"`
		DeliveredPackets int64            `json:"delivered_packets"`
		Failures         map[string]int64 `json:"failures"`
	} `json:"analyzers"`
}

var httpc = &http.Client{Timeout: 2 * time.Second}

func getMetrics(base string) (*metricsJSON, error) {
	resp, err := httpc.Get(base + "/metrics-json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var m metricsJSON
	return &m, json.Unmarshal(b, &m)
}

// waitHealthy waits until every analyzer of the distributor at base is healthy.
func waitHealthy(ctx context.Context, base string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		m, err := getMetrics(base)
		if err == nil {
			ok := 0
			for _, a := range m.Analyzers {
				if a.State == "healthy" {
					ok++
				}
			}
			if ok == n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("distributor at %s: %d analyzers not healthy within %v (last error %v)", base, n, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitDrained waits until the distributor holds nothing queued or in flight.
func waitDrained(base string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		m, err := getMetrics(base)
		if err == nil && m.Queued == 0 && m.InFlight == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("queued %d in flight %d", m.Queued, m.InFlight)
			}
			return errors.New("not drained: " + err.Error())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
