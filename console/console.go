// Package console is the distributor's live web console: a small page embedded in
// the binary (plain JS and SVG, nothing to build) and the JSON it polls.
//
// One goroutine samples the distributor once a second into a fixed ring of 300
// samples (5 minutes) shared by every viewer; a viewer's poll only copies samples
// out of the ring. Nothing here runs on the data path: a sample is the same
// snapshot a /metrics scrape takes, and the sampler starts with the first request
// for the page or its data, so a distributor nobody looks at pays nothing.
package console

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

//go:embed static
var static embed.FS

// RingSize is how many samples the ring keeps: 5 minutes at one a second.
const RingSize = 300

// ShareWindow is how many samples back the recent message share looks (10 s).
const ShareWindow = 10

// Snapshot is what the sampler reads from the distributor: cumulative counters at
// one instant, and the analyzers as the current view shows them.
type Snapshot struct {
	Time             time.Time
	AcceptedPackets  int64
	AcceptedMessages int64
	Responses503     int64
	Responses429     int64
	Dropped          int64
	// LatencyBounds are the request-duration histogram's upper bounds in seconds;
	// LatencyCounts its observations per bucket (not cumulative), one more than
	// the bounds (the last is +Inf).
	LatencyBounds []float64
	LatencyCounts []int64
	Analyzers     []Analyzer
}

// Analyzer is one analyzer in a Snapshot (counters cumulative).
type Analyzer struct {
	Name              string           `json:"name"`
	URL               string           `json:"url"`
	State             string           `json:"state"`
	Reason            string           `json:"reason,omitempty"`
	Weight            float64          `json:"weight"`
	EffectiveWeight   float64          `json:"effective_weight"`
	DeliveredPackets  int64            `json:"-"`
	DeliveredMessages int64            `json:"delivered_messages"`
	Queued            int64            `json:"queued"`
	InFlight          int64            `json:"in_flight"`
	Retries           int64            `json:"retries"`
	Dropped           int64            `json:"dropped"`
	Failures          map[string]int64 `json:"failures"`
	// Limiting: this analyzer's backlog is what fills the distributor's buffer
	// (distributor_limiting_analyzer).
	Limiting bool `json:"limiting"`
}

// Source takes one Snapshot; the sampler calls it once a second.
type Source func() Snapshot

// Sample is one second of the console's data: rates over the second before it and
// the state at its end.
type Sample struct {
	Seq          uint64  `json:"seq"`
	UnixMs       int64   `json:"t"`
	AcceptedPerS float64 `json:"accepted_per_s"`
	R503PerS     float64 `json:"r503_per_s"`
	R429PerS     float64 `json:"r429_per_s"`
	Dropped      int64   `json:"dropped"`
	// P50Ms and P99Ms are request-handling latency quantiles over the second, from
	// the histogram's bucket counts (interpolated in the bucket); nil when no
	// request was answered.
	P50Ms     *float64         `json:"p50_ms"`
	P99Ms     *float64         `json:"p99_ms"`
	Analyzers []AnalyzerSample `json:"analyzers"`
}

// AnalyzerSample is one analyzer in a Sample.
type AnalyzerSample struct {
	Analyzer
	// WeightShare is the configured weight over the sum of the listed analyzers'.
	WeightShare float64 `json:"weight_share"`
	// Share10s and ShareAll are its share of delivered messages over the last
	// ShareWindow seconds and since start.
	Share10s      float64 `json:"share_10s"`
	ShareAll      float64 `json:"share_all"`
	DeliveredPerS float64 `json:"delivered_per_s"`
}

// Data is the answer of GET /console/data?since=seq.
type Data struct {
	Seq        uint64   `json:"seq"` // the newest sample's seq (0: none yet)
	IntervalMs int64    `json:"interval_ms"`
	Samples    []Sample `json:"samples"` // those after since, oldest first, at most RingSize
}

