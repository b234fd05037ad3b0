package console

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func snap(sec int, accepted, r503, deliveredA, deliveredB int64, lat []int64) Snapshot {
	return Snapshot{
		Time: t0.Add(time.Duration(sec) * time.Second), AcceptedPackets: accepted, Responses503: r503,
		LatencyBounds: []float64{0.001, 0.002, 0.004}, LatencyCounts: lat,
		Analyzers: []Analyzer{
			{Name: "a", State: "healthy", Weight: 3, DeliveredMessages: deliveredA, DeliveredPackets: deliveredA},
			{Name: "b", State: "open", Reason: "connect refused", Weight: 1, DeliveredMessages: deliveredB, DeliveredPackets: deliveredB},
		},
	}
}

func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-9 {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// Rates and latency quantiles come from the difference of two snapshots.
func TestRatesFromTwoSnapshots(t *testing.T) {
	var r Ring
	first := r.Add(snap(0, 100, 5, 30, 10, []int64{0, 0, 0, 0}))
	if first.AcceptedPerS != 0 || first.P50Ms != nil {
		t.Fatalf("the first sample has no previous one, so no rate: %+v", first)
	}
	// 2 s later: 400 more accepted, 10 more 503; 100 answers, 50 in (1,2] ms and
	// 50 in (2,4] ms.
	s := r.Add(snap(2, 500, 15, 90, 30, []int64{0, 50, 50, 0}))
	near(t, "accepted/s", s.AcceptedPerS, 200)
	near(t, "503/s", s.R503PerS, 5)
	if s.P50Ms == nil || s.P99Ms == nil {
		t.Fatal("no quantiles")
	}
	near(t, "p50 ms", *s.P50Ms, 2)    // rank 50: the top of bucket (1,2]
	near(t, "p99 ms", *s.P99Ms, 3.96) // rank 99: 49/50 of the way through (2,4]
	a, b := s.Analyzers[0], s.Analyzers[1]
	near(t, "a delivered/s", a.DeliveredPerS, 30)
	near(t, "a weight share", a.WeightShare, 0.75)
	near(t, "a share all", a.ShareAll, 0.75)
	near(t, "b share 10s", b.Share10s, 0.25) // window = both samples: (30-10)/(120-40) ... of the delta
	if b.State != "open" || b.Reason != "connect refused" {
		t.Errorf("state and reason not carried: %+v", b)
	}
}

// The 10 s share looks only at the last ShareWindow samples.
func TestShareWindow(t *testing.T) {
	var r Ring
	var s Sample
	for i := 0; i <= ShareWindow; i++ { // a takes everything for ShareWindow seconds
		s = r.Add(snap(i, 0, 0, int64(100*i), 0, nil))
	}
	near(t, "a share 10s", s.Analyzers[0].Share10s, 1)
	for i := ShareWindow + 1; i <= 3*ShareWindow; i++ { // then b takes everything
		s = r.Add(snap(i, 0, 0, int64(100*ShareWindow), int64(100*(i-ShareWindow)), nil))
	}
	near(t, "b share 10s", s.Analyzers[1].Share10s, 1)
	near(t, "b share all", s.Analyzers[1].ShareAll, 2.0/3)
}

// The ring never holds more than RingSize samples; since= returns only newer ones.
func TestRingBounded(t *testing.T) {
	var r Ring
	for i := 0; i < 3*RingSize+7; i++ {
		r.Add(snap(i, int64(i), 0, 0, 0, nil))
	}
	all := r.Since(0)
	if len(all.Samples) != RingSize || all.Seq != 3*RingSize+7 {
		t.Fatalf("kept %d samples, seq %d; want %d, %d", len(all.Samples), all.Seq, RingSize, 3*RingSize+7)
	}
	if all.Samples[0].Seq != all.Seq-RingSize+1 || all.Samples[RingSize-1].Seq != all.Seq {
		t.Fatalf("not the newest, oldest first: %d..%d", all.Samples[0].Seq, all.Samples[RingSize-1].Seq)
	}
	for i := 1; i < len(all.Samples); i++ {
		if all.Samples[i].Seq != all.Samples[i-1].Seq+1 {
			t.Fatalf("not in order at %d", i)
		}
	}
	if n := len(r.Since(all.Seq - 3).Samples); n != 3 {
		t.Fatalf("since seq-3 gave %d samples, want 3", n)
	}
	if n := len(r.Since(all.Seq).Samples); n != 0 {
		t.Fatalf("since seq gave %d samples, want 0", n)
	}
	// What the endpoint writes is the same data, from the encodings kept at Add.
	for _, since := range []uint64{0, all.Seq - 3, all.Seq} {
		var got Data
		if err := json.Unmarshal(r.AppendSince(nil, since, time.Second), &got); err != nil {
			t.Fatal(err)
		}
		want := r.Since(since)
		want.IntervalMs = 1000
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if string(g) != string(w) {
			t.Fatalf("since %d: AppendSince gave\n%s\nwant\n%s", since, g, w)
		}
	}
}

// GET /console/data answers the documented JSON shape, and one sampler feeds
// every viewer.
func TestDataEndpoint(t *testing.T) {
	calls := make(chan struct{}, 100)
	src := func() Snapshot {
		calls <- struct{}{}
		return snap(len(calls), 10, 0, 1, 1, []int64{1, 0, 0, 0})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := New(ctx, src)
	get := func(path string) (*httptest.ResponseRecorder, map[string]any) {
		w := httptest.NewRecorder()
		c.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		var m map[string]any
		if w.Code == 200 && strings.HasPrefix(path, "/console/data") {
			if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
				t.Fatalf("%s: %v: %s", path, err, w.Body)
			}
		}
		return w, m
	}
	for range 5 { // five viewers at once: still one sample taken at start
		get("/console/data")
	}
	if len(calls) != 1 {
		t.Fatalf("source called %d times for 5 viewers, want 1 (one sampler)", len(calls))
	}
	w, m := get("/console/data?since=0")
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	for _, k := range []string{"seq", "interval_ms", "samples"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in %v", k, m)
		}
	}
	smp := m["samples"].([]any)[0].(map[string]any)
	for _, k := range []string{"seq", "t", "accepted_per_s", "r503_per_s", "r429_per_s", "dropped", "p50_ms", "p99_ms", "analyzers"} {
		if _, ok := smp[k]; !ok {
			t.Errorf("no %q in a sample: %v", k, smp)
		}
	}
	an := smp["analyzers"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "url", "state", "weight", "effective_weight", "limiting", "weight_share", "share_10s", "share_all", "delivered_per_s", "queued", "in_flight", "retries", "dropped", "failures"} {
		if _, ok := an[k]; !ok {
			t.Errorf("no %q in an analyzer: %v", k, an)
		}
	}
	if w, _ := get("/console/data?since=x"); w.Code != 400 {
		t.Errorf("since=x: %d, want 400", w.Code)
	}
	// The sampler adds one a second: await the next (deadline, not a fixed sleep).
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, m := get("/console/data?since=1"); len(m["samples"].([]any)) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no second sample within 5 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range []string{"/console/console.js", "/console/console.css"} {
		if w, _ := get(p); w.Code != 200 || w.Body.Len() == 0 {
			t.Errorf("%s: %d", p, w.Code)
		}
	}
	pw := httptest.NewRecorder()
	c.ServePage(pw, httptest.NewRequest("GET", "/", nil))
	if !strings.Contains(pw.Body.String(), `<table id="analyzers">`) || !strings.Contains(pw.Header().Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("page: %d %q", pw.Code, pw.Header())
	}
}

