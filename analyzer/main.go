package analyzer

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluicelog/sluice/cli"
)

// Main runs `sluice analyzer [flags]` until SIGINT or SIGTERM and returns the exit
// code: 0 after a clean stop, 1 when the server fails or the distributor refuses
// the registration, 2 on bad configuration.
func Main(args []string) int {
	return run(args, os.Getenv, os.Stdout, os.Stderr, nil)
}

// options is what the command line configures: the analyzer and, with
// --register, its registration with a distributor.
type options struct {
	cfg    Config
	port   string
	reg    Registration
	weight string // as given, so that --register can insist on it
}

// setting is one configuration value: an environment variable, the flag that
// overrides it, its default and how it is read into options.
type setting struct {
	env, flag, def, usage string
	set                   func(o *options, v string) error
}

var settings = []setting{
	{"PORT", "port", "9001", "TCP port to listen on, or host:port (0 picks a free port)", func(o *options, v string) error {
		addr := v
		if !strings.Contains(v, ":") {
			addr = ":" + v
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return errors.New("want a port number or host:port")
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			return errors.New("port must be a number from 0 to 65535")
		}
		o.cfg.Addr, o.port = addr, port
		return nil
	}},
	{"ANALYZER_ID", "id", "", "analyzer id reported by /health and /stats (default: hostname:port)", text(func(o *options) *string { return &o.cfg.ID })},
	{"PROCESSING_DELAY_MS", "delay-ms", "0", "hold every ingest answer back this many milliseconds", func(o *options, v string) error {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 || ms > 3_600_000 {
			return errors.New("want milliseconds from 0 to 3600000")
		}
		o.cfg.Delay = time.Duration(ms) * time.Millisecond
		return nil
	}},
	{"METRICS_ADDR", "metrics-addr", "", "also serve /metrics, /stats and /internal/simulate/* on this host:port (default: main port only)", func(o *options, v string) error {
		if v != "" {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return errors.New("want host:port or :port")
			}
		}
		o.cfg.MetricsAddr = v
		return nil
	}},
	{"DEDUP_WINDOW", "dedup-window", strconv.Itoa(DefaultDedupWindow), "packet ids remembered for de-duplication", func(o *options, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1<<28 {
			return errors.New("want a number of ids from 1 to 268435456")
		}
		o.cfg.DedupWindow = n
		return nil
	}},
	{"ANALYZER_BATCH", "batch", "true", "advertise and serve POST /ingest/batch", func(o *options, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("want true or false")
		}
		o.cfg.Batch = b
		return nil
	}},
	{"REGISTER_URL", "register", "", "distributor admin API to register with on start and deregister from on stop, e.g. http://distributor:9100", func(o *options, v string) error {
		if v != "" && !strings.HasPrefix(v, "http://") && !strings.HasPrefix(v, "https://") {
			return errors.New("want an http:// or https:// URL")
		}
		o.reg.Admin = v
		return nil
	}},
	{"REGISTER_TOKEN", "token", "", "bearer token for the distributor's admin API (never logged)", text(func(o *options) *string { return &o.reg.Token })},
	{"REGISTER_WEIGHT", "weight", "", "weight to register with (required with --register)", func(o *options, v string) error {
		w, err := strconv.ParseFloat(v, 64)
		if v != "" && (err != nil || !(w > 0) || w > 1e9) {
			return errors.New("want a positive number")
		}
		o.reg.Weight, o.weight = w, v
		return nil
	}},
	{"REGISTER_NAME", "name", "", "name to register under (default: the analyzer id)", text(func(o *options) *string { return &o.reg.Name })},
	{"REGISTER_ADVERTISE", "advertise", "", "URL the distributor reaches this analyzer at (default: http://<listen host, or 127.0.0.1 when listening on all interfaces>:<port>)", func(o *options, v string) error {
		if v != "" && !strings.HasPrefix(v, "http://") {
			return errors.New("want an http://host:port URL")
		}
		o.reg.Advertise = v
		return nil
	}},
}

