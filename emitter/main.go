package emitter

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sluicelog/sluice/cli"
)

// Exit codes of Main.
const (
	ExitOK       = 0
	ExitBelowMin = 1 // acceptance under --min-accept
	ExitFailed   = 1 // the target stayed unreachable for --down-timeout
	ExitBadFlags = cli.ExitUsage
)

// Main is `sluice emitter [flags]`. SIGINT or SIGTERM stops the run; the report is
// printed either way.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return mainWith(ctx, args, os.Getenv, os.Stdout, os.Stderr, isTerminal(os.Stderr))
}

func mainWith(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, stderrIsTerminal bool) int {
	cfg, err := parseFlags(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		command(&Config{}).Usage(stdout)
		return ExitOK
	}
	if err == nil {
		_, err = cfg.resolve()
	}
	if err != nil {
		return cli.Fail(stderr, commandName, err)
	}

	var progress io.Writer
	if cfg.Progress || stderrIsTerminal {
		progress = stderr
	}
	rep, runErr := Run(ctx, cfg, progress)
	if cfg.JSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sluice emitter: writing report: %v\n", err)
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "sluice emitter: %v\n", runErr)
		return ExitFailed
	}
	if cfg.MinAccept > 0 && rep.AcceptRatio() < cfg.MinAccept {
		fmt.Fprintf(stderr, "sluice emitter: accepted %d of %d packets (%.4f), under --min-accept %g\n",
			rep.Accepted, rep.Sent, rep.AcceptRatio(), cfg.MinAccept)
		return ExitBelowMin
	}
	return ExitOK
}

const commandName = "sluice emitter"

// command is the emitter's command line over cfg: every flag also reads the
// variable EMITTER_<FLAG> (emitter-id reads EMITTER_ID).
func command(cfg *Config) *cli.Command {
	fs := flag.NewFlagSet(commandName, flag.ContinueOnError)
	fs.StringVar(&cfg.Target, "target", DefaultTarget, "distributor URL (http://host:port[/path]; path defaults to /ingest) or host:port")
	fs.Float64Var(&cfg.Rate, "rate", DefaultRate, "packets per second over all connections; 0 = as fast as possible")
	fs.IntVar(&cfg.Concurrency, "concurrency", DefaultConcurrency, "keep-alive connections")
	fs.DurationVar(&cfg.Duration, "duration", 0, "how long to send (Go duration); 0 = until interrupted or --count")
	fs.IntVar(&cfg.Count, "count", 0, "stop after this many packets were finally answered; 0 = no limit")
	fs.IntVar(&cfg.PacketSize, "packet-size", DefaultPacketSize, "messages per packet (same as --messages fixed:N)")
	fs.StringVar(&cfg.Messages, "messages", "", "messages per packet: N, fixed:N, uniform:A-B or skewed:A-B (overrides --packet-size)")
	fs.IntVar(&cfg.MessageBytes, "message-bytes", DefaultMessageBytes, "bytes of text per message")
	fs.StringVar(&cfg.EmitterID, "emitter-id", "", "emitter_id in every packet (default emitter-<hostname>)")
	fs.StringVar(&cfg.Token, "token", "", "send \"Authorization: Bearer <token>\" with every request (never printed)")
	fs.IntVar(&cfg.Retries, "retries", DefaultRetries, "re-sends per packet after 503, 429, 5xx or a connection error")
	fs.Float64Var(&cfg.RetryBudget, "retry-budget", DefaultRetryBudget, "re-sends allowed as a fraction of first sends; negative = unlimited")
	fs.IntVar(&cfg.Pipeline, "pipeline", DefaultPipeline, "requests in flight per connection")
	fs.DurationVar(&cfg.Timeout, "timeout", DefaultTimeout, "longest wait for a connection or an answer")
	fs.DurationVar(&cfg.Grace, "grace", DefaultGrace, "after the stop, how long answers to requests in flight are still awaited")
	fs.DurationVar(&cfg.DownTimeout, "down-timeout", DefaultDownTimeout, "end the run (exit 1) when no connect to the target succeeded for this long; 0 = never")
	fs.BoolVar(&cfg.JSON, "json", false, "print the report as one JSON object (the last line of output)")
	fs.Float64Var(&cfg.MinAccept, "min-accept", 0, "exit 1 when the fraction of sent packets finally accepted is under this; 0 = off")
	fs.BoolVar(&cfg.Progress, "progress", false, "print progress once a second even when stderr is not a terminal (then as lines, not redrawn in place)")
	return &cli.Command{
		Name:    commandName,
		Summary: "Generate load: POST log packets to a distributor and report what it answered.",
		Flags:   fs,
		Env:     envOf,
	}
}

// envOf is the variable of an emitter flag.
func envOf(flag string) string {
	if flag == "emitter-id" {
		return "EMITTER_ID"
	}
	return "EMITTER_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// parseFlags reads the environment and the command line into a Config. Flags are
// given as in the seed emitter; zero values the user types mean what they say
// (--retries 0 = no re-sends).
func parseFlags(args []string, getenv func(string) string) (Config, error) {
	var cfg Config
	cmd := command(&cfg)
	if err := cmd.Parse(args, getenv); err != nil {
		return cfg, err
	}
	fs := cmd.Flags
	// In a Config zero takes the default; on the command line it means zero.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["retries"] && cfg.Retries == 0 {
		cfg.Retries = -1
	}
	if set["down-timeout"] && cfg.DownTimeout == 0 {
		cfg.DownTimeout = -1
	}
	for _, name := range []string{"concurrency", "packet-size", "message-bytes", "pipeline", "timeout", "grace"} {
		if f := fs.Lookup(name); set[name] && (f.Value.String() == "0" || f.Value.String() == "0s") {
			return cfg, fmt.Errorf("--%s must be > 0", name)
		}
	}
	if set["retry-budget"] && cfg.RetryBudget == 0 {
		return cfg, errors.New("--retry-budget must be > 0 (negative = unlimited; --retries 0 turns re-sends off)")
	}
	return cfg, nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
