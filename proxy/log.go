package proxy

import (
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// rateLog lets one line through per interval and counts what it held back, so a
// failure repeated at packet rate costs a counter increment, not a log line. Safe
// for concurrent use by every loop.
type rateLog struct {
	next       atomic.Int64 // nanotime when the next line may pass
	suppressed atomic.Int64
}

const logEvery = int64(time.Second)

// allow reports whether a line may be written now, and how many were held back
// since the last one.
func (r *rateLog) allow() (bool, int64) {
	now := nanotime()
	next := r.next.Load()
	if now < next || !r.next.CompareAndSwap(next, now+logEvery) {
		r.suppressed.Add(1)
		return false, 0
	}
	return true, r.suppressed.Swap(0)
}

func (s *Server) logDrop(analyzer, reason string, p *parcel) {
	if ok, held := s.dropLog.allow(); ok {
		s.log.Error("packet dropped", "analyzer", analyzer, "reason", reason, "attempts", p.attempts, "messages", p.msgs, "suppressed", held)
	}
}

func (s *Server) logUpstream(analyzer, what string, err error) {
	if ok, held := s.upLog.allow(); ok {
		s.log.Warn(what, "analyzer", analyzer, "err", errString(err), "suppressed", held)
	}
}

func (s *Server) logIngress(what string, n int) {
	if ok, held := s.inLog.allow(); ok {
		s.log.Warn(what, "bytes", n, "suppressed", held)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// NewLogger builds the process logger from LOG_LEVEL and LOG_FORMAT.
func NewLogger(level, format string) *slog.Logger {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
