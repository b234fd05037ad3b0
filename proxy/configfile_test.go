package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeConfig writes a YAML config file in a test's temporary folder.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const fileOnlyYAML = `
port: 8181
metrics_addr: "127.0.0.1:9300"
per_analyzer_queue_size: 77
sender_timeout_ms: 250
spill: false
emitter_rate_limit: 1.5
log_level: WARN
analyzers:
  - url: http://10.0.0.1:9001
    weight: 3
    name: big
  - url: http://10.0.0.2:9002
    weight: 1
`

func TestConfigFileOnly(t *testing.T) {
	p := writeConfig(t, fileOnlyYAML)
	c, err := LoadConfig(nil, env(map[string]string{"CONFIG_FILE": p}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 8181 || c.MetricsAddr != "127.0.0.1:9300" || c.QueueSize != 77 || c.SenderTimeout != 250*time.Millisecond ||
		c.Spill || c.EmitterRate != 1.5 || c.LogLevel != "warn" || c.ConfigFile != p {
		t.Fatalf("file settings not applied: %+v", c)
	}
	if c.SenderRetries != 3 || c.MaxFailures != 5 {
		t.Fatalf("settings absent from the file must keep their defaults: retries %d, max failures %d", c.SenderRetries, c.MaxFailures)
	}
	if len(c.Analyzers) != 2 || c.Analyzers[0].Name != "big" || c.Analyzers[1].Name != "analyzer-2" ||
		c.Analyzers[0].Weight != 0.75 || c.Analyzers[1].Weight != 0.25 || c.Analyzers[1].Addr != "10.0.0.2:9002" {
		t.Fatalf("analyzers from the file: %+v", c.Analyzers)
	}
	// The ANALYZERS string form works in the file too.
	p2 := writeConfig(t, "analyzers: http://analyzer-1:9001=1,http://analyzer-2:9002=1\n")
	c, err = LoadConfig([]string{"--config", p2}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Analyzers) != 2 || c.Analyzers[1].Name != "analyzer-2" {
		t.Fatalf("analyzers string from the file: %+v", c.Analyzers)
	}
}

func TestConfigFilePrecedence(t *testing.T) {
	p := writeConfig(t, "port: 1111\nsender_retries: 9\nmax_failures: 7\nanalyzers: [{url: 'http://a:1', weight: 1}]\n")
	e := env(map[string]string{"CONFIG_FILE": p, "PORT": "2222", "SENDER_RETRIES": "8"})
	c, err := LoadConfig(nil, e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 2222 || c.SenderRetries != 8 || c.MaxFailures != 7 {
		t.Fatalf("environment over file: port %d retries %d max failures %d, want 2222 8 7", c.Port, c.SenderRetries, c.MaxFailures)
	}
	c, err = LoadConfig([]string{"--port", "3333"}, e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 3333 || c.SenderRetries != 8 || c.MaxFailures != 7 {
		t.Fatalf("flag over environment over file: port %d retries %d max failures %d, want 3333 8 7", c.Port, c.SenderRetries, c.MaxFailures)
	}
	// --config names the file over CONFIG_FILE.
	other := writeConfig(t, "port: 4444\nanalyzers: [{url: 'http://a:1', weight: 1}]\n")
	c, err = LoadConfig([]string{"--config=" + other}, env(map[string]string{"CONFIG_FILE": p}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 4444 || c.ConfigFile != other {
		t.Fatalf("--config over CONFIG_FILE: port %d file %q", c.Port, c.ConfigFile)
	}
}

func TestConfigFileUnknownKey(t *testing.T) {
	p := writeConfig(t, "port: 8080\nanalyzer: http://a:1=1\nanalyzers: http://a:1=1\n")
	_, err := LoadConfig(nil, env(map[string]string{"CONFIG_FILE": p}), io.Discard)
	var fe *FileError
	if !errors.As(err, &fe) || fe.Key != "analyzer" || fe.File != p {
		t.Fatalf("error %v, want a FileError naming %s and key analyzer", err, p)
	}
	if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "analyzer=") || !strings.Contains(err.Error(), "unknown key") {
		t.Fatalf("message %q must name the file, the key and the problem", err)
	}
}

func TestConfigFileBadValueNamesFileAndKey(t *testing.T) {
	for _, c := range []struct{ yaml, key, problem string }{
		{"port: http\nanalyzers: http://a:1=1\n", "port", "whole number"},
		{"port: [1, 2]\nanalyzers: http://a:1=1\n", "port", "single value"},
		{"spill: maybe\nanalyzers: http://a:1=1\n", "spill", "true or false"},
		{"analyzers: [{url: 'http://a:1'}]\n", "analyzers[0]", "weight is required"},
		{"analyzers: [{url: 'http://a:1', weight: 1, wieght: 2}]\n", "analyzers[0]", "unknown field"},
		{"analyzers: [{url: 'http://a:1', weight: -1}]\n", "analyzers", "positive"},
		{"analyzers: [{url: 'http://a:1', weight: 1, name: x}, {url: 'http://b:1', weight: 1, name: x}]\n", "analyzers[1]", "already the name"},
		{"analyzers: [{url: 'http://a:1', weight: 1, name: 'a b'}]\n", "analyzers[0]", "letters"},
		{"config_file: /etc/other.yaml\nanalyzers: http://a:1=1\n", "config_file", "inside the config file"},
	} {
		p := writeConfig(t, c.yaml)
		_, err := LoadConfig(nil, env(map[string]string{"CONFIG_FILE": p}), io.Discard)
		var fe *FileError
		if !errors.As(err, &fe) || fe.File != p || fe.Key != c.key || !strings.Contains(err.Error(), c.problem) {
			t.Errorf("%q: error %v, want a FileError naming the file, key %s and %q", c.yaml, err, c.key, c.problem)
		}
	}
	_, err := LoadConfig([]string{"--config", "/nonexistent/sluice.yaml"}, env(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/sluice.yaml") {
		t.Fatalf("missing file: %v", err)
	}
	p := writeConfig(t, "port: [unclosed\n")
	if _, err := LoadConfig(nil, env(map[string]string{"CONFIG_FILE": p}), io.Discard); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("bad YAML: %v", err)
	}
}

// Every problem of every layer is reported, not only the first.
func TestConfigCheckListsEveryProblem(t *testing.T) {
	p := writeConfig(t, "porrt: 1\nmax_failures: 0\nanalyzers: http://a:1=1\n")
	cfg, err := LoadConfig([]string{"--check", "--loops", "x"}, env(map[string]string{"CONFIG_FILE": p, "SPILL": "maybe"}), io.Discard)
	var out, errOut bytes.Buffer
	if code := Check(cfg, err, &out, &errOut); code != 2 {
		t.Fatalf("Check = %d, want 2", code)
	}
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	want := []string{"max_failures", "porrt", "SPILL", "-loops"} // file keys in order, then environment, then flags
	if len(lines) != len(want) || out.Len() != 0 {
		t.Fatalf("want %d problems, one per line, on stderr only; got stdout %q stderr %q", len(want), out.String(), errOut.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d %q does not name %s", i, lines[i], w)
		}
	}
	cfg, err = LoadConfig([]string{"--check"}, env(map[string]string{"CONFIG_FILE": writeConfig(t, fileOnlyYAML)}), io.Discard)
	out.Reset()
	errOut.Reset()
	if code := Check(cfg, err, &out, &errOut); code != 0 || errOut.Len() != 0 || strings.Count(out.String(), "\n") != 1 ||
		!strings.Contains(out.String(), "OK") || !strings.Contains(out.String(), "big=0.75") {
		t.Fatalf("Check = %d, stdout %q, stderr %q; want 0 and one OK line", code, out.String(), errOut.String())
	}
}

// The binary: --check exits 0 with one line without binding its ports (PORT is
// taken here), and 2 listing both problems of a bad configuration.
func TestDistributorCheckExitCodes(t *testing.T) {
	if os.Getenv("SLUICE_CHECK_CHILD") == "1" {
		os.Exit(Main([]string{"--check"}))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	run := func(extra ...string) (int, string, string) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestDistributorCheckExitCodes$")
		cmd.Env = append(os.Environ(), append([]string{"SLUICE_CHECK_CHILD=1"}, extra...)...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
	}
	good := writeConfig(t, "port: "+port+"\nmetrics_addr: 127.0.0.1:"+port+"\nanalyzers:\n  - {url: 'http://127.0.0.1:1', weight: 1}\n")
	code, out, errOut := run("CONFIG_FILE=" + good)
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, "configuration OK") || !strings.Contains(out, "port "+port) {
		t.Fatalf("good config: exit %d, stdout %q, stderr %q; want 0 and one OK line", code, out, errOut)
	}
	bad := writeConfig(t, "port: 99999\nanalyzers:\n  - {url: 'http://127.0.0.1:1', weight: 1}\n")
	code, out, errOut = run("CONFIG_FILE="+bad, "MAX_FAILURES=lots")
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if code != 2 || out != "" || len(lines) != 2 || !strings.Contains(lines[0], bad) || !strings.Contains(lines[0], "port") ||
		!strings.Contains(lines[1], `MAX_FAILURES="lots"`) {
		t.Fatalf("bad config: exit %d, stdout %q, stderr %q; want 2 and two lines naming file+port and MAX_FAILURES", code, out, errOut)
	}
}
