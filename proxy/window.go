package proxy

// The adaptive in-flight window of one analyzer on one shard: how many packets may
// be written to it and not yet answered. Whatever is in flight when an analyzer
// freezes or is cut off is what may be counted twice (it is re-sent elsewhere
// after the answer deadline, and the analyzer may still read it), so the window
// keeps that near what the analyzer actually drains instead of the fixed
// PIPELINE_DEPTH × BATCH_MAX × UPSTREAM_CONNS (4096 packets per loop by default).
//
// It works like TCP's congestion window, on packets: it starts small (two full
// requests), doubles per round trip while the window is what holds packets back
// (slow start), then grows by one request per round trip, and is cut to one
// request on a failure (timeout, lost connection, 5xx) and by a quarter when answers
// slow down (a round trip over 4 × the smallest seen + 10 ms, at most once per
// round trip). It grows only while it limits: an analyzer that keeps up with the
// load at 100 packets in flight keeps a window near 100 however long it runs. It
// never passes today's fixed bound, so a full load that needs that much gets it.
//
// Everything here runs on the shard's loop; the fields belong to it.

// window is one dest's in-flight window, in packets.
type window struct {
	size     int   // packets that may be in flight; a request may pass it by less than one request
	ssthresh int   // slow start ends here
	limited  bool  // a write was held back by the window since it last found room for everything
	minRTT   int64 // smallest round trip seen since minRTTAt, ns (0: none yet)
	minRTTAt int64 // nanotime minRTT was last reset: it is forgotten every minRTTAge
	cutAt    int64 // nanotime of the last cut: at most one per round trip
}

const (
	minRTTAge   = int64(10e9) // the smallest round trip is measured again this often (ns)
	slowFactor  = 4           // a round trip over slowFactor × minRTT + slowSlack...
	slowSlack   = int64(10e6) // ...means the analyzer's answers are slowing (ns)
	windowFloor = 32          // the smallest window, packets (plain analyzers: 32 requests)
)

// windowMin is the window's start and floor for d: two full requests.
func (s *shard) windowMin(d *dest) int {
	return max(2*s.perRequest(d), windowFloor)
}

// windowMax is today's fixed bound: every connection's pipeline full.
func (s *shard) windowMax(d *dest) int {
	return s.srv.cfg.PipelineDepth * s.perRequest(d) * s.srv.cfg.UpstreamConns
}

func (s *shard) perRequest(d *dest) int {
	if d.batch {
		return s.srv.cfg.BatchMax
	}
	return 1
}

// windowRoom is how many more packets d's window lets be written now (≤ 0: none).
// A caller that finds none records that the window limited.
func (s *shard) windowRoom(d *dest) int {
	w := &d.win
	if w.size == 0 { // first use
		w.size, w.ssthresh = s.windowMin(d), s.windowMax(d)
	}
	return w.size - int(d.st.InFlight)
}

// windowAnswered grows d's window after a 2xx for n packets sent rtt ago, or cuts
// it when the answers are slowing.
func (s *shard) windowAnswered(d *dest, n int, rtt int64) {
	w := &d.win
	now := s.now
	if w.minRTT == 0 || rtt < w.minRTT || now-w.minRTTAt > minRTTAge {
		w.minRTT, w.minRTTAt = rtt, now
	}
	lo := s.windowMin(d)
	if rtt > slowFactor*w.minRTT+slowSlack && now-w.cutAt > rtt {
		w.size = max(w.size*3/4, lo)
		w.ssthresh = w.size
		w.cutAt = now
		return
	}
	if !w.limited {
		return
	}
	if w.size < w.ssthresh {
		w.size += n // slow start: doubles per round trip
	} else {
		w.size += max(1, n*s.perRequest(d)/max(w.size, 1)) // about one request per round trip
	}
	w.size = min(w.size, s.windowMax(d))
}

// windowFailed cuts d's window to one request after a failure, as TCP's window
// goes to one segment after a retransmission timeout: a connection that failed is
// redialled at once, and with the window back at its start every redial of a
// frozen analyzer's connections took two more full requests, which it reads and
// (ignoring the deadline) counts when it wakes. One request probes; answers grow
// it again from there, doubling per round trip up to the threshold.
func (s *shard) windowFailed(d *dest) {
	w := &d.win
	if w.size == 0 {
		return
	}
	w.ssthresh = max(w.size/2, s.windowMin(d))
	w.size = s.perRequest(d)
	w.cutAt = s.now
}
