package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestEmitterLimitGCRA(t *testing.T) {
	l := newEmitterLimit(100, 5) // 100/s: one packet per 10 ms, 5 at once
	a, b := []byte("emitter-a"), []byte("emitter-b")
	now := int64(time.Hour)
	for i := 0; i < 5; i++ {
		if ok, _ := l.allow(a, now); !ok {
			t.Fatalf("burst packet %d refused", i+1)
		}
	}
	ok, wait := l.allow(a, now)
	if ok || wait < 1 {
		t.Fatalf("6th packet at once: ok=%v wait=%d, want refused with a wait of at least 1 s", ok, wait)
	}
	if ok, _ := l.allow(b, now); !ok {
		t.Fatalf("another emitter was charged for emitter-a")
	}
	if ok, _ := l.allow(a, now+int64(10*time.Millisecond)); !ok {
		t.Fatalf("one interval later a packet must pass")
	}
	// Over a long run the limit lets through rate × time (+ burst), no more.
	passed := 0
	for ts := int64(0); ts < int64(10*time.Second); ts += int64(time.Millisecond) {
		if ok, _ := l.allow([]byte("steady"), now+ts); ok {
			passed++
		}
	}
	if passed < 1000 || passed > 1000+5 {
		t.Fatalf("10 s at 1000 offers/s let %d through, want 1000..1005", passed)
	}
}

// An emitter over EMITTER_RATE_LIMIT gets 429 with Retry-After; others do not.
func TestEmitterRateLimit429(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", func(c *Config) {
		c.EmitterRate = 5
		c.EmitterBurst = 3
	})
	post := func(emitter, id string) *http.Response {
		body := strings.Replace(string(packetBody(id, 1)), `"emitter_id":"test"`, `"emitter_id":"`+emitter+`"`, 1)
		resp, err := http.Post(ingestURL(srv)+"/ingest", "application/json", bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp
	}
	codes := map[int]int{}
	var retryAfter string
	for i := 0; i < 10; i++ {
		r := post("noisy", "n-"+strconv.Itoa(i))
		codes[r.StatusCode]++
		if r.StatusCode == 429 {
			retryAfter = r.Header.Get("Retry-After")
		}
	}
	if codes[202] < 3 || codes[429] == 0 || codes[202]+codes[429] != 10 {
		t.Fatalf("noisy emitter: %v, want its burst of 3 (plus what 5/s refills) accepted and the rest 429", codes)
	}
	if n, err := strconv.Atoi(retryAfter); err != nil || n < 1 {
		t.Fatalf("429 Retry-After = %q, want whole seconds >= 1", retryAfter)
	}
	if r := post("quiet", "q-1"); r.StatusCode != 202 {
		t.Fatalf("another emitter got %d while the noisy one was limited", r.StatusCode)
	}
	st := srv.Snapshot()
	if st.Rejected[rejectRateLimited] != int64(codes[429]) {
		t.Fatalf("rate_limited counter %d, 429 answers %d", st.Rejected[rejectRateLimited], codes[429])
	}
}

// Saturation: slow analyzers and small queues. Every refusal is a 503 with
// Retry-After, the distributor stays up, nothing accepted is lost, and throughput
// comes back once the analyzers are fast again.
func TestSaturationThenRecovery(t *testing.T) {
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	for _, f := range fakes {
		f.delay.Store(int64(20 * time.Millisecond))
	}
	srv := startDistributor(t, joinAnalyzers(fakes, 0.5, 0.5), func(c *Config) {
		c.SenderTimeout = 2 * time.Second
		c.QueueSize = 40
		c.IngestBufferSize = 60
		c.UpstreamConns = 1
		c.PipelineDepth = 4
	})
	l := startLoad(t, srv, 8, "sat-", fixedSize(3))
	waitFor(t, "503s under saturation", 20*time.Second, func() bool { return l.rejects.Load() > 200 })
	if n := l.noRetry.Load(); n != 0 {
		t.Fatalf("%d 503 answers without Retry-After", n)
	}
	// The overload ends: analyzers are fast again.
	for _, f := range fakes {
		f.delay.Store(0)
	}
	base := srv.Snapshot().AcceptedPackets
	waitFor(t, "throughput to recover", 10*time.Second, func() bool { return srv.Snapshot().AcceptedPackets-base > 2000 })
	accepted := l.finish()
	st := settledNothingLost(t, srv, 20*time.Second)
	if st.Rejected[rejectFull]+st.Rejected[rejectQueueFull] == 0 {
		t.Errorf("no rejection counted as full or queue_full: %v", st.Rejected)
	}
	checkDelivered(t, accepted, fakes, true)
}

// The buffer limits hold for the whole distributor, not a 1/LOOPS part per loop: one
// keep-alive connection (so one loop) may fill each limit by itself. With two loops
// it got 5 of INGEST_BUFFER_SIZE=10 and 3 of PER_ANALYZER_QUEUE_SIZE=6 when each
// loop held half.
func TestLimitsAreWholeDistributor(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit func(*Config)
		want  int
	}{
		{"INGEST_BUFFER_SIZE", func(c *Config) { c.IngestBufferSize = 10 }, 10},
		{"PER_ANALYZER_QUEUE_SIZE", func(c *Config) { c.QueueSize = 6 }, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slow := newFakeAnalyzer(t, false)
			slow.delay.Store(int64(300 * time.Millisecond))
			srv := startDistributor(t, slow.url()+"=1", func(c *Config) {
				c.Loops = 2
				c.SenderTimeout = 5 * time.Second
				tc.limit(c)
			})
			s := newSender(ingestURL(srv), 1)
			var codes []int
			for i := 0; i < tc.want+2; i++ {
				code, _ := s.send(t, "w-"+strconv.Itoa(i), 1)
				codes = append(codes, code)
			}
			for i, code := range codes {
				if want := map[bool]int{true: 202, false: 503}[i < tc.want]; code != want {
					t.Fatalf("answers %v: POST %d got %d, want %d× 202 then 503", codes, i+1, code, tc.want)
				}
			}
			checkInvariant(t, waitSettled(t, srv, 10*time.Second))
		})
	}
}
