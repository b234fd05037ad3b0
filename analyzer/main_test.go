package analyzer

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestMainRejectsBadConfigNamingTheVariable(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		name string
	}{
		{nil, map[string]string{"PORT": "http"}, "PORT="},
		{nil, map[string]string{"PORT": "70000"}, "PORT="},
		{[]string{"-port", "x"}, map[string]string{"PORT": "9001"}, "-port="},
		{nil, map[string]string{"PROCESSING_DELAY_MS": "-1"}, "PROCESSING_DELAY_MS="},
		{nil, map[string]string{"PROCESSING_DELAY_MS": "1.5"}, "PROCESSING_DELAY_MS="},
		{nil, map[string]string{"METRICS_ADDR": "9100"}, "METRICS_ADDR="},
		{nil, map[string]string{"DEDUP_WINDOW": "0"}, "DEDUP_WINDOW="},
		{[]string{"-dedup-window", "many"}, nil, "-dedup-window="},
		{nil, map[string]string{"ANALYZER_BATCH": "maybe"}, "ANALYZER_BATCH="},
		{[]string{"-nope"}, nil, "flag provided but not defined"},
		{[]string{"extra"}, nil, "unexpected argument"},
	} {
		var stderr bytes.Buffer
		code := run(tc.args, envOf(tc.env), io.Discard, &stderr, func(*Analyzer, func()) { t.Errorf("%v %v: started", tc.args, tc.env) })
		if code != 2 || !strings.Contains(stderr.String(), tc.name) {
			t.Errorf("%v %v: exit %d, stderr %q; want 2 naming %s", tc.args, tc.env, code, stderr.String(), tc.name)
		}
		if code == 2 && !strings.HasPrefix(tc.name, "flag") && strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v %v: want one line, got %q", tc.args, tc.env, stderr.String())
		}
	}
}

func TestMainConfiguresAndStopsOnSignal(t *testing.T) {
	env := map[string]string{
		"PORT": "1", "ANALYZER_ID": "from-env", "PROCESSING_DELAY_MS": "7",
		"DEDUP_WINDOW": "100", "ANALYZER_BATCH": "false",
	}
	args := []string{"-port", "127.0.0.1:0", "-batch=true", "-delay-ms", "0"} // flags win
	var stderr bytes.Buffer
	done := make(chan int)
	started := make(chan *Analyzer, 1)
	go func() {
		done <- run(args, envOf(env), io.Discard, &stderr, func(a *Analyzer, stop func()) {
			started <- a
			c := dial(t, a.Addr())
			r := c.do("GET", "/health", "")
			if r.status != 200 || r.header.Get("Sluice-Batch") != "1" || !strings.Contains(r.body, `"from-env"`) {
				t.Errorf("health %d %v %s", r.status, r.header, r.body)
			}
			start := time.Now()
			c.do("POST", "/ingest", packet("m", "INFO"))
			if took := time.Since(start); took > time.Second {
				t.Errorf("ingest took %v: -delay-ms 0 did not override the variable", took)
			}
			stop()
		})
	}()
	if code := exitCode(t, done); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	a := <-started
	if a.cfg.ID != "from-env" || a.cfg.DedupWindow != 100 || !a.cfg.Batch || a.cfg.Delay != 0 {
		t.Fatalf("config %+v", a.cfg)
	}
	if !strings.Contains(stderr.String(), "listening on 127.0.0.1:") || !strings.Contains(stderr.String(), "stopped after 1 packets") {
		t.Fatalf("stderr %q", stderr.String())
	}
}

func TestMainFailsWhenThePortIsTaken(t *testing.T) {
	a := startAnalyzer(t, Config{})
	var stderr bytes.Buffer
	code := run([]string{"-port", a.Addr()}, envOf(nil), io.Discard, &stderr, nil)
	if code != 1 || !strings.Contains(stderr.String(), "listen") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}
