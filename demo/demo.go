// Package demo is `sluice demo` (what `make run` starts): a distributor, reference
// analyzers and an emitter in one process on loopback, with a live view of the
// shares and keys to kill, revive and drain analyzers.
package demo

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/sluicelog/sluice/cli"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluicelog/sluice/analyzer"
	"github.com/sluicelog/sluice/emitter"
	"github.com/sluicelog/sluice/proxy"
)

// demoConfig is `sluice demo`'s configuration. Every field has an environment
// variable so that `make run`, which passes no flags, can be steered too.
type demoConfig struct {
	port         int       // distributor ingest port; 0 picks a free one
	metricsPort  int       // distributor metrics/admin port; 0 picks a free one
	analyzerPort int       // first analyzer's port, the others follow; 0 picks free ones
	weights      []float64 // one analyzer per weight
	rate         float64   // emitter packets/s; 0 = as fast as possible
	messages     string    // emitter messages-per-packet distribution
	duration     time.Duration
	plain        bool
}

type demoSetting struct {
	env, flag, def, help string
	set                  func(c *demoConfig, v string) error
}

func demoSettings() []demoSetting {
	port := func(f func(*demoConfig, int)) func(*demoConfig, string) error {
		return func(c *demoConfig, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 || n > 65535 {
				return errors.New("want a port from 0 to 65535 (0 picks a free one)")
			}
			f(c, n)
			return nil
		}
	}
	return []demoSetting{
		{"SLUICE_DEMO_PORT", "port", "8080", "distributor ingest port (0 picks a free one)", port(func(c *demoConfig, n int) { c.port = n })},
		{"SLUICE_DEMO_METRICS_PORT", "metrics-port", "9100", "distributor /metrics and admin API port on 127.0.0.1 (0 picks a free one)", port(func(c *demoConfig, n int) { c.metricsPort = n })},
		{"SLUICE_DEMO_ANALYZER_PORT", "analyzer-port", "9001", "first analyzer's port on 127.0.0.1, the others follow (0 picks free ones)", port(func(c *demoConfig, n int) { c.analyzerPort = n })},
		{"SLUICE_DEMO_WEIGHTS", "weights", "0.5,0.3,0.2", "analyzer weights, one analyzer each (1 to 9)", func(c *demoConfig, v string) error {
			var ws []float64
			for _, f := range strings.Split(v, ",") {
				w, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
				if err != nil || w <= 0 || w > 1e9 {
					return fmt.Errorf("weight %q: want a positive number", f)
				}
				ws = append(ws, w)
			}
			if len(ws) > 9 {
				return errors.New("at most 9 analyzers (the keys address them by one digit)")
			}
			c.weights = ws
			return nil
		}},
		{"SLUICE_DEMO_RATE", "rate", "2000", "emitter packets per second (0 = as fast as possible)", func(c *demoConfig, v string) error {
			r, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || r < 0 || r != r {
				return errors.New("want a number >= 0")
			}
			c.rate = r
			return nil
		}},
		{"SLUICE_DEMO_MESSAGES", "messages", "uniform:1-10", "messages per packet: N, fixed:N, uniform:A-B or skewed:A-B", func(c *demoConfig, v string) error {
			c.messages = strings.TrimSpace(v)
			return nil
		}},
		{"SLUICE_DEMO_DURATION", "duration", "0", "stop after this long, e.g. 30s (0 = until Ctrl-C or q)", func(c *demoConfig, v string) error {
			if strings.TrimSpace(v) == "0" {
				c.duration = 0
				return nil
			}
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil || d < 0 {
				return errors.New("want a duration such as 30s or 2m (0 = until stopped)")
			}
			c.duration = d
			return nil
		}},
		{"SLUICE_DEMO_PLAIN", "plain", "false", "print the view as plain blocks instead of redrawing it (automatic when stdout is not a terminal)", func(c *demoConfig, v string) error {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return errors.New("want true or false")
			}
			c.plain = b
			return nil
		}},
	}
}