// Ring keeps the last RingSize samples, each also encoded once as JSON when it is
// added (so a viewer's poll copies bytes and encodes nothing), and the last
// ShareWindow+1 snapshots the next samples are derived from.
type Ring struct {
	mu      sync.Mutex
	samples [RingSize]Sample
	enc     [RingSize][]byte
	snaps   [ShareWindow + 1]Snapshot // snapshot of sample seq q at (q-1) % len
	n       uint64                    // samples ever added; the newest has seq n
}

// Add derives a sample from snap and the previous ones and keeps it.
func (r *Ring) Add(snap Snapshot) Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	const ns = ShareWindow + 1
	var prev, back *Snapshot
	if r.n > 0 {
		prev = &r.snaps[(r.n-1)%ns]
		k := min(uint64(ShareWindow), r.n)
		back = &r.snaps[(r.n-k)%ns] // seq n-k+1: ShareWindow samples before the new one
	}
	s := derive(snap, prev, back)
	r.n++
	s.Seq = r.n
	enc, err := json.Marshal(s)
	if err != nil { // a NaN or Inf: nothing in derive makes one
		enc = []byte(`{"seq":` + strconv.FormatUint(s.Seq, 10) + `}`)
	}
	r.samples[(r.n-1)%RingSize] = s
	r.enc[(r.n-1)%RingSize] = enc
	r.snaps[(r.n-1)%ns] = snap
	return s
}

// first is the oldest seq to return after seq.
func (r *Ring) first(seq uint64) uint64 {
	first := uint64(1)
	if r.n > RingSize {
		first = r.n - RingSize + 1
	}
	return max(first, seq+1)
}

// Since returns the samples after seq (all kept ones when seq is 0 or too old).
func (r *Ring) Since(seq uint64) Data {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := Data{Seq: r.n, Samples: []Sample{}}
	for q := r.first(seq); q <= r.n; q++ {
		d.Samples = append(d.Samples, r.samples[(q-1)%RingSize])
	}
	return d
}

// AppendSince appends Since(seq) as JSON, from the samples' encodings.
func (r *Ring) AppendSince(b []byte, seq uint64, interval time.Duration) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	first, size := r.first(seq), 64
	for q := first; q <= r.n; q++ {
		size += len(r.enc[(q-1)%RingSize]) + 1
	}
	b = slices.Grow(b, size)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.n, 10)
	b = append(b, `,"interval_ms":`...)
	b = strconv.AppendInt(b, interval.Milliseconds(), 10)
	b = append(b, `,"samples":[`...)
	for q := first; q <= r.n; q++ {
		if q > first {
			b = append(b, ',')
		}
		b = append(b, r.enc[(q-1)%RingSize]...)
	}
	return append(b, "]}\n"...)
}

// derive computes a sample from snap, the snapshot a second before (prev) and
// the one ShareWindow samples before (back); either may be nil at start.
func derive(snap Snapshot, prev, back *Snapshot) Sample {
	s := Sample{UnixMs: snap.Time.UnixMilli(), Dropped: snap.Dropped, Analyzers: make([]AnalyzerSample, 0, len(snap.Analyzers))}
	var dt float64
	if prev != nil {
		dt = snap.Time.Sub(prev.Time).Seconds()
	}
	rate := func(now, before int64) float64 {
		if dt <= 0 || now < before {
			return 0
		}
		return float64(now-before) / dt
	}
	if prev != nil {
		s.AcceptedPerS = rate(snap.AcceptedPackets, prev.AcceptedPackets)
		s.R503PerS = rate(snap.Responses503, prev.Responses503)
		s.R429PerS = rate(snap.Responses429, prev.Responses429)
		if len(prev.LatencyCounts) == len(snap.LatencyCounts) {
			delta := make([]int64, len(snap.LatencyCounts))
			for i := range delta {
				delta[i] = snap.LatencyCounts[i] - prev.LatencyCounts[i]
			}
			s.P50Ms = quantileMs(snap.LatencyBounds, delta, 0.50)
			s.P99Ms = quantileMs(snap.LatencyBounds, delta, 0.99)
		}
	}
	var wsum float64
	var all, recent int64
	for _, a := range snap.Analyzers {
		wsum += a.Weight
		all += a.DeliveredMessages
		recent += a.DeliveredMessages - before(back, a.Name, func(b *Analyzer) int64 { return b.DeliveredMessages })
	}
	for _, a := range snap.Analyzers {
		as := AnalyzerSample{Analyzer: a}
		if wsum > 0 {
			as.WeightShare = a.Weight / wsum
		}
		if all > 0 {
			as.ShareAll = float64(a.DeliveredMessages) / float64(all)
		}
		if recent > 0 {
			as.Share10s = float64(a.DeliveredMessages-before(back, a.Name, func(b *Analyzer) int64 { return b.DeliveredMessages })) / float64(recent)
		}
		if prev != nil {
			as.DeliveredPerS = rate(a.DeliveredPackets, before(prev, a.Name, func(b *Analyzer) int64 { return b.DeliveredPackets }))
		}
		s.Analyzers = append(s.Analyzers, as)
	}
	return s
}

