package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// capacityServer is a distributor that is not started: its controller is stepped
// by the test, and the budget's per-analyzer counts are set by it.
func capacityServer(t *testing.T, routing RoutingMode, log io.Writer) *Server {
	t.Helper()
	cfg := DefaultConfig()
	var err error
	if cfg.Analyzers, err = ParseAnalyzers("http://127.0.0.1:9001=1,http://127.0.0.1:9002=1,http://127.0.0.1:9003=1"); err != nil {
		t.Fatal(err)
	}
	cfg.Routing, cfg.IngestBufferSize = routing, 1000
	srv, err := New(cfg, slog.New(slog.NewTextHandler(log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	answerProbes(srv)
	return srv
}

// setHeld sets what the budget says each analyzer holds, and the total.
func setHeld(srv *Server, held ...int64) {
	var sum int64
	for i, n := range held {
		srv.budget.dests[i].n.Store(n)
		sum += n
	}
	srv.budget.held.Store(sum)
}

func effective(srv *Server) []float64 {
	var w []float64
	for _, m := range srv.View().Members {
		w = append(w, m.Effective)
	}
	return w
}

// With ROUTING=weighted-capacity an analyzer whose load (held packets over its
// weight, its delay by Little's law) is out of line with the others' is given less,
// step by step, never below CAPACITY_MIN_SHARE × its weight, while the others keep
// theirs; when it is back in line it returns to its weight. With ROUTING=weighted
// the same backlog changes nothing.
func TestCapacityRoutingCutsAndRestores(t *testing.T) {
	third := 1.0 / 3
	srv := capacityServer(t, RoutingWeightedCapacity, io.Discard)
	setHeld(srv, 600, 60, 60) // analyzer-1 holds 10× the others at the same weight
	prev := third
	for step := range 40 {
		srv.ctl.step(time.Now())
		w := effective(srv)
		if w[0] > prev+1e-12 || w[0] < 0.5*third-1e-12 {
			t.Fatalf("step %d: effective %v: analyzer-1 went from %.4f to %.4f, want it falling to no less than %.4f", step, w, prev, w[0], 0.5*third)
		}
		if w[1] != third || w[2] != third {
			t.Fatalf("step %d: effective %v, want the others at their weight", step, w)
		}
		prev = w[0]
	}
	if math.Abs(prev-0.5*third) > 1e-12 {
		t.Fatalf("after 40 steps analyzer-1's effective weight is %.4f, want the floor %.4f", prev, 0.5*third)
	}
	if m := srv.View().Members[0]; m.Weight != third || m.State != StateHealthy {
		t.Fatalf("configured weight %.4f state %v: want the configured weight kept and the state healthy", m.Weight, m.State)
	}
	setHeld(srv, 30, 60, 60) // back in line (per unit of weight, it now holds less than the others)
	for range 40 {
		srv.ctl.step(time.Now())
	}
	if w := effective(srv); w[0] != third {
		t.Fatalf("back in line, effective %v: want analyzer-1 back at %.4f", w, third)
	}

	exact := capacityServer(t, RoutingWeighted, io.Discard)
	setHeld(exact, 600, 60, 60)
	for range 40 {
		exact.ctl.step(time.Now())
	}
	if w := effective(exact); w[0] != third || w[1] != third || w[2] != third {
		t.Fatalf("ROUTING=weighted: effective %v, want every weight kept", w)
	}
}

// A light load decides nothing: an analyzer holding fewer than capacityMinHeld
// packets is not cut however its load compares.
func TestCapacityRoutingIgnoresLightLoad(t *testing.T) {
	srv := capacityServer(t, RoutingWeightedCapacity, io.Discard)
	setHeld(srv, 20, 1, 1)
	for range 20 {
		srv.ctl.step(time.Now())
	}
	if w := effective(srv); w[0] != 1.0/3 {
		t.Fatalf("effective %v: a light backlog cut analyzer-1", w)
	}
}

// In both modes, the analyzer whose backlog fills the buffer is named: the metric
// is 1 for it (0 for the others), and a warn line names it once.
func TestLimitingAnalyzer(t *testing.T) {
	for _, routing := range []RoutingMode{RoutingWeighted, RoutingWeightedCapacity} {
		t.Run(routing.String(), func(t *testing.T) {
			var logs bytes.Buffer
			srv := capacityServer(t, routing, &logs)
			setHeld(srv, 700, 120, 100) // 920 of 1000 held, 700 of them for analyzer-1
			srv.ctl.step(time.Now())
			if !srv.ctl.limiting(0) || srv.ctl.limiting(1) || srv.ctl.limiting(2) {
				t.Fatalf("limiting %v %v %v, want analyzer-1 only", srv.ctl.limiting(0), srv.ctl.limiting(1), srv.ctl.limiting(2))
			}
			var expo bytes.Buffer
			srv.prom.WritePrometheus(&expo)
			for _, line := range []string{`distributor_limiting_analyzer{analyzer="analyzer-1"} 1`, `distributor_limiting_analyzer{analyzer="analyzer-2"} 0`} {
				if !strings.Contains(expo.String(), line+"\n") {
					t.Errorf("exposition lacks %s", line)
				}
			}
			if !strings.Contains(logs.String(), "analyzer limits the distributor") || !strings.Contains(logs.String(), "analyzer=analyzer-1") {
				t.Errorf("no log line naming analyzer-1: %s", logs.String())
			}
			setHeld(srv, 300, 120, 100) // the buffer is no longer filling
			srv.ctl.step(time.Now())
			if srv.ctl.limiting(0) {
				t.Fatal("still limiting with the buffer at 52 %")
			}
		})
	}
}

func TestRoutingSettings(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		name string
	}{
		{map[string]string{"ROUTING": "fastest"}, "ROUTING"},
		{map[string]string{"CAPACITY_MIN_SHARE": "0"}, "CAPACITY_MIN_SHARE"},
		{map[string]string{"CAPACITY_MIN_SHARE": "2"}, "CAPACITY_MIN_SHARE"},
		{map[string]string{"CAPACITY_MIN_SHARE": "half"}, "CAPACITY_MIN_SHARE"},
	} {
		c.env["ANALYZERS"] = "http://a:1=1"
		_, err := LoadConfig(nil, env(c.env), io.Discard)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Name != c.name {
			t.Errorf("env %v: error %v, want a ConfigError naming %s", c.env, err, c.name)
		}
	}
	cfg, err := LoadConfig([]string{"--routing", "weighted-capacity", "--capacity-min-share", "0.25"}, env(map[string]string{"ANALYZERS": "http://a:1=1"}), io.Discard)
	if err != nil || cfg.Routing != RoutingWeightedCapacity || cfg.CapacityMinShare != 0.25 {
		t.Fatalf("flags: %v %v %v", err, cfg.Routing, cfg.CapacityMinShare)
	}
	if d := DefaultConfig(); d.Routing != RoutingWeighted || d.CapacityMinShare != 0.5 {
		t.Fatalf("defaults %v %v", d.Routing, d.CapacityMinShare)
	}
}

// capacityRun is one measured run of TestCapacityRoutingSideBySide.
type capacityRun struct {
	mode           RoutingMode
	accepted, shed int     // 202s and 503s in the window
	seconds        float64 // the window
	p99            time.Duration
	share          [3]float64 // messages routed to each analyzer in the window, over all
	limiting       bool       // the slow analyzer was named limiting during the window
}

func (r capacityRun) String() string {
	return fmt.Sprintf("%-17s %7.0f/s accepted  %5.1f %% 503  202 p99 %6.1f ms  split %.3f/%.3f/%.3f  slow named limiting: %v",
		r.mode, float64(r.accepted)/r.seconds, 100*float64(r.shed)/float64(r.accepted+r.shed), float64(r.p99)/1e6,
		r.share[0], r.share[1], r.share[2], r.limiting)
}

// runCapacity offers a closed-loop load (16 connections, each sending its next
// packet as soon as it has its answer, 2 ms after a 503) to three equal-weight
// analyzers of which the first answers in slow and the others in fastAnalyzer, for a
// warm-up second and a measured window; then the analyzers are made fast and
// everything accepted must arrive, by packet_id.
func runCapacity(t *testing.T, mode RoutingMode, slow time.Duration, window time.Duration) capacityRun {
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)}
	fakes[0].delay.Store(int64(slow))
	fakes[1].delay.Store(int64(fastAnalyzer))
	fakes[2].delay.Store(int64(fastAnalyzer))
	srv := startDistributor(t, joinAnalyzers(fakes, 1, 1, 1), func(c *Config) {
		c.Routing = mode
		c.IngestBufferSize = 300
		c.UpstreamConns = 1 // 2 connections per analyzer, each answering one request at a time: 200/s at 10 ms
		c.SenderTimeout = 10 * time.Second
	})
	var (
		mu       sync.Mutex
		measure  atomic.Bool
		stop     atomic.Bool
		lat      []time.Duration
		run      = capacityRun{mode: mode}
		accepted = map[string]int{}
		wg       sync.WaitGroup
		seq      atomic.Int64
	)
	url := ingestURL(srv)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 20 * time.Second}
			for !stop.Load() {
				id := "cap-" + strconv.FormatInt(seq.Add(1), 10)
				t0 := time.Now()
				code, _, _ := postPacket(t, c, url, packetBody(id, 3))
				d := time.Since(t0)
				mu.Lock()
				if code == 202 {
					accepted[id] = 3
				}
				if measure.Load() {
					switch code {
					case 202:
						run.accepted++
						lat = append(lat, d)
					case 503:
						run.shed++
					}
				}
				mu.Unlock()
				if code == 503 {
					time.Sleep(2 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(time.Second) // warm-up: the capacity factors settle (they move every 100 ms)
	before := srv.Snapshot()
	measure.Store(true)
	t0 := time.Now()
	deadline := t0.Add(window)
	for time.Now().Before(deadline) {
		run.limiting = run.limiting || srv.ctl.limiting(0)
		time.Sleep(50 * time.Millisecond) // sampling the limiting flag during the window
	}
	measure.Store(false)
	run.seconds = time.Since(t0).Seconds()
	after := srv.Snapshot()
	stop.Store(true)
	wg.Wait()
	var total float64
	for i := range 3 {
		total += float64(after.Dests[i].RoutedMessages - before.Dests[i].RoutedMessages)
	}
	for i := range 3 {
		run.share[i] = float64(after.Dests[i].RoutedMessages-before.Dests[i].RoutedMessages) / total
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		run.p99 = lat[len(lat)*99/100]
	}
	for _, f := range fakes {
		f.delay.Store(0) // drain quickly; what was accepted must still all arrive
	}
	settledNothingLost(t, srv, 30*time.Second)
	checkDelivered(t, accepted, fakes, false)
	return run
}

// fastAnalyzer is the answer time of the analyzers that are not slow: slow enough
// that the analyzers, not the distributor or the load generator, are what limits
// the run even on a loaded machine under the race detector (at 2 ms the
// distributor sometimes could not fill its buffer there, and nothing was limiting).
const fastAnalyzer = 10 * time.Millisecond

// The comparison: three analyzers of equal weight, one 3× slower than the
// others (30 ms against 10 ms) and then one at 200 ms, each run in both ROUTING modes.
// weighted keeps the exact split and the slow analyzer limits everything (and is
// named as limiting); weighted-capacity gives it less, never below
// CAPACITY_MIN_SHARE × its weight, and accepts more.
func TestCapacityRoutingSideBySide(t *testing.T) {
	longScenario(t)
	for _, sc := range []struct {
		name string
		slow time.Duration
	}{{"3x slower", 3 * fastAnalyzer}, {"200 ms", 200 * time.Millisecond}} {
		t.Run(strings.ReplaceAll(sc.name, " ", "_"), func(t *testing.T) {
			exact := runCapacity(t, RoutingWeighted, sc.slow, 4*time.Second)
			capa := runCapacity(t, RoutingWeightedCapacity, sc.slow, 4*time.Second)
			t.Logf("slow analyzer %s:\n  %v\n  %v", sc.name, exact, capa)
			if math.Abs(exact.share[0]-1.0/3) > 0.02 {
				t.Errorf("weighted: the slow analyzer's share %.3f, want its weight 0.333 (the exact split)", exact.share[0])
			}
			if !exact.limiting {
				t.Errorf("weighted: the slow analyzer was never named limiting")
			}
			// Floor: 0.5 × 1/3 against 1/3 + 1/3: a share of 0.2.
			if capa.share[0] < 0.2-0.02 || capa.share[0] > 1.0/3-0.03 {
				t.Errorf("weighted-capacity: the slow analyzer's share %.3f, want below its weight and no less than 0.2 (CAPACITY_MIN_SHARE 0.5)", capa.share[0])
			}
			if float64(capa.accepted)/capa.seconds < 1.1*float64(exact.accepted)/exact.seconds {
				t.Errorf("weighted-capacity accepted %.0f/s, weighted %.0f/s: want more", float64(capa.accepted)/capa.seconds, float64(exact.accepted)/exact.seconds)
			}
		})
	}
}