// loadDemoConfig applies defaults, then the environment, then flags.
func loadDemoConfig(args []string, getenv func(string) string, usage io.Writer) (demoConfig, error) {
	var c demoConfig
	all := demoSettings()
	for _, s := range all {
		if err := s.set(&c, s.def); err != nil {
			panic("sluice demo: bad default for " + s.env + ": " + err.Error())
		}
	}
	for _, s := range all {
		if v := getenv(s.env); v != "" {
			if err := s.set(&c, v); err != nil {
				return c, fmt.Errorf("%s=%q: %w", s.env, v, err)
			}
		}
	}
	fs := flag.NewFlagSet("sluice demo", flag.ContinueOnError)
	envOf := make(map[string]string, len(all))
	for _, s := range all {
		s := s
		apply := func(v string) error { return s.set(&c, v) }
		if s.flag == "plain" {
			fs.BoolFunc(s.flag, s.help, apply)
		} else {
			fs.Func(s.flag, s.help, apply)
		}
		fs.Lookup(s.flag).DefValue = s.def
		envOf[s.flag] = s.env
	}
	cmd := cli.Command{
		Name: "sluice demo",
		Summary: "Runs a distributor, analyzers and an emitter on this machine and shows a live view.\n" +
			"Type commands and Enter: k N kills analyzer N, r N revives it, d N / u N drain and\n" +
			"undrain it through the admin API, f N toggles injected 500s, q quits (so does Ctrl-C).",
		Flags: fs,
		Env:   func(flag string) string { return envOf[flag] },
	}
	if err := cmd.Parse(args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			cmd.Usage(usage)
		}
		return c, err
	}
	if c.analyzerPort != 0 && c.analyzerPort+len(c.weights)-1 > 65535 {
		return c, fmt.Errorf("analyzer ports %d..%d: past 65535", c.analyzerPort, c.analyzerPort+len(c.weights)-1)
	}
	return c, nil
}

