package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one run found, in the order it is printed.
type Report struct {
	When     time.Time
	Machine  string   // CPU model, cores, memory, kernel
	Versions string   // sluice revision, Go, nginx, wrk, vegeta
	Settings string   // the BENCH_* values of the run
	Skipped  []string // rows left out and why
	Notes    []string // anything else the reader must know about this run
	Rows     []Row    // full load: target × driver
	Ratios   []Ratio
	Latency  []Row // every target at one constant rate per driver: half the distributor's maximum
	Checks   []Check
	Commands []string  // how every process was started and every load was run
	Profile  string    // top of the distributor's CPU profile; "" when not taken
	Chart    string    // file name of the chart, relative to the results file
	Others   float64   // median share of the machine's CPU other processes used during the runs
	Disk     *DiskSync // the disk's bare write+fdatasync in the spool's directory; nil without spool rows
}

// Labels describes each target in tables.
var Labels = map[string]string{
	TargetCeiling:       "ceiling: bare gnet 202, no forwarding",
	TargetSluice:        "sluice → batch analyzers",
	TargetNginx:         "nginx → analyzers",
	TargetSluicePlain:   "sluice → plain analyzers",
	TargetSpoolInterval: "sluice → batch analyzers, SPOOL_SYNC=interval",
	TargetSpoolAlways:   "sluice → batch analyzers, SPOOL_SYNC=always",
	TargetShed:          "sluice → batch analyzers, SHED_BELOW=ERROR",
	TargetCapacity:      "sluice → batch analyzers, ROUTING=weighted-capacity",
	TargetAffinity:      "sluice → batch analyzers, AFFINITY=emitter_id",
}

// Target names.
const (
	TargetCeiling     = "ceiling"
	TargetSluice      = "sluice"
	TargetNginx       = "nginx"
	TargetSluicePlain = "sluice-plain"
	// The distributor of TargetSluice with a spool (SPOOL_DIR), in each sync mode.
	TargetSpoolInterval = "spool-interval"
	TargetSpoolAlways   = "spool-always"
	// The distributor of TargetSluice with one overload mode on (overload.go).
	TargetShed     = "sluice-shed"
	TargetCapacity = "sluice-capacity"
	TargetAffinity = "sluice-affinity"
)

// fullLoadHeader are the columns of the full-load table.
var fullLoadHeader = []string{
	"target", "driver", "accepted pkt/s", "accepted msg/s", "delivered pkt/s", "delivered msg/s",
	"p50", "p99", "p99.9", "non-2xx", "pkts/analyzer req", "CPU/pkt server", "CPU/pkt analyzers", "CPU/pkt load gen", "CPUs busy", "CPU others", "peak RSS",
}

func fullLoadCells(r Row) []string {
	delivered, deliveredMsgs := "—", "—"
	if r.Delivered >= 0 {
		delivered, deliveredMsgs = Count(r.Delivered), Count(r.Delivered*MessagesPerPacket)
	}
	analyzers := Micros(r.AnalyzerCPU)
	if r.Target == TargetCeiling {
		analyzers = "—"
	}
	return []string{
		r.Target, r.Driver, Count(r.Accepted), Count(r.Accepted * MessagesPerPacket), delivered, deliveredMsgs,
		Latency(r.P50), Latency(r.P99), Latency(r.P999), Percent(r.Non2xx), perRequest(r.PerUpstream),
		Micros(r.ProxyCPU), analyzers, Micros(r.LoadCPU), Percent(r.Busy), Percent(r.Others), Bytes(r.PeakRSS),
	}
}

var latencyHeader = []string{"target", "driver", "offered pkt/s", "accepted pkt/s", "p50", "p99", "p99.9", "non-2xx", "CPU/pkt server", "CPU/pkt load gen", "CPU others"}

func latencyCells(r Row) []string {
	return []string{r.Target, r.Driver, Count(r.Rate), Count(r.Accepted), Latency(r.P50), Latency(r.P99), Latency(r.P999),
		Percent(r.Non2xx), Micros(r.ProxyCPU), Micros(r.LoadCPU), Percent(r.Others)}
}

// latencyTitle introduces the constant-rate table.
const latencyTitle = "Constant rate (open loop), every target at half the distributor's measured maximum: " +
	"vegeta at half its vegeta throughput (information), the emitter at half its best throughput over the full-load drivers (the 1 ms check)"

