package proxy

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"
)

// Main is `sluice distributor`: configuration from the file, environment and flags,
// run until SIGINT/SIGTERM (reloading on SIGHUP), then drain. Exit status 2 means bad
// configuration; --check only validates it. A variable set to "" counts as set
// (METRICS_ADDR="" turns the admin port off).
func Main(args []string) int {
	cfg, err := LoadConfigLookup(args, LookupEnv, os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if _, check := preParse(args); check {
		return Check(cfg, err, os.Stdout, os.Stderr)
	}
	if err != nil {
		return failConfig(os.Stderr, err)
	}
	if n, set := goProcs(cfg.Loops, runtime.GOMAXPROCS(0), LookupEnv); set {
		runtime.GOMAXPROCS(n)
	}
	log, level := newLogger(cfg.LogLevel, cfg.LogFormat)
	if lim, ok := MemoryLimitFor(cfg.MaxBufferBytes, os.Getenv("GOMEMLIMIT")); ok {
		debug.SetMemoryLimit(lim)
		log.Info("GOMEMLIMIT set from MAX_BUFFER_BYTES", "max_buffer_bytes", cfg.MaxBufferBytes, "gomemlimit_bytes", lim)
	}
	if sum, changed := WeightsNormalised(cfg.raw["ANALYZERS"]); changed {
		log.Warn("analyzer weights do not sum to 1; normalised", "sum", sum)
	}
	srv, err := New(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice distributor:", err)
		return 2
	}
	// Catch the signals before announcing the listeners: a SIGTERM sent as soon as
	// "distributor listening" is logged must drain, not kill, and SIGHUP never kills.
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	if err := srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "sluice distributor:", err)
		return 1
	}
	r := newReloader(srv, args, LookupEnv, log, level)
	got := r.serve(sig) // reloads on SIGHUP (reload.go)
	timeout := time.Duration(r.shutdown.Load())
	log.Info("signal received: draining", "signal", got.String(), "timeout", timeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

// goProcs is how many Ps the Go runtime should have for loops event loops when it
// has procs: one per loop, never more than it has, and only when GOMAXPROCS is not
// set in the environment (then the operator chose). A P beyond the loops does not
// carry packets: it is where sysmon hands a loop's P while the loop blocks in
// epoll_wait, and where gnet's Gosched and the timers' goroutines wake spinning
// threads. On 2 shared CPUs with one loop, one P cut the distributor's CPU per
// packet by about a sixth and its context switches and futex calls several times
// (docs/benchmarks.md, "Cost per packet"). It only lowers, so the timers,
// probes and admin pages share the loops' Ps.
func goProcs(loops, procs int, lookup func(string) (string, bool)) (int, bool) {
	if _, set := lookup("GOMAXPROCS"); set || loops <= 0 || loops >= procs {
		return procs, false
	}
	return loops, true
}

// LookupEnv is os.LookupEnv, named for LoadConfigLookup's callers.
var LookupEnv = os.LookupEnv

// memoryMargin is what MemoryLimitFor allows beyond the packets: the runtime,
// inbound and upstream connection buffers at ordinary concurrency, the admin pages.
const memoryMargin = 64 << 20

// MemoryLimitFor is the GOMEMLIMIT a distributor with MAX_BUFFER_BYTES maxBuffer
// runs under when the environment sets none (env is GOMEMLIMIT as found): twice the
// packet bytes (a packet may be held twice while a write to a slow analyzer is
// buffered, and the collector needs room to free what was delivered) plus
// memoryMargin. ok is false when MAX_BUFFER_BYTES is 0 or GOMEMLIMIT is set: then
// the runtime's own setting stands.
func MemoryLimitFor(maxBuffer int64, env string) (limit int64, ok bool) {
	if maxBuffer <= 0 || env != "" {
		return 0, false
	}
	return 2*maxBuffer + memoryMargin, true
}
