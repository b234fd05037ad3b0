package demo

import (
	"fmt"
	"strconv"
	"strings"
)

// Frame is one frame of the live view as plain mode (no terminal) prints it. The
// view is the demo's interface, so the parser lives beside the code that draws
// it: the unit tests read back what buildDemoFrame drew, and the end-to-end test
// of `make run` (e2e/) reads what a user would see.
type Frame struct {
	Elapsed string
	Totals  map[string]int64
	Rows    map[string]map[string]string // analyzer -> column -> value
}

// ParseFrame reads the lines of one frame: the "--- Ns ---" line, the totals line
// of name/value pairs, the column header and one row per analyzer.
func ParseFrame(lines []string) (Frame, error) {
	b := Frame{Totals: map[string]int64{}, Rows: map[string]map[string]string{}}
	if len(lines) < 3 {
		return b, fmt.Errorf("frame of %d lines: %q", len(lines), lines)
	}
	b.Elapsed = strings.Trim(lines[0], "- ")
	tot := strings.Fields(lines[1])
	if len(tot) == 0 || tot[0] != "totals" || len(tot)%2 != 1 {
		return b, fmt.Errorf("totals line %q", lines[1])
	}
	for i := 1; i+1 < len(tot); i += 2 {
		n, err := strconv.ParseInt(tot[i+1], 10, 64)
		if err != nil {
			return b, fmt.Errorf("totals line %q: %s is %q", lines[1], tot[i], tot[i+1])
		}
		b.Totals[tot[i]] = n
	}
	header := strings.Fields(lines[2])
	if strings.Join(header, " ") != strings.Join(demoColumns, " ") {
		return b, fmt.Errorf("header %q, want %q", lines[2], demoColumns)
	}
	for _, l := range lines[3:] {
		f := strings.Fields(l)
		if len(f) != len(header) {
			return b, fmt.Errorf("row %q has %d fields, want %d", l, len(f), len(header))
		}
		row := map[string]string{}
		for i, h := range header {
			row[h] = f[i]
		}
		b.Rows[f[0]] = row
	}
	return b, nil
}
