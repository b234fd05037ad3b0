package analyzer

import (
	"bytes"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// checkExposition fails unless every sample's family has a HELP with text and a
// TYPE before its first sample, each exactly once.
func checkExposition(t *testing.T, text string) {
	t.Helper()
	help, typ := map[string]int{}, map[string]string{}
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if f, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, h, _ := strings.Cut(f, " ")
			if strings.TrimSpace(h) == "" {
				t.Errorf("family %s: HELP has no text", name)
			}
			help[name]++
			continue
		}
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, ty, _ := strings.Cut(f, " ")
			if _, dup := typ[name]; dup {
				t.Errorf("family %s: TYPE twice", name)
			}
			typ[name] = ty
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		family := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suf); ok && typ[base] == "histogram" {
				family = base
			}
		}
		if help[family] != 1 || typ[family] == "" {
			t.Errorf("sample %q: family %s has %d HELP lines and TYPE %q before it", line, family, help[family], typ[family])
		}
	}
}

func TestMetricsFamiliesHaveHelpAndType(t *testing.T) {
	a := startAnalyzer(t, Config{MetricsAddr: "127.0.0.1:0", DedupWindow: 10})
	c := dial(t, a.Addr())
	c.do("POST", "/ingest", packet("m1", "INFO")) // a latency sample, so the histogram has series
	c.do("POST", "/ingest", packet("m2", "WARN"))
	body := c.do("GET", "/metrics", "").body
	checkExposition(t, body)
	for _, want := range []string{"analyzer_ingest_duration_seconds_bucket", "analyzer_dedup_window 10\n", "analyzer_dedup_ids 2\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition has no %q", want)
		}
	}
	// The net/http server on METRICS_ADDR serves the same annotated exposition.
	resp, err := http.Get("http://" + a.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	checkExposition(t, buf.String())

	if path, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(path, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}
}

func TestDedupIDsCountsWhatTheWindowHolds(t *testing.T) {
	for _, size := range []int{3, 1 << 17} {
		w := newDedupWindow(size)
		for i := range 5 {
			w.seen(w.hash([]byte("id-" + strconv.Itoa(i))))
		}
		w.seen(w.hash([]byte("id-1"))) // a repeat holds nothing more
		if got, want := w.held(), min(5, size); got != want {
			t.Errorf("window of %d after 5 distinct ids: held %d, want %d (size %d)", size, got, want, w.size())
		}
	}
}