// Main is `sluice demo`: it runs the pipeline until Ctrl-C or q and returns the
// process's exit code.
func Main(args []string) int {
	cfg, err := loadDemoConfig(args, os.Getenv, os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return cli.Fail(os.Stderr, "sluice demo", err)
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	return runDemo(cfg, os.Stdin, os.Stdout, sig)
}

// demoAnalyzer is one analyzer the demo runs in-process and can kill and revive.
type demoAnalyzer struct {
	name    string
	a       *analyzer.Analyzer
	killed  bool
	failing bool
}

// demo is a running pipeline: analyzers, the distributor, the emitter, the view.
type demo struct {
	cfg       demoConfig
	scr       *demoScreen
	members   []*demoAnalyzer
	srv       *proxy.Server
	ingestURL string // http://127.0.0.1:<port>
	adminURL  string // http://127.0.0.1:<metrics port>
	client    *http.Client
	start     time.Time
	view      demoViewState
}

// runDemo runs the demo until sig delivers, q is typed or the duration passes, and
// returns the exit status: 0 after a clean stop, 1 when the pipeline could not
// start or the final accounting does not add up.
func runDemo(cfg demoConfig, stdin *os.File, stdout *os.File, sig <-chan os.Signal) int {
	scr := newDemoScreen(stdout, !cfg.plain && termIsTerminal(int(stdout.Fd())))
	d := &demo{cfg: cfg, scr: scr, client: &http.Client{Timeout: 2 * time.Second}, start: time.Now()}

	// Every log line of the distributor and the analyzers becomes an event in the
	// view, instead of scribbling over it on stderr.
	events := demoEventWriter{scr}
	logger := slog.New(slog.NewTextHandler(events, &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.String(slog.TimeKey, a.Value.Time().Format("15:04:05"))
			}
			return a
		},
	}))
	prevLog := log.Writer()
	log.SetOutput(events)
	defer log.SetOutput(prevLog)

	if err := d.startPipeline(logger); err != nil {
		fmt.Fprintln(stdout, "sluice demo:", err)
		d.stopAnalyzers()
		return 1
	}
	d.printWhereToLook()

	emitCtx, emitCancel := context.WithCancel(context.Background())
	type emitResult struct {
		rep emitter.Report
		err error
	}
	emitDone := make(chan emitResult, 1)
	go func() {
		rep, err := emitter.Run(emitCtx, emitter.Config{
			Target:    d.ingestURL,
			Rate:      cfg.rate,
			Messages:  cfg.messages,
			EmitterID: "demo-emitter",
		}, nil)
		emitDone <- emitResult{rep, err}
	}()

	cmds := make(chan string)
	if scr.tty && termIsTerminal(int(stdin.Fd())) {
		if restore, err := termCbreak(int(stdin.Fd())); err == nil {
			scr.restore = restore
			go scr.readKeys(stdin, cmds)
		} else {
			go readDemoCommands(stdin, cmds)
		}
	} else {
		go readDemoCommands(stdin, cmds)
	}
	scr.enter()

	var until <-chan time.Time
	if cfg.duration > 0 {
		t := time.NewTimer(cfg.duration)
		defer t.Stop()
		until = t.C
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	d.view.start = time.Now()
	d.view.prev = d.sample()
	reason := ""
	var early *emitResult
	for reason == "" {
		select {
		case <-tick.C:
			d.render()
		case s := <-sig:
			reason = "signal " + s.String()
		case line := <-cmds:
			if d.command(line) {
				reason = "q typed"
			}
		case <-until:
			reason = "duration " + cfg.duration.String() + " passed"
		case r := <-emitDone:
			early = &r
			reason = "emitter stopped"
		}
	}
	scr.leave()

	// A second Ctrl-C while draining means "now".
	go func() {
		if s, ok := <-sig; ok {
			fmt.Fprintf(stdout, "sluice demo: %s again: exiting without draining\n", s)
			os.Exit(130)
		}
	}()

	fmt.Fprintf(stdout, "sluice demo: stopping (%s): emitter, then the distributor drains its queues, then the analyzers\n", reason)
	emitCancel()
	res := early
	if res == nil {
		r := <-emitDone
		res = &r
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.srv.Shutdown(ctx); err != nil {
		fmt.Fprintln(stdout, "sluice demo: distributor shutdown:", err)
	}
	final := d.srv.MetricsJSON()
	stats := d.stopAnalyzers()
	ok := d.printSummary(stdout, res.rep, final, stats)
	if res.err != nil {
		fmt.Fprintln(stdout, "sluice demo: the emitter could not run:", res.err)
		return 1
	}
	if !ok {
		return 1
	}
	return 0
}

// startPipeline starts the analyzers, then the distributor pointed at them.
func (d *demo) startPipeline(logger *slog.Logger) error {
	var list []string
	for i, w := range d.cfg.weights {
		port := 0
		if d.cfg.analyzerPort != 0 {
			port = d.cfg.analyzerPort + i
		}
		name := "analyzer-" + strconv.Itoa(i+1)
		a := analyzer.New(analyzer.Config{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), ID: name, Batch: true})
		if err := a.Start(); err != nil {
			return fmt.Errorf("%s: %w (move the analyzers: SLUICE_DEMO_ANALYZER_PORT=19001 make run, or -analyzer-port; 0 picks free ports)", name, err)
		}
		d.members = append(d.members, &demoAnalyzer{name: name, a: a})
		list = append(list, "http://"+a.Addr()+"="+strconv.FormatFloat(w, 'g', -1, 64))
	}
	cfg := proxy.DefaultConfig()
	specs, err := proxy.ParseAnalyzers(strings.Join(list, ","))
	if err != nil {
		return fmt.Errorf("analyzers: %w", err)
	}
	cfg.Analyzers = specs
	cfg.Port = d.cfg.port
	cfg.MetricsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(d.cfg.metricsPort))
	cfg.Loops = runtime.GOMAXPROCS(0)
	// Faster than the production defaults so a kill and a revival show within a
	// few seconds: probe every second, never wait more than 2 s to retry an
	// analyzer whose breaker opened.
	cfg.HealthInterval = time.Second
	cfg.BreakerBackoffMax = 2 * time.Second
	srv, err := proxy.New(cfg, logger)
	if err != nil {
		return fmt.Errorf("distributor: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("distributor: %w (move it: SLUICE_DEMO_PORT=18080 SLUICE_DEMO_METRICS_PORT=19100 make run, or -port and -metrics-port; 0 picks free ports)", err)
	}
	d.srv = srv
	_, port, _ := net.SplitHostPort(srv.Addr())
	d.ingestURL = "http://127.0.0.1:" + port
	d.adminURL = "http://" + srv.MetricsAddr()
	return nil
}

func (d *demo) printWhereToLook() {
	var b strings.Builder
	fmt.Fprintf(&b, "sluice demo: distributor %s (metrics and admin %s), emitter %s packets/s of %s messages\n",
		d.ingestURL, d.adminURL, demoRate(d.cfg.rate), d.cfg.messages)
	for i, m := range d.members {
		fmt.Fprintf(&b, "  %s  weight %.2f  http://%s\n", m.name, d.srv.View().Members[i].Weight, m.a.Addr())
	}
	fmt.Fprintf(&b, "console: %s/\n", d.adminURL)
	b.WriteString("where to look (in another terminal):\n")
	fmt.Fprintf(&b, "  curl -s %s/health\n", d.ingestURL)
	fmt.Fprintf(&b, "  curl -s %s/metrics-json\n", d.ingestURL)
	fmt.Fprintf(&b, "  curl -s %s/metrics\n", d.adminURL)
	fmt.Fprintf(&b, "  curl -s http://%s/stats          (what %s itself counted)\n", d.members[0].a.Addr(), d.members[0].name)
	fmt.Fprintf(&b, "  curl -s -X POST -H 'Content-Type: application/json' %s/admin/analyzers/%s/drain\n", d.adminURL, d.members[0].name)
	d.scr.print(b.String())
}

