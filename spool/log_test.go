package spool

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// captureHandler keeps the records logged (the writer goroutine logs).
type captureHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

func (h *captureHandler) errors() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range h.recs {
		if r.Level == slog.LevelError {
			out = append(out, r)
		}
	}
	return out
}

func attrInt(r slog.Record, key string) (int64, bool) {
	var v int64
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v, found = a.Value.Int64(), true
			return false
		}
		return true
	})
	return v, found
}

// Disk errors log at most one line a second per log, the next line carrying the
// count of errors not logged since.
func TestDiskErrorLogRateLimited(t *testing.T) {
	dir := t.TempDir()
	h := &captureHandler{}
	opt := testOptions(dir)
	opt.Log = slog.New(h)
	sp, _ := mustOpen(t, opt)
	defer mustClose(t, sp)
	lp := newTestLoop(t, sp, 0)
	first := sp.nextID.Load()
	for id := first; id < first+4; id++ { // the next four segment files cannot be created
		must(t, os.Mkdir(filepath.Join(dir, segName(id)+".seg"), 0o700))
	}
	fail := func() {
		t.Helper()
		lp.l.Append([]byte("x"))
		if err := lp.drain(); err == nil {
			t.Fatal("the group did not fail")
		}
	}
	fail()
	fail()
	fail()
	if n := sp.Stats().DiskErrors; n != 3 {
		t.Fatalf("DiskErrors=%d, want 3", n)
	}
	if lines := h.errors(); len(lines) != 1 {
		t.Fatalf("%d error lines for 3 errors within a second, want 1", len(lines))
	}
	// A second later (moved back while the writer is idle: it handed its last
	// completion over the channel, and gets the next group over one).
	lp.l.w.lastLog = time.Now().Add(-2 * time.Second)
	fail()
	lines := h.errors()
	if len(lines) != 2 {
		t.Fatalf("%d error lines after the second passed, want 2", len(lines))
	}
	if n, ok := attrInt(lines[1], "errors_since_last_line"); !ok || n != 2 {
		t.Errorf("second line: errors_since_last_line=%d (found %v), want 2", n, ok)
	}
	if _, ok := attrInt(lines[0], "log"); !ok {
		t.Errorf("the line does not name the log")
	}
}
