package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicelog/sluice/analyzer"
	"github.com/sluicelog/sluice/emitter"
	"github.com/sluicelog/sluice/proxy"
	"github.com/sluicelog/sluice/proxy/proxytest"
	"github.com/sluicelog/sluice/spool"
)

// TestObservability runs three analyzers and a distributor in-process, drives load
// with the emitter, lets a real Prometheus scrape the distributor, and checks:
// every PromQL expression of the Grafana dashboard returns data; the exposition
// (seed names and labels, HELP/TYPE, histograms, naming lint); the accounting
// invariant in every sample Prometheus stored and in direct scrapes; weights
// honoured in the exported numbers and matching what the analyzers counted;
// /metrics-json and /health keep the seed's shape; /health answers 503 once every
// analyzer is down; pprof is served.
func TestObservability(t *testing.T) {
	systemTest(t)
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus not found in PATH: install Debian's prometheus package (.ci/run does; locally: apt-get install -y prometheus)")
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found in PATH: it ships with Debian's prometheus package (apt-get install -y prometheus)")
	}
	dashboard := filepath.Join("deploy", "grafana", "dashboards", "sluice.json")
	exprs := dashboardExprs(t, dashboard)
	checkDashboardCoverage(t, exprs)
	varQueries := checkDashboardVariables(t, dashboard, exprs)
	checkProvisioning(t, promtool)

	// Three analyzers, one of them plain (no batch endpoint), so both upstream
	// paths are measured.
	weights := []float64{0.5, 0.3, 0.2}
	var analyzers []*analyzer.Analyzer
	var specs []string
	for i, w := range weights {
		a := analyzer.New(analyzer.Config{Addr: "127.0.0.1:0", ID: "obs-" + strconv.Itoa(i+1), Batch: i != 2})
		if err := a.Start(); err != nil {
			t.Fatalf("analyzer %d: %v", i+1, err)
		}
		analyzers = append(analyzers, a)
		t.Cleanup(func() { _ = a.Stop() })
		specs = append(specs, "http://"+a.Addr()+"="+strconv.FormatFloat(w, 'g', -1, 64))
	}
	names := []string{"analyzer-1", "analyzer-2", "analyzer-3"} // by position: the URLs are IP addresses

	srv := proxytest.Start(t, strings.Join(specs, ","), func(c *proxy.Config) {
		c.HealthInterval = 200 * time.Millisecond
		// With a spool, so the dashboard's spool panels have data too (interval:
		// the 202s are not held, the load's latency stays the memory path's).
		c.SpoolDir, c.SpoolSync = t.TempDir(), spool.SyncInterval
	})
	metricsURL := "http://" + srv.MetricsAddr()
	_, ingestPort, _ := net.SplitHostPort(srv.Addr())
	ingestURL := "http://127.0.0.1:" + ingestPort

	// Live at the first scrape: the seed showed 0 analyzers until its 5 s refresh.
	first := scrape(t, metricsURL+"/metrics")
	first.expect(t, "distributor_total_analyzers", nil, 3)
	first.expect(t, "distributor_healthy_analyzers", nil, 3)

	prom := startPrometheus(t, promBin, srv.MetricsAddr(), analyzers)

	// Load, until the checks under load are done.
	loadCtx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	var (
		report  emitter.Report
		loadErr error
		loadWG  sync.WaitGroup
	)
	loadWG.Add(1)
	go func() {
		defer loadWG.Done()
		report, loadErr = emitter.Run(loadCtx, emitter.Config{
			Target:      ingestURL,
			Rate:        1000,
			Concurrency: 8,
			Messages:    "uniform:1-9",
			EmitterID:   "observability-test",
		}, io.Discard)
	}()

	prom.waitTargetsUp(t, 3+1, 20*time.Second)
	// Enough successful scrapes of every target for rates over 15 s windows.
	prom.waitQuery(t, `min(sum_over_time(up[30s]))`, func(v float64) bool { return v >= 8 }, 25*time.Second)

	t.Run("dashboard variables list the distributor", func(t *testing.T) {
		for _, q := range varQueries {
			res := prom.query(t, q)
			if len(res) == 0 || res[0].metric["job"] != "distributor" || res[0].metric["instance"] != srv.MetricsAddr() {
				t.Errorf("variable query %s: %v, want the distributor's job and instance", q, res)
			}
		}
	})

	t.Run("dashboard queries return data", func(t *testing.T) {
		for _, e := range exprs {
			q := e.promQL
			res := prom.query(t, q)
			if len(res) == 0 {
				t.Errorf("panel %q: %s returned no data", e.panel, q)
				continue
			}
			for _, s := range res {
				if math.IsNaN(s.value) || math.IsInf(s.value, 0) {
					t.Errorf("panel %q: %s returned %v for %v", e.panel, q, s.value, s.metric)
				}
			}
		}
	})

	t.Run("invariant in every stored sample", func(t *testing.T) {
		// Each scrape renders one snapshot and Prometheus stamps all its samples
		// with the scrape's time, so the identity must hold exactly at every
		// timestamp it stored.
		terms := map[string]float64{
			"distributor_total_packets_total": 1,
			"distributor_delivered_total":     -1,
			"distributor_queued":              -1,
			"distributor_in_flight":           -1,
			"distributor_dropped_total":       -1,
		}
		var names []string
		for n := range terms {
			names = append(names, n)
		}
		sort.Strings(names)
		series := prom.queryRaw(t, `{__name__=~"`+strings.Join(names, "|")+`"}[2m]`)
		byTime := map[float64]map[string]float64{}
		for name, samples := range series {
			for _, s := range samples {
				if byTime[s[0]] == nil {
					byTime[s[0]] = map[string]float64{}
				}
				byTime[s[0]][name] = s[1]
			}
		}
		if len(byTime) < 8 {
			t.Fatalf("%d scrapes stored, want at least 8", len(byTime))
		}
		times := make([]float64, 0, len(byTime))
		for ts := range byTime {
			times = append(times, ts)
		}
		sort.Float64s(times)
		busy := 0
		for _, ts := range times {
			vals := byTime[ts]
			if len(vals) != len(terms) {
				t.Fatalf("scrape at %v stored %v, want all of %v", ts, vals, names)
			}
			sum := 0.0
			for n, sign := range terms {
				sum += sign * vals[n]
			}
			if sum != 0 {
				t.Errorf("scrape at %v: accepted - delivered - queued - in_flight - dropped = %v (%v)", ts, sum, vals)
			}
			if vals["distributor_queued"]+vals["distributor_in_flight"] > 0 {
				busy++
			}
		}
		t.Logf("invariant held in %d stored scrapes, %d of them with packets queued or in flight", len(byTime), busy)
	})

	t.Run("exposition under load", func(t *testing.T) {
		busy := 0
		for range 5 {
			m := scrape(t, metricsURL+"/metrics")
			checkInvariant(t, m, names)
			if m.get(t, "distributor_queued", nil)+m.get(t, "distributor_in_flight", nil) > 0 {
				busy++
			}
		}
		t.Logf("%d of 5 scrapes under load caught packets queued or in flight", busy)
		m := scrape(t, metricsURL+"/metrics")
		checkSeedFamilies(t, m, names)
		checkMetadata(t, m)
		checkHistogram(t, m, "distributor_request_duration_seconds", "loop", nil)
		checkHistogram(t, m, "distributor_upstream_rtt_seconds", "analyzer", names)
		checkLint(t, promtool, m.raw)
		for _, fam := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "go_goroutines", "go_memstats_heap_inuse_bytes"} {
			if _, ok := m.types[fam]; !ok {
				t.Errorf("runtime family %s missing", fam)
			}
		}
	})

	stopLoad()
	loadWG.Wait()
	if loadErr != nil {
		t.Fatalf("emitter: %v", loadErr)
	}
	if report.Accepted < 3000 {
		t.Fatalf("emitter got only %d packets accepted (report %+v); the load is too light to judge the metrics", report.Accepted, report)
	}

	// Drained: everything accepted is delivered or dropped.
	var settled *exposition
	deadline := time.Now().Add(10 * time.Second)
	for {
		settled = scrape(t, metricsURL+"/metrics")
		if settled.get(t, "distributor_queued", nil)+settled.get(t, "distributor_in_flight", nil) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %v queued and %v in flight 10 s after the load stopped",
				settled.get(t, "distributor_queued", nil), settled.get(t, "distributor_in_flight", nil))
		}
		time.Sleep(50 * time.Millisecond) // polling a counter, bounded by the deadline
	}

	t.Run("settled numbers", func(t *testing.T) {
		m := settled
		checkInvariant(t, m, names)
		for _, n := range names {
			m.expect(t, "distributor_breaker_opens_total", map[string]string{"analyzer": n}, 0)
			m.expect(t, "distributor_breaker_state", map[string]string{"analyzer": n}, 0)
		}
		total := m.get(t, "distributor_total_packets_total", nil)
		if d := m.get(t, "distributor_dropped_total", nil); d != 0 {
			t.Errorf("distributor_dropped_total = %v with every analyzer healthy", d)
		}
		if got := m.get(t, "distributor_delivered_total", nil); got != total {
			t.Errorf("delivered %v != accepted %v after draining", got, total)
		}
		// The distributor counts what the emitter was told.
		if report.OtherErrors == 0 && total != float64(report.Accepted) {
			t.Errorf("distributor_total_packets_total = %v, emitter had %d accepted", total, report.Accepted)
		}
		if total < float64(report.Accepted) {
			t.Errorf("distributor_total_packets_total = %v < %d accepted by the emitter", total, report.Accepted)
		}
		if msgs := m.get(t, "distributor_total_messages_total", nil); report.OtherErrors == 0 && msgs != float64(report.MessagesAccepted) {
			t.Errorf("distributor_total_messages_total = %v, emitter had %d messages accepted", msgs, report.MessagesAccepted)
		}
		// What each analyzer counted is what the distributor says it delivered to
		// it (exactly, unless a timed-out send was retried elsewhere after the
		// analyzer had processed it).
		retries := 0.0
		for _, n := range names {
			retries += m.get(t, "distributor_retries_total", map[string]string{"analyzer": n})
		}
		byAnalyzer := make([]float64, len(names))
		var delivered float64
		for i, n := range names {
			dm := m.get(t, "distributor_delivered_messages_total", map[string]string{"analyzer": n})
			byAnalyzer[i] = dm
			delivered += dm
			st := analyzers[i].Stats()
			got := float64(st.Messages + st.DuplicateMessages)
			if (retries == 0 && got != dm) || got < dm {
				t.Errorf("%s: distributor delivered %v messages, the analyzer counted %v (retries %v)", n, dm, got, retries)
			}
		}
		if msgs := m.get(t, "distributor_total_messages_total", nil); delivered != msgs {
			t.Errorf("delivered %v messages of %v accepted after draining", delivered, msgs)
		}
		// Weights honoured, in the exported numbers.
		for i, n := range names {
			share := byAnalyzer[i] / delivered
			if math.Abs(share-weights[i]) > 0.01 {
				t.Errorf("%s: message share %.4f, weight %.2f", n, share, weights[i])
			}
			if g := m.get(t, "distributor_analyzer_message_share", map[string]string{"analyzer": n}); math.Abs(g-share) > 1e-9 {
				t.Errorf("%s: distributor_analyzer_message_share = %v, delivered counters give %v", n, g, share)
			}
			if g := m.get(t, "distributor_analyzer_weight", map[string]string{"analyzer": n}); math.Abs(g-weights[i]) > 1e-9 {
				t.Errorf("%s: distributor_analyzer_weight = %v, configured %v", n, g, weights[i])
			}
		}
	})

	t.Run("metrics-json keeps the seed shape", func(t *testing.T) {
		for _, base := range []string{metricsURL, ingestURL} {
			status, doc := getJSON(t, base+"/metrics-json")
			if status != 200 {
				t.Fatalf("%s/metrics-json: status %d", base, status)
			}
			for _, f := range []string{"total_packets", "total_messages", "healthy_analyzers", "total_analyzers"} {
				if _, ok := doc[f].(float64); !ok {
					t.Errorf("%s/metrics-json: %q is %T, want a number", base, f, doc[f])
				}
			}
			for _, f := range []string{"packets_by_analyzer", "messages_by_analyzer", "queue_depth_by_analyzer"} {
				byName, ok := doc[f].(map[string]any)
				if !ok {
					t.Errorf("%s/metrics-json: %q is %T, want an object", base, f, doc[f])
					continue
				}
				for _, n := range names {
					if _, ok := byName[n].(float64); !ok {
						t.Errorf("%s/metrics-json: %s[%q] is %T, want a number", base, f, n, byName[n])
					}
				}
			}
			checkTimestamp(t, base+"/metrics-json", doc)
			// The same counters as the exposition (no load runs now).
			if got, want := doc["total_packets"], settled.get(t, "distributor_total_packets_total", nil); got != want {
				t.Errorf("%s/metrics-json: total_packets %v, /metrics says %v", base, got, want)
			}
			if pba, ok := doc["packets_by_analyzer"].(map[string]any); ok {
				for _, n := range names {
					if want := settled.get(t, "distributor_packets_by_analyzer_total", map[string]string{"analyzer": n}); pba[n] != want {
						t.Errorf("%s/metrics-json: packets_by_analyzer[%s] %v, /metrics says %v", base, n, pba[n], want)
					}
				}
			}
		}
	})

	t.Run("health", func(t *testing.T) {
		for _, base := range []string{metricsURL, ingestURL} {
			status, doc := getJSON(t, base+"/health")
			if status != 200 {
				t.Errorf("%s/health: status %d with every analyzer up", base, status)
			}
			checkHealthShape(t, base+"/health", doc)
			if doc["status"] != "healthy" || doc["healthy_analyzers"] != 3.0 || doc["total_analyzers"] != 3.0 {
				t.Errorf("%s/health: %v", base, doc)
			}
		}
		for _, a := range analyzers {
			if err := a.Stop(); err != nil {
				t.Fatal(err)
			}
		}
		var doc map[string]any
		deadline := time.Now().Add(15 * time.Second)
		for {
			var status int
			status, doc = getJSON(t, metricsURL+"/health")
			if status == 503 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/health still %d 15 s after every analyzer stopped: %v", status, doc)
			}
			time.Sleep(50 * time.Millisecond) // polling the health probes' verdict, bounded by the deadline
		}
		checkHealthShape(t, "/health", doc)
		if doc["healthy_analyzers"] != 0.0 || doc["total_analyzers"] != 3.0 {
			t.Errorf("/health with every analyzer down: %v", doc)
		}
		out, _ := doc["analyzers"].([]any)
		if len(out) != 3 {
			t.Fatalf("/health analyzers: %v, want all three listed", doc["analyzers"])
		}
		for _, x := range out {
			a, _ := x.(map[string]any)
			if a["state"] == "healthy" || a["state"] == nil || a["reason"] == nil || a["reason"] == "" {
				t.Errorf("/health: analyzer %v should say it is out and why", a)
			}
		}
		if status, _ := getJSON(t, ingestURL+"/health"); status != 503 {
			t.Errorf("%s/health: status %d with every analyzer down", ingestURL, status)
		}
		m := scrape(t, metricsURL+"/metrics")
		m.expect(t, "distributor_healthy_analyzers", nil, 0)
		m.expect(t, "distributor_total_analyzers", nil, 3)
		for _, n := range names {
			if s := m.get(t, "distributor_breaker_state", map[string]string{"analyzer": n}); s != 3 {
				t.Errorf("distributor_breaker_state{analyzer=%q} = %v, want 3 (open)", n, s)
			}
			if o := m.get(t, "distributor_breaker_opens_total", map[string]string{"analyzer": n}); o < 1 {
				t.Errorf("distributor_breaker_opens_total{analyzer=%q} = %v with the analyzer down", n, o)
			}
			m.expect(t, "distributor_analyzer_effective_weight", map[string]string{"analyzer": n}, 0)
		}
	})

	t.Run("pprof", func(t *testing.T) {
		for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1"} {
			resp, err := http.Get(metricsURL + p)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || len(body) == 0 {
				t.Errorf("%s: status %d, %d bytes", p, resp.StatusCode, len(body))
			}
		}
	})
}

