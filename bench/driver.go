package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Load is one measurement's load: where, how many connections, how hard, how long.
type Load struct {
	URL      string        // http://127.0.0.1:<port>/ingest
	Conns    int           // keep-alive connections
	Duration time.Duration // how long requests are started
	Rate     float64       // packets/s; 0 = as fast as the target answers (closed loop)
	IDPrefix string        // start of every packet_id; unique per measurement
}

// Outcome is what a driver measured.
type Outcome struct {
	Requests int64         // requests answered or failed
	OK       int64         // answered 2xx
	Elapsed  time.Duration // first request to last answer
	P50      time.Duration
	P99      time.Duration
	P999     time.Duration
	LoadCPU  time.Duration // CPU time the load generator used
}

// Driver is a load generator.
type Driver interface {
	Name() string
	Run(ctx context.Context, l Load) (Outcome, error)
	// Command is how to run the same load by hand, for the record.
	Command(l Load) string
}

// Vegeta drives with vegeta's attack library (github.com/tsenart/vegeta/v12/lib,
// the version pinned as `go tool vegeta`) in this process, with a targeter that
// writes a fresh packet_id into every body. The CLI can only vary bodies through a
// stream of JSON targets, whose encoding and decoding would cost the shared CPUs
// more than the requests themselves.
type Vegeta struct {
	Packet Packet
}

func (Vegeta) Name() string { return "vegeta" }

// openLoopWorkers bounds the workers of a constant-rate run: enough that the
// pacer, not a lack of workers, sets the rate while answers stay under a few ms.
const openLoopWorkers = 2048

func (v Vegeta) Command(l Load) string {
	rate := "0 -max-workers=" + strconv.Itoa(l.Conns)
	if l.Rate > 0 {
		rate = strconv.Itoa(int(math.Round(l.Rate))) + " -max-workers=" + strconv.Itoa(openLoopWorkers)
	}
	return fmt.Sprintf("vegeta attack -rate=%s -workers=%d -duration=%s -max-body=0 (library, in process; "+
		"body: bench.NewPacket with packet_id %s<n>) POST %s", rate, l.Conns, l.Duration, l.IDPrefix, l.URL)
}