// before is field f of the analyzer named name in snap, 0 when snap is nil or
// does not list it (it was added since).
func before(snap *Snapshot, name string, f func(*Analyzer) int64) int64 {
	if snap == nil {
		return 0
	}
	for i := range snap.Analyzers {
		if snap.Analyzers[i].Name == name {
			return f(&snap.Analyzers[i])
		}
	}
	return 0
}

// quantileMs is the q-quantile of a histogram (counts per bucket, the last +Inf)
// in milliseconds, interpolated linearly inside its bucket; a quantile in the +Inf
// bucket is the last bound. nil when the histogram is empty.
func quantileMs(bounds []float64, counts []int64, q float64) *float64 {
	var total int64
	for _, c := range counts {
		total += c
	}
	if total <= 0 || len(counts) != len(bounds)+1 {
		return nil
	}
	rank := q * float64(total)
	var cum float64
	for i, c := range counts {
		if c <= 0 {
			continue
		}
		if cum+float64(c) >= rank {
			var v float64
			if i == len(bounds) {
				v = bounds[len(bounds)-1]
			} else {
				lo := 0.0
				if i > 0 {
					lo = bounds[i-1]
				}
				v = lo + (bounds[i]-lo)*(rank-cum)/float64(c)
			}
			ms := math.Round(v*1e6) / 1e3 // µs precision
			return &ms
		}
		cum += float64(c)
	}
	return nil
}

// Console serves the page and its data; New makes one per distributor.
type Console struct {
	ctx      context.Context
	src      Source
	interval time.Duration
	ring     Ring
	once     sync.Once
	assets   http.Handler
}

// New returns a console reading src. Its sampler starts at the first request and
// stops when ctx ends.
func New(ctx context.Context, src Source) *Console {
	sub, _ := fs.Sub(static, "static")
	return &Console{ctx: ctx, src: src, interval: time.Second, assets: http.StripPrefix("/console/", http.FileServerFS(sub))}
}

// start runs the one sampler goroutine, once.
func (c *Console) start() {
	c.once.Do(func() {
		c.ring.Add(c.src())
		go func() {
			t := time.NewTicker(c.interval)
			defer t.Stop()
			for {
				select {
				case <-c.ctx.Done():
					return
				case <-t.C:
					c.ring.Add(c.src())
				}
			}
		}()
	})
}

// ServePage is GET /: the console's page.
func (c *Console) ServePage(w http.ResponseWriter, r *http.Request) {
	c.start()
	page, _ := static.ReadFile("static/index.html")
	security(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(page)
}

// ServeHTTP is GET /console/...: the data (/console/data?since=seq) and the
// page's script and style sheet.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	security(w)
	if r.URL.Path != "/console/data" {
		c.assets.ServeHTTP(w, r)
		return
	}
	c.start()
	since, err := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
	if err != nil && r.URL.Query().Has("since") {
		http.Error(w, `{"error":"since must be a sample number"}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(c.ring.AppendSince(nil, since, c.interval))
}

// security sets headers that keep the page to its own origin: no inline script,
// no framing by another site.
func security(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}