// --- The dashboard

type dashExpr struct {
	panel  string
	raw    string // as in the JSON
	promQL string // Grafana variables replaced
}

// grafanaVars are the built-in variables the dashboard may use, with values fit
// for a Prometheus scraping every second, and its own job and instance
// variables at their "All" value (allValue .+).
var grafanaVars = strings.NewReplacer(
	"${__rate_interval}", "15s", "$__rate_interval", "15s",
	"${__interval}", "5s", "$__interval", "5s",
	"${__range}", "1m", "$__range", "1m",
	"$job", ".+", "$instance", ".+",
)

// replicaFilter is the matcher every distributor selector of the dashboard
// carries, so that one dashboard shows one replica, some or all of them.
const replicaFilter = `job=~"$job", instance=~"$instance"`

// distributorSelector matches a selector of a metric the distributor exports
// (its own, and the Go runtime's and process's), with its braces if any.
var distributorSelector = regexp.MustCompile(`\b((?:distributor|process|go)_[a-z_]+)(\{[^}]*\})?`)

// checkDashboardVariables: the dashboard has the datasource, job and instance
// variables, the job and instance ones listing the distributor's series and
// matching everything when "All" is chosen, and every selector of a distributor
// metric filters by them.
func checkDashboardVariables(t *testing.T, path string, exprs []dashExpr) (varQueries []string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Templating struct {
			List []struct {
				Name       string          `json:"name"`
				Type       string          `json:"type"`
				Query      json.RawMessage `json:"query"`
				Definition string          `json:"definition"`
				Datasource struct {
					UID string `json:"uid"`
				} `json:"datasource"`
				IncludeAll bool   `json:"includeAll"`
				AllValue   string `json:"allValue"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	seen := map[string]bool{}
	for _, v := range doc.Templating.List {
		seen[v.Name] = true
		switch v.Name {
		case "datasource":
			if v.Type != "datasource" || string(v.Query) != `"prometheus"` {
				t.Errorf("%s: variable datasource is %s over %s, want a datasource variable over prometheus", path, v.Type, v.Query)
			}
		case "job", "instance":
			label := regexp.MustCompile(`^label_values\((.+), ` + v.Name + `\)$`).FindStringSubmatch(v.Definition)
			if v.Type != "query" || v.Datasource.UID != "${datasource}" || label == nil {
				t.Errorf("%s: variable %s: type %s, datasource %q, definition %q; want a label_values(..., %s) query on ${datasource}", path, v.Name, v.Type, v.Datasource.UID, v.Definition, v.Name)
				continue
			}
			if !v.IncludeAll || v.AllValue != ".+" {
				t.Errorf("%s: variable %s: includeAll %v, allValue %q; want All matching .+", path, v.Name, v.IncludeAll, v.AllValue)
			}
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil || q.Query != v.Definition {
				t.Errorf("%s: variable %s: query %s is not its definition %q", path, v.Name, v.Query, v.Definition)
			}
			varQueries = append(varQueries, grafanaVars.Replace(label[1]))
		}
	}
	for _, n := range []string{"datasource", "job", "instance"} {
		if !seen[n] {
			t.Errorf("%s: no %s variable", path, n)
		}
	}
	for _, e := range exprs {
		for _, m := range distributorSelector.FindAllStringSubmatch(e.raw, -1) {
			if !strings.Contains(m[2], replicaFilter) {
				t.Errorf("%s: panel %q: %s does not filter by %s", path, e.panel, m[0], replicaFilter)
			}
		}
	}
	return varQueries
}

// dashboardExprs returns every "expr" anywhere in the dashboard JSON, with the
// title of the panel it belongs to.
func dashboardExprs(t *testing.T, path string) []dashExpr {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []dashExpr
	var walk func(v any, panel string)
	walk = func(v any, panel string) {
		switch x := v.(type) {
		case map[string]any:
			if title, ok := x["title"].(string); ok {
				panel = title
			}
			for k, child := range x {
				if k == "expr" {
					s, ok := child.(string)
					if !ok || strings.TrimSpace(s) == "" {
						t.Errorf("%s: panel %q has an empty or non-string expr", path, panel)
						continue
					}
					q := grafanaVars.Replace(s)
					if strings.Contains(q, "$") {
						t.Errorf("%s: panel %q: expr %q uses a variable the test does not know", path, panel, s)
					}
					out = append(out, dashExpr{panel: panel, raw: s, promQL: q})
					continue
				}
				walk(child, panel)
			}
		case []any:
			for _, child := range x {
				walk(child, panel)
			}
		}
	}
	walk(doc, "")
	sort.Slice(out, func(i, j int) bool { return out[i].panel+out[i].raw < out[j].panel+out[j].raw })
	if len(out) < 20 {
		t.Fatalf("%s: only %d expressions found", path, len(out))
	}
	return out
}

// checkDashboardCoverage asserts the dashboard shows what the issue asks for: the
// seed's panels and the added ones.
func checkDashboardCoverage(t *testing.T, exprs []dashExpr) {
	t.Helper()
	var all strings.Builder
	for _, e := range exprs {
		// Without the replica filter (checkDashboardVariables checks it).
		r := strings.NewReplacer("{"+replicaFilter+"}", "", replicaFilter+", ", "").Replace(e.raw)
		all.WriteString(r + "\n")
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`rate\(distributor_total_packets_total\[`),
		regexp.MustCompile(`rate\(distributor_total_messages_total\[`),
		regexp.MustCompile(`by \(analyzer\) \(rate\(distributor_packets_by_analyzer_total\[`),
		regexp.MustCompile(`by \(analyzer\) \(rate\(distributor_messages_by_analyzer_total\[`),
		regexp.MustCompile(`distributor_queue_depth`),
		regexp.MustCompile(`distributor_healthy_analyzers`),
		regexp.MustCompile(`distributor_total_analyzers`),
		regexp.MustCompile(`distributor_analyzer_weight`),
		regexp.MustCompile(`rate\(distributor_delivered_messages_total\[[^\]]+\]\)\) / on\(\) group_left\(\) sum\(`),
		regexp.MustCompile(`histogram_quantile\([0-9.]+, sum by \(le\) \(rate\(distributor_request_duration_seconds_bucket\[`),
		regexp.MustCompile(`histogram_quantile\([0-9.]+, sum by \(le, analyzer\) \(rate\(distributor_upstream_rtt_seconds_bucket\[`),
		regexp.MustCompile(`distributor_responses_total\{code=~"503\|429"\}`),
		regexp.MustCompile(`rate\(distributor_retries_total\[`),
		regexp.MustCompile(`by \(reason\) \(rate\(distributor_dropped_packets_total\[`),
		regexp.MustCompile(`by \(reason\) \(rate\(distributor_rejected_packets_total\[`),
		regexp.MustCompile(`distributor_breaker_state`),
		regexp.MustCompile(`distributor_breaker_opens_total`),
	} {
		if !want.MatchString(all.String()) {
			t.Errorf("dashboard: no expression matches %s", want)
		}
	}
}

// checkProvisioning validates the compose stack's Prometheus configuration with
// promtool and checks that the dashboard's datasource is the provisioned one.
func checkProvisioning(t *testing.T, promtool string) {
	t.Helper()
	if out, err := exec.Command(promtool, "check", "config", filepath.Join("deploy", "prometheus", "prometheus.yml")).CombinedOutput(); err != nil {
		t.Errorf("promtool check config deploy/prometheus/prometheus.yml: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join("deploy", "grafana", "provisioning", "datasources", "*.yml"))
	if len(files) == 0 {
		t.Fatal("no Grafana datasource under deploy/grafana/provisioning/datasources")
	}
	uids := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)^\s*uid:\s*"?([A-Za-z0-9_-]+)"?\s*$`).FindAllSubmatch(b, -1) {
			uids[string(m[1])] = true
		}
	}
	if d, _ := filepath.Glob(filepath.Join("deploy", "grafana", "provisioning", "dashboards", "*.yml")); len(d) == 0 {
		t.Error("no dashboard provider under deploy/grafana/provisioning/dashboards")
	}
	raw, err := os.ReadFile(filepath.Join("deploy", "grafana", "dashboards", "sluice.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Panels use the datasource variable, whose default is a provisioned
	// datasource.
	for _, m := range regexp.MustCompile(`"datasource":\s*\{\s*"type":\s*"prometheus",\s*"uid":\s*"([^"]+)"`).FindAllSubmatch(raw, -1) {
		if string(m[1]) != "${datasource}" {
			t.Fatalf("dashboard uses datasource uid %q, want ${datasource}", m[1])
		}
	}
	var doc struct {
		Templating struct {
			List []struct {
				Name    string `json:"name"`
				Current struct {
					Value string `json:"value"`
				} `json:"current"`
			} `json:"list"`
		} `json:"templating"`
	}
	_ = json.Unmarshal(raw, &doc) // checkDashboardVariables reports a malformed list
	for _, v := range doc.Templating.List {
		if v.Name == "datasource" && !uids[v.Current.Value] {
			t.Errorf("dashboard's datasource variable defaults to %q; provisioned: %v", v.Current.Value, uids)
		}
	}
}

// --- Prometheus

type promServer struct {
	base string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
}

// startPrometheus runs Prometheus scraping the distributor (job "distributor") and
// the analyzers (job "analyzers") every second, with its data in a temporary
// directory, and returns once it answers /-/ready.
func startPrometheus(t *testing.T, bin, distributorMetrics string, analyzers []*analyzer.Analyzer) *promServer {
	t.Helper()
	dir := t.TempDir()
	var targets []string
	for _, a := range analyzers {
		targets = append(targets, strconv.Quote(a.Addr()))
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: distributor
    static_configs:
      - targets: [%q]
  - job_name: analyzers
    static_configs:
      - targets: [%s]
`, distributorMetrics, strings.Join(targets, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	p := &promServer{base: "http://" + addr, log: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", p.log.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(p.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("prometheus exited: %v\n%s", p.cmd.ProcessState, p.log.String())
		case <-time.After(100 * time.Millisecond): // polling readiness, bounded by the deadline
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 20 s:\n%s", p.log.String())
		}
	}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func (p *promServer) api(t *testing.T, path string, params url.Values, out any) {
	t.Helper()
	resp, err := http.Get(p.base + path + "?" + params.Encode())
	if err != nil {
		t.Fatalf("prometheus %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var env struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("prometheus %s %v: %v: %s", path, params, err, body)
	}
	if env.Status != "success" {
		t.Fatalf("prometheus %s %v: %s: %s", path, params, env.ErrorType, env.Error)
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		t.Fatalf("prometheus %s: %v: %s", path, err, env.Data)
	}
}

// waitTargetsUp polls /api/v1/targets until n targets are up.
func (p *promServer) waitTargetsUp(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		}
		p.api(t, "/api/v1/targets", url.Values{"state": {"active"}}, &data)
		up := 0
		var state []string
		for _, tg := range data.ActiveTargets {
			if tg.Health == "up" {
				up++
			}
			state = append(state, tg.ScrapeURL+" "+tg.Health+" "+tg.LastError)
		}
		if up == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d targets up after %v: %v", up, n, within, state)
		}
		time.Sleep(200 * time.Millisecond) // polling Prometheus, bounded by the deadline
	}
}

// waitQuery polls an instant query until its first sample satisfies ok.
func (p *promServer) waitQuery(t *testing.T, q string, ok func(float64) bool, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		res := p.query(t, q)
		if len(res) > 0 && ok(res[0].value) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v after %v", q, res, within)
		}
		time.Sleep(200 * time.Millisecond) // polling Prometheus, bounded by the deadline
	}
}

type promSample struct {
	metric map[string]string
	value  float64
}

// query evaluates an instant query now; a scalar result is one sample.
func (p *promServer) query(t *testing.T, q string) []promSample {
	t.Helper()
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	p.api(t, "/api/v1/query", url.Values{"query": {q}}, &data)
	switch data.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &vec); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		out := make([]promSample, 0, len(vec))
		for _, s := range vec {
			out = append(out, promSample{s.Metric, promValue(t, s.Value[1])})
		}
		return out
	case "scalar":
		var s [2]any
		if err := json.Unmarshal(data.Result, &s); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return []promSample{{nil, promValue(t, s[1])}}
	}
	t.Fatalf("%s: result type %q, want vector or scalar", q, data.ResultType)
	return nil
}

// queryRaw evaluates a range-vector selector and returns the raw samples
// ([timestamp, value]) of each series, by metric name.
func (p *promServer) queryRaw(t *testing.T, q string) map[string][][2]float64 {
	t.Helper()
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	}
	p.api(t, "/api/v1/query", url.Values{"query": {q}}, &data)
	if data.ResultType != "matrix" {
		t.Fatalf("%s: result type %q, want matrix", q, data.ResultType)
	}
	out := map[string][][2]float64{}
	for _, r := range data.Result {
		name := r.Metric["__name__"]
		if _, dup := out[name]; dup {
			t.Fatalf("%s: two series named %s", q, name)
		}
		for _, v := range r.Values {
			ts, ok := v[0].(float64)
			if !ok {
				t.Fatalf("%s: timestamp %v is %T", q, v[0], v[0])
			}
			out[name] = append(out[name], [2]float64{ts, promValue(t, v[1])})
		}
	}
	return out
}

func promValue(t *testing.T, v any) float64 {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Fatalf("sample value %v is %T, want a string", v, v)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("sample value %q: %v", s, err)
	}
	return f
}

// --- The exposition, scraped directly

// exposition is one scrape of /metrics: samples by canonical series name
// (name{label="value",...} with labels sorted), and the HELP and TYPE lines.
type exposition struct {
	raw     []byte
	samples map[string]float64
	help    map[string]string
	types   map[string]string
}

func scrape(t *testing.T, u string) *exposition {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET %s: Content-Type %q", u, ct)
	}
	e, err := parseExposition(body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return e
}

func parseExposition(b []byte) (*exposition, error) {
	e := &exposition{raw: b, samples: map[string]float64{}, help: map[string]string{}, types: map[string]string{}}
	for n, line := range strings.Split(string(b), "\n") {
		switch {
		case line == "":
		case strings.HasPrefix(line, "# HELP "):
			name, text, _ := strings.Cut(line[len("# HELP "):], " ")
			if _, dup := e.help[name]; dup {
				return nil, fmt.Errorf("line %d: second HELP for %s", n+1, name)
			}
			e.help[name] = text
		case strings.HasPrefix(line, "# TYPE "):
			name, typ, _ := strings.Cut(line[len("# TYPE "):], " ")
			if _, dup := e.types[name]; dup {
				return nil, fmt.Errorf("line %d: second TYPE for %s", n+1, name)
			}
			e.types[name] = typ
		case strings.HasPrefix(line, "#"):
		default:
			series, value, err := parseSample(line)
			if err != nil {
				return nil, fmt.Errorf("line %d %q: %v", n+1, line, err)
			}
			if _, dup := e.samples[series]; dup {
				return nil, fmt.Errorf("line %d: series %s twice", n+1, series)
			}
			e.samples[series] = value
		}
	}
	return e, nil
}

// parseSample parses `name{k="v",...} value [timestamp]` into a canonical series
// name and its value.
func parseSample(line string) (string, float64, error) {
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return "", 0, errors.New("no metric name")
	}
	name, rest := line[:i], line[i:]
	labels := map[string]string{}
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, " ,")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, `="`)
			if eq <= 0 {
				return "", 0, errors.New("bad label")
			}
			key := rest[:eq]
			rest = rest[eq+2:]
			var val strings.Builder
			for {
				if rest == "" {
					return "", 0, errors.New("unterminated label value")
				}
				c := rest[0]
				rest = rest[1:]
				if c == '"' {
					break
				}
				if c == '\\' && rest != "" {
					switch rest[0] {
					case 'n':
						c = '\n'
					default:
						c = rest[0]
					}
					rest = rest[1:]
				}
				val.WriteByte(c)
			}
			labels[key] = val.String()
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 || len(fields) > 2 {
		return "", 0, errors.New("want a value and at most a timestamp")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", 0, err
	}
	return seriesKey(name, labels), v, nil
}

func seriesKey(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(name + "{")
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + strconv.Quote(labels[k]))
	}
	b.WriteByte('}')
	return b.String()
}

func (e *exposition) get(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	k := seriesKey(name, labels)
	v, ok := e.samples[k]
	if !ok {
		t.Fatalf("series %s missing from /metrics", k)
	}
	return v
}

func (e *exposition) expect(t *testing.T, name string, labels map[string]string, want float64) {
	t.Helper()
	if got := e.get(t, name, labels); got != want {
		t.Errorf("%s = %v, want %v", seriesKey(name, labels), got, want)
	}
}

// seriesOf returns the label sets of every sample of a metric name.
func (e *exposition) seriesOf(name string) []string {
	var out []string
	for k := range e.samples {
		if k == name || strings.HasPrefix(k, name+"{") {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// checkSeedFamilies: the seed's seven metrics with their names, types and the
// analyzer label where the seed has it.
func checkSeedFamilies(t *testing.T, m *exposition, names []string) {
	t.Helper()
	for _, f := range []struct {
		name, typ  string
		byAnalyzer bool
	}{
		{"distributor_total_packets_total", "counter", false},
		{"distributor_total_messages_total", "counter", false},
		{"distributor_packets_by_analyzer_total", "counter", true},
		{"distributor_messages_by_analyzer_total", "counter", true},
		{"distributor_queue_depth", "gauge", true},
		{"distributor_healthy_analyzers", "gauge", false},
		{"distributor_total_analyzers", "gauge", false},
	} {
		if m.types[f.name] != f.typ {
			t.Errorf("seed metric %s: TYPE %q, want %q", f.name, m.types[f.name], f.typ)
		}
		if !f.byAnalyzer {
			m.get(t, f.name, nil)
			continue
		}
		if got := m.seriesOf(f.name); len(got) != len(names) {
			t.Errorf("seed metric %s: series %v, want one per analyzer", f.name, got)
		}
		for _, n := range names {
			m.get(t, f.name, map[string]string{"analyzer": n})
		}
	}
	for _, n := range names {
		if m.get(t, "distributor_packets_by_analyzer_total", map[string]string{"analyzer": n}) == 0 {
			t.Errorf("no packets routed to %s under load", n)
		}
	}
}

// checkMetadata: every family has HELP text and a TYPE, and every sample belongs
// to a family declared before it.
func checkMetadata(t *testing.T, m *exposition) {
	t.Helper()
	for name, typ := range m.types {
		switch typ {
		case "counter", "gauge", "histogram", "summary", "untyped":
		default:
			t.Errorf("%s: TYPE %q", name, typ)
		}
		if strings.TrimSpace(m.help[name]) == "" {
			t.Errorf("%s: no HELP text", name)
		}
		if typ == "counter" && strings.HasPrefix(name, "distributor_") && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
		if typ != "counter" && strings.HasSuffix(name, "_total") {
			t.Errorf("%s %s ends in _total", typ, name)
		}
	}
	for name := range m.help {
		if _, ok := m.types[name]; !ok {
			t.Errorf("%s: HELP without TYPE", name)
		}
	}
	for k := range m.samples {
		name, _, _ := strings.Cut(k, "{")
		fam := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suf); ok {
				if typ := m.types[base]; typ == "histogram" || typ == "summary" {
					fam = base
				}
			}
		}
		if _, ok := m.types[fam]; !ok {
			t.Errorf("sample %s: no TYPE for its family %s", k, fam)
		}
	}
	if n := len(m.types); n < 30 {
		t.Errorf("only %d families exposed", n)
	}
}

// checkHistogram: a Prometheus histogram with _bucket{...,le=...} series ending in
// le="+Inf", cumulative, with _count equal to the +Inf bucket and a _sum, for
// every value of the label it is split by.
func checkHistogram(t *testing.T, m *exposition, name, by string, want []string) {
	t.Helper()
	if m.types[name] != "histogram" {
		t.Fatalf("%s: TYPE %q, want histogram", name, m.types[name])
	}
	type series struct {
		buckets map[float64]float64
		sum     *float64
		count   *float64
	}
	groups := map[string]*series{}
	get := func(labels map[string]string) *series {
		delete(labels, "le")
		k := seriesKey("", labels)
		if groups[k] == nil {
			groups[k] = &series{buckets: map[float64]float64{}}
		}
		return groups[k]
	}
	seen := map[string]bool{}
	for k, v := range m.samples {
		metric, lbl, _ := strings.Cut(k, "{")
		labels := parseLabels(t, lbl)
		switch metric {
		case name + "_bucket":
			le, ok := labels["le"]
			if !ok {
				t.Fatalf("%s without le", k)
			}
			bound, err := strconv.ParseFloat(le, 64)
			if err != nil {
				t.Fatalf("%s: le %q: %v", k, le, err)
			}
			seen[labels[by]] = true
			get(labels).buckets[bound] = v
		case name + "_sum":
			v := v
			get(labels).sum = &v
		case name + "_count":
			v := v
			get(labels).count = &v
		}
	}
	if len(groups) == 0 {
		t.Fatalf("%s: no series", name)
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("%s: no series with %s=%q", name, by, w)
		}
	}
	var observed float64
	for k, s := range groups {
		inf, ok := s.buckets[math.Inf(1)]
		if !ok || len(s.buckets) < 5 {
			t.Errorf("%s%s: buckets %v, want several and le=\"+Inf\"", name, k, s.buckets)
			continue
		}
		bounds := make([]float64, 0, len(s.buckets))
		for b := range s.buckets {
			bounds = append(bounds, b)
		}
		sort.Float64s(bounds)
		for i := 1; i < len(bounds); i++ {
			if s.buckets[bounds[i]] < s.buckets[bounds[i-1]] {
				t.Errorf("%s%s: bucket le=%v (%v) below le=%v (%v)", name, k, bounds[i], s.buckets[bounds[i]], bounds[i-1], s.buckets[bounds[i-1]])
			}
		}
		if s.count == nil || *s.count != inf || s.sum == nil {
			t.Errorf("%s%s: _count %v, +Inf bucket %v, _sum %v", name, k, s.count, inf, s.sum)
		}
		observed += inf
	}
	if observed == 0 {
		t.Errorf("%s: nothing observed under load", name)
	}
}

func parseLabels(t *testing.T, lbl string) map[string]string {
	t.Helper()
	out := map[string]string{}
	if lbl == "" {
		return out
	}
	for _, kv := range strings.Split(strings.TrimSuffix(lbl, "}"), ",") {
		k, v, _ := strings.Cut(kv, "=")
		uq, err := strconv.Unquote(v)
		if err != nil {
			t.Fatalf("label %q: %v", kv, err)
		}
		out[k] = uq
	}
	return out
}

// checkInvariant: accepted = delivered + queued + in_flight + dropped in total, the
// totals equal the per-analyzer sums, and per analyzer routed = delivered + queued
// + in_flight + dropped + rerouted, all in one scrape.
func checkInvariant(t *testing.T, m *exposition, names []string) {
	t.Helper()
	accepted := m.get(t, "distributor_total_packets_total", nil)
	delivered := m.get(t, "distributor_delivered_total", nil)
	queued := m.get(t, "distributor_queued", nil)
	inFlight := m.get(t, "distributor_in_flight", nil)
	dropped := m.get(t, "distributor_dropped_total", nil)
	if accepted != delivered+queued+inFlight+dropped {
		t.Errorf("accepted %v != delivered %v + queued %v + in_flight %v + dropped %v", accepted, delivered, queued, inFlight, dropped)
	}
	m.expect(t, "distributor_accounting_outstanding", nil, 0)
	var sumDelivered, sumQueued, sumInFlight, sumDropped float64
	for _, n := range names {
		a := map[string]string{"analyzer": n}
		d := m.get(t, "distributor_delivered_packets_total", a)
		q := m.get(t, "distributor_queue_depth", a)
		f := m.get(t, "distributor_in_flight_packets", a)
		var x float64
		for _, reason := range []string{"retries_exhausted", "shutdown_timeout"} {
			x += m.get(t, "distributor_dropped_packets_total", map[string]string{"analyzer": n, "reason": reason})
		}
		r := m.get(t, "distributor_rerouted_packets_total", a)
		routed := m.get(t, "distributor_packets_by_analyzer_total", a)
		if routed != d+q+f+x+r {
			t.Errorf("%s: routed %v != delivered %v + queued %v + in_flight %v + dropped %v + rerouted %v", n, routed, d, q, f, x, r)
		}
		sumDelivered += d
		sumQueued += q
		sumInFlight += f
		sumDropped += x
	}
	if sumDelivered != delivered || sumQueued != queued || sumInFlight != inFlight || sumDropped != dropped {
		t.Errorf("totals (delivered %v, queued %v, in flight %v, dropped %v) differ from the per-analyzer sums (%v, %v, %v, %v)",
			delivered, queued, inFlight, dropped, sumDelivered, sumQueued, sumInFlight, sumDropped)
	}
}

// checkLint runs promtool's naming lint over the distributor's own families (the
// Go runtime ones are named by VictoriaMetrics/metrics).
func checkLint(t *testing.T, promtool string, raw []byte) {
	t.Helper()
	var own bytes.Buffer
	for _, line := range bytes.SplitAfter(raw, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("distributor_")) || bytes.HasPrefix(line, []byte("# HELP distributor_")) || bytes.HasPrefix(line, []byte("# TYPE distributor_")) {
			own.Write(line)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &own
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// --- JSON endpoints

func getJSON(t *testing.T, u string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET %s: Content-Type %q", u, ct)
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("GET %s: %v: %s", u, err, body)
	}
	return resp.StatusCode, doc
}

func checkHealthShape(t *testing.T, where string, doc map[string]any) {
	t.Helper()
	if _, ok := doc["status"].(string); !ok {
		t.Errorf("%s: status is %T, want a string", where, doc["status"])
	}
	for _, f := range []string{"healthy_analyzers", "total_analyzers"} {
		if _, ok := doc[f].(float64); !ok {
			t.Errorf("%s: %q is %T, want a number", where, f, doc[f])
		}
	}
	checkTimestamp(t, where, doc)
}

func checkTimestamp(t *testing.T, where string, doc map[string]any) {
	t.Helper()
	ts, _ := doc["timestamp"].(string)
	when, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		t.Errorf("%s: timestamp %q: %v", where, ts, err)
		return
	}
	if d := time.Since(when); d < -2*time.Second || d > time.Minute {
		t.Errorf("%s: timestamp %s is not now", where, ts)
	}
}
