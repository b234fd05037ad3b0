// Package proxytest starts a distributor for tests outside package proxy: the
// end-to-end tests in e2e/ and any other package's tests that need a running one.
// (proxy's own tests keep an internal starter: a test in package proxy cannot
// import a package that imports proxy.)
package proxytest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/sluicelog/sluice/proxy"
)

// Start runs a distributor on loopback ports the kernel picks, in front of the
// given analyzers ("url=weight,..."), and stops it when the test ends. A shared
// two-core machine runs the clients, the distributor and the analyzers at once
// (under -race too), so a late answer must not count as an analyzer failure: the
// sender timeout is generous unless tune changes it. Logs at WARN and above go to
// stderr under -v and nowhere otherwise.
func Start(t testing.TB, analyzers string, tune func(*proxy.Config)) *proxy.Server {
	t.Helper()
	cfg := proxy.DefaultConfig()
	specs, err := proxy.ParseAnalyzers(analyzers)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Analyzers = specs
	cfg.Port = 0
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.Loops = 2
	cfg.SenderTimeout = 3 * time.Second
	if tune != nil {
		tune(&cfg)
	}
	logTo := io.Discard
	if testing.Verbose() {
		logTo = os.Stderr
	}
	srv, err := proxy.New(cfg, slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}
