package emitter

import (
	"encoding/json"
	"io"
	"math"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// Report is the outcome of a run. Every packet that was sent ends as exactly one of
// accepted, gave_up or unfinished, so Sent = Accepted + GaveUp + Unfinished.
// Rejected503, Rejected429, OtherErrors and Retries count attempts, not packets.
type Report struct {
	Sent             uint64  `json:"sent"`              // packets sent at least once
	Accepted         uint64  `json:"accepted"`          // packets finally answered 2xx
	Rejected503      uint64  `json:"rejected_503"`      // 503 answers
	Rejected429      uint64  `json:"rejected_429"`      // 429 answers
	OtherErrors      uint64  `json:"other_errors"`      // other statuses, connection errors, timeouts
	Retries          uint64  `json:"retries"`           // re-sends of a packet already sent
	GaveUp           uint64  `json:"gave_up"`           // packets abandoned: retries or budget spent, or a final 4xx
	Unfinished       uint64  `json:"unfinished"`        // packets still unanswered when the run stopped
	MessagesAccepted uint64  `json:"messages_accepted"` // messages in accepted packets
	DurationS        float64 `json:"duration_s"`
	RatePPS          float64 `json:"rate_pps"` // accepted packets per second
	// Response latency of each answered attempt. Min, mean and max are exact; the
	// percentiles are read from a histogram, within 1.6 %.
	MinMs  float64 `json:"min_ms"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P95Ms  float64 `json:"p95_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
	// StatusCodes counts answers by HTTP status ("202": n, "503": n); attempts
	// without an answer (connection errors, timeouts) are only in OtherErrors.
	StatusCodes map[string]uint64 `json:"status_codes"`
}

// AcceptRatio is the fraction of sent packets that were finally accepted; 0 when
// nothing was sent.
func (r *Report) AcceptRatio() float64 {
	if r.Sent == 0 {
		return 0
	}
	return float64(r.Accepted) / float64(r.Sent)
}

// WriteJSON writes the report as one JSON object on one line.
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteText writes the report for a person.
func (r *Report) WriteText(w io.Writer) error {
	b := make([]byte, 0, 512)
	line := func(name string, v uint64) {
		b = append(b, name...)
		b = strconv.AppendUint(b, v, 10)
		b = append(b, '\n')
	}
	b = append(b, "duration         "...)
	b = strconv.AppendFloat(b, r.DurationS, 'f', 3, 64)
	b = append(b, " s\n"...)
	line("sent             ", r.Sent)
	line("accepted         ", r.Accepted)
	b = append(b, "accept ratio     "...)
	b = strconv.AppendFloat(b, r.AcceptRatio(), 'f', 4, 64)
	b = append(b, '\n')
	line("messages         ", r.MessagesAccepted)
	line("rejected 503     ", r.Rejected503)
	line("rejected 429     ", r.Rejected429)
	line("other errors     ", r.OtherErrors)
	line("retries          ", r.Retries)
	line("gave up          ", r.GaveUp)
	line("unfinished       ", r.Unfinished)
	b = append(b, "rate             "...)
	b = strconv.AppendFloat(b, r.RatePPS, 'f', 1, 64)
	b = append(b, " packets/s\n"...)
	for _, l := range []struct {
		label string
		ms    float64
	}{
		{"latency          min ", r.MinMs}, {"  mean ", r.MeanMs}, {"  max ", r.MaxMs},
		{"\n                 p50 ", r.P50Ms}, {"  p90 ", r.P90Ms}, {"  p95 ", r.P95Ms},
		{"  p99 ", r.P99Ms}, {"  p99.9 ", r.P999Ms},
	} {
		b = append(b, l.label...)
		b = appendMs(b, l.ms)
	}
	b = append(b, "\nstatus codes    "...)
	codes := make([]string, 0, len(r.StatusCodes))
	for code := range r.StatusCodes {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	for _, code := range codes {
		b = append(b, ' ')
		b = append(b, code...)
		b = append(b, ": "...)
		b = strconv.AppendUint(b, r.StatusCodes[code], 10)
	}
	if len(codes) == 0 {
		b = append(b, " none"...)
	}
	b = append(b, '\n')
	_, err := w.Write(b)
	return err
}

func appendMs(b []byte, ms float64) []byte {
	b = strconv.AppendFloat(b, ms, 'f', 3, 64)
	return append(b, " ms"...)
}

// Statuses outside [minStatus, maxStatus] are counted as maxStatus+1's bucket,
// reported as "other".
const (
	minStatus = 100
	maxStatus = 599
)

// stats are one connection's counters. Only the owning goroutine writes them; they
// are atomics so the progress line and the retry budget can read them mid-run.
// Each connection allocates its own (the histogram alone is 14 KB), so owners never
// share a cache line.
type stats struct {
	sent, accepted, rejected503, rejected429, otherErrors atomic.Uint64
	retries, gaveUp, unfinished, messagesAccepted         atomic.Uint64
	latency                                               histogram
	latSumUs, latMaxUs                                    atomic.Uint64
	latMinUs                                              atomic.Uint64 // +1, so that 0 means none yet
	statuses                                              [maxStatus - minStatus + 2]atomic.Uint64
}

// answered records an answer's latency and status. Only the owner writes, so
// the plain load-compare-store of min and max is exact.
func (s *stats) answered(us uint64, status int) {
	s.latency.record(us)
	s.latSumUs.Add(us)
	if m := s.latMinUs.Load(); m == 0 || us+1 < m {
		s.latMinUs.Store(us + 1)
	}
	if us > s.latMaxUs.Load() {
		s.latMaxUs.Store(us)
	}
	i := status - minStatus
	if i < 0 || i > maxStatus-minStatus {
		i = len(s.statuses) - 1
	}
	s.statuses[i].Add(1)
}

// totals is a plain sum of stats.
type totals struct {
	sent, accepted, rejected503, rejected429, otherErrors uint64
	retries, gaveUp, unfinished, messagesAccepted         uint64
	latSumUs, latMaxUs, latMinUs                          uint64 // latMinUs +1 as in stats
	statuses                                              [maxStatus - minStatus + 2]uint64
}

func (t *totals) add(s *stats) {
	t.sent += s.sent.Load()
	t.accepted += s.accepted.Load()
	t.rejected503 += s.rejected503.Load()
	t.rejected429 += s.rejected429.Load()
	t.otherErrors += s.otherErrors.Load()
	t.retries += s.retries.Load()
	t.gaveUp += s.gaveUp.Load()
	t.unfinished += s.unfinished.Load()
	t.messagesAccepted += s.messagesAccepted.Load()
	t.latSumUs += s.latSumUs.Load()
	t.latMaxUs = max(t.latMaxUs, s.latMaxUs.Load())
	if m := s.latMinUs.Load(); m != 0 && (t.latMinUs == 0 || m < t.latMinUs) {
		t.latMinUs = m
	}
	for i := range t.statuses {
		t.statuses[i] += s.statuses[i].Load()
	}
}

func buildReport(t totals, lat *histSnapshot, elapsed time.Duration) Report {
	r := Report{
		Sent:             t.sent,
		Accepted:         t.accepted,
		Rejected503:      t.rejected503,
		Rejected429:      t.rejected429,
		OtherErrors:      t.otherErrors,
		Retries:          t.retries,
		GaveUp:           t.gaveUp,
		Unfinished:       t.unfinished,
		MessagesAccepted: t.messagesAccepted,
		DurationS:        round3(elapsed.Seconds()),
		P50Ms:            round3(lat.quantileMs(0.50)),
		P90Ms:            round3(lat.quantileMs(0.90)),
		P95Ms:            round3(lat.quantileMs(0.95)),
		P99Ms:            round3(lat.quantileMs(0.99)),
		P999Ms:           round3(lat.quantileMs(0.999)),
		MaxMs:            round3(float64(t.latMaxUs) / 1000),
		StatusCodes:      map[string]uint64{},
	}
	if t.latMinUs > 0 {
		r.MinMs = round3(float64(t.latMinUs-1) / 1000)
	}
	if n := lat.total(); n > 0 {
		r.MeanMs = round3(float64(t.latSumUs) / float64(n) / 1000)
	}
	for i, n := range t.statuses {
		if n == 0 {
			continue
		}
		code := "other"
		if i < len(t.statuses)-1 {
			code = strconv.Itoa(minStatus + i)
		}
		r.StatusCodes[code] = n
	}
	if s := elapsed.Seconds(); s > 0 {
		r.RatePPS = math.Round(float64(t.accepted)/s*10) / 10
	}
	return r
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