func (v Vegeta) Run(ctx context.Context, l Load) (Outcome, error) {
	if l.Conns < 1 || l.Duration <= 0 {
		return Outcome{}, fmt.Errorf("vegeta: want connections and a duration, got %d and %s", l.Conns, l.Duration)
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: openLoopWorkers,
		DisableCompression:  true,
		IdleConnTimeout:     30 * time.Second,
	}
	defer tr.CloseIdleConnections()
	opts := []func(*vegeta.Attacker){
		vegeta.Client(&http.Client{Transport: tr, Timeout: 10 * time.Second}),
		vegeta.Workers(uint64(l.Conns)),
		vegeta.MaxBody(0), // count answers, keep none; the rest is drained so connections are reused
	}
	pacer := vegeta.ConstantPacer{} // zero: as fast as the workers get answers
	if l.Rate > 0 {
		pacer = vegeta.ConstantPacer{Freq: int(math.Round(l.Rate)), Per: time.Second}
		opts = append(opts, vegeta.MaxWorkers(openLoopWorkers))
	} else {
		// Closed loop: exactly Conns workers, each on its own keep-alive connection.
		tr.MaxConnsPerHost = l.Conns
		opts = append(opts, vegeta.MaxWorkers(uint64(l.Conns)))
	}
	atk := vegeta.NewAttacker(opts...)

	header := http.Header{"Content-Type": {"application/json"}}
	size := v.Packet.Size(len(l.IDPrefix) + 20)
	var seq atomic.Uint64
	targeter := func(t *vegeta.Target) error {
		body := make([]byte, 0, size)
		body = append(body, v.Packet.Head...)
		body = append(body, l.IDPrefix...)
		body = strconv.AppendUint(body, seq.Add(1), 10)
		body = append(body, v.Packet.Tail...)
		t.Method, t.URL, t.Header, t.Body = http.MethodPost, l.URL, header, body
		return nil
	}

	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()
	cpu0 := selfCPU()
	var m vegeta.Metrics
	var ok int64
	for res := range atk.Attack(vegeta.Targeter(targeter), pacer, l.Duration, "") {
		m.Add(res)
		if res.Code >= 200 && res.Code < 300 {
			ok++
		}
	}
	m.Close()
	if err := ctx.Err(); err != nil {
		return Outcome{}, err
	}
	if m.Requests == 0 {
		return Outcome{}, errors.New("vegeta: no request was made")
	}
	if ok == 0 {
		return Outcome{}, fmt.Errorf("vegeta: no 2xx answer from %s; errors: %s", l.URL, strings.Join(firstN(m.Errors, 3), "; "))
	}
	return Outcome{
		Requests: int64(m.Requests),
		OK:       ok,
		Elapsed:  m.Duration + m.Wait,
		P50:      m.Latencies.P50,
		P99:      m.Latencies.P99,
		P999:     m.Latencies.Quantile(0.999),
		LoadCPU:  selfCPU() - cpu0,
	}, nil
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Wrk drives with wrk (closed loop, one event loop per thread) and the script of
// WrkScript, which gives every request its own packet_id.
type Wrk struct {
	Path    string // the wrk binary
	Script  string // the rendered Lua script
	Threads int
}

func (Wrk) Name() string { return "wrk" }

// Args is wrk's command line for l (without the binary).
func (w Wrk) Args(l Load) []string {
	secs := max(1, int(math.Round(l.Duration.Seconds())))
	return []string{
		"-t" + strconv.Itoa(w.Threads), "-c" + strconv.Itoa(l.Conns), "-d" + strconv.Itoa(secs) + "s",
		"--timeout", "10s", "-s", w.Script, l.URL, l.IDPrefix,
	}
}

func (w Wrk) Command(l Load) string {
	return "wrk " + strings.Join(w.Args(l), " ")
}

func (w Wrk) Run(ctx context.Context, l Load) (Outcome, error) {
	if l.Rate > 0 {
		return Outcome{}, errors.New("wrk: no constant-rate mode (that is wrk2); use vegeta")
	}
	if l.Conns < w.Threads {
		return Outcome{}, fmt.Errorf("wrk: %d connections for %d threads", l.Conns, w.Threads)
	}
	cmd := exec.CommandContext(ctx, w.Path, w.Args(l)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return Outcome{}, fmt.Errorf("wrk: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	o, err := ParseWrkReport(stdout.Bytes())
	if err != nil {
		return Outcome{}, fmt.Errorf("wrk: %w; output: %s", err, strings.TrimSpace(stdout.String()))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		o.LoadCPU = rusageCPU(ru)
	}
	if o.OK == 0 {
		return Outcome{}, fmt.Errorf("wrk: no 2xx answer from %s; output: %s", l.URL, strings.TrimSpace(stdout.String()))
	}
	return o, nil
}

// wrkReportPrefix starts the line the script's done() prints.
const wrkReportPrefix = "sluice-bench-wrk "

// wrkReport is that line's JSON.
type wrkReport struct {
	Requests      int64 `json:"requests"`
	DurationUS    int64 `json:"duration_us"`
	StatusErrors  int64 `json:"status_errors"`
	ConnectErrors int64 `json:"connect_errors"`
	ReadErrors    int64 `json:"read_errors"`
	WriteErrors   int64 `json:"write_errors"`
	TimeoutErrors int64 `json:"timeout_errors"`
	P50US         int64 `json:"p50_us"`
	P99US         int64 `json:"p99_us"`
	P999US        int64 `json:"p999_us"`
	MaxUS         int64 `json:"max_us"`
}

// ParseWrkReport finds the script's result line in wrk's output. wrk counts an
// answer with status ≥ 400 as a status error and the rest as successes; requests
// that got no answer (read, write, timeout errors) are not in its request count,
// so they are added to both the requests and the failures here.
func ParseWrkReport(out []byte) (Outcome, error) {
	for _, line := range strings.Split(string(out), "\n") {
		js, ok := strings.CutPrefix(strings.TrimSpace(line), wrkReportPrefix)
		if !ok {
			continue
		}
		var r wrkReport
		if err := json.Unmarshal([]byte(js), &r); err != nil {
			return Outcome{}, fmt.Errorf("result line %q: %w", line, err)
		}
		if r.DurationUS <= 0 {
			return Outcome{}, fmt.Errorf("result line %q: no duration", line)
		}
		unanswered := r.ReadErrors + r.WriteErrors + r.TimeoutErrors
		return Outcome{
			Requests: r.Requests + unanswered,
			OK:       r.Requests - r.StatusErrors,
			Elapsed:  time.Duration(r.DurationUS) * time.Microsecond,
			P50:      time.Duration(r.P50US) * time.Microsecond,
			P99:      time.Duration(r.P99US) * time.Microsecond,
			P999:     time.Duration(r.P999US) * time.Microsecond,
		}, nil
	}
	return Outcome{}, errors.New("no " + strings.TrimSpace(wrkReportPrefix) + " line: was the script's done() run?")
}

// Emitter drives with the project's own load generator, `sluice emitter`, run as a
// subprocess of the sluice binary under test. It is an open loop at a constant
// rate (closed at rate 0) on keep-alive connections, and costs a fraction of
// vegeta's CPU per request, so on a small machine it can offer the rates vegeta
// cannot and its own scheduling stays out of the tail. Its latency is per attempt,
// from the moment the request is written to its answer (like vegeta's; a send the
// pacer started late is not charged the delay).
type Emitter struct {
	Path string // the sluice binary
}

func (Emitter) Name() string { return "emitter" }

// Args is the emitter's command line for l (without the binary). Packets are never
// re-sent (-retries -1), so every request is a packet's only attempt and the
// request count is the packets sent.
func (e Emitter) Args(l Load) []string {
	rate := "0"
	if l.Rate > 0 {
		rate = strconv.Itoa(max(1, int(math.Round(l.Rate))))
	}
	return []string{
		"emitter", "-target", l.URL, "-rate", rate, "-concurrency", strconv.Itoa(l.Conns),
		"-duration", l.Duration.String(), "-emitter-id", strings.TrimSuffix(l.IDPrefix, "-"),
		"-retries", "-1", "-json",
	}
}

func (e Emitter) Command(l Load) string {
	return e.Path + " " + strings.Join(e.Args(l), " ")
}

func (e Emitter) Run(ctx context.Context, l Load) (Outcome, error) {
	if l.Conns < 1 || l.Duration <= 0 {
		return Outcome{}, fmt.Errorf("emitter: want connections and a duration, got %d and %s", l.Conns, l.Duration)
	}
	cmd := exec.CommandContext(ctx, e.Path, e.Args(l)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return Outcome{}, ctx.Err()
		}
		return Outcome{}, fmt.Errorf("emitter: %w: %s", err, lastLines(stderr.String(), 10))
	}
	o, err := ParseEmitterReport(stdout.Bytes())
	if err != nil {
		return Outcome{}, fmt.Errorf("emitter: %w; stderr: %s", err, lastLines(stderr.String(), 10))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		o.LoadCPU = rusageCPU(ru)
	}
	if o.OK == 0 {
		return Outcome{}, fmt.Errorf("emitter: no 2xx answer from %s; output: %s", l.URL, lastLines(stdout.String(), 10))
	}
	return o, nil
}

// emitterReport is the part of the emitter's -json report (emitter.Report) the
// harness reads.
type emitterReport struct {
	Sent        *int64  `json:"sent"`
	Accepted    int64   `json:"accepted"`
	Rejected503 int64   `json:"rejected_503"`
	OtherErrors int64   `json:"other_errors"`
	DurationS   float64 `json:"duration_s"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	P999Ms      float64 `json:"p999_ms"`
}

// ParseEmitterReport reads the last line of `sluice emitter -json` output: one JSON
// object. Requests are the packets sent (each sent once: the harness runs it
// without re-sends), OK the packets answered 2xx.
func ParseEmitterReport(out []byte) (Outcome, error) {
	text := strings.TrimRight(string(out), " \t\r\n")
	if text == "" {
		return Outcome{}, errors.New("no output: no JSON report line")
	}
	line := text[strings.LastIndexByte(text, '\n')+1:]
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "{") {
		return Outcome{}, fmt.Errorf("last line %q is not the JSON report", line)
	}
	var r emitterReport
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		return Outcome{}, fmt.Errorf("report line %q: %w", line, err)
	}
	if r.Sent == nil || r.DurationS <= 0 {
		return Outcome{}, fmt.Errorf("report line %q: no sent count or duration", line)
	}
	ms := func(x float64) time.Duration { return time.Duration(math.Round(x * float64(time.Millisecond))) }
	return Outcome{
		Requests: *r.Sent,
		OK:       r.Accepted,
		Elapsed:  ms(r.DurationS * 1000),
		P50:      ms(r.P50Ms),
		P99:      ms(r.P99Ms),
		P999:     ms(r.P999Ms),
	}, nil
}

// lastLines is the last n lines of s, trimmed, for an error message.
func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}