// BenchmarkData is one viewer's poll of the whole ring (300 samples of 8
// analyzers): the console's cost per viewer per second at most. It runs on the
// admin listener's goroutine, off the data path.
func BenchmarkData(b *testing.B) {
	c := New(context.Background(), nil)
	c.once.Do(func() {}) // no sampler: the ring is filled below
	for i := 0; i < RingSize; i++ {
		s := snap(i, int64(i*1000), 0, int64(i*300), int64(i*100), []int64{int64(i), 1, 2, 3})
		for k := 2; k < 8; k++ {
			s.Analyzers = append(s.Analyzers, Analyzer{Name: "x" + string(rune('a'+k)), State: "healthy", Weight: 1, Failures: map[string]int64{"connect": 0, "timeout": 0}})
		}
		c.ring.Add(s)
	}
	for _, q := range []string{"since=0", "since=299"} {
		b.Run(q, func(b *testing.B) {
			r := httptest.NewRequest("GET", "/console/data?"+q, nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				c.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
			}
		})
	}
}

// BenchmarkAdd is the sampler's own work once a second, besides the snapshot:
// deriving a sample of 8 analyzers and encoding it.
func BenchmarkAdd(b *testing.B) {
	var r Ring
	s := snap(0, 0, 0, 0, 0, []int64{1, 2, 3, 4})
	for k := 2; k < 8; k++ {
		s.Analyzers = append(s.Analyzers, Analyzer{Name: "x" + string(rune('a'+k)), State: "healthy", Weight: 1, Failures: map[string]int64{"connect": 0, "timeout": 0}})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		s.Time = t0.Add(time.Duration(i) * time.Second)
		r.Add(s)
	}
}
