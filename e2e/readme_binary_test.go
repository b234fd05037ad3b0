package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicelog/sluice/analyzer"
)

// TestREADMEMatchesBinary walks the README's tables and checks them against the
// real `sluice distributor` binary, so documentation and behaviour cannot drift
// apart without a red test (issue #21):
//
//   - every row of the configuration table (`| `ENV` | `--flag` | default |`, in any
//     table of the README) against `sluice distributor -h` and against the value in
//     force that `GET /admin/config` shows when only what is required is set, and
//     every setting the binary knows (-h, /admin/config) against the rows;
//   - every row of the `## API` table: each documented status code has a scenario
//     below that makes the binary answer it, and the answer carries the documented
//     headers and body (the one error shape where no other body is documented); a
//     code or endpoint without a scenario fails, so does a scenario whose code the
//     README no longer documents;
//   - the admin API: rows of an admin route table (`| `METHOD /admin/...` |`), if
//     there is one, and every `curl` example of an /admin/ path, answer 2xx from
//     loopback; each status code "Admin API and security" names has a scenario
//     (both ways), with the one error shape and the header the prose gives it.
//
// Exceptions, by design: ANALYZERS, LISTEN_ADDR and METRICS_ADDR are set by the test
// (only their -h default is compared); LOOPS' default 0 is a rule (one loop per CPU,
// one up to 2 CPUs), so its value in force is compared with the rule on GOMAXPROCS; /livez's 503 is asked on
// METRICS_ADDR, since on PORT the stuck loop itself would have to answer. The
// reverse direction for admin routes (every route the binary serves is documented)
// is not checked: the binary does not list its routes.
//
// The rows are parsed, not listed here: a row someone adds is checked at once.
func TestREADMEMatchesBinary(t *testing.T) {
	systemTest(t)
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	bin := filepath.Join(t.TempDir(), "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rows := readmeSettings(t, readme)
	help := helpFlags(t, bin)

	// Instance "defaults": only what is required, the rest at its default.
	defA := startWalkAnalyzer(t, "walk-defaults")
	a := startDistributor(t, bin, defA, nil, nil)

	t.Run("variables", func(t *testing.T) { checkVariables(t, readme, rows, help, a) })
	t.Run("api", func(t *testing.T) { checkAPI(t, readme, rows, bin, a) })
	t.Run("admin", func(t *testing.T) { checkAdmin(t, readme, a) })
	t.Run("admin security", func(t *testing.T) { checkAdminSecurity(t, readme, bin, a) })
}

// ---- the configuration table ----

// readmeSetting is one row of the configuration table.
type readmeSetting struct {
	env, flag string
	def       string // the default, when the row gives one in backticks
	kind      string // "value", "(unset)" or "(required)"
}

var settingRow = regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]*)` \\| `--([a-z0-9-]+)` \\| ([^|]*?) \\|")

func readmeSettings(t *testing.T, readme string) []readmeSetting {
	t.Helper()
	var rows []readmeSetting
	for _, m := range settingRow.FindAllStringSubmatch(readme, -1) {
		r := readmeSetting{env: m[1], flag: m[2]}
		switch d := m[3]; {
		case d == "(unset)" || d == "(required)":
			r.kind = d
		case len(d) >= 2 && strings.HasPrefix(d, "`") && strings.HasSuffix(d, "`") && !strings.Contains(d[1:len(d)-1], "`"):
			r.kind, r.def = "value", d[1:len(d)-1]
		default:
			t.Errorf("README row %s: default %q is none of `value`, (unset), (required)", r.env, d)
			continue
		}
		rows = append(rows, r)
	}
	if len(rows) < 10 {
		t.Fatalf("README.md: only %d configuration rows parsed; the table's format changed?", len(rows))
	}
	return rows
}

// helpFlag is one flag as `sluice distributor -h` prints it.
type helpFlag struct {
	flag, env  string // env "" for a command-line-only flag
	def        string
	hasDefault bool
}

var helpEntry = regexp.MustCompile(`(?m)^  --([a-z0-9-]+)(?: VALUE)?\n(?:        [^(\n].*\n)*        \((?:env ([A-Z0-9_]+)|command line only)(?:, default ("(?:[^"\\]|\\.)*"))?\)$`)

