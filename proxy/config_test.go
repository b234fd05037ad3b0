package proxy

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/spool"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigSeedVariables(t *testing.T) {
	c, err := LoadConfig(nil, env(map[string]string{
		"PORT":                      "8081",
		"INGEST_BUFFER_SIZE":        "500",
		"PER_ANALYZER_QUEUE_SIZE":   "70",
		"ANALYZERS":                 "http://analyzer-1:9001=0.5,http://analyzer-2:9002=0.3,http://analyzer-3:9003=0.2",
		"SENDER_RETRIES":            "7",
		"SENDER_TIMEOUT_MS":         "250",
		"HEALTH_CHECK_INTERVAL_SEC": "3",
		"MAX_FAILURES":              "9",
		"METRICS_ADDR":              ":9200",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 8081 || c.IngestBufferSize != 500 || c.QueueSize != 70 || c.SenderRetries != 7 ||
		c.SenderTimeout != 250*time.Millisecond || c.HealthInterval != 3*time.Second || c.MaxFailures != 9 || c.MetricsAddr != ":9200" {
		t.Fatalf("seed variables not applied: %+v", c)
	}
	names := []string{c.Analyzers[0].Name, c.Analyzers[1].Name, c.Analyzers[2].Name}
	if strings.Join(names, ",") != "analyzer-1,analyzer-2,analyzer-3" {
		t.Fatalf("names %v, want the URL hosts", names)
	}
	if c.Analyzers[1].Addr != "analyzer-2:9002" || c.Analyzers[1].Host != "analyzer-2:9002" {
		t.Fatalf("analyzer-2 addr %q host %q", c.Analyzers[1].Addr, c.Analyzers[1].Host)
	}
}

func TestConfigFlagsWin(t *testing.T) {
	c, err := LoadConfig([]string{"--port", "9999", "--analyzers", "127.0.0.1:7001=1"}, env(map[string]string{
		"PORT": "8081", "ANALYZERS": "http://a:1=1",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 9999 || len(c.Analyzers) != 1 || c.Analyzers[0].Addr != "127.0.0.1:7001" {
		t.Fatalf("flags did not win: port %d analyzers %+v", c.Port, c.Analyzers)
	}
	if c.Analyzers[0].Name != "analyzer-1" {
		t.Fatalf("an IP address is named by position; got %q", c.Analyzers[0].Name)
	}
}

func TestWeightsNormalised(t *testing.T) {
	specs, err := ParseAnalyzers("http://a:1=2,http://b:1=1,http://c:1=1")
	if err != nil {
		t.Fatal(err)
	}
	if specs[0].Weight != 0.5 || specs[1].Weight != 0.25 || specs[2].Weight != 0.25 {
		t.Fatalf("weights %v %v %v, want 0.5 0.25 0.25", specs[0].Weight, specs[1].Weight, specs[2].Weight)
	}
	if sum, changed := WeightsNormalised("http://a:1=2,http://b:1=1,http://c:1=1"); !changed || sum != 4 {
		t.Fatalf("WeightsNormalised = %v, %v; want 4, true", sum, changed)
	}
	if _, changed := WeightsNormalised("http://a:1=0.5,http://b:1=0.3,http://c:1=0.2"); changed {
		t.Fatal("weights summing to 1 reported as normalised")
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		args []string
		name string
	}{
		{map[string]string{"ANALYZERS": "http://a:1=1", "PORT": "http"}, nil, "PORT"},
		{map[string]string{"ANALYZERS": "http://a:1=1", "PORT": "70000"}, nil, "PORT"},
		{map[string]string{"ANALYZERS": "http://a:1=zero"}, nil, "ANALYZERS"},
		{map[string]string{"ANALYZERS": "http://a:1=-1"}, nil, "ANALYZERS"},
		{map[string]string{"ANALYZERS": "http://a:1=1,http://a:1=2"}, nil, "ANALYZERS"},
		{map[string]string{"ANALYZERS": "ftp://a:1=1"}, nil, "ANALYZERS"},
		{map[string]string{}, nil, "ANALYZERS"},
		{map[string]string{"ANALYZERS": "http://a:1=1", "SENDER_TIMEOUT_MS": "-5"}, nil, "SENDER_TIMEOUT_MS"},
		{map[string]string{"ANALYZERS": "http://a:1=1", "MAX_FAILURES": "0"}, nil, "MAX_FAILURES"},
		{map[string]string{"ANALYZERS": "http://a:1=1", "METRICS_ADDR": "nonsense"}, nil, "METRICS_ADDR"},
		{map[string]string{"ANALYZERS": "http://a:1=1", "SPILL": "maybe"}, nil, "SPILL"},
		{map[string]string{"ANALYZERS": "http://a:1=1", "BATCH_LINGER_US": "2000000"}, nil, "BATCH_LINGER_US"},
		{map[string]string{"ANALYZERS": "http://a:1=1", "BATCH_LINGER_US": "-1"}, nil, "BATCH_LINGER_US"},
		{map[string]string{"ANALYZERS": "http://a:1=1", "DNS_REFRESH_SEC": "1e-10"}, nil, "DNS_REFRESH_SEC"}, // a zero ticker would panic
		{map[string]string{"ANALYZERS": "http://a:1=1"}, []string{"--max-failures", "x"}, "--max-failures"},
		{map[string]string{"ANALYZERS_DNS": "analyzers"}, nil, "ANALYZERS_DNS"},
		{map[string]string{"ANALYZERS_DNS": ":9001"}, nil, "ANALYZERS_DNS"},
		{map[string]string{"ANALYZERS_DNS": "analyzers:0"}, nil, "ANALYZERS_DNS"},
		{map[string]string{"ANALYZERS_DNS": "analyzers:9001", "ANALYZERS_DNS_WEIGHT": "0"}, nil, "ANALYZERS_DNS_WEIGHT"},
		{map[string]string{"ANALYZERS_DNS": "analyzers:9001", "DNS_REFRESH_SEC": "0"}, nil, "DNS_REFRESH_SEC"},
		{map[string]string{"ANALYZERS_DNS": "analyzers:9001", "DNS_SERVER": "10.0.0.2"}, nil, "DNS_SERVER"},
		{map[string]string{"ANALYZERS": "http://a:1=1", "SPOOL_SYNC": "sometimes"}, nil, "SPOOL_SYNC"},
		{map[string]string{"ANALYZERS": "http://a:1=1", "SPOOL_SYNC_INTERVAL_MS": "0"}, nil, "SPOOL_SYNC_INTERVAL_MS"},
		{map[string]string{"ANALYZERS": "http://a:1=1", "SPOOL_SYNC_INTERVAL_MS": "60001"}, nil, "SPOOL_SYNC_INTERVAL_MS"},
		{map[string]string{"ANALYZERS": "http://a:1=1", "SPOOL_SEGMENT_BYTES": "4096"}, nil, "SPOOL_SEGMENT_BYTES"},
		{map[string]string{"ANALYZERS": "http://a:1=1", "SPOOL_MAX_BYTES": "lots"}, nil, "SPOOL_MAX_BYTES"},
		{map[string]string{"ANALYZERS": "http://a:1=1", "SPOOL_SEGMENT_BYTES": "1048576", "SPOOL_MAX_BYTES": "524288"}, nil, "SPOOL_MAX_BYTES"},
		{map[string]string{"ANALYZERS": "http://a:1=1"}, []string{"--spool-sync", "never"}, "--spool-sync"},
	} {
		_, err := LoadConfig(c.args, env(c.env), io.Discard)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Name != c.name {
			t.Errorf("env %v args %v: error %v, want a ConfigError naming %s", c.env, c.args, err, c.name)
		}
	}
}

// The binary: bad configuration exits 2 with one line naming the variable.
func TestDistributorBadConfigExits2(t *testing.T) {
	if os.Getenv("SLUICE_CONFIG_CHILD") == "1" {
		os.Exit(Main(nil))
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDistributorBadConfigExits2$")
	cmd.Env = append(os.Environ(), "SLUICE_CONFIG_CHILD=1", "ANALYZERS=http://a:1=1", "MAX_FAILURES=lots")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit %v, want status 2; output %q", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `MAX_FAILURES="lots"`) || !strings.Contains(lines[0], "whole number") {
		t.Fatalf("want one line naming the variable, value and problem; got %q", out)
	}
}

// The spool's settings: defaults, and the environment and flags applied.
func TestConfigSpool(t *testing.T) {
	c, err := LoadConfig(nil, env(map[string]string{"ANALYZERS": "http://a:1=1"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.SpoolDir != "" || c.SpoolSync != spool.SyncAlways || c.SpoolSyncInterval != 100*time.Millisecond ||
		c.SpoolSegmentBytes != 64<<20 || c.SpoolMaxBytes != 1<<30 {
		t.Fatalf("spool defaults: dir %q sync %v interval %v segment %d max %d", c.SpoolDir, c.SpoolSync, c.SpoolSyncInterval, c.SpoolSegmentBytes, c.SpoolMaxBytes)
	}
	c, err = LoadConfig([]string{"--spool-sync", "interval"}, env(map[string]string{"ANALYZERS": "http://a:1=1",
		"SPOOL_DIR": "/var/lib/sluice/spool", "SPOOL_SYNC": "always", "SPOOL_SYNC_INTERVAL_MS": "250",
		"SPOOL_SEGMENT_BYTES": "1048576", "SPOOL_MAX_BYTES": "8388608"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.SpoolDir != "/var/lib/sluice/spool" || c.SpoolSync != spool.SyncInterval || c.SpoolSyncInterval != 250*time.Millisecond ||
		c.SpoolSegmentBytes != 1<<20 || c.SpoolMaxBytes != 8<<20 {
		t.Fatalf("spool settings not applied: %+v", c)
	}
}

// ANALYZERS_DNS may stand in for ANALYZERS, or come with it; one of them is needed.
func TestConfigAnalyzersDNS(t *testing.T) {
	c, err := LoadConfig(nil, env(map[string]string{"ANALYZERS_DNS": "analyzers.internal:9001", "DNS_SERVER": "127.0.0.1:5353"}), io.Discard)
	if err != nil || c.AnalyzersDNS != "analyzers.internal:9001" || c.DNSServer != "127.0.0.1:5353" || c.DNSWeight != 1 || c.DNSRefresh != 10*time.Second || len(c.Analyzers) != 0 {
		t.Fatalf("DNS only: %+v %v", c, err)
	}
	c, err = LoadConfig([]string{"--analyzers-dns", "a:1", "--analyzers", "http://b:2=1"}, env(nil), io.Discard)
	if err != nil || c.AnalyzersDNS != "a:1" || len(c.Analyzers) != 1 {
		t.Fatalf("both: %+v %v", c, err)
	}
	p := writeConfig(t, "analyzers_dns: analyzers.internal:9001\ndns_refresh_sec: 3\nanalyzers_dns_weight: 0.5\ndns_server: 127.0.0.1:53\n")
	c, err = LoadConfig(nil, env(map[string]string{"CONFIG_FILE": p}), io.Discard)
	if err != nil || c.AnalyzersDNS != "analyzers.internal:9001" || c.DNSRefresh != 3*time.Second || c.DNSWeight != 0.5 || c.DNSServer != "127.0.0.1:53" {
		t.Fatalf("from a config file: %+v %v", c, err)
	}
	if _, err := New(DefaultConfig(), nil); err == nil {
		t.Fatal("New without ANALYZERS or ANALYZERS_DNS succeeded")
	}
}

// LOOPS=0: one loop up to 2 CPUs, one per CPU from 3.
func TestDefaultLoops(t *testing.T) {
	for cpus, want := range map[int]int{1: 1, 2: 1, 3: 3, 4: 4, 16: 16} {
		if got := defaultLoops(cpus); got != want {
			t.Errorf("defaultLoops(%d) = %d, want %d", cpus, got, want)
		}
	}
}

// The distributor runs one P per event loop unless GOMAXPROCS is set, and never
// raises the runtime's count.
func TestGoProcs(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	set := func(k string) (string, bool) { return "2", k == "GOMAXPROCS" }
	for _, tc := range []struct {
		loops, procs int
		lookup       func(string) (string, bool)
		want         int
		change       bool
	}{
		{1, 2, none, 1, true},  // the default on 2 CPUs
		{2, 2, none, 2, false}, // as many loops as Ps
		{4, 2, none, 2, false}, // never raised
		{1, 2, set, 2, false},  // the operator's GOMAXPROCS stands
		{8, 16, none, 8, true}, // LOOPS=8 on 16 CPUs
		{0, 2, none, 2, false}, // not resolved: leave it
	} {
		got, change := goProcs(tc.loops, tc.procs, tc.lookup)
		if got != tc.want || change != tc.change {
			t.Errorf("goProcs(%d loops, %d procs) = %d, %v; want %d, %v", tc.loops, tc.procs, got, change, tc.want, tc.change)
		}
	}
}
