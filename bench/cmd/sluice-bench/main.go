// Command sluice-bench is `make bench`: it starts the distributor, a bare gnet
// ceiling server and nginx on loopback, drives each with vegeta and wrk in
// alternating rounds, prints the table, appends it to bench/out/benchmarks.md and
// renders bench/out/bench.png (with BENCH_RECORD=1: docs/benchmarks.md and
// docs/bench.png, the record).
//
//	sluice-bench [-sluice bin/sluice]      run the benchmark (settings: BENCH_* variables, see -h)
//	sluice-bench ceiling -addr host:port   the ceiling server the benchmark starts
//	sluice-bench plain-analyzer host:port  a minimal net/http analyzer (bench/cost.sh)
//	sluice-bench wrk-script                print the wrk script the benchmark uses
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/sluicelog/sluice/bench"
	"github.com/sluicelog/sluice/bench/ceiling"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "ceiling":
			os.Exit(runCeiling(os.Args[2:]))
		case "plain-analyzer":
			os.Exit(runPlainAnalyzer(os.Args[2:]))
		case "wrk-script":
			os.Exit(runWrkScript())
		}
	}
	os.Exit(runBench(os.Args[1:]))
}

func runBench(args []string) int {
	fs := flag.NewFlagSet("sluice-bench", flag.ContinueOnError)
	sluice := fs.String("sluice", "bin/sluice", "the sluice binary to benchmark")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: sluice-bench [-sluice bin/sluice]\n\nflags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nenvironment (default in quotes):\n%s", bench.EnvHelp())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := bench.ConfigFromEnv(os.Getenv, *sluice)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-bench:", err)
		return 2
	}
	if _, err := os.Stat(cfg.Sluice); err != nil {
		fmt.Fprintf(os.Stderr, "sluice-bench: %v (make build first)\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// This process is vegeta's load generator. With Go's default GOGC its small live
	// heap is collected hundreds of times a second, which costs it a third of its CPU
	// and so takes CPU from the servers it measures; collecting only at 1 GiB does
	// not. GOGC or GOMEMLIMIT in the environment win.
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(-1)
		debug.SetMemoryLimit(1 << 30)
		cfg.LoadGenGC = "GOGC=off GOMEMLIMIT=1GiB"
	} else {
		cfg.LoadGenGC = "GOGC=" + os.Getenv("GOGC") + " GOMEMLIMIT=" + os.Getenv("GOMEMLIMIT")
	}

	rep, err := bench.Run(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-bench:", err)
		return 1
	}
	if cfg.Chart != "" {
		if err := bench.SaveChart(cfg.Chart, rep); err != nil {
			fmt.Fprintln(os.Stderr, "sluice-bench: chart:", err)
			return 1
		}
		rep.Chart = cfg.Chart
	}
	if err := rep.WriteText(os.Stdout); err != nil {
		return 1
	}
	if cfg.Results != "" {
		if err := bench.AppendResults(cfg.Results, rep); err != nil {
			fmt.Fprintln(os.Stderr, "sluice-bench: results:", err)
			return 1
		}
		fmt.Printf("\nappended to %s", cfg.Results)
		if rep.Chart != "" {
			fmt.Printf("; chart in %s", rep.Chart)
		}
		fmt.Println()
	}
	return 0
}

func runCeiling(args []string) int {
	fs := flag.NewFlagSet("sluice-bench ceiling", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address")
	loops := fs.Int("loops", 0, "event loops (0: one per CPU)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	srv, err := ceiling.Start(*addr, *loops)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-bench ceiling:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "sluice-bench ceiling: answering 202 on %s\n", srv.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if err := srv.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-bench ceiling:", err)
		return 1
	}
	return 0
}

// runPlainAnalyzer serves the drop-in case of issue #20: a plain net/http analyzer
// that decodes each packet with encoding/json and answers 200, one packet per
// POST /ingest, and answers GET /health without Sluice-Batch (so it gets no batches).
func runPlainAnalyzer(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: sluice-bench plain-analyzer host:port")
		return 2
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /ingest", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		var v map[string]any
		if err != nil || json.Unmarshal(b, &v) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	srv := &http.Server{Addr: args[0], Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-bench plain-analyzer:", err)
		return 1
	}
	return 0
}

// runWrkScript prints the wrk Lua script of the benchmark's packet.
func runWrkScript() int {
	script, err := bench.WrkScript(bench.NewPacket("wrk", time.Now().UnixMilli()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-bench wrk-script:", err)
		return 1
	}
	fmt.Print(script)
	return 0
}