func helpFlags(t *testing.T, bin string) []helpFlag {
	t.Helper()
	out, err := exec.Command(bin, "distributor", "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("sluice distributor -h: %v\n%s", err, out)
	}
	var flags []helpFlag
	for _, m := range helpEntry.FindAllStringSubmatch(string(out), -1) {
		f := helpFlag{flag: m[1], env: m[2]}
		if m[3] != "" {
			d, err := strconv.Unquote(m[3])
			if err != nil {
				t.Fatalf("-h: default of --%s: %s: %v", f.flag, m[3], err)
			}
			f.def, f.hasDefault = d, true
		}
		flags = append(flags, f)
	}
	if n := strings.Count(string(out), "\n  --"); n != len(flags) || n == 0 {
		t.Fatalf("-h lists %d flags, %d parsed; its format changed?\n%s", n, len(flags), out)
	}
	return flags
}

// setByTest are the settings the test sets itself; their value in force is the
// test's, so only the -h default is compared for them.
var setByTest = map[string]bool{"ANALYZERS": true, "LISTEN_ADDR": true, "METRICS_ADDR": true}

// computed are settings whose default is a rule, not the value in force: the README
// and -h give the rule's input, /admin/config shows what it computed.
var computed = map[string]func(inForce string) error{
	"LOOPS": loopsInForce, // 0 = one per CPU, one up to 2 CPUs
}

// loopsInForce checks LOOPS=0's value in force: one loop per CPU the Go runtime
// uses (GOMAXPROCS, which the binary started without), but one when that is 1 or 2
// (README's rule). The test's own GOMAXPROCS is the same unless the test runs with
// GOMAXPROCS or -cpu set; then only the bounds are checked.
func loopsInForce(inForce string) error {
	n, err := strconv.Atoi(inForce)
	if err != nil || n < 1 || n > runtime.NumCPU() {
		return fmt.Errorf("not a count of CPUs (1..%d)", runtime.NumCPU())
	}
	want := runtime.GOMAXPROCS(0)
	if want <= 2 {
		want = 1
	}
	if f := flag.Lookup("test.cpu"); os.Getenv("GOMAXPROCS") == "" && (f == nil || f.Value.String() == "") && n != want {
		return fmt.Errorf("want %d for this machine's GOMAXPROCS %d", want, runtime.GOMAXPROCS(0))
	}
	return nil
}

func checkVariables(t *testing.T, readme string, rows []readmeSetting, help []helpFlag, d *walkDistributor) {
	var cfg struct {
		Settings map[string]string `json:"settings"`
	}
	ans := d.get(t, d.metrics, "/admin/config", nil)
	if ans.status != 200 {
		t.Fatalf("GET /admin/config: %v", ans)
	}
	if err := json.Unmarshal(ans.body, &cfg); err != nil || len(cfg.Settings) == 0 {
		t.Fatalf("GET /admin/config: %v %s", err, ans.body)
	}
	byEnv := map[string]helpFlag{}
	for _, f := range help {
		if f.env != "" {
			byEnv[f.env] = f
		} else if !strings.Contains(readme, "--"+f.flag) {
			t.Errorf("-h lists the command-line flag --%s; README.md never mentions it", f.flag)
		}
	}
	documented := map[string]bool{}
	for _, r := range rows {
		if documented[r.env] {
			t.Errorf("README: %s has two rows", r.env)
		}
		documented[r.env] = true
		f, ok := byEnv[r.env]
		if !ok {
			t.Errorf("README documents %s (--%s); `sluice distributor -h` has no flag for it", r.env, r.flag)
			continue
		}
		if f.flag != r.flag {
			t.Errorf("README: %s is --%s; -h: --%s", r.env, r.flag, f.flag)
		}
		switch {
		case r.kind == "value" && (!f.hasDefault || f.def != r.def):
			t.Errorf("README: %s defaults to `%s`; -h: %q (printed: %v)", r.env, r.def, f.def, f.hasDefault)
		case r.kind != "value" && f.hasDefault:
			t.Errorf("README: %s is %s; -h prints default %q", r.env, r.kind, f.def)
		}
		inForce, ok := cfg.Settings[r.env]
		switch {
		case !ok:
			t.Errorf("README documents %s; GET /admin/config does not show it", r.env)
		case setByTest[r.env]:
			// the test's own value; the -h default was checked above
		case r.kind == "(required)":
			t.Errorf("README: %s is (required) but the test does not set it, and the binary started", r.env)
		case computed[r.env] != nil:
			if err := computed[r.env](inForce); err != nil {
				t.Errorf("%s: README default `%s`; in force: %q: %v", r.env, r.def, inForce, err)
			}
		case inForce != r.def:
			t.Errorf("README: %s defaults to %s; in force with it unset: %q", r.env, map[bool]string{true: "`" + r.def + "`", false: r.kind}[r.kind == "value"], inForce)
		}
	}
	for _, f := range help {
		if f.env != "" && !documented[f.env] {
			t.Errorf("-h lists --%s (env %s); README.md's configuration table has no row for it", f.flag, f.env)
		}
	}
	for env := range cfg.Settings {
		if !documented[env] {
			t.Errorf("GET /admin/config shows %s; README.md's configuration table has no row for it", env)
		}
	}
}