// text is the setter of a string taken as given.
func text(field func(o *options) *string) func(*options, string) error {
	return func(o *options, v string) error {
		*field(o) = v
		return nil
	}
}

// command builds the command line of `sluice analyzer` over o.
func command(o *options) *cli.Command {
	fs := flag.NewFlagSet("sluice analyzer", flag.ContinueOnError)
	envOf := make(map[string]string, len(settings))
	for _, s := range settings {
		s := s
		fs.Func(s.flag, s.usage, func(v string) error { return s.set(o, v) })
		fs.Lookup(s.flag).DefValue = s.def
		envOf[s.flag] = s.env
	}
	return &cli.Command{
		Name:    "sluice analyzer",
		Summary: "The reference analyzer: POST /ingest and /ingest/batch, GET /health, /stats, /metrics; fault injection under POST /internal/simulate/*.",
		Flags:   fs,
		Env:     func(flag string) string { return envOf[flag] },
	}
}

// run is Main with its environment made explicit for tests; ready, when not nil,
// receives the started analyzer and a function that stops run as a signal would.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, ready func(*Analyzer, func())) int {
	var o options
	for _, s := range settings {
		if err := s.set(&o, s.def); err != nil {
			panic("analyzer: bad default for " + s.env + ": " + err.Error())
		}
	}
	cmd := command(&o)
	if err := cmd.Parse(args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			cmd.Usage(stdout)
			return 0
		}
		return cmd.Fail(stderr, err)
	}
	if o.reg.Admin != "" && o.weight == "" {
		return cmd.Fail(stderr, errors.New("--register needs --weight (or REGISTER_WEIGHT)"))
	}
	cfg := o.cfg
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = host + ":" + o.port
	}

	a := New(cfg)
	if err := a.Start(); err != nil {
		fmt.Fprintf(stderr, "sluice analyzer: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "sluice analyzer: %s listening on %s (batch %t, delay %s, dedup window %d)\n",
		cfg.ID, a.ListenAddr(), cfg.Batch, cfg.Delay, a.dedup.size())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var registering <-chan error // until Register returns
	reg := o.reg
	if reg.Admin != "" {
		if reg.Name == "" {
			reg.Name = cfg.ID
		}
		if reg.Advertise == "" {
			reg.Advertise = "http://" + a.Addr()
		}
		if reg.Log == nil {
			reg.Log = slog.New(slog.NewTextHandler(stderr, nil))
		}
		done := make(chan error, 1)
		go func() { done <- reg.Register(ctx) }()
		registering = done
	}
	if ready != nil {
		ready(a, stop)
	}
	code, registered := 0, false
	select {
	case <-ctx.Done():
	case err := <-registering:
		registering = nil
		if err != nil && ctx.Err() != nil {
			// The stop cancelled the registration (both were ready and select
			// took this one): an attempt may have reached the distributor, so
			// take it back as the stopped-while-registering path does.
			registered = true
			break
		}
		if err != nil {
			fmt.Fprintf(stderr, "sluice analyzer: register with %s: %v\n", reg.Admin, err)
			code = 1
			break
		}
		registered = true
		<-ctx.Done()
	}
	if registering != nil {
		// Stopped while registering: an attempt in flight may have reached the
		// distributor, so take it back as well (a 404 is fine).
		<-registering
		registered = true
	}
	if registered {
		dctx, cancel := context.WithTimeout(context.Background(), DeregisterTimeout)
		if err := reg.Deregister(dctx); err != nil {
			reg.Log.Warn("deregistration failed", "err", err)
		}
		cancel()
	}
	if err := a.Stop(); err != nil {
		fmt.Fprintf(stderr, "sluice analyzer: %v\n", err)
		return 1
	}
	st := a.Stats()
	fmt.Fprintf(stderr, "sluice analyzer: stopped after %d packets, %d messages, %d duplicates\n",
		st.Packets, st.Messages, st.Duplicates)
	return code
}
