package proxy

import (
	"context"
	"fmt"
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
	log, _ := newLogger(level, format)
	return log
}

// newLogger is NewLogger that also returns the level it filters on: setting it
// (a reload of LOG_LEVEL) changes what every holder of the logger writes, at once.
func newLogger(level, format string) (*slog.Logger, *slog.LevelVar) {
	lv := &slog.LevelVar{}
	lv.Set(logLevel(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), lv
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), lv
}

// logLevel is LOG_LEVEL's value as a slog level (info for anything else).
func logLevel(level string) slog.Level {
	switch level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// gnetLog routes gnet's own log lines into the distributor's slog logger. gnet
// warns about routine things (a stale connection during shutdown); those become
// debug lines. Its errors stay errors, rate-limited like every repeated failure.
type gnetLog struct {
	log  *slog.Logger
	errs rateLog
}

func (g *gnetLog) Debugf(format string, args ...any) { g.line(slog.LevelDebug, format, args) }
func (g *gnetLog) Infof(format string, args ...any)  { g.line(slog.LevelDebug, format, args) }
func (g *gnetLog) Warnf(format string, args ...any)  { g.line(slog.LevelDebug, format, args) }
func (g *gnetLog) Errorf(format string, args ...any) {
	if ok, held := g.errs.allow(); ok {
		g.log.Error("gnet: "+fmt.Sprintf(format, args...), "suppressed", held)
	}
}
func (g *gnetLog) Fatalf(format string, args ...any) {
	g.log.Error("gnet: " + fmt.Sprintf(format, args...))
}

func (g *gnetLog) line(level slog.Level, format string, args []any) {
	if g.log.Enabled(context.Background(), level) {
		g.log.Log(context.Background(), level, "gnet: "+fmt.Sprintf(format, args...))
	}
}
