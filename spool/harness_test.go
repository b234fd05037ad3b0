package spool

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// testLoop plays the event loop of one Log: done hands Completions over a
// channel, and the test goroutine (the "loop") takes them back with Completed.
type testLoop struct {
	t     testing.TB
	l     *Log
	ch    chan Completion
	timer *time.Timer // for complete's deadline, made once
}

func newTestLoop(t testing.TB, sp *Spool, idx int) *testLoop {
	lp := &testLoop{t: t, ch: make(chan Completion, 4)}
	lp.l = sp.NewLog(idx, func(c Completion) { lp.ch <- c })
	return lp
}

// complete waits for the writer's Completion (with a deadline) and hands it to
// the log.
func (lp *testLoop) complete() Completion {
	lp.t.Helper()
	var c Completion
	select {
	case c = <-lp.ch:
	default: // the timer only when waiting, and one per loop (benchmarks call this per group)
		if lp.timer == nil {
			lp.timer = time.NewTimer(10 * time.Second)
		} else {
			lp.timer.Reset(10 * time.Second)
		}
		select {
		case c = <-lp.ch:
			lp.timer.Stop()
		case <-lp.timer.C:
			lp.t.Fatal("no completion from the writer within 10s")
		}
	}
	lp.l.Completed(c)
	return c
}

// drain flushes until everything appended and settled has been handed over and
// completed, and returns the first error reported.
func (lp *testLoop) drain() error {
	lp.t.Helper()
	var err error
	for {
		lp.l.Flush()
		if !lp.l.busy {
			return err
		}
		if c := lp.complete(); c.Err != nil && err == nil {
			err = c.Err
		}
	}
}

func testOptions(dir string) Options {
	return Options{Dir: dir, SegmentBytes: 1 << 20, Sync: SyncAlways, Log: slog.New(slog.DiscardHandler)}
}

func mustOpen(t testing.TB, opt Options) (*Spool, []*Recovered) {
	t.Helper()
	sp, recs, err := Open(opt)
	if err != nil {
		t.Fatalf("Open(%s): %v", opt.Dir, err)
	}
	return sp, recs
}

func mustClose(t testing.TB, sp *Spool) {
	t.Helper()
	if err := sp.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// loadAll reads every recovered segment's records.
func loadAll(t testing.TB, recs []*Recovered) []Record {
	t.Helper()
	var out []Record
	for _, r := range recs {
		got, err := r.Load()
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if len(got) != r.Len() {
			t.Fatalf("Load returned %d records, Len says %d", len(got), r.Len())
		}
		out = append(out, got...)
	}
	return out
}

// bodies returns the records' bodies as sorted strings.
func bodies(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Body)
	}
	sort.Strings(out)
	return out
}

func body(i int) []byte {
	return []byte(fmt.Sprintf("packet-%05d-%s", i, strings.Repeat("x", i%37)))
}

// segFiles lists the directory's files with the given extension.
func segFiles(t testing.TB, dir, ext string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(m)
	return m
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// diffStrings describes how got differs from want (for failure messages).
func diffStrings(got, want []string) string {
	g := map[string]bool{}
	for _, s := range got {
		g[s] = true
	}
	w := map[string]bool{}
	for _, s := range want {
		w[s] = true
	}
	var missing, extra []string
	short := func(s string) string {
		if len(s) > 24 {
			return s[:24] + "…"
		}
		return s
	}
	for _, s := range want {
		if !g[s] {
			missing = append(missing, short(s))
		}
	}
	for _, s := range got {
		if !w[s] {
			extra = append(extra, short(s))
		}
	}
	if len(missing) > 5 {
		missing = missing[:5]
	}
	if len(extra) > 5 {
		extra = extra[:5]
	}
	return fmt.Sprintf("got %d want %d; missing (first 5) %q; extra (first 5) %q", len(got), len(want), missing, extra)
}

// writeSegment writes records 0..n-1 (bodies body(i)) as one segment file.
func writeSegment(t testing.TB, dir string, id uint64, n int) []byte {
	t.Helper()
	var b []byte
	for i := 0; i < n; i++ {
		b = appendRecord(b, uint32(i), body(i))
	}
	if err := os.WriteFile(filepath.Join(dir, segName(id)+".seg"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}