// ---- the running binary ----

type walkDistributor struct {
	cmd           *exec.Cmd
	ingest        string // host:port
	metrics       string // host:port
	analyzer      *analyzer.Analyzer
	client        *http.Client
	analyzersSpec string
}

func startWalkAnalyzer(t *testing.T, id string) *analyzer.Analyzer {
	t.Helper()
	a := analyzer.New(analyzer.Config{Addr: "127.0.0.1:0", ID: id, Batch: true})
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	return a
}

// startDistributor runs the binary with only ANALYZERS (one analyzer),
// LISTEN_ADDR and METRICS_ADDR (loopback ports) and extra, and waits until /readyz
// answers 200 on both. With stderr set, the process logs into it; else into the test log
// under -v.
func startDistributor(t *testing.T, bin string, a *analyzer.Analyzer, extra []string, stderr *os.File) *walkDistributor {
	t.Helper()
	d := &walkDistributor{
		ingest: freeLoopbackAddr(t), metrics: freeLoopbackAddr(t), analyzer: a,
		client:        &http.Client{Timeout: 5 * time.Second},
		analyzersSpec: "http://" + a.Addr() + "=1",
	}
	d.cmd = exec.Command(bin, "distributor")
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // a test binary killed by -timeout takes it along
	d.cmd.Env = append([]string{"ANALYZERS=" + d.analyzersSpec, "LISTEN_ADDR=" + d.ingest, "METRICS_ADDR=" + d.metrics}, extra...)
	var logBuf bytes.Buffer
	if stderr != nil {
		d.cmd.Stderr = stderr
	} else {
		d.cmd.Stderr, d.cmd.Stdout = &logBuf, &logBuf
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			_ = d.cmd.Process.Kill()
			<-exited
		}
		if testing.Verbose() || t.Failed() {
			t.Logf("distributor %s (%v) log:\n%s", d.ingest, extra, logBuf.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		// both ports: the ingest port serves before METRICS_ADDR is bound
		ans := d.get(t, d.ingest, "/readyz", nil)
		if ans.status == 200 {
			if ans = d.get(t, d.metrics, "/readyz", nil); ans.status == 200 {
				return d
			}
		}
		select {
		case <-exited:
			t.Fatalf("distributor %v exited at start:\n%s", extra, logBuf.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("distributor %v not ready within 10s: last %v", extra, ans)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not a synchronisation
	}
}

// walkAnswer is one observed answer (status 0 and err on a transport failure).
type walkAnswer struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func (a walkAnswer) String() string {
	if a.err != nil {
		return "error: " + a.err.Error()
	}
	return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(a.body))
}

func (d *walkDistributor) do(method, addr, path string, header http.Header, body []byte) walkAnswer {
	req, err := http.NewRequest(method, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return walkAnswer{err: err}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := d.client.Do(req)
	if err != nil {
		return walkAnswer{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return walkAnswer{status: res.StatusCode, header: res.Header, body: b, err: err}
}

func (d *walkDistributor) get(t *testing.T, addr, path string, header http.Header) walkAnswer {
	return d.do("GET", addr, path, header, nil)
}

// raw sends request bytes as they are (for what net/http will not send: a POST
// without a length) and reads one answer.
func (d *walkDistributor) raw(t *testing.T, request string) walkAnswer {
	c, err := net.DialTimeout("tcp", d.ingest, 2*time.Second)
	if err != nil {
		return walkAnswer{err: err}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		return walkAnswer{err: err}
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return walkAnswer{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return walkAnswer{status: res.StatusCode, header: res.Header, body: b, err: err}
}

var walkSeq int

func walkPacket(emitter string) []byte {
	walkSeq++
	return []byte(`{"emitter_id":"` + emitter + `","packet_id":"walk-` + strconv.Itoa(walkSeq) + `","messages":[{"timestamp":1640995200000,"level":"INFO","message":"Test log message","metadata":{"service":"test"}}]}`)
}

var jsonCT = http.Header{"Content-Type": {"application/json"}}

func withBearer(tok string) http.Header {
	return http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + tok}}
}

// until repeats try until it answers want or the deadline passes, and returns the
// last answer: for states the distributor reaches on its own time (a breaker
// opening, a loop stuck).
func until(want int, within time.Duration, try func() walkAnswer) walkAnswer {
	deadline := time.Now().Add(within)
	for {
		ans := try()
		if ans.status == want || time.Now().After(deadline) {
			return ans
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// ---- the API table ----

// apiRow is one row of the `## API` table: what it documents for each code.
type apiRow struct {
	route   string              // "POST /ingest"
	keys    []string            // top-level keys of the row's JSON bodies
	lists   map[string][]string // "analyzers: [{name, url, ...}]": keys of a list's elements
	answers map[int]codeDoc
}

type codeDoc struct {
	body          map[string]any // the JSON body given right after the code, if any
	header, value string         // a header given as "`NNN` + `Name: value`"
}

var (
	apiRowRE  = regexp.MustCompile("(?m)^\\| `(GET|HEAD|POST|PUT|PATCH|DELETE) (/[^`]*)` \\| (.*) \\|$")
	apiCodeRE = regexp.MustCompile("`([1-5][0-9][0-9])((?: [^`]*)?)`(?: \\+ `([^`]+)`)?")
	apiKeysRE = regexp.MustCompile("`\\{(\"[a-z_]+\"(?:,\"[a-z_]+\")*)\\}`")
	apiWordRE = regexp.MustCompile("`([a-z][a-z_]*)`")
	apiListRE = regexp.MustCompile("`([a-z_]+): \\[\\{([a-z_, ]+)\\}\\]`")
)

// section is the README's text from the heading to the next heading of the same
// or a higher level.
func section(t *testing.T, readme, heading string) string {
	t.Helper()
	i := strings.Index(readme, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no %q heading", heading)
	}
	rest := readme[i+len(heading)+2:]
	level := strings.Repeat("#", strings.Index(heading, " "))
	for j := 0; ; {
		k := strings.Index(rest[j:], "\n#")
		if k < 0 {
			return rest
		}
		j += k + 1
		h := rest[j:]
		n := len(h) - len(strings.TrimLeft(h, "#"))
		if n <= len(level) && strings.HasPrefix(h[n:], " ") {
			return rest[:j]
		}
	}
}

func apiRows(t *testing.T, text string) []apiRow {
	t.Helper()
	var rows []apiRow
	for _, m := range apiRowRE.FindAllStringSubmatch(text, -1) {
		r := apiRow{route: m[1] + " " + m[2], answers: map[int]codeDoc{}, lists: map[string][]string{}}
		if k := apiKeysRE.FindStringSubmatch(m[3]); k != nil {
			for _, q := range strings.Split(k[1], ",") {
				r.keys = append(r.keys, strings.Trim(q, `"`))
			}
		} else { // the fields named one by one: `total_packets`, `timestamp`, ...
			for _, w := range apiWordRE.FindAllStringSubmatch(m[3], -1) {
				r.keys = append(r.keys, w[1])
			}
		}
		for _, l := range apiListRE.FindAllStringSubmatch(m[3], -1) {
			r.keys = append(r.keys, l[1])
			for _, k := range strings.Split(l[2], ",") {
				r.lists[l[1]] = append(r.lists[l[1]], strings.TrimSpace(k))
			}
		}
		for _, c := range apiCodeRE.FindAllStringSubmatch(m[3], -1) {
			code, _ := strconv.Atoi(c[1])
			var d codeDoc
			if b := strings.TrimSpace(c[2]); b != "" {
				if err := json.Unmarshal([]byte(b), &d.body); err != nil {
					t.Errorf("README %s: the body after `%d` is not JSON: %s", r.route, code, b)
				}
			}
			if c[3] != "" {
				d.header, d.value, _ = strings.Cut(c[3], ": ")
			}
			r.answers[code] = d
		}
		hasSuccess := false
		for code := range r.answers {
			hasSuccess = hasSuccess || code < 300
		}
		if !hasSuccess { // the row describes the success answer without its code
			r.answers[200] = codeDoc{}
		}
		rows = append(rows, r)
	}
	return rows
}

// apiScenario makes the binary answer one documented code of one route.
type apiScenario struct {
	key string // "POST /ingest 202"
	run func(t *testing.T) walkAnswer
}

func checkAPI(t *testing.T, readme string, settings []readmeSetting, bin string, a *walkDistributor) {
	var rows []apiRow // the admin routes' rows, if the section gets a table, are checkAdmin's
	for _, r := range apiRows(t, section(t, readme, "## API")) {
		if !strings.Contains(r.route, " /admin/") {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		t.Fatal("README.md's ## API section has no table rows")
	}
	errorShape := strings.Contains(readme, "Every error is a short JSON body `{\"error\":\"<reason>\",\"status\":<code>}`")
	if !errorShape {
		t.Log("README no longer says every error is {\"error\",\"status\"}: the error shape is not checked")
	}
	maxBody := -1
	for _, s := range settings {
		if s.env == "MAX_BODY_BYTES" {
			maxBody, _ = strconv.Atoi(s.def)
		}
	}

	// Instance "guarded": ingest tokens, a rate limit of one packet, and a breaker
	// that opens on the first failure, checked every second.
	const token = "walk-token"
	gA := startWalkAnalyzer(t, "walk-guarded")
	g := startDistributor(t, bin, gA, []string{"INGEST_TOKENS=" + token, "EMITTER_RATE_LIMIT=1", "EMITTER_BURST=1",
		"MAX_FAILURES=1", "HEALTH_CHECK_INTERVAL_SEC=1", "DOWN_PROBE_INTERVAL_MS=100",
		"SHUTDOWN_TIMEOUT_SEC=1"}, nil) // its analyzer stops: what it accepted cannot be flushed

	gDown := false
	downGuarded := func(t *testing.T) {
		if !gDown {
			gDown = true
			if err := gA.Stop(); err != nil {
				t.Fatal(err)
			}
		}
	}
	ingest := func(d *walkDistributor, h http.Header, body []byte) walkAnswer {
		return d.do("POST", d.ingest, "/ingest", h, body)
	}
	emitters := 0
	fresh := func() string { emitters++; return "walk-emitter-" + strconv.Itoa(emitters) }

	scenarios := []apiScenario{
		{"POST /ingest 202", func(t *testing.T) walkAnswer { return ingest(a, jsonCT, walkPacket(fresh())) }},
		{"POST /ingest 400", func(t *testing.T) walkAnswer {
			return ingest(a, jsonCT, []byte(`{"emitter_id":"walk","messages":[]}`))
		}},
		{"POST /ingest 411", func(t *testing.T) walkAnswer {
			return a.raw(t, "POST /ingest HTTP/1.1\r\nHost: walk\r\nContent-Type: application/json\r\n\r\n")
		}},
		{"POST /ingest 413", func(t *testing.T) walkAnswer { // the README's MAX_BODY_BYTES + 1, announced, never sent
			if maxBody <= 0 {
				t.Fatal("README has no numeric MAX_BODY_BYTES default")
			}
			return a.raw(t, "POST /ingest HTTP/1.1\r\nHost: walk\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(maxBody+1)+"\r\n\r\n")
		}},
		{"POST /ingest 401", func(t *testing.T) walkAnswer { return ingest(g, jsonCT, walkPacket(fresh())) }},
		{"POST /ingest 429", func(t *testing.T) walkAnswer {
			e := fresh()
			if first := ingest(g, withBearer(token), walkPacket(e)); first.status != 202 {
				t.Errorf("guarded: the first packet of %s with a valid token: %v, want 202", e, first)
			}
			// the limit is 1/s with a burst of 1: the next packets of e within the
			// second are over it (a slow machine may need more than one)
			return until(429, 5*time.Second, func() walkAnswer { return ingest(g, withBearer(token), walkPacket(e)) })
		}},
		{"POST /ingest 503", func(t *testing.T) walkAnswer { // its only analyzer stopped
			downGuarded(t)
			return until(503, 10*time.Second, func() walkAnswer { return ingest(g, withBearer(token), walkPacket(fresh())) })
		}},
		{"GET /health 200", func(t *testing.T) walkAnswer { return a.get(t, a.ingest, "/health", nil) }},
		{"GET /health 503", func(t *testing.T) walkAnswer {
			downGuarded(t)
			return until(503, 10*time.Second, func() walkAnswer { return g.get(t, g.ingest, "/health", nil) })
		}},
		{"GET /metrics-json 200", func(t *testing.T) walkAnswer { return a.get(t, a.ingest, "/metrics-json", nil) }},
		{"GET /metrics 200", func(t *testing.T) walkAnswer { return a.get(t, a.ingest, "/metrics", nil) }},
		{"GET /livez 200", func(t *testing.T) walkAnswer { return a.get(t, a.ingest, "/livez", nil) }},
		{"GET /livez 503", func(t *testing.T) walkAnswer { return stuckLoop(t, bin) }},
		{"GET /readyz 200", func(t *testing.T) walkAnswer { return a.get(t, a.ingest, "/readyz", nil) }},
		{"GET /readyz 503", func(t *testing.T) walkAnswer {
			downGuarded(t)
			return until(503, 10*time.Second, func() walkAnswer { return g.get(t, g.ingest, "/readyz", nil) })
		}},
	}

	docs := map[string]codeDoc{}
	rowOf := map[string]apiRow{}
	for _, r := range rows {
		for code, d := range r.answers {
			k := r.route + " " + strconv.Itoa(code)
			docs[k], rowOf[k] = d, r
			if !slices.ContainsFunc(scenarios, func(s apiScenario) bool { return s.key == k }) {
				t.Errorf("README's API table documents %s; the test has no scenario that makes the binary answer it", k)
			}
		}
	}
	for _, s := range scenarios {
		t.Run(s.key, func(t *testing.T) {
			doc, ok := docs[s.key]
			if !ok {
				t.Fatalf("the test has a scenario for %s; README's API table does not document it", s.key)
			}
			want, _ := strconv.Atoi(s.key[strings.LastIndex(s.key, " ")+1:])
			ans := s.run(t)
			if ans.status != want {
				t.Fatalf("README documents %s; the binary answered %v", s.key, ans)
			}
			if doc.header != "" {
				if v := ans.header.Get(doc.header); v == "" || doc.value != "" && !strings.HasPrefix(v, doc.value) {
					t.Errorf("README: %s comes with `%s: %s`; the answer has %q", s.key, doc.header, doc.value, v)
				}
			}
			switch {
			case doc.body != nil:
				checkJSONBody(t, s.key, ans.body, doc.body)
			case rowOf[s.key].keys != nil:
				checkJSONKeys(t, s.key, ans.body, rowOf[s.key])
			case want >= 400 && errorShape:
				checkErrorShape(t, s.key, ans.body, want)
			}
		})
	}
}

// checkJSONBody compares an answer with the body the README gives: the same keys,
// the same values, "..." standing for any non-empty string.
func checkJSONBody(t *testing.T, key string, body []byte, doc map[string]any) {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: body is not JSON: %v %s", key, err, body)
	}
	for k, v := range doc {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("README: %s answers with %q; the body has not: %s", key, k, body)
		case v == "...":
			if s, _ := g.(string); s == "" {
				t.Errorf("README: %s's %q is a non-empty string; the body: %s", key, k, body)
			}
		case fmt.Sprint(g) != fmt.Sprint(v):
			t.Errorf("README: %s's %q is %v; the body: %s", key, k, v, body)
		}
	}
	for k := range got {
		if _, ok := doc[k]; !ok {
			t.Errorf("%s: the body has %q, which README does not document: %s", key, k, body)
		}
	}
}

// checkJSONKeys checks that a body has the keys its row names, and each element
// of a documented list the keys the row gives it.
func checkJSONKeys(t *testing.T, key string, body []byte, r apiRow) {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: body is not JSON: %v %.300s", key, err, body)
	}
	for _, k := range r.keys {
		if _, ok := got[k]; !ok {
			t.Errorf("README: %s's body has %q; the answer has not: %.300s", key, k, body)
		}
	}
	for list, keys := range r.lists {
		elems, _ := got[list].([]any)
		if len(elems) == 0 {
			t.Errorf("README: %s's %q is a list of objects; the answer: %.300s", key, list, body)
		}
		for _, e := range elems {
			obj, _ := e.(map[string]any)
			for _, k := range keys {
				if _, ok := obj[k]; !ok {
					t.Errorf("README: %s: each of %q has %q; the answer's: %v", key, list, k, e)
				}
			}
		}
	}
}

// checkErrorShape checks the one error shape {"error":"<reason>","status":<code>}.
func checkErrorShape(t *testing.T, key string, body []byte, code int) {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: error body is not JSON: %v %q", key, err, body)
	}
	if reason, _ := got["error"].(string); reason == "" || got["status"] != float64(code) || len(got) != 2 {
		t.Errorf("%s: error body %s is not {\"error\":\"<reason>\",\"status\":%d}", key, body, code)
	}
}

// stuckLoop makes /livez fail the way it exists to report: an event loop that does
// not run work handed to it. A distributor with one loop logs into a pipe the test
// holds and has filled; its analyzer stops, so the loop's next connection error is
// logged, and the write blocks the loop. /livez is asked on METRICS_ADDR, served
// off the loops (on PORT the stuck loop itself would have to answer).
func stuckLoop(t *testing.T, bin string) walkAnswer {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	sA := startWalkAnalyzer(t, "walk-stuck")
	s := startDistributor(t, bin, sA, []string{"LOOPS=1", "SHUTDOWN_TIMEOUT_SEC=1"}, w)
	t.Cleanup(func() { // runs before the distributor is stopped: let it log again
		go func() { _, _ = io.Copy(io.Discard, r); r.Close() }()
		_ = w.Close()
	})
	if ans := s.do("POST", s.ingest, "/ingest", jsonCT, walkPacket("walk-stuck")); ans.status != 202 {
		t.Fatalf("stuck: a first packet: %v, want 202", ans)
	}
	// exec made w blocking (Fd does); non-blocking for a moment, to fill the pipe to
	// the last byte without waiting, then blocking again, as the distributor has it.
	fd := int(w.Fd())
	if err := syscall.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	for _, chunk := range [][]byte{bytes.Repeat([]byte("walk: filling the log pipe\n"), 256), []byte("\n")} {
		for {
			if _, err := syscall.Write(fd, chunk); err != nil {
				break // EAGAIN: not even this much room left
			}
		}
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		t.Fatal(err)
	}
	if ans := s.get(t, s.metrics, "/livez", nil); ans.status != 200 {
		t.Fatalf("stuck: /livez before the loop has anything to log: %v, want 200", ans)
	}
	if err := sA.Stop(); err != nil {
		t.Fatal(err)
	}
	return until(503, 15*time.Second, func() walkAnswer {
		go s.do("POST", s.ingest, "/ingest", jsonCT, walkPacket("walk-stuck")) // work for the loop: a connection to an analyzer that is gone
		return s.get(t, s.metrics, "/livez", nil)
	})
}

// ---- the admin API ----

var (
	adminRowRE  = regexp.MustCompile("(?m)^\\| `(GET|HEAD|POST|PUT|PATCH|DELETE) (/admin/[^`]*)` \\|(.*)$")
	adminBodyRE = regexp.MustCompile("body `(\\{[^`]*\\})`")
	curlAdminRE = regexp.MustCompile(`(?m)^curl .*?[a-z0-9.-]+:[0-9]+(/admin/[^\s'"]*)`)
	curlMethod  = regexp.MustCompile(`-X ([A-Z]+)`)
	curlData    = regexp.MustCompile(`-d '([^']*)'`)
	placeholder = regexp.MustCompile(`\{[a-z_]+\}|<[a-z_]+>|:[a-z_]+`)
)

func checkAdmin(t *testing.T, readme string, a *walkDistributor) {
	type call struct{ method, path, body, from string }
	var calls []call
	// A table row is sent with the body it documents ("body `{...}`"). A DELETE
	// row removes the analyzer the table's add row added, not the one the other
	// rows act on.
	added := ""
	for _, m := range adminRowRE.FindAllStringSubmatch(readme, -1) {
		c := call{m[1], m[2], "", "admin table row"}
		if b := adminBodyRE.FindStringSubmatch(m[3]); b != nil {
			c.body = b[1]
			var add struct{ Name string }
			if c.method == "POST" && c.path == "/admin/analyzers" && json.Unmarshal([]byte(c.body), &add) == nil {
				added = add.Name
			}
		}
		if c.method == "DELETE" {
			if added == "" {
				t.Errorf("README admin table: %s %s comes before, or without, a POST /admin/analyzers row whose body names the analyzer", c.method, c.path)
				continue
			}
			c.path = placeholder.ReplaceAllString(c.path, added)
		}
		calls = append(calls, c)
	}
	// A table row's success answer is the call below; any other code it documents
	// needs a scenario here, as the API table's codes do (none so far).
	for _, r := range apiRows(t, readme) {
		if !strings.Contains(r.route, " /admin/") {
			continue
		}
		for code := range r.answers {
			if code >= 300 {
				t.Errorf("README documents %s %d; the test has no scenario that makes the binary answer it", r.route, code)
			}
		}
	}
	for _, m := range curlAdminRE.FindAllStringSubmatch(readme, -1) {
		c := call{"GET", m[1], "", "curl example"}
		if x := curlMethod.FindStringSubmatch(m[0]); x != nil {
			c.method = x[1]
		}
		if x := curlData.FindStringSubmatch(m[0]); x != nil {
			c.body = x[1]
		}
		calls = append(calls, c)
	}
	if len(calls) == 0 {
		t.Fatal("README.md shows no admin API route (table row or curl example)")
	}
	for _, c := range calls {
		path := placeholder.ReplaceAllString(c.path, "analyzer-1") // the one analyzer, named by position
		var h http.Header
		if c.method != "GET" && c.method != "HEAD" {
			h = jsonCT
		}
		ans := a.do(c.method, a.metrics, path, h, []byte(c.body))
		if ans.status < 200 || ans.status > 299 {
			t.Errorf("README %s: %s %s from loopback (no ADMIN_TOKEN): %v, want 2xx", c.from, c.method, c.path, ans)
		}
	}
}

// ---- the admin API's security prose ----

var (
	proseCodeRE   = regexp.MustCompile("`([1-5][0-9][0-9])`")
	proseHeaderRE = regexp.MustCompile("`([1-5][0-9][0-9])`[^`]{0,20}`([A-Z][A-Za-z]*(?:-[A-Z][A-Za-z]*)*)(?:: ([^`]+))?`")
)

// checkAdminSecurity gives each status code the "Admin API and security" section
// names a scenario, as the API table's codes have: a code without one fails, and
// each answer is the one error shape, with the header the prose gives the code.
func checkAdminSecurity(t *testing.T, readme, bin string, a *walkDistributor) {
	text := section(t, readme, "### Admin API and security")
	headers := map[int][2]string{}
	for _, m := range proseHeaderRE.FindAllStringSubmatch(text, -1) {
		if strings.ToUpper(m[2]) != m[2] { // a header name, not `POST`
			code, _ := strconv.Atoi(m[1])
			headers[code] = [2]string{m[2], m[3]}
		}
	}
	// An instance with ADMIN_TOKEN: 401 without the bearer token.
	const adminToken = "walk-admin-token"
	tA := startWalkAnalyzer(t, "walk-admin")
	tk := startDistributor(t, bin, tA, []string{"ADMIN_TOKEN=" + adminToken, "INGEST_TOKENS=walk-ingest-token"}, nil)
	drain := "/admin/analyzers/analyzer-1/drain"
	scenarios := map[int]func() walkAnswer{
		401: func() walkAnswer { return tk.get(t, tk.metrics, "/admin/config", nil) },
		403: func() walkAnswer { // a change from a page on another site
			return a.do("POST", a.metrics, drain, http.Header{"Content-Type": {"application/json"}, "Origin": {"http://elsewhere.example"}}, nil)
		},
		405: func() walkAnswer { return a.do("PUT", a.ingest, "/ingest", jsonCT, nil) },
		415: func() walkAnswer { return a.do("POST", a.metrics, drain, nil, nil) }, // no Content-Type
		400: func() walkAnswer { // an unknown field in an add
			return a.do("POST", a.metrics, "/admin/analyzers", jsonCT, []byte(`{"url":"http://127.0.0.1:9","weight":1,"colour":"red"}`))
		},
	}
	seen := map[int]bool{}
	for _, m := range proseCodeRE.FindAllStringSubmatch(text, -1) {
		code, _ := strconv.Atoi(m[1])
		if seen[code] {
			continue
		}
		seen[code] = true
		run, ok := scenarios[code]
		if !ok {
			t.Errorf("README's \"Admin API and security\" names %d; the test has no scenario that makes the binary answer it", code)
			continue
		}
		ans := run()
		if ans.status != code {
			t.Errorf("README's \"Admin API and security\" documents %d; the scenario got %v", code, ans)
			continue
		}
		if h, ok := headers[code]; ok {
			if v := ans.header.Get(h[0]); v == "" || !strings.HasPrefix(v, h[1]) {
				t.Errorf("README: %d comes with `%s: %s`; the answer has %q", code, h[0], h[1], v)
			}
		}
		checkErrorShape(t, "admin "+m[1], ans.body, code)
	}
	for code := range scenarios {
		if !seen[code] {
			t.Errorf("the test has an admin scenario for %d; README's \"Admin API and security\" does not name it", code)
		}
	}
	// With the token the admin API answers, and its configuration dump redacts both
	// kinds of token as the README says.
	ans := tk.get(t, tk.metrics, "/admin/config", http.Header{"Authorization": {"Bearer " + adminToken}})
	if ans.status != 200 {
		t.Fatalf("GET /admin/config with the admin token: %v", ans)
	}
	if strings.Contains(text, "`[redacted]`") {
		var cfg struct {
			Settings map[string]string `json:"settings"`
		}
		if err := json.Unmarshal(ans.body, &cfg); err != nil {
			t.Fatal(err)
		}
		for _, env := range []string{"ADMIN_TOKEN", "INGEST_TOKENS"} {
			if cfg.Settings[env] != "[redacted]" {
				t.Errorf("README: tokens print as `[redacted]`; /admin/config's %s: %q", env, cfg.Settings[env])
			}
		}
		if strings.Contains(string(ans.body), adminToken) || strings.Contains(string(ans.body), "walk-ingest-token") {
			t.Errorf("/admin/config shows a token: %s", ans.body)
		}
	}
}
