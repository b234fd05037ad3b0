// Command chaos is sluice's fault harness (`make chaos`): two reference analyzers,
// each in its own network namespace joined to the host by a veth pair, the
// distributor and a load generator on the host, and one fault per scenario
// injected mid-load (partitions, a fault proxy's latency, bandwidth, sliced
// answers and resets, SIGSTOP, flapping, memory pressure, GOGC, kill -9). Every
// accepted packet_id is checked against what the analyzers counted. It must run as
// root, and removes its namespaces, routes and processes when it ends.
//
//	go run ./chaos                       # every scenario; prints the table, writes docs/chaos.md
//	go run ./chaos -run freeze           # one scenario (or a comma-separated list)
//	go run ./chaos -run freeze -ignore-deadline
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	runChild()
	os.Exit(cmdMain(os.Args[1:], os.Stdout, os.Stderr))
}

func cmdMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runList := fs.String("run", "all", "scenarios to run, comma-separated (all: every one): "+names())
	rate := fs.Int("rate", 2000, "packets per second offered")
	faultSec := fs.Float64("fault-sec", 10, "length of each fault, s")
	out := fs.String("out", "", "write the table as markdown to this file (make chaos: docs/chaos.md)")
	ignore := fs.Bool("ignore-deadline", false, "analyzers count requests read after their X-Sluice-Deadline (as an analyzer that ignores it would)")
	noDeadlineRows := fs.Bool("no-deadline-rows", true, "with -run all: also run freeze and partition with -ignore-deadline")
	port := fs.Int("port", 0, "distributor's ingest port on 127.0.0.1 (0: a free one per scenario)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var list []scenario
	for _, n := range strings.Split(*runList, ",") {
		if n == "all" {
			list = append(list, scenarios...)
			continue
		}
		sc, ok := byName(n)
		if !ok {
			fmt.Fprintf(stderr, "chaos: -run: no scenario %q (have %s)\n", n, names())
			return 2
		}
		list = append(list, sc)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rc := runCfg{rate: *rate, warm: 3 * time.Second, fault: time.Duration(*faultSec * float64(time.Second)), after: 5 * time.Second, ignoreDeadline: *ignore, port: *port}
	var extra []string
	if *runList == "all" && *noDeadlineRows && !*ignore {
		extra = []string{"partition", "freeze"}
	}
	rows, err := runAll(ctx, list, extra, rc, stdout)
	printTable(stdout, rows)
	if *out != "" && err == nil {
		if werr := os.WriteFile(*out, []byte(markdown(rows, rc, args)), 0o644); werr != nil {
			fmt.Fprintln(stderr, "chaos:", werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 1
	}
	for _, r := range rows {
		if r.lost > 0 && !r.lostOK {
			fmt.Fprintf(stderr, "chaos: %s lost %d accepted packets\n", r.name, r.lost)
			return 1
		}
	}
	return 0
}

// runAll sets up the namespaces, runs each scenario (and those named in
// noDeadline again with analyzers ignoring the deadline), and tears down.
func runAll(ctx context.Context, list []scenario, noDeadline []string, rc runCfg, progress io.Writer) ([]row, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("must run as root (uid %d): it creates network namespaces and routes; run `sudo make chaos`", os.Geteuid())
	}
	sweepStale()
	work, err := os.MkdirTemp("", "sluice-chaos-")
	if err != nil {
		return nil, err
	}
	var nss []*netns
	defer func() {
		for _, n := range nss {
			n.remove()
		}
		if os.Getenv("CHAOS_KEEP") == "" {
			_ = os.RemoveAll(work)
		}
	}()
	for i := range 2 {
		n, err := newNetns(i + 1)
		if err != nil {
			return nil, err
		}
		nss = append(nss, n)
	}
	var rows []row
	runOne := func(sc scenario, rc runCfg) error {
		fmt.Fprintf(progress, "chaos: %s: %s\n", sc.name, sc.what)
		r, err := runScenario(ctx, sc, rc, nss, work)
		if err != nil {
			return fmt.Errorf("%s: %w (logs kept in %s)", sc.name, err, keep(work))
		}
		if r.lost > 0 && !r.lostOK {
			r.notes += "; logs kept in " + keep(work)
		}
		rows = append(rows, r)
		return ctx.Err()
	}
	for _, sc := range list {
		if err := runOne(sc, rc); err != nil {
			return rows, err
		}
	}
	for _, n := range noDeadline {
		sc, _ := byName(n)
		rc := rc
		rc.ignoreDeadline = true
		if err := runOne(sc, rc); err != nil {
			return rows, err
		}
	}
	return rows, nil
}

// keep marks the work directory to be kept (a failed run's logs) and returns it.
func keep(dir string) string {
	os.Setenv("CHAOS_KEEP", "1")
	return dir
}

func byName(n string) (scenario, bool) {
	for _, sc := range scenarios {
		if sc.name == n {
			return sc, true
		}
	}
	return scenario{}, false
}

func names() string {
	var n []string
	for _, sc := range scenarios {
		n = append(n, sc.name)
	}
	return strings.Join(n, ",")
}

func dur(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

var header = []string{"scenario", "offered", "accepted", "delivered", "duplicates", "lost", "max 503/s", "detect", "recover", "p99 202", "notes"}

func cells(r row) []string {
	lost := fmt.Sprint(r.lost)
	if r.lostOK {
		lost = "without spool: " + lost
	}
	return []string{r.name, fmt.Sprint(r.offered), fmt.Sprint(r.accepted), fmt.Sprint(r.delivered), fmt.Sprint(r.duplicates), lost,
		fmt.Sprintf("%.0f%%", 100*r.max503), dur(r.detect), dur(r.recover), dur(r.p99), r.notes}
}

func printTable(w io.Writer, rows []row) {
	all := [][]string{header}
	for _, r := range rows {
		all = append(all, cells(r))
	}
	width := make([]int, len(header))
	for _, c := range all {
		for i, s := range c {
			width[i] = max(width[i], len(s))
		}
	}
	for _, c := range all {
		for i, s := range c {
			fmt.Fprintf(w, "%-*s  ", width[i], s)
		}
		fmt.Fprintln(w)
	}
}

func markdown(rows []row, rc runCfg, args []string) string {
	var b strings.Builder
	b.WriteString(docHead)
	fmt.Fprintf(&b, "Run of %s UTC: `go run ./chaos %s`, %d packets/s offered, faults of %v after %v of load, %v of load after the heal.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), strings.Join(args, " "), rc.rate, rc.fault, rc.warm, rc.after)
	b.WriteString("| " + strings.Join(header, " | ") + " |\n|" + strings.Repeat("---|", len(header)) + "\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(cells(r), " | ") + " |\n")
	}
	b.WriteString("\nScenarios:\n\n")
	for _, sc := range scenarios {
		fmt.Fprintf(&b, "- `%s`: %s\n", sc.name, sc.what)
	}
	b.WriteString(docTail)
	return b.String()
}