// WriteText prints the report for a terminal.
func (rep *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	line := func(cells []string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }
	fmt.Fprintf(w, "\nFull load, medians of %s (%s):\n", plural(roundsOf(rep.Rows), "round"), rep.Settings)
	line(fullLoadHeader)
	for _, r := range rep.Rows {
		line(fullLoadCells(r))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, r := range rep.Ratios {
		fmt.Fprintf(w, "%s\n", r.Sentence())
	}
	if len(rep.Latency) > 0 {
		fmt.Fprintf(w, "\n%s:\n", latencyTitle)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		line = func(cells []string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }
		line(latencyHeader)
		for _, r := range rep.Latency {
			line(latencyCells(r))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if rows := spoolRows(rep.Rows); len(rows) > 0 {
		fmt.Fprintf(w, "\n%s:\n", spoolTitle(rep.Disk))
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		line = func(cells []string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }
		line(spoolHeader)
		for _, r := range rows {
			line(spoolCells(r))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	for _, c := range rep.Checks {
		fmt.Fprintf(w, "%-6s %s: %s\n", c.verdict(), c.What, c.Got)
	}
	if len(rep.Skipped) > 0 {
		fmt.Fprintf(w, "skipped: %s\n", strings.Join(rep.Skipped, "; "))
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if rep.Profile != "" {
		fmt.Fprintf(w, "\nWhere the distributor's CPU goes (pprof -top -cum, full load):\n%s\n", rep.Profile)
	}
	return nil
}

// WriteMarkdown writes the report as one section of docs/benchmarks.md.
func (rep *Report) WriteMarkdown(w io.Writer) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "\n### %s — %s\n\n", rep.When.UTC().Format("2006-01-02 15:04 UTC"), rep.Machine)
	fmt.Fprintf(b, "%s. Settings: `%s`.\n\n", rep.Versions, rep.Settings)
	fmt.Fprintf(b, "Full load (closed loop, %s; medians over rounds):\n\n", plural(roundsOf(rep.Rows), "round"))
	mdTable(b, fullLoadHeader, rep.Rows, fullLoadCells)
	b.WriteString("\n")
	for _, r := range rep.Ratios {
		fmt.Fprintf(b, "- %s\n", r.Sentence())
	}
	if len(rep.Latency) > 0 {
		fmt.Fprintf(b, "\n%s:\n\n", latencyTitle)
		mdTable(b, latencyHeader, rep.Latency, latencyCells)
	}
	if rows := spoolRows(rep.Rows); len(rows) > 0 {
		fmt.Fprintf(b, "\n%s:\n\n", spoolTitle(rep.Disk))
		mdTable(b, spoolHeader, rows, spoolCells)
	}
	if len(rep.Checks) > 0 {
		b.WriteString("\nTargets of the benchmark issue:\n\n")
		for _, c := range rep.Checks {
			fmt.Fprintf(b, "- **%s** %s: %s\n", c.verdict(), c.What, c.Got)
		}
	}
	if len(rep.Skipped) > 0 {
		fmt.Fprintf(b, "\nSkipped: %s.\n", strings.Join(rep.Skipped, "; "))
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(b, "\nNote: %s\n", n)
	}
	if rep.Profile != "" {
		fmt.Fprintf(b, "\n<details><summary>Where the distributor's CPU goes (pprof -top -cum during a full-load run)</summary>\n\n```\n%s\n```\n</details>\n", strings.TrimRight(rep.Profile, "\n"))
	}
	fmt.Fprintf(b, "\n<details><summary>Exact commands</summary>\n\n```\n%s\n```\n</details>\n", strings.Join(rep.Commands, "\n"))
	_, err := io.WriteString(w, b.String())
	return err
}

func mdTable(b *strings.Builder, header []string, rows []Row, cells func(Row) []string) {
	b.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for i := range header {
		if i < 2 {
			b.WriteString("---|")
		} else {
			b.WriteString("--:|")
		}
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(cells(r), " | ") + " |\n")
	}
}

func roundsOf(rows []Row) int {
	n := 0
	for _, r := range rows {
		n = max(n, r.Rounds)
	}
	return n
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// Sentence states the ratio with its rounds.
func (r Ratio) Sentence() string {
	per := make([]string, len(r.PerRound))
	for i, x := range r.PerRound {
		per[i] = strconv.FormatFloat(x, 'f', 2, 64)
	}
	return fmt.Sprintf("%s / %s (%s): %.2f× (median of rounds %s)", r.Num, r.Den, r.Driver, r.Median, strings.Join(per, ", "))
}

func (c Check) verdict() string {
	if c.Met {
		return "met"
	}
	return "missed"
}

// Count formats a rate with thousands separators: 52310.4 → "52,310".
func Count(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "—"
	}
	s := strconv.FormatInt(int64(math.Round(x)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Latency formats a latency in the unit that keeps three significant digits.
func Latency(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e3, 'f', 0, 64) + " µs"
	case d < 10*time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + " ms"
	case d < 100*time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(float64(d)/1e6, 'f', 0, 64) + " ms"
}

// perRequest formats packets per upstream request.
func perRequest(x float64) string {
	if x <= 0 {
		return "—"
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

// Micros formats CPU time per packet in microseconds.
func Micros(d time.Duration) string {
	if d <= 0 {
		return "—"
	}
	return strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64) + " µs"
}

// Percent formats a share: 0.1234 → "12.3 %", with "0 %" for exactly none.
func Percent(x float64) string {
	if x == 0 {
		return "0 %"
	}
	if x < 0.001 {
		return strconv.FormatFloat(x*100, 'f', 3, 64) + " %"
	}
	return strconv.FormatFloat(x*100, 'f', 1, 64) + " %"
}

// Bytes formats a memory size in MiB.
func Bytes(n int64) string {
	if n <= 0 {
		return "—"
	}
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}