func demoRate(r float64) string {
	if r == 0 {
		return "as many"
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// command runs one typed line and reports whether it asks to quit.
func (d *demo) command(line string) bool {
	f := strings.Fields(strings.ToLower(line))
	if len(f) == 0 {
		return false
	}
	verb := f[0]
	switch verb {
	case "q", "quit", "exit":
		return true
	case "h", "help", "?":
		d.scr.event("demo: " + demoKeyHelp)
		return false
	}
	if len(f) != 2 {
		d.scr.event(fmt.Sprintf("demo: %q: want a command and an analyzer number, e.g. k 1; h lists the commands", line))
		return false
	}
	m := d.member(f[1])
	if m == nil {
		d.scr.event(fmt.Sprintf("demo: %q: no analyzer %q (1 to %d)", line, f[1], len(d.members)))
		return false
	}
	switch verb {
	case "k", "kill":
		if m.killed {
			d.scr.event("demo: " + m.name + " is already killed; r " + f[1] + " revives it")
			return false
		}
		if err := m.a.Stop(); err != nil {
			d.scr.event("demo: kill " + m.name + ": " + err.Error())
			return false
		}
		m.killed, m.failing = true, false
		d.scr.event("demo: killed " + m.name + ": its port is closed and its connections dropped")
	case "r", "revive":
		if !m.killed {
			d.scr.event("demo: " + m.name + " is running")
			return false
		}
		if err := m.a.Start(); err != nil {
			d.scr.event("demo: revive " + m.name + ": " + err.Error())
			return false
		}
		m.killed = false
		d.scr.event("demo: revived " + m.name + " on " + m.a.Addr() + "; the distributor probes it and ramps it up")
	case "d", "drain", "u", "undrain":
		action := "drain"
		if verb[0] == 'u' {
			action = "undrain"
		}
		d.admin(m.name, action)
	case "f", "fail":
		if m.killed {
			d.scr.event("demo: " + m.name + " is killed; r " + f[1] + " revives it first")
			return false
		}
		m.failing = !m.failing
		m.a.SetFault(analyzer.Fault{Fail: m.failing})
		if m.failing {
			d.scr.event("demo: " + m.name + " now answers every packet with 500 (f " + f[1] + " again stops it)")
		} else {
			d.scr.event("demo: " + m.name + " answers normally again")
		}
	default:
		d.scr.event(fmt.Sprintf("demo: %q: unknown command; h lists them", line))
	}
	return false
}

// member finds an analyzer by number ("1") or name ("analyzer-1").
func (d *demo) member(s string) *demoAnalyzer {
	if n, err := strconv.Atoi(s); err == nil && n >= 1 && n <= len(d.members) {
		return d.members[n-1]
	}
	for _, m := range d.members {
		if m.name == s {
			return m
		}
	}
	return nil
}

// admin calls the distributor's admin API, as an operator would with curl.
func (d *demo) admin(name, action string) {
	url := d.adminURL + "/admin/analyzers/" + name + "/" + action
	resp, err := d.client.Post(url, "application/json", nil)
	if err != nil {
		d.scr.event("demo: POST " + url + ": " + err.Error())
		return
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	d.scr.event(fmt.Sprintf("demo: POST %s -> %d %s", url, resp.StatusCode, strings.TrimSpace(string(body))))
}

// stopAnalyzers stops the analyzers still running and returns every analyzer's
// own counts.
func (d *demo) stopAnalyzers() []analyzer.Stats {
	var out []analyzer.Stats
	for _, m := range d.members {
		if !m.killed {
			_ = m.a.Stop()
			m.killed = true
		}
		out = append(out, m.a.Stats())
	}
	return out
}

// printSummary prints what happened and reports whether the books balance: every
// packet the distributor accepted was delivered or counted as dropped.
func (d *demo) printSummary(w io.Writer, rep emitter.Report, m proxy.MetricsJSON, stats []analyzer.Stats) bool {
	var b strings.Builder
	fmt.Fprintf(&b, "sluice demo: summary after %s\n", time.Since(d.start).Round(time.Second))
	fmt.Fprintf(&b, "  emitter      sent %d  accepted %d  answered-503 %d  gave-up %d  unfinished %d\n",
		rep.Sent, rep.Accepted, rep.Rejected503, rep.GaveUp, rep.Unfinished)
	fmt.Fprintf(&b, "  distributor  accepted %d  delivered %d  dropped %d  queued %d  in-flight %d  (messages: accepted %d, delivered %d)\n",
		m.TotalPackets, m.DeliveredPackets, m.Dropped, m.Queued, m.InFlight, m.TotalMessages, m.DeliveredMessages)
	for i, mem := range d.members {
		a := m.Analyzers[mem.name]
		share := 0.0
		if m.DeliveredMessages > 0 {
			share = float64(a.DeliveredMessages) / float64(m.DeliveredMessages)
		}
		fmt.Fprintf(&b, "  %-11s  weight %.3f  share %.3f  delivered %d packets, %d messages  (the analyzer counted %d new packets, %d duplicates)\n",
			mem.name, a.Weight, share, a.DeliveredPackets, a.DeliveredMessages, stats[i].Packets, stats[i].Duplicates)
	}
	ok := m.TotalPackets == m.DeliveredPackets+m.Dropped && m.Queued == 0 && m.InFlight == 0
	switch {
	case !ok:
		fmt.Fprintf(&b, "sluice demo: accounting does not add up: accepted %d != delivered %d + dropped %d (queued %d, in flight %d)\n",
			m.TotalPackets, m.DeliveredPackets, m.Dropped, m.Queued, m.InFlight)
	case m.Dropped == 0:
		fmt.Fprintf(&b, "sluice demo: stopped cleanly: all %d accepted packets delivered, dropped 0\n", m.TotalPackets)
	default:
		fmt.Fprintf(&b, "sluice demo: stopped: %d accepted packets delivered, %d dropped (no analyzer could take them in time)\n",
			m.DeliveredPackets, m.Dropped)
	}
	_, _ = io.WriteString(w, b.String())
	return ok
}

// readDemoCommands sends each line of r to out (commands typed on a pipe or an ordinary
// terminal). At EOF it stops reading; the demo keeps running.
func readDemoCommands(r io.Reader, out chan<- string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		out <- sc.Text()
	}
}

// demoEventWriter turns each line written to it into an event of the view.
type demoEventWriter struct{ scr *demoScreen }

func (e demoEventWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		e.scr.event(tidyDemoLogLine(line))
	}
	return len(p), nil
}

// tidyDemoLogLine shortens a slog text line for the view:
// `time=09:42:08 level=WARN msg="connection lost" analyzer=analyzer-1` becomes
// `09:42:08 WARN connection lost: analyzer=analyzer-1`. Other lines pass unchanged.
func tidyDemoLogLine(line string) string {
	rest, ok := strings.CutPrefix(line, "time=")
	if !ok {
		return line
	}
	at, rest, _ := strings.Cut(rest, " ")
	level, rest, ok := strings.Cut(strings.TrimPrefix(rest, "level="), " ")
	if !ok || !strings.HasPrefix(rest, "msg=") {
		return line
	}
	rest = rest[len("msg="):]
	msg, attrs, _ := strings.Cut(rest, " ")
	if q, err := strconv.QuotedPrefix(rest); err == nil {
		msg, _ = strconv.Unquote(q)
		attrs = strings.TrimPrefix(rest[len(q):], " ")
	}
	out := at + " " + level + " " + msg
	if attrs != "" {
		out += ": " + attrs
	}
	return out
}

// sample is one reading of the distributor and the demo's own state.
func (d *demo) sample() demoSample {
	s := demoSample{at: time.Now(), m: d.srv.MetricsJSON()}
	for _, m := range d.members {
		s.killed = append(s.killed, m.killed)
		s.failing = append(s.failing, m.failing)
	}
	return s
}

func (d *demo) render() {
	cur := d.sample()
	names := make([]string, len(d.members))
	for i, m := range d.members {
		names[i] = m.name
	}
	lines := buildDemoFrame(names, &d.view.prev, &cur)
	d.view.prev = cur
	d.scr.frame(time.Since(d.view.start), d.title(), lines)
}

func (d *demo) title() []string {
	return []string{
		fmt.Sprintf("sluice demo · %s · distributor %s · metrics %s · emitter %s pkt/s (%s msgs)",
			time.Since(d.start).Round(time.Second), d.ingestURL, d.adminURL, demoRate(d.cfg.rate), d.cfg.messages),
		fmt.Sprintf("  curl -s %s/health · %s/metrics-json · %s/metrics", d.ingestURL, d.ingestURL, d.adminURL),
	}
}
