package analyzer

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Main runs `sluice analyzer [flags]` until SIGINT or SIGTERM and returns the exit
// code: 0 after a clean stop, 1 when the server fails, 2 on bad configuration.
func Main(args []string) int {
	return run(args, os.Getenv, os.Stderr, nil)
}

// setting is one configuration value: an environment variable and the flag that
// overrides it.
type setting struct {
	env, flag, def, usage string
}

var settings = []setting{
	{"PORT", "port", "9001", "TCP port to listen on (or host:port)"},
	{"ANALYZER_ID", "id", "", "analyzer id reported by /health and /stats (default: hostname:port)"},
	{"PROCESSING_DELAY_MS", "delay-ms", "0", "hold every ingest answer back this many milliseconds"},
	{"METRICS_ADDR", "metrics-addr", "", "also serve /metrics and /stats on this address (default: main port only)"},
	{"DEDUP_WINDOW", "dedup-window", strconv.Itoa(DefaultDedupWindow), "packet ids remembered for de-duplication"},
	{"ANALYZER_BATCH", "batch", "true", "advertise and serve POST /ingest/batch"},
}

// run is Main with its environment made explicit for tests; ready, when not nil,
// receives the started analyzer and a function that stops run as a signal would.
func run(args []string, getenv func(string) string, stderr io.Writer, ready func(*Analyzer, func())) int {
	fs := flag.NewFlagSet("sluice analyzer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	values := make(map[string]*string, len(settings))
	for _, s := range settings {
		values[s.env] = fs.String(s.flag, "", s.usage+" [$"+s.env+", default "+strconv.Quote(s.def)+"]")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice analyzer: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	// get returns the value and the name to blame for it: the flag wins over the
	// variable, the variable over the default.
	get := func(s setting) (string, string) {
		if v := *values[s.env]; v != "" {
			return v, "-" + s.flag
		}
		if v := getenv(s.env); v != "" {
			return v, s.env
		}
		return s.def, s.env
	}
	bad := func(name, v, why string) int {
		fmt.Fprintf(stderr, "sluice analyzer: %s=%q: %s\n", name, v, why)
		return 2
	}

	var cfg Config
	v, name := get(settings[0])
	addr := v
	if !strings.Contains(v, ":") {
		addr = ":" + v
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return bad(name, v, "want a port number or host:port")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return bad(name, v, "port must be a number from 0 to 65535")
	}
	cfg.Addr = addr

	cfg.ID, _ = get(settings[1])
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = host + ":" + port
	}

	v, name = get(settings[2])
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms < 0 || ms > 3_600_000 {
		return bad(name, v, "want milliseconds from 0 to 3600000")
	}
	cfg.Delay = time.Duration(ms) * time.Millisecond

	v, name = get(settings[3])
	if v != "" {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return bad(name, v, "want host:port or :port")
		}
	}
	cfg.MetricsAddr = v

	v, name = get(settings[4])
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1<<28 {
		return bad(name, v, "want a number of ids from 1 to 268435456")
	}
	cfg.DedupWindow = n

	v, name = get(settings[5])
	cfg.Batch, err = strconv.ParseBool(v)
	if err != nil {
		return bad(name, v, "want true or false")
	}

	a := New(cfg)
	if err := a.Start(); err != nil {
		fmt.Fprintf(stderr, "sluice analyzer: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "sluice analyzer: %s listening on %s (batch %t, delay %s, dedup window %d)\n",
		cfg.ID, a.Addr(), cfg.Batch, cfg.Delay, a.dedup.size())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if ready != nil {
		ready(a, stop)
	}
	<-ctx.Done()
	if err := a.Stop(); err != nil {
		fmt.Fprintf(stderr, "sluice analyzer: %v\n", err)
		return 1
	}
	st := a.Stats()
	fmt.Fprintf(stderr, "sluice analyzer: stopped after %d packets, %d messages, %d duplicates\n",
		st.Packets, st.Messages, st.Duplicates)
	return 0
}
