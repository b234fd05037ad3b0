package proxy

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Main is `sluice distributor`: configuration from the file, environment and flags,
// run until SIGINT/SIGTERM (reloading on SIGHUP), then drain. Exit status 2 means bad
// configuration; --check only validates it.
func Main(args []string) int {
	cfg, err := LoadConfig(args, Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if _, check := preParse(args); check {
		return Check(cfg, err, os.Stdout, os.Stderr)
	}
	if err != nil {
		printProblems(os.Stderr, err)
		return 2
	}
	log := NewLogger(cfg.LogLevel, cfg.LogFormat)
	if sum, changed := WeightsNormalised(cfg.raw["ANALYZERS"]); changed {
		log.Warn("analyzer weights do not sum to 1; normalised", "sum", sum)
	}
	srv, err := New(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice distributor:", err)
		return 2
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP) // before Start: SIGHUP never kills
	if err := srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "sluice distributor:", err)
		return 1
	}
	got := newReloader(srv, args, Getenv, log).serve(sig) // reloads on SIGHUP (reload.go)
	log.Info("signal received: draining", "signal", got.String(), "timeout", cfg.ShutdownTimeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}
