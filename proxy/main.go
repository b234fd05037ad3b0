package proxy

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluicelog/sluice/cli"
)

// Main is `sluice distributor`: configuration from the environment and flags, run
// until SIGINT/SIGTERM, then drain. Exit status 2 means bad configuration.
func Main(args []string) int {
	cfg, err := LoadConfig(args, Getenv, os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return cli.Fail(os.Stderr, "sluice distributor", err)
	}
	log := NewLogger(cfg.LogLevel, cfg.LogFormat)
	if sum, changed := WeightsNormalised(Getenv("ANALYZERS")); changed && Getenv("ANALYZERS") != "" {
		log.Warn("analyzer weights do not sum to 1; normalised", "sum", sum)
	}
	srv, err := New(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice distributor:", err)
		return 2
	}
	if err := srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "sluice distributor:", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	got := <-sig
	log.Info("signal received: draining", "signal", got.String(), "timeout", cfg.ShutdownTimeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}
