package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAnalyzer is a plain net/http analyzer that takes one packet per POST, the
// seed's contract, and records what it got by packet_id. It can be stopped and
// started again on the same address.
type fakeAnalyzer struct {
	srv      *httptest.Server
	addr     string
	handler  http.Handler
	mu       sync.Mutex
	ids      map[string]int
	messages int
	packets  int
	status   atomic.Int32 // answer for /ingest; 0 means 200
	health   atomic.Int32 // answer for /health; 0 means 200
	delay    atomic.Int64 // ns before answering /ingest
	batch    bool
	batches  atomic.Int64
	lastAt   atomic.Int64 // time.Now().UnixNano() when the last packet was recorded
}

type testPacket struct {
	ID       string            `json:"packet_id"`
	Messages []json.RawMessage `json:"messages"`
}

func newFakeAnalyzer(t *testing.T, batch bool) *fakeAnalyzer {
	f := &fakeAnalyzer{ids: map[string]int{}, batch: batch}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if f.batch {
			w.Header().Set("Sluice-Batch", "1")
		}
		if s := f.health.Load(); s != 0 {
			w.WriteHeader(int(s))
		}
		_, _ = io.WriteString(w, `{"status":"healthy"}`)
	})
	record := func(pkts []testPacket) {
		f.mu.Lock()
		for _, p := range pkts {
			f.ids[p.ID]++
			f.messages += len(p.Messages)
			f.packets++
		}
		f.lastAt.Store(time.Now().UnixNano())
		f.mu.Unlock()
	}
	mux.HandleFunc("POST /ingest", func(w http.ResponseWriter, r *http.Request) {
		if d := f.delay.Load(); d > 0 {
			time.Sleep(time.Duration(d)) // the analyzer is slow: that is the fault under test
		}
		if s := f.status.Load(); s != 0 {
			w.WriteHeader(int(s))
			return
		}
		var p testPacket
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		record([]testPacket{p})
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("POST /ingest/batch", func(w http.ResponseWriter, r *http.Request) {
		if !f.batch {
			http.NotFound(w, r)
			return
		}
		if s := f.status.Load(); s != 0 {
			w.WriteHeader(int(s))
			return
		}
		var ps []testPacket
		if err := json.NewDecoder(r.Body).Decode(&ps); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		f.batches.Add(1)
		record(ps)
		_, _ = io.WriteString(w, `{"accepted":`+strconv.Itoa(len(ps))+`}`)
	})
	f.handler = mux
	f.srv = httptest.NewServer(mux)
	f.addr = f.srv.Listener.Addr().String()
	t.Cleanup(func() { f.stop() })
	return f
}

// stop kills the analyzer: listener and connections closed.
func (f *fakeAnalyzer) stop() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

// start brings a stopped analyzer back on its old address.
func (f *fakeAnalyzer) start(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ { // the old socket may linger for a moment
		if ln, err = net.Listen("tcp", f.addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("restart analyzer on %s: %v", f.addr, err)
	}
	srv := httptest.NewUnstartedServer(f.handler)
	srv.Listener = ln
	srv.Start()
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
}

func (f *fakeAnalyzer) url() string { return "http://" + f.addr }

func (f *fakeAnalyzer) counts() (packets, messages int, ids map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids = make(map[string]int, len(f.ids))
	for k, v := range f.ids {
		ids[k] = v
	}
	return f.packets, f.messages, ids
}

// startDistributor runs a distributor on loopback ports chosen by the kernel.
func startDistributor(t *testing.T, analyzers string, tweak func(*Config)) *Server {
	t.Helper()
	logTo := io.Discard
	if testing.Verbose() {
		logTo = os.Stderr
	}
	return startDistributorLog(t, analyzers, tweak, slog.New(slog.NewTextHandler(logTo, nil)))
}

// startDistributorLog is startDistributor logging to log. analyzers "" configures
// none (tweak sets ANALYZERS_DNS then).
func startDistributorLog(t *testing.T, analyzers string, tweak func(*Config), log *slog.Logger) *Server {
	t.Helper()
	cfg := DefaultConfig()
	if analyzers != "" {
		specs, err := ParseAnalyzers(analyzers)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Analyzers = specs
	}
	cfg.Port = 0
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.Loops = 2
	cfg.HealthInterval = 200 * time.Millisecond
	cfg.SlowStart = 0
	if tweak != nil {
		tweak(&cfg)
	}
	return startServer(t, cfg, log)
}

// startServer starts a distributor with cfg and shuts it down when the test ends.
func startServer(t *testing.T, cfg Config, log *slog.Logger) *Server {
	t.Helper()
	srv, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := contextWithTimeout(5 * time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

func ingestURL(srv *Server) string {
	_, port, _ := net.SplitHostPort(srv.Addr())
	return "http://127.0.0.1:" + port
}

// packetBody builds a seed-format packet with n messages.
func packetBody(id string, n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"emitter_id":"test","packet_id":"` + id + `","messages":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"timestamp":%d,"level":"INFO","message":"message %d of %s","metadata":{"service":"test"}}`, 1640995200000+i, i, id)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// sender posts packets over one keep-alive connection and records what was accepted.
type sender struct {
	client   *http.Client
	url      string
	mu       sync.Mutex
	accepted map[string]int // id -> messages
	statuses map[int]int
	tolerant bool // transport errors are expected (the server is stopping): count, don't fail
	errors   atomic.Int64
}

func newSender(url string, conns int) *sender {
	return &sender{
		client:   &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}},
		url:      url,
		accepted: map[string]int{},
		statuses: map[int]int{},
	}
}

func (s *sender) send(t *testing.T, id string, n int) (int, http.Header) {
	resp, err := s.client.Post(s.url+"/ingest", "application/json", bytes.NewReader(packetBody(id, n)))
	if err != nil {
		s.errors.Add(1)
		if !s.tolerant {
			t.Errorf("post %s: %v", id, err)
		}
		return 0, nil
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	s.mu.Lock()
	s.statuses[resp.StatusCode]++
	if resp.StatusCode == 202 {
		s.accepted[id] = n
		want := `{"status":"accepted","packet_id":"` + id + `"}`
		if string(body) != want {
			t.Errorf("202 body = %s, want %s", body, want)
		}
	}
	s.mu.Unlock()
	return resp.StatusCode, resp.Header
}

// waitSettled waits until nothing is queued or in flight, and returns the stats.
func waitSettled(t *testing.T, srv *Server, within time.Duration) Stats {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := srv.Snapshot()
		tot := st.Total()
		if tot.Queued+tot.InFlight == 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled after %v: queued %d, in flight %d", within, tot.Queued, tot.InFlight)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
}

// settledNothingLost waits until nothing is queued or in flight, then checks the
// accounting invariant and that no accepted packet was dropped.
func settledNothingLost(t *testing.T, srv *Server, within time.Duration) Stats {
	t.Helper()
	st := waitSettled(t, srv, within)
	checkInvariant(t, st)
	if tot := st.Total(); tot.DroppedTotal() != 0 {
		t.Errorf("%d accepted packets dropped", tot.DroppedTotal())
	}
	return st
}

func checkInvariant(t *testing.T, st Stats) {
	t.Helper()
	tot := st.Total()
	if got := tot.DeliveredPackets + tot.Queued + tot.InFlight + tot.DroppedTotal() + tot.LeftInSpool; got != st.AcceptedPackets {
		t.Fatalf("accounting: accepted %d != delivered %d + queued %d + in flight %d + dropped %d + left in spool %d",
			st.AcceptedPackets, tot.DeliveredPackets, tot.Queued, tot.InFlight, tot.DroppedTotal(), tot.LeftInSpool)
	}
	for i, d := range st.Dests {
		if d.RoutedPackets != d.DeliveredPackets+d.Queued+d.InFlight+d.DroppedTotal()+d.LeftInSpool+d.Rerouted {
			t.Fatalf("analyzer %d accounting: routed %d != delivered %d + queued %d + in flight %d + dropped %d + rerouted %d",
				i, d.RoutedPackets, d.DeliveredPackets, d.Queued, d.InFlight, d.DroppedTotal(), d.Rerouted)
		}
	}
}

// checkExactlyOnce compares what the analyzers got with what was accepted.
func checkDelivered(t *testing.T, accepted map[string]int, fakes []*fakeAnalyzer, allowDuplicates bool) {
	t.Helper()
	got := map[string]int{}
	for _, f := range fakes {
		_, _, ids := f.counts()
		for id, n := range ids {
			got[id] += n
		}
	}
	missing, doubled := 0, 0
	for id := range accepted {
		switch n := got[id]; {
		case n == 0:
			missing++
		case n > 1:
			doubled++
		}
	}
	extra := 0
	for id := range got {
		if _, ok := accepted[id]; !ok {
			extra++
		}
	}
	if missing > 0 || extra > 0 || (!allowDuplicates && doubled > 0) {
		t.Fatalf("delivery by packet_id: %d accepted, %d missing, %d doubled, %d never accepted but delivered", len(accepted), missing, doubled, extra)
	}
}

func joinAnalyzers(fakes []*fakeAnalyzer, weights ...float64) string {
	var parts []string
	for i, f := range fakes {
		parts = append(parts, f.url()+"="+strconv.FormatFloat(weights[i], 'f', -1, 64))
	}
	return strings.Join(parts, ",")
}

// The acceptance test: 0.5/0.3/0.2, 20,000 packets of 1..50 messages over 8
// keep-alive connections; message shares within 0.5 points; every accepted packet
// delivered exactly once.
func TestWeightedSplitEndToEnd(t *testing.T) {
	longScenario(t)
	for _, batch := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "batch"}[batch], func(t *testing.T) {
			fakes := []*fakeAnalyzer{newFakeAnalyzer(t, batch), newFakeAnalyzer(t, batch), newFakeAnalyzer(t, batch)}
			weights := []float64{0.5, 0.3, 0.2}
			// The split is under test, not failure handling: a generous answer
			// deadline keeps a starved CI machine from causing retries (and so
			// duplicates, which at-least-once delivery allows but this test counts).
			srv := startDistributor(t, joinAnalyzers(fakes, weights...), func(c *Config) { c.SenderTimeout = 10 * time.Second })
			waitBatch(t, srv, batch)
			packets, conns := int64(20000), 8
			if raceEnabled {
				packets = 4000
			}
			s := newSender(ingestURL(srv), conns)
			var wg sync.WaitGroup
			var next atomic.Int64
			for c := 0; c < conns; c++ {
				wg.Add(1)
				go func(c int) {
					defer wg.Done()
					rng := rand.New(rand.NewSource(int64(c)))
					for {
						i := next.Add(1)
						if i > packets {
							return
						}
						s.send(t, "p-"+strconv.FormatInt(i, 10), 1+rng.Intn(50))
					}
				}(c)
			}
			wg.Wait()
			if int64(s.statuses[202]) != packets {
				st := srv.Snapshot()
				t.Fatalf("statuses %v: want all %d accepted; rejected %v; analyzers %+v", s.statuses, packets, st.Rejected, st.Dests)
			}
			st := waitSettled(t, srv, 10*time.Second)
			checkInvariant(t, st)
			checkDelivered(t, s.accepted, fakes, false)
			total := 0
			for _, f := range fakes {
				_, m, _ := f.counts()
				total += m
			}
			for i, f := range fakes {
				_, m, _ := f.counts()
				share := float64(m) / float64(total)
				if d := share - weights[i]; d > 0.005 || d < -0.005 {
					t.Errorf("analyzer %d: message share %.4f, weight %.2f", i, share, weights[i])
				}
			}
			if batch && fakes[0].batches.Load() == 0 {
				t.Errorf("batch-capable analyzers got no batch requests")
			}
		})
	}
}

// waitBatch waits until the health probes have told every loop whether analyzers
// take batches, so the test measures the mode it names.
func waitBatch(t *testing.T, srv *Server, want bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok := true
		for _, m := range srv.View().Members {
			ok = ok && m.Batch == want
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("analyzers' batch capability never became %v", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Adversarial sizes on one connection: shares within 1 point.
func TestAdversarialSizesSingleConnection(t *testing.T) {
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	weights := []float64{0.5, 0.3, 0.2}
	srv := startDistributor(t, joinAnalyzers(fakes, weights...), func(c *Config) { c.SenderTimeout = 10 * time.Second })
	s := newSender(ingestURL(srv), 1)
	sizes := []int{}
	sizes = append(sizes, 200)
	for i := 0; i < 3000; i++ {
		sizes = append(sizes, 1)
	}
	for i := 0; i < 1000; i++ {
		sizes = append(sizes, []int{50, 1, 1}[i%3])
	}
	for i, n := range sizes {
		s.send(t, "a-"+strconv.Itoa(i), n)
	}
	st := waitSettled(t, srv, 10*time.Second)
	checkInvariant(t, st)
	checkDelivered(t, s.accepted, fakes, false)
	total := 0
	for _, n := range sizes {
		total += n
	}
	for i, f := range fakes {
		_, m, _ := f.counts()
		share := float64(m) / float64(total)
		if d := share - weights[i]; d > 0.01 || d < -0.01 {
			t.Errorf("analyzer %d: message share %.4f, weight %.2f", i, share, weights[i])
		}
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// longScenario skips t under -short: a failure scenario that runs for seconds of
// wall time (flapping, a slow analyzer, a long split). make test, and go test
// without -short, run it; -short keeps the inner loop under 90 s.
func longScenario(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("long scenario: skipped under -short (go test without -short, or make test, runs it)")
	}
}
