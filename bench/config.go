package bench

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config is one `make bench` run. Every field has an environment variable; Env lists
// them with their defaults.
type Config struct {
	Sluice          string        // the sluice binary (flag -sluice; default bin/sluice)
	Duration        time.Duration // BENCH_DURATION: one measurement at full load
	Rounds          int           // BENCH_ROUNDS: alternating rounds over every target and driver
	Warmup          time.Duration // BENCH_WARMUP: unmeasured load on each target before round 1
	LatencyDuration time.Duration // BENCH_LATENCY_DURATION: the constant-rate run of each target
	Conns           int           // BENCH_CONNS: connections of every driver
	WrkThreads      int           // BENCH_WRK_THREADS
	PortBase        int           // BENCH_PORT_BASE: first of the loopback ports the run uses
	Wrk             string        // BENCH_WRK: wrk binary; "" looks on PATH, "off" skips
	Nginx           string        // BENCH_NGINX: nginx binary; "" looks on PATH, "off" skips
	Profile         bool          // BENCH_PROFILE: CPU-profile the distributor in an extra run
	Spool           bool          // BENCH_SPOOL: also the distributor with SPOOL_DIR (interval and always) and the disk's bare fdatasync
	Overload        bool          // BENCH_OVERLOAD: also the distributor with each overload mode on (shedding, capacity-aware routing, affinity)
	Record          bool          // BENCH_RECORD: results and chart default to docs/ instead of bench/out/
	Results         string        // BENCH_RESULTS: markdown file the run's section is appended to ("off": none)
	Chart           string        // BENCH_CHART: PNG written with the run's chart ("off": none)
	WorkDir         string        // BENCH_WORKDIR: logs, rendered wrk script and nginx.conf, profile
	LoadGenGC       string        // how the harness's own garbage collector was set, for the record
}

// envSetting is one variable: name, default, and how it sets Config. recordDef,
// when set, is the default under BENCH_RECORD=1 (which is read before it).
type envSetting struct {
	name, def, recordDef, help string
	set                        func(*Config, string) error
}

func envSettings() []envSetting {
	dur := func(f func(*Config, time.Duration)) func(*Config, string) error {
		return func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("want a positive Go duration such as 10s")
			}
			f(c, d)
			return nil
		}
	}
	num := func(lo, hi int, f func(*Config, int)) func(*Config, string) error {
		return func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < lo || n > hi {
				return fmt.Errorf("want a whole number from %d to %d", lo, hi)
			}
			f(c, n)
			return nil
		}
	}
	str := func(f func(*Config, string)) func(*Config, string) error {
		return func(c *Config, v string) error { f(c, v); return nil }
	}
	boolean := func(f func(*Config, bool)) func(*Config, string) error {
		return func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("want 1 or 0")
			}
			f(c, b)
			return nil
		}
	}
	return []envSetting{
		{"BENCH_DURATION", "8s", "", "one measurement at full load", dur(func(c *Config, d time.Duration) { c.Duration = d })},
		{"BENCH_ROUNDS", "3", "", "alternating rounds (medians are taken over them)", num(1, 100, func(c *Config, n int) { c.Rounds = n })},
		{"BENCH_WARMUP", "2s", "", "unmeasured load on each target first", dur(func(c *Config, d time.Duration) { c.Warmup = d })},
		{"BENCH_LATENCY_DURATION", "8s", "", "constant-rate run at half the measured maximum", dur(func(c *Config, d time.Duration) { c.LatencyDuration = d })},
		{"BENCH_CONNS", "64", "", "keep-alive connections of every driver", num(1, 10000, func(c *Config, n int) { c.Conns = n })},
		{"BENCH_WRK_THREADS", "1", "", "wrk threads", num(1, 64, func(c *Config, n int) { c.WrkThreads = n })},
		{"BENCH_PORT_BASE", "18100", "", "first loopback port (the run uses 60 from there)", num(1024, 65535-60, func(c *Config, n int) { c.PortBase = n })},
		{"BENCH_WRK", "", "", "wrk binary; empty: from PATH; off: skip", str(func(c *Config, v string) { c.Wrk = v })},
		{"BENCH_NGINX", "", "", "nginx binary; empty: from PATH; off: skip", str(func(c *Config, v string) { c.Nginx = v })},
		{"BENCH_PROFILE", "1", "", "CPU-profile the distributor in an extra run (0: no)", boolean(func(c *Config, b bool) { c.Profile = b })},
		{"BENCH_SPOOL", "1", "", "also the distributor with a spool (SPOOL_SYNC=interval and always, in BENCH_WORKDIR) and the disk's bare fdatasync (0: no)", boolean(func(c *Config, b bool) { c.Spool = b })},
		{"BENCH_OVERLOAD", "1", "", "also the distributor with each overload mode on (SHED_BELOW=ERROR, ROUTING=weighted-capacity, AFFINITY=emitter_id), for their cost per packet against the default (0: no)", boolean(func(c *Config, b bool) { c.Overload = b })},
		// A run leaves the tree clean unless it is meant for the record: the
		// committed results and chart in docs/ change only with BENCH_RECORD=1.
		{"BENCH_RECORD", "0", "", "1: record the run in docs/ (results and chart defaults below)", boolean(func(c *Config, b bool) { c.Record = b })},
		{"BENCH_RESULTS", "bench/out/benchmarks.md", "docs/benchmarks.md", "append the run's section here (off: don't)", str(func(c *Config, v string) { c.Results = offIsEmpty(v) })},
		{"BENCH_CHART", "bench/out/bench.png", "docs/bench.png", "write the chart here (off: don't)", str(func(c *Config, v string) { c.Chart = offIsEmpty(v) })},
		{"BENCH_WORKDIR", "bin/bench", "", "logs, wrk script, nginx.conf and profile of the last run", str(func(c *Config, v string) { c.WorkDir = v })},
	}
}

// ConfigFromEnv reads every BENCH_* variable through getenv; unset ones take their
// defaults. sluice is the distributor binary.
func ConfigFromEnv(getenv func(string) string, sluice string) (Config, error) {
	c := Config{Sluice: sluice}
	for _, s := range envSettings() {
		v := getenv(s.name)
		if v == "" {
			v = s.def
			if c.Record && s.recordDef != "" {
				v = s.recordDef
			}
		}
		if v == "" {
			continue
		}
		if err := s.set(&c, strings.TrimSpace(v)); err != nil {
			return c, fmt.Errorf("%s=%q: %w", s.name, v, err)
		}
	}
	return c, nil
}

// EnvHelp lists the variables for -h.
func EnvHelp() string {
	var b strings.Builder
	for _, s := range envSettings() {
		help := s.help
		if s.recordDef != "" {
			help += " (BENCH_RECORD=1: " + strconv.Quote(s.recordDef) + ")"
		}
		fmt.Fprintf(&b, "  %-24s %-26s %s\n", s.name, strconv.Quote(s.def), help)
	}
	return b.String()
}

// settingsLine is the run's settings as they would be typed, for the record.
func (c Config) settingsLine() string {
	line := fmt.Sprintf("BENCH_DURATION=%s BENCH_ROUNDS=%d BENCH_WARMUP=%s BENCH_LATENCY_DURATION=%s BENCH_CONNS=%d BENCH_WRK_THREADS=%d",
		c.Duration, c.Rounds, c.Warmup, c.LatencyDuration, c.Conns, c.WrkThreads)
	if c.LoadGenGC != "" {
		line += " " + c.LoadGenGC
	}
	return line
}

func offIsEmpty(v string) string {
	if v == "off" {
		return ""
	}
	return v
}
