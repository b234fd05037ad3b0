package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/codec"
)

func TestPacketIsAValidSeedPacketOfAbout1100Bytes(t *testing.T) {
	p := NewPacket("bench-emitter", 1_700_000_000_000)
	id := "b1x2y3-r1-vegeta-sluice-123456"
	body := p.Append(nil, id)
	if len(body) != p.Size(len(id)) {
		t.Fatalf("Size says %d, body is %d bytes", p.Size(len(id)), len(body))
	}
	if len(body) < 1000 || len(body) > 1250 {
		t.Errorf("body is %d bytes, want about 1.1 KB", len(body))
	}
	var pk codec.Packet
	if err := codec.ValidatePacket(body, &pk); err != nil {
		t.Fatalf("sluice refuses the benchmark packet: %v\n%s", err, body)
	}
	if string(pk.ID) != id || pk.Messages != MessagesPerPacket || string(pk.EmitterID) != "bench-emitter" {
		t.Errorf("validated as id %q, %d messages, emitter %q", pk.ID, pk.Messages, pk.EmitterID)
	}
	// The seed's shape, as a Go analyzer would decode it.
	var seed struct {
		EmitterID string `json:"emitter_id"`
		PacketID  string `json:"packet_id"`
		Messages  []struct {
			Timestamp int64             `json:"timestamp"`
			Level     string            `json:"level"`
			Message   string            `json:"message"`
			Metadata  map[string]string `json:"metadata"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &seed); err != nil {
		t.Fatal(err)
	}
	if seed.PacketID != id || len(seed.Messages) != MessagesPerPacket || seed.Messages[4].Level != "ERROR" ||
		!strings.Contains(seed.Messages[4].Message, `"connection reset by peer"`) || seed.Messages[0].Timestamp != 1_700_000_000_000 {
		t.Errorf("decoded %+v", seed)
	}
}

// luaLongString returns the contents of the long string assigned to name.
func luaLongString(t *testing.T, script, name string) string {
	t.Helper()
	open := "local " + name + " = [==["
	i := strings.Index(script, open)
	if i < 0 {
		t.Fatalf("no %q in script", open)
	}
	rest := script[i+len(open):]
	j := strings.Index(rest, "]==]")
	if j < 0 {
		t.Fatalf("%s: long string not closed", name)
	}
	return rest[:j]
}

func TestWrkScriptCarriesThePacketAndAFreshIDPerRequest(t *testing.T) {
	p := NewPacket("e1", 42)
	script, err := WrkScript(p)
	if err != nil {
		t.Fatal(err)
	}
	head, tail := luaLongString(t, script, "head"), luaLongString(t, script, "tail")
	if head+"ID"+tail != string(p.Append(nil, "ID")) {
		t.Errorf("the script's packet differs from the harness's:\n%s\n%s", head+"ID"+tail, p.Append(nil, "ID"))
	}
	for _, want := range []string{
		"function setup(thread)", `thread:set("thread_no", #threads)`, // per-thread part of the id
		"function init(args)", "prefix = args[1]", // per-run part, from the command line
		"seq = seq + 1", "head .. prefix .. seq .. tail", // per-request part
		`wrk.format("POST", nil, headers, `, `["Content-Type"] = "application/json"`,
		"function done(summary, latency, requests)", wrkReportPrefix, "latency:percentile(99.9)",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	if _, err := WrkScript(Packet{Head: `{"a":"]==]`, Tail: `"}`}); err == nil {
		t.Error("a packet containing the long-string close was rendered")
	}
}

func TestParseWrkReport(t *testing.T) {
	out := []byte(`Running 8s test @ http://127.0.0.1:18120/ingest
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  300.00us   9.00ms   90.00%
  400000 requests in 8.00s, 60.00MB read
  Non-2xx or 3xx responses: 1000
Requests/sec:  50000.00
sluice-bench-wrk {"requests":400000,"duration_us":8000000,"status_errors":1000,"connect_errors":0,"read_errors":3,"write_errors":1,"timeout_errors":0,"p50_us":1000,"p99_us":2500,"p999_us":7000,"max_us":9000}
`)
	o, err := ParseWrkReport(out)
	if err != nil {
		t.Fatal(err)
	}
	want := Outcome{Requests: 400004, OK: 399000, Elapsed: 8 * time.Second, P50: time.Millisecond, P99: 2500 * time.Microsecond, P999: 7 * time.Millisecond}
	if o != want {
		t.Errorf("got %+v\nwant %+v", o, want)
	}
	if _, err := ParseWrkReport([]byte("Running 8s test\nRequests/sec: 1\n")); err == nil {
		t.Error("output without the script's line parsed")
	}
	if _, err := ParseWrkReport([]byte(`sluice-bench-wrk {"requests":1,"duration_us":0}`)); err == nil {
		t.Error("a report without duration parsed")
	}
}

func TestWrkArgs(t *testing.T) {
	w := Wrk{Path: "/usr/bin/wrk", Script: "/tmp/x/ingest.lua", Threads: 1}
	l := Load{URL: "http://127.0.0.1:1/ingest", Conns: 64, Duration: 7600 * time.Millisecond, IDPrefix: "b1-r1-"}
	got := w.Command(l)
	want := "wrk -t1 -c64 -d8s --timeout 10s -s /tmp/x/ingest.lua http://127.0.0.1:1/ingest b1-r1-"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestNginxWeights(t *testing.T) {
	cases := []struct {
		in   []float64
		want []int
	}{
		{[]float64{0.5, 0.3, 0.2}, []int{5, 3, 2}},
		{[]float64{1, 1}, []int{1, 1}},
		{[]float64{0.7, 0.3}, []int{7, 3}},
		{[]float64{1.0 / 3, 2.0 / 3}, []int{1, 2}},
		{[]float64{0.25, 0.25, 0.5}, []int{1, 1, 2}},
		{[]float64{math.Pi, 1}, []int{3142, 1000}}, // no whole scale: rounded at 1000
	}
	for _, c := range cases {
		got, err := NginxWeights(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("NginxWeights(%v) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range [][]float64{{0.5, 0}, {-1}, {math.NaN()}, {math.Inf(1)}} {
		if _, err := NginxWeights(bad); err == nil {
			t.Errorf("NginxWeights(%v) accepted", bad)
		}
	}
}

func TestNginxConfigRender(t *testing.T) {
	c := NginxConfig{Dir: "/tmp/b/nginx", Listen: "127.0.0.1:18150", Workers: 2, Upstreams: []NginxUpstream{
		{"127.0.0.1:18100", 5}, {"127.0.0.1:18101", 3}, {"127.0.0.1:18102", 2},
	}}
	conf, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"worker_processes 2;", "daemon off;", "pid /tmp/b/nginx/nginx.pid;", "access_log off;",
		"server 127.0.0.1:18100 weight=5;\n", "server 127.0.0.1:18101 weight=3;\n", "server 127.0.0.1:18102 weight=2;\n",
		"keepalive 256;", "listen 127.0.0.1:18150 backlog=4096;", "proxy_pass http://analyzers;",
		"proxy_http_version 1.1;", `proxy_set_header Connection "";`, "client_body_temp_path /tmp/b/nginx/client_body;",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("nginx.conf lacks %q:\n%s", want, conf)
		}
	}
	if strings.Count(conf, "{") != strings.Count(conf, "}") {
		t.Errorf("unbalanced braces:\n%s", conf)
	}
	if _, err := (NginxConfig{Dir: "/x", Listen: "127.0.0.1:1", Workers: 1}).Render(); err == nil {
		t.Error("a config without upstreams rendered")
	}
}

func TestMedian(t *testing.T) {
	xs := []float64{5, 1, 3}
	if m := Median(xs); m != 3 {
		t.Errorf("Median(5,1,3) = %v", m)
	}
	if !slices.Equal(xs, []float64{5, 1, 3}) {
		t.Errorf("Median sorted its argument: %v", xs)
	}
	if m := Median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("Median(4,1,3,2) = %v", m)
	}
	if m := Median(nil); m != 0 {
		t.Errorf("Median() = %v", m)
	}
}

// sample is a full-load sample that accepted ok packets in one second.
func sample(target, driver string, round int, ok int64) Sample {
	return Sample{Target: target, Driver: driver, Round: round, Delivered: -1, Outcome: Outcome{Requests: ok, OK: ok, Elapsed: time.Second}}
}

func TestRoundRatiosPairRoundsAndTakeTheMedian(t *testing.T) {
	samples := []Sample{
		sample("sluice", "wrk", 1, 800), sample("ceiling", "wrk", 1, 1000),
		sample("sluice", "wrk", 2, 900), sample("ceiling", "wrk", 2, 1000),
		sample("sluice", "wrk", 3, 600), sample("ceiling", "wrk", 3, 1200),
		sample("sluice", "wrk", 4, 999),                                        // no ceiling in round 4: not paired
		sample("sluice", "vegeta", 1, 1), sample("ceiling", "vegeta", 1, 1000), // other driver
	}
	half := sample("sluice", "wrk", 0, 1)
	half.Rate = 500 // constant-rate samples are not full load
	samples = append(samples, half)
	r, ok := RoundRatios(samples, "wrk", "sluice", "ceiling")
	if !ok {
		t.Fatal("no ratio")
	}
	if !slices.Equal(r.PerRound, []float64{0.8, 0.9, 0.5}) || r.Median != 0.8 {
		t.Errorf("got rounds %v median %v; want [0.8 0.9 0.5] median 0.8", r.PerRound, r.Median)
	}
	if _, ok := RoundRatios(samples, "wrk", "sluice", "nginx"); ok {
		t.Error("a ratio against a target never measured")
	}
	if got := r.Sentence(); got != "sluice / ceiling (wrk): 0.80× (median of rounds 0.80, 0.90, 0.50)" {
		t.Errorf("Sentence() = %q", got)
	}
}

func TestSummarizeTakesMediansAndCostsPerAcceptedPacket(t *testing.T) {
	mk := func(ok, req int64, secs float64, p99 time.Duration, proxyCPU time.Duration, delivered int64) Sample {
		return Sample{
			Target: "sluice", Driver: "wrk", Round: 1, CPUs: 2, Delivered: delivered,
			Outcome:  Outcome{Requests: req, OK: ok, Elapsed: time.Duration(secs * float64(time.Second)), P99: p99, LoadCPU: 500 * time.Millisecond},
			ProxyCPU: proxyCPU, MachineBusy: 2 * time.Second, MachineTotal: 2 * time.Second,
			UpstreamPackets: delivered, UpstreamRequests: delivered / 4,
		}
	}
	r := Summarize([]Sample{
		mk(10000, 10000, 1, 2*time.Millisecond, 200*time.Millisecond, 9000),
		mk(30000, 40000, 1, 9*time.Millisecond, 600*time.Millisecond, 30000),
		mk(20000, 20000, 1, 4*time.Millisecond, 1000*time.Millisecond, 20000),
	})
	if r.Accepted != 20000 || r.Delivered != 20000 || r.P99 != 4*time.Millisecond || r.Rounds != 3 {
		t.Errorf("accepted %v delivered %v p99 %v rounds %d", r.Accepted, r.Delivered, r.P99, r.Rounds)
	}
	if r.PerUpstream != 4 {
		t.Errorf("packets per analyzer request %v, want 4", r.PerUpstream)
	}
	if r.ProxyCPU != 20*time.Microsecond { // 20, 20, 50 µs per accepted packet
		t.Errorf("server CPU per packet %v, want 20µs", r.ProxyCPU)
	}
	if r.Non2xx != 0 { // 0, 0.25, 0
		t.Errorf("non-2xx %v, want the median 0", r.Non2xx)
	}
	// Busy: (proxy + load) / (1 s × 2 CPUs); others: the rest of 2 busy CPUs.
	if math.Abs(r.Busy-0.55) > 1e-9 || math.Abs(r.Others-0.45) > 1e-9 {
		t.Errorf("busy %v others %v; want 0.55 and 0.45", r.Busy, r.Others)
	}
	if c := Summarize([]Sample{sample("ceiling", "wrk", 1, 5)}); c.Delivered >= 0 {
		t.Errorf("a target that forwards nothing got delivered %v", c.Delivered)
	}
}

func TestChecks(t *testing.T) {
	cs := Checks([]Ratio{
		{Driver: "wrk", Num: TargetSluice, Den: TargetCeiling, Median: 0.81},
		{Driver: "vegeta", Num: TargetSluice, Den: TargetCeiling, Median: 0.79},
		{Driver: "wrk", Num: TargetSluicePlain, Den: TargetNginx, Median: 1.5},
		{Driver: "vegeta", Num: TargetSluicePlain, Den: TargetNginx, Median: 1.4981}, // rounds to the target: three decimals
		{Driver: "wrk", Num: TargetSluice, Den: TargetNginx, Median: 4},              // informative only
	}, []Row{
		// vegeta's rows are information: no check, and its ceiling is not the floor quoted.
		{Target: TargetCeiling, Driver: "vegeta", Rate: 10000, P99: 70 * time.Millisecond},
		{Target: TargetSluice, Driver: "vegeta", Rate: 10000, P99: 80 * time.Millisecond},
		{Target: TargetCeiling, Driver: "emitter", Rate: 20000, P99: 700 * time.Microsecond},
		{Target: TargetSluice, Driver: "emitter", Rate: 20000, P99: 1100 * time.Microsecond},
		{Target: TargetNginx, Driver: "emitter", Rate: 20000, P99: 900 * time.Microsecond},
	})
	got := make([]string, len(cs))
	for i, c := range cs {
		got[i] = c.verdict() + " " + c.What + ": " + c.Got
	}
	want := []string{
		"met sluice ≥ 0.8 × ceiling (wrk): 0.81×",
		"missed sluice ≥ 0.8 × ceiling (vegeta): 0.79×",
		"met sluice over plain analyzers ≥ 1.5 × nginx (wrk): 1.50×",
		"missed sluice over plain analyzers ≥ 1.5 × nginx (vegeta): 1.498×",
		"missed sluice p99 ≤ 1 ms at half load (emitter, 20,000 pkt/s): 1.10 ms (the ceiling at the same rate: 700 µs)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Met on the emitter's row however slow vegeta's is.
	cs = Checks(nil, []Row{
		{Target: TargetSluice, Driver: "vegeta", Rate: 10000, P99: 80 * time.Millisecond},
		{Target: TargetSluice, Driver: "emitter", Rate: 20000, P99: 800 * time.Microsecond},
	})
	if len(cs) != 1 || !cs[0].Met || cs[0].Got != "800 µs" {
		t.Errorf("got %+v, want one met check of 800 µs", cs)
	}
	// Without an emitter row there is nothing to check the 1 ms target on.
	if cs := Checks(nil, []Row{{Target: TargetSluice, Driver: "vegeta", Rate: 10000, P99: 500 * time.Microsecond}}); len(cs) != 0 {
		t.Errorf("checked vegeta's row: %+v", cs)
	}
}

func TestFormats(t *testing.T) {
	cases := []struct{ got, want string }{
		{Count(52310.4), "52,310"}, {Count(999.5), "1,000"}, {Count(0), "0"}, {Count(1234567), "1,234,567"}, {Count(-4321), "-4,321"},
		{Count(math.NaN()), "—"},
		{Latency(0), "—"}, {Latency(850 * time.Microsecond), "850 µs"}, {Latency(1234 * time.Microsecond), "1.23 ms"},
		{Latency(24100 * time.Microsecond), "24.1 ms"}, {Latency(209 * time.Millisecond), "209 ms"},
		{Micros(12345 * time.Nanosecond), "12.3 µs"}, {Micros(0), "—"},
		{Percent(0), "0 %"}, {Percent(0.1234), "12.3 %"}, {Percent(0.00012), "0.012 %"},
		{Bytes(21 << 20), "21.0 MiB"}, {Bytes(0), "—"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func testReport() *Report {
	return &Report{
		When: time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC), Machine: "Test CPU, 2 CPUs", Versions: "sluice abc123, go1.26",
		Settings: "BENCH_DURATION=8s BENCH_ROUNDS=3",
		Rows: []Row{
			{Target: TargetCeiling, Driver: "wrk", Rounds: 3, Accepted: 60000, Delivered: -1, P50: time.Millisecond, P99: 3 * time.Millisecond, P999: 5 * time.Millisecond, ProxyCPU: 10 * time.Microsecond, LoadCPU: 12 * time.Microsecond, Busy: 0.9, PeakRSS: 14 << 20},
			{Target: TargetSluice, Driver: "wrk", Rounds: 3, Accepted: 50000, Delivered: 49900, P50: time.Millisecond, P99: 4 * time.Millisecond, P999: 6 * time.Millisecond, PerUpstream: 2.5, ProxyCPU: 15 * time.Microsecond, AnalyzerCPU: 8 * time.Microsecond, LoadCPU: 12 * time.Microsecond, Busy: 0.95, Others: 0.02, PeakRSS: 22 << 20},
		},
		Ratios: []Ratio{{Driver: "wrk", Num: TargetSluice, Den: TargetCeiling, PerRound: []float64{0.8, 0.85, 0.83}, Median: 0.83}},
		Latency: []Row{
			{Target: TargetCeiling, Driver: "vegeta", Rounds: 1, Rate: 12000, Accepted: 12000, Delivered: -1, P50: 2 * time.Millisecond, P99: 40 * time.Millisecond, P999: 60 * time.Millisecond, LoadCPU: 80 * time.Microsecond},
			{Target: TargetSluice, Driver: "vegeta", Rounds: 1, Rate: 12000, Accepted: 12000, Delivered: 12000, P50: 3 * time.Millisecond, P99: 50 * time.Millisecond, P999: 70 * time.Millisecond, LoadCPU: 80 * time.Microsecond},
			{Target: TargetCeiling, Driver: "emitter", Rounds: 1, Rate: 25000, Accepted: 25000, Delivered: -1, P50: 200 * time.Microsecond, P99: 600 * time.Microsecond, P999: time.Millisecond, LoadCPU: 9 * time.Microsecond},
			{Target: TargetSluice, Driver: "emitter", Rounds: 1, Rate: 25000, Accepted: 25000, Delivered: 25000, P50: 300 * time.Microsecond, P99: 800 * time.Microsecond, P999: 2 * time.Millisecond, LoadCPU: 9 * time.Microsecond},
		},
		Checks:   []Check{{What: "sluice ≥ 0.8 × ceiling (wrk)", Got: "0.83×", Met: true}},
		Skipped:  []string{"the nginx rows and ratios (nginx not installed: make bench-peers)", "every wrk row (BENCH_WRK=off)"},
		Notes:    []string{"the machine was busy"},
		Commands: []string{"PORT=18120 bin/sluice distributor", "wrk -t1 -c64 -d8s ..."},
		Profile:  "flat flat% sum% cum cum%\n10ms 1% 1% 10ms 1% main.f",
	}
}

func TestMarkdownSection(t *testing.T) {
	var b bytes.Buffer
	if err := testReport().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"\n### 2026-11-23 09:30 UTC — Test CPU, 2 CPUs\n",
		"Settings: `BENCH_DURATION=8s BENCH_ROUNDS=3`",
		"| ceiling | wrk | 60,000 | 300,000 | — | — | 1.00 ms | 3.00 ms | 5.00 ms | 0 % | — | 10.0 µs | — | 12.0 µs | 90.0 % | 0 % | 14.0 MiB |",
		"| sluice | wrk | 50,000 | 250,000 | 49,900 | 249,500 | 1.00 ms | 4.00 ms | 6.00 ms | 0 % | 2.50 | 15.0 µs | 8.0 µs |",
		"- sluice / ceiling (wrk): 0.83× (median of rounds 0.80, 0.85, 0.83)",
		"| target | driver | offered pkt/s | accepted pkt/s | p50 | p99 | p99.9 | non-2xx | CPU/pkt server | CPU/pkt load gen | CPU others |\n|---|---|--:|",
		"| sluice | vegeta | 12,000 | 12,000 | 3.00 ms | 50.0 ms | 70.0 ms | 0 % | — | 80.0 µs | 0 % |",
		"| sluice | emitter | 25,000 | 25,000 | 300 µs | 800 µs | 2.00 ms | 0 % | — | 9.0 µs | 0 % |",
		"- **met** sluice ≥ 0.8 × ceiling (wrk): 0.83×",
		"\nSkipped: the nginx rows and ratios (nginx not installed: make bench-peers); every wrk row (BENCH_WRK=off).\n",
		"\nNote: the machine was busy\n",
		"PORT=18120 bin/sluice distributor\nwrk -t1 -c64 -d8s ...\n",
		"main.f",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	// Every line of a table has as many cells as its header.
	for _, block := range strings.Split(md, "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if !strings.HasPrefix(lines[0], "| ") {
			continue
		}
		n := strings.Count(lines[0], "|")
		for _, l := range lines[1:] {
			if strings.Count(l, "|") != n {
				t.Errorf("table line has %d bars, header %d: %s", strings.Count(l, "|"), n, l)
			}
		}
	}
}

func TestTextReport(t *testing.T) {
	var b bytes.Buffer
	if err := testReport().WriteText(&b); err != nil {
		t.Fatal(err)
	}
	txt := b.String()
	for _, want := range []string{"accepted pkt/s", "60,000", "49,900", "sluice / ceiling (wrk): 0.83×", "met    sluice ≥ 0.8 × ceiling (wrk): 0.83×",
		"offered pkt/s", " sluice  emitter         25,000", "ceiling   vegeta         12,000",
		"\nskipped: the nginx rows and ratios (nginx not installed: make bench-peers); every wrk row (BENCH_WRK=off)\n", "\nnote: the machine was busy\n"} {
		if !strings.Contains(txt, want) {
			t.Errorf("text lacks %q:\n%s", want, txt)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	c, err := ConfigFromEnv(getenv, "bin/sluice")
	if err != nil {
		t.Fatal(err)
	}
	if c.Duration != 8*time.Second || c.Rounds != 3 || c.Conns != 64 || !c.Profile || c.Results != "bench/out/benchmarks.md" || c.Chart != "bench/out/bench.png" || c.Sluice != "bin/sluice" {
		t.Errorf("defaults: %+v", c)
	}
	env["BENCH_RECORD"] = "1"
	if c, err = ConfigFromEnv(getenv, "x"); err != nil {
		t.Fatal(err)
	}
	if !c.Record || c.Results != "docs/benchmarks.md" || c.Chart != "docs/bench.png" {
		t.Errorf("BENCH_RECORD=1: %+v", c)
	}
	env["BENCH_CHART"] = "elsewhere.png" // an explicit setting wins over the record default
	if c, err = ConfigFromEnv(getenv, "x"); err != nil {
		t.Fatal(err)
	}
	if c.Results != "docs/benchmarks.md" || c.Chart != "elsewhere.png" {
		t.Errorf("BENCH_RECORD=1 BENCH_CHART=elsewhere.png: %+v", c)
	}
	delete(env, "BENCH_RECORD")
	delete(env, "BENCH_CHART")
	env["BENCH_DURATION"], env["BENCH_ROUNDS"], env["BENCH_RESULTS"], env["BENCH_PROFILE"] = "3s", "5", "off", "0"
	if c, err = ConfigFromEnv(getenv, "x"); err != nil {
		t.Fatal(err)
	}
	if c.Duration != 3*time.Second || c.Rounds != 5 || c.Results != "" || c.Profile {
		t.Errorf("overrides: %+v", c)
	}
	env["BENCH_ROUNDS"] = "zero"
	if _, err := ConfigFromEnv(getenv, "x"); err == nil || !strings.Contains(err.Error(), "BENCH_ROUNDS") {
		t.Errorf("bad BENCH_ROUNDS: %v", err)
	}
}

func TestProcParsers(t *testing.T) {
	// A command name with a space and a ')' in it.
	stat := []byte("4242 (sluice) x) S 17 4242 17 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 12345 1000 200 18446744073709551615\n")
	st, err := parseStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	if st.PPID != 17 || st.CPU != 3*time.Second { // (250+50) ticks of 10 ms
		t.Errorf("got %+v", st)
	}
	if _, err := parseStat([]byte("4242 (x S 1")); err == nil {
		t.Error("a stat line without ')' parsed")
	}
	hwm, err := parseHWM([]byte("Name:\tsluice\nVmPeak:\t 2000 kB\nVmHWM:\t   21504 kB\nVmRSS:\t 20000 kB\n"))
	if err != nil || hwm != 21504<<10 {
		t.Errorf("VmHWM = %d, %v", hwm, err)
	}
	if _, err := parseHWM([]byte("Name:\tx\n")); err == nil {
		t.Error("status without VmHWM parsed")
	}
	m, err := parseMachineCPU([]byte("cpu  100 5 50 800 20 3 2 10 7 0\ncpu0 1 2 3 4 5 6 7 8 9 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Busy != 170*clockTick || m.Total != 990*clockTick {
		t.Errorf("busy %v total %v", m.Busy, m.Total)
	}
}
