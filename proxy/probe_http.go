package proxy

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/bytedance/sonic"
	"github.com/panjf2000/gnet/v2"
)

// ProbeJSON is the body of /livez and /readyz: {"status":"ok"}, or the failing
// status ("not_live", "not_ready") and why.
type ProbeJSON struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// livezTimeout is how long every event loop has to run a no-op handed to it before
// /livez fails.
const livezTimeout = 2 * time.Second

// Live is the liveness probe: "" while every event loop runs work handed to it
// within livezTimeout, else why not. It runs off the loops and never blocks one: each
// loop only sends into a channel with room for all of them. A loop that has never
// accepted a connection has no shard and nothing to run, and is not asked.
func (s *Server) Live() (reason string) {
	if s.stopped.Load() {
		return "event loops stopped"
	}
	list := s.shardList()
	ctx, cancel := context.WithTimeout(context.Background(), livezTimeout)
	defer cancel()
	done := make(chan struct{}, len(list))
	ping := gnet.RunnableFunc(func(context.Context) error { done <- struct{}{}; return nil })
	for i, sh := range list {
		if err := sh.loop.Execute(ctx, ping); err != nil {
			return "event loop " + strconv.Itoa(i) + ": " + err.Error()
		}
	}
	for n := range len(list) {
		select {
		case <-done:
		case <-ctx.Done():
			return strconv.Itoa(len(list)-n) + " of " + strconv.Itoa(len(list)) + " event loops did not answer within " + livezTimeout.String()
		}
	}
	return ""
}

// Ready is the readiness probe: "" while the distributor can accept packets, else
// why not (shutting down, or no analyzer can take packets).
func (s *Server) Ready() (reason string) {
	if s.closing.Load() {
		return "shutting down"
	}
	v := s.View()
	if v.Healthy() > 0 {
		return ""
	}
	var out []string
	for _, m := range membersOf(v) {
		out = append(out, m.Name+" "+m.State.String())
	}
	return "no analyzer can take packets (" + strings.Join(out, ", ") + ")"
}

// probeAnswer renders a probe: 200 {"status":"ok"} or 503 with the failing status
// and the reason.
func probeAnswer(failStatus, reason string) (int, []byte, string) {
	p, status := ProbeJSON{Status: "ok"}, 200
	if reason != "" {
		p, status = ProbeJSON{Status: failStatus, Reason: reason}, 503
	}
	b, _ := sonic.Marshal(p)
	return status, b, "application/json"
}
