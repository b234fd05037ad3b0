package demo

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/proxy"
)

func TestDemoConfigLayers(t *testing.T) {
	env := map[string]string{"SLUICE_DEMO_PORT": "18080", "SLUICE_DEMO_RATE": "500", "SLUICE_DEMO_WEIGHTS": "2,1"}
	c, err := loadDemoConfig([]string{"-rate", "750", "-plain"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.port != 18080 || c.rate != 750 || !c.plain || len(c.weights) != 2 || c.metricsPort != 9100 || c.analyzerPort != 9001 || c.messages != "uniform:1-10" {
		t.Fatalf("defaults < env < flags not applied: %+v", c)
	}
	for _, bad := range []struct {
		env, val, blame string
	}{
		{"SLUICE_DEMO_PORT", "70000", "SLUICE_DEMO_PORT"},
		{"SLUICE_DEMO_WEIGHTS", "0.5,-1", "SLUICE_DEMO_WEIGHTS"},
		{"SLUICE_DEMO_WEIGHTS", "1,1,1,1,1,1,1,1,1,1", "SLUICE_DEMO_WEIGHTS"},
		{"SLUICE_DEMO_DURATION", "soon", "SLUICE_DEMO_DURATION"},
		{"SLUICE_DEMO_ANALYZER_PORT", "65535", "65535"}, // three analyzers from 65535 run past the last port
	} {
		_, err := loadDemoConfig(nil, func(k string) string {
			if k == bad.env {
				return bad.val
			}
			return ""
		}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), bad.blame) {
			t.Errorf("%s=%s: error %v, want one naming %s", bad.env, bad.val, err, bad.blame)
		}
	}
}

// TestDemoRejectReasonsClassified keeps the view's 503 count honest: every
// rejection reason the distributor reports must be known to be a 503 or a 4xx.
func TestDemoRejectReasonsClassified(t *testing.T) {
	specs, err := proxy.ParseAnalyzers("http://127.0.0.1:1=1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := proxy.DefaultConfig()
	cfg.Analyzers = specs
	srv, err := proxy.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	client4xx := map[string]bool{"invalid": true, "too_large": true, "protocol": true, "rate_limited": true, "unauthorized": true}
	m := srv.MetricsJSON()
	if len(m.Rejected) == 0 {
		t.Fatal("no rejection reasons reported")
	}
	for reason := range m.Rejected {
		if !demoRejected503[reason] && !client4xx[reason] {
			t.Errorf("rejection reason %q is neither a known 503 nor a known 4xx: classify it in demoRejected503", reason)
		}
	}
}

func TestDemoFrame(t *testing.T) {
	at := time.Now()
	mk := func(at time.Time, d1, d2, rejFull, rejInvalid int64) demoSample {
		return demoSample{at: at, killed: []bool{false, true}, failing: []bool{true, false}, m: proxy.MetricsJSON{
			TotalPackets: d1 + d2, TotalMessages: 3 * (d1 + d2), DeliveredMessages: 3 * (d1 + d2),
			Rejected: map[string]int64{"full": rejFull, "invalid": rejInvalid},
			Analyzers: map[string]proxy.AnalyzerStats{
				"a-1": {State: "healthy", Weight: 0.75, EffectiveWeight: 0.75, DeliveredMessages: 3 * d1, Queued: 4, InFlight: 5},
				"a-2": {State: "open", Weight: 0.25, DeliveredMessages: 3 * d2},
			},
		}}
	}
	prev, cur := mk(at, 100, 100, 1, 1), mk(at.Add(2*time.Second), 400, 100, 11, 50)
	lines := buildDemoFrame([]string{"a-1", "a-2"}, &prev, &cur)
	b, err := ParseFrame(append([]string{"--- 2s ---"}, lines...))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]int64{"accepted/s": 150, "msg/s": 450, "503/s": 5, "accepted": 500} {
		if b.Totals[k] != want {
			t.Errorf("totals %s = %d, want %d (%s)", k, b.Totals[k], want, lines[0])
		}
	}
	want := map[string]map[string]string{
		"a-1": {"process": "failing", "state": "healthy", "weight": "0.750", "share": "1.000", "share-all": "0.800", "msg/s": "450", "queue": "4", "in-flight": "5", "delivered": "1200"},
		"a-2": {"process": "killed", "state": "open", "effective": "0.000", "share": "0.000", "share-all": "0.200", "msg/s": "0"},
	}
	for name, cols := range want {
		for col, v := range cols {
			if got := b.Rows[name][col]; got != v {
				t.Errorf("%s %s = %q, want %q", name, col, got, v)
			}
		}
	}
}

func TestTidyDemoLogLine(t *testing.T) {
	for in, want := range map[string]string{
		`time=09:42:08 level=WARN msg="connection lost" analyzer=analyzer-1 err="read: EOF"`: `09:42:08 WARN connection lost: analyzer=analyzer-1 err="read: EOF"`,
		`time=09:42:08 level=INFO msg=stopped`:                                               `09:42:08 INFO stopped`,
		`analyzer: gnet: something`:                                                          `analyzer: gnet: something`,
	} {
		if got := tidyDemoLogLine(in); got != want {
			t.Errorf("tidyDemoLogLine(%q) = %q, want %q", in, got, want)
		}
	}
}
