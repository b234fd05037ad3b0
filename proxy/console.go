package proxy

import (
	"time"

	"github.com/sluicelog/sluice/console"
)

// requestBoundsSec are the request histogram's bounds in seconds, for the console.
var requestBoundsSec = func() []float64 {
	b := make([]float64, len(requestBounds.ns))
	for i, ns := range requestBounds.ns {
		b[i] = float64(ns) / 1e9
	}
	return b
}()

// consoleSnapshot is the console's Source: the view and one Snapshot, the same
// path a /metrics-json scrape takes, read by the console's one sampler goroutine.
func (s *Server) consoleSnapshot() console.Snapshot {
	v := s.View() // before the snapshot: st.Dests then covers every id of v
	st := s.Snapshot()
	tot := st.Total()
	c := console.Snapshot{
		Time: time.Now(), AcceptedPackets: st.AcceptedPackets, AcceptedMessages: st.AcceptedMessages,
		Responses503: st.Responses[statusIndex(503)], Responses429: st.Responses[statusIndex(429)],
		Dropped: tot.DroppedTotal(), LatencyBounds: requestBoundsSec,
		LatencyCounts: append([]int64(nil), st.Request.counts[:len(requestBounds.ns)+1]...),
	}
	for i, m := range v.Members {
		if m.State == StateRemoved {
			continue
		}
		d := &st.Dests[i]
		a := console.Analyzer{
			Name: m.Name, URL: m.URL, State: m.State.String(), Reason: m.Reason, Weight: m.Weight, EffectiveWeight: m.Effective,
			DeliveredPackets: d.DeliveredPackets, DeliveredMessages: d.DeliveredMessages, Queued: d.Queued, InFlight: d.InFlight,
			Retries: d.Retries, Dropped: d.DroppedTotal(), Failures: map[string]int64{}, Limiting: s.ctl.limiting(i),
		}
		for k, name := range failNames {
			a.Failures[name] = d.Failures[k]
		}
		c.Analyzers = append(c.Analyzers, a)
	}
	return c
}
