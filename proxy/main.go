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

// Main is `sluice distributor`: configuration from the environment and flags, run
// until SIGINT/SIGTERM, then drain. Exit status 2 means bad configuration.
// A variable set to "" counts as set (METRICS_ADDR="" turns the admin port off).
func Main(args []string) int {
	cfg, err := LoadConfigLookup(args, LookupEnv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice distributor: bad configuration:", err)
		return 2
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
	// Catch the signals before announcing the listeners: a SIGTERM sent as soon as
	// "distributor listening" is logged must drain, not kill.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	if err := srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "sluice distributor:", err)
		return 1
	}
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

// LookupEnv is os.LookupEnv, named for LoadConfigLookup's callers.
var LookupEnv = os.LookupEnv
