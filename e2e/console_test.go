package e2e

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sluicelog/sluice/analyzer"
	"github.com/sluicelog/sluice/emitter"
	"github.com/sluicelog/sluice/proxy"
	"github.com/sluicelog/sluice/proxy/proxytest"
)

// browser is a headless Chromium driven over the DevTools protocol, with what the
// page reported: uncaught exceptions, console.error calls, log entries at error
// level, and the dialogs (window.confirm) it opened, which it accepts.
type browser struct {
	ctx     context.Context
	mu      sync.Mutex
	errs    []string // exceptions and console API errors
	logErrs []string // the log domain's errors (failed loads, CSP violations)
	dialogs []string
}

// startBrowser starts Chromium headless with a fresh profile, isolated from the
// network (the machine has none), and stops it when the test ends. It skips t
// only when Chromium is not installed.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("chromium is not installed: `make deps` installs it (Debian package chromium)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no timeout
		t.Fatalf("start chromium (%s): %v", bin, err)
	}
	b := &browser{ctx: ctx}
	messages := chromedp.Console(ctx)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			switch {
			case m.Type == chromedp.ConsoleException || (m.Type == chromedp.ConsoleError && m.Source == ""):
				b.errs = append(b.errs, m.String()+" at "+m.URL+":"+strconv.FormatInt(m.Line+1, 10))
			case m.Type == chromedp.ConsoleError: // the browser's log: a failed load, a CSP violation
				b.logErrs = append(b.logErrs, m.Source+" "+m.String()+" "+m.URL)
			}
			b.mu.Unlock()
		}
	}()
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.dialogs = append(b.dialogs, string(ev.Type)+": "+ev.Message)
			b.mu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return b
}

func (b *browser) run(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates expr in the page.
func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// problems is what the page reported as errors so far; withLog adds the
// browser log's (a failed request the test provokes is logged there too).
func (b *browser) problems(withLog bool) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := append([]string(nil), b.errs...)
	if withLog {
		out = append(out, b.logErrs...)
	}
	return out
}

func (b *browser) dialogCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.dialogs)
}

// consoleRow is one analyzer as the page's table shows it.
type consoleRow struct {
	Name, State, StateText, Weight, Effective, Share10 string
}

const readRows = `Array.from(document.querySelectorAll("#analyzers tbody tr")).map(tr => ({
	Name: tr.dataset.name, State: tr.dataset.state || "",
	StateText: tr.querySelector("td.state").textContent,
	Weight: tr.querySelector("td.weight").textContent,
	Effective: tr.querySelector("td.effective").textContent,
	Share10: tr.querySelector("td.share10").textContent}))`

// await evaluates expr until ok accepts its value or within passes.
func await[T any](t *testing.T, b *browser, what string, within time.Duration, expr string, ok func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(within)
	var v T
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		got, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
		cancel()
		if err == nil {
			v = got
		}
		if err == nil && ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (last %+v, err %v)", what, within, v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listed is the named analyzer as /health lists it; ok is false when it is not listed.
func listed(t *testing.T, metricsAddr, name string) (a proxy.AnalyzerHealth, ok bool) {
	t.Helper()
	res, err := http.Get("http://" + metricsAddr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var h proxy.HealthJSON
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	for _, a := range h.Analyzers {
		if a.Name == name {
			return a, true
		}
	}
	return a, false
}

// analyzerState is the named analyzer's state in /health.
func analyzerState(t *testing.T, metricsAddr, name string) string {
	t.Helper()
	if a, ok := listed(t, metricsAddr, name); ok {
		return a.State
	}
	return "(not listed)"
}

// analyzerWeight is the named analyzer's weight in /health, normalised over the
// analyzers (-1: not listed).
func analyzerWeight(t *testing.T, metricsAddr, name string) float64 {
	t.Helper()
	if a, ok := listed(t, metricsAddr, name); ok {
		return a.Weight
	}
	return -1
}

func startConsoleAnalyzers(t *testing.T, weights ...float64) ([]*analyzer.Analyzer, string) {
	t.Helper()
	var as []*analyzer.Analyzer
	var specs []string
	for i, w := range weights {
		a := analyzer.New(analyzer.Config{Addr: "127.0.0.1:0", ID: "console-" + strconv.Itoa(i+1), Batch: true})
		if err := a.Start(); err != nil {
			t.Fatalf("analyzer %d: %v", i+1, err)
		}
		as = append(as, a)
		t.Cleanup(func() { _ = a.Stop() })
		specs = append(specs, "http://"+a.Addr()+"="+strconv.FormatFloat(w, 'g', -1, 64))
	}
	return as, strings.Join(specs, ",")
}

// load emits packets to the distributor until the test ends.
func load(t *testing.T, srv *proxy.Server, rate float64) {
	_, port, _ := net.SplitHostPort(srv.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = emitter.Run(ctx, emitter.Config{Target: "http://127.0.0.1:" + port, Rate: rate, Concurrency: 4, Messages: "uniform:1-9", EmitterID: "console-test"}, io.Discard)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// The console in a real browser: it loads without errors, shows every analyzer
// with its state and weights and live charts, shows a stopped analyzer as down
// within 3 s, and its drain button (after a confirmation) drains the analyzer in
// the distributor.
func TestConsole(t *testing.T) {
	systemTest(t)
	b := startBrowser(t)
	as, specs := startConsoleAnalyzers(t, 0.5, 0.3, 0.2)
	srv := proxytest.Start(t, specs, nil)
	load(t, srv, 300)
	base := "http://" + srv.MetricsAddr()

	b.run(t, "open the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`#analyzers tbody tr`)))
	rows := await(t, b, "three healthy analyzers with their weights", 5*time.Second, readRows, func(rs []consoleRow) bool {
		if len(rs) != 3 {
			return false
		}
		for _, r := range rs {
			if r.State != "healthy" || !strings.Contains(r.StateText, "healthy") {
				return false
			}
		}
		return true
	})
	for i, want := range []string{"0.500", "0.300", "0.200"} {
		if r := rows[i]; r.Name != "analyzer-"+strconv.Itoa(i+1) || r.Weight != want || r.Effective != want {
			t.Errorf("row %d: %+v, want analyzer-%d weight and effective %q", i, r, i+1, want)
		}
	}
	// The charts draw what the samples hold: the accepted/s line gets points.
	await(t, b, "the accepted/s chart has points", 5*time.Second,
		`(document.querySelector("#chart-rate path.series").getAttribute("d").match(/L/g) || []).length`,
		func(n int) bool { return n >= 2 })
	await(t, b, "accepted/s in the totals", 5*time.Second, `parseFloat(document.getElementById("t-accepted").textContent.replace(/,/g, ""))`,
		func(v float64) bool { return v > 0 })
	if p := b.problems(true); len(p) > 0 {
		t.Fatalf("the page reported errors on load:\n%s", strings.Join(p, "\n"))
	}

	if os.Getenv("CONSOLE_SCREENSHOT") == "1" { // let the charts fill a little first
		time.Sleep(40 * time.Second)
	}

	// Stop analyzer-3: the page shows it down (open, or unknown) within 3 s.
	if err := as[2].Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	await(t, b, "analyzer-3 shown down after it stopped", 3*time.Second, readRows, func(rs []consoleRow) bool {
		return len(rs) == 3 && (rs[2].State == "open" || rs[2].State == "unknown") && strings.Contains(rs[2].StateText, rs[2].State[:4])
	})
	t.Logf("analyzer-3 shown down %v after it stopped", time.Since(stopped).Round(time.Millisecond))

	// Drain analyzer-1 from the page: it asks first (accepted), the distributor
	// drains it, the status line says so.
	if s := analyzerState(t, srv.MetricsAddr(), "analyzer-1"); s == "drained" {
		t.Fatalf("analyzer-1 drained before the click: %s", s)
	}
	dialogs := b.dialogCount()
	b.run(t, "click drain", chromedp.Click(chromedp.CSS(`tr[data-name="analyzer-1"] button.drain`)))
	await(t, b, "status line reports the drain", 5*time.Second, `document.getElementById("status").textContent`,
		func(s string) bool { return strings.HasPrefix(s, "drain analyzer-1: ok 200") })
	if s := analyzerState(t, srv.MetricsAddr(), "analyzer-1"); s != "drained" {
		t.Errorf("after the drain click /health says analyzer-1 is %s", s)
	}
	if b.dialogCount() != dialogs+1 {
		t.Errorf("the drain asked %d times for confirmation, want once", b.dialogCount()-dialogs)
	}
	await(t, b, "the row shows drained and offers undrain", 3*time.Second,
		`(() => { const tr = document.querySelector('tr[data-name="analyzer-1"]'); return tr.dataset.state + " " + tr.querySelector("button.drain").textContent })()`,
		func(s string) bool { return s == "drained undrain" })

	if os.Getenv("CONSOLE_SCREENSHOT") == "1" {
		ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("docs", "console.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Set a weight, add an analyzer and remove it (after a confirmation), all from
	// the page; the distributor changes each time.
	b.run(t, "set analyzer-2's weight",
		chromedp.SetValue(chromedp.CSS(`tr[data-name="analyzer-2"] input.weight`), "0.6"),
		chromedp.Click(chromedp.CSS(`tr[data-name="analyzer-2"] button.set-weight`)))
	await(t, b, "status line reports the weight", 5*time.Second, `document.getElementById("status").textContent`,
		func(s string) bool { return strings.HasPrefix(s, "weight analyzer-2 = 0.6: ok 200") })
	// /health gives weights normalised over the analyzers: 0.6 of 0.5+0.6+0.2.
	if w := analyzerWeight(t, srv.MetricsAddr(), "analyzer-2"); math.Abs(w-0.6/1.3) > 1e-9 {
		t.Errorf("after set weight: analyzer-2 weight %v, want 0.6/1.3", w)
	}
	fourth := analyzer.New(analyzer.Config{Addr: "127.0.0.1:0", ID: "console-4"})
	if err := fourth.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fourth.Stop() })
	b.run(t, "add analyzer-4",
		chromedp.SendKeys(chromedp.CSS(`#add-form input[name="url"]`), "http://"+fourth.Addr()),
		chromedp.SetValue(chromedp.CSS(`#add-form input[name="weight"]`), "0.25"),
		chromedp.SendKeys(chromedp.CSS(`#add-form input[name="name"]`), "analyzer-4"),
		chromedp.Click(chromedp.CSS(`#add-form button`)))
	await(t, b, "status line reports the add", 5*time.Second, `document.getElementById("status").textContent`,
		func(s string) bool { return strings.HasPrefix(s, "add analyzer-4: ok 201") })
	await(t, b, "analyzer-4 gets a row", 3*time.Second, `!!document.querySelector('tr[data-name="analyzer-4"]')`, func(ok bool) bool { return ok })
	if w := analyzerWeight(t, srv.MetricsAddr(), "analyzer-4"); math.Abs(w-0.25/1.55) > 1e-9 {
		t.Errorf("after add: analyzer-4 weight %v, want 0.25/1.55", w)
	}
	dialogs = b.dialogCount()
	b.run(t, "remove analyzer-4", chromedp.Click(chromedp.CSS(`tr[data-name="analyzer-4"] button.remove`)))
	await(t, b, "status line reports the removal", 10*time.Second, `document.getElementById("status").textContent`,
		func(s string) bool { return strings.HasPrefix(s, "remove analyzer-4: ok 200") })
	if s := analyzerState(t, srv.MetricsAddr(), "analyzer-4"); s != "(not listed)" {
		t.Errorf("after remove: analyzer-4 is %s in /health", s)
	}
	if b.dialogCount() != dialogs+1 {
		t.Errorf("the removal asked %d times for confirmation, want once", b.dialogCount()-dialogs)
	}
	await(t, b, "analyzer-4's row goes", 3*time.Second, `!document.querySelector('tr[data-name="analyzer-4"]')`, func(ok bool) bool { return ok })

	if p := b.problems(false); len(p) > 0 {
		t.Errorf("the page reported errors:\n%s", strings.Join(p, "\n"))
	}
}

// With ADMIN_TOKEN set, the page asks for the token on a 401; a wrong one is
// refused, shown as an error, and changes nothing; the right one works.
func TestConsoleAdminToken(t *testing.T) {
	systemTest(t)
	b := startBrowser(t)
	_, specs := startConsoleAnalyzers(t, 0.5, 0.5)
	const token = "console-test-token-8d1e"
	withToken, err := proxy.LoadConfig(nil, func(k string) string {
		return map[string]string{"ADMIN_TOKEN": token, "ANALYZERS": specs}[k]
	}, io.Discard)
	if err != nil || !withToken.AdminToken.IsSet() {
		t.Fatalf("ADMIN_TOKEN: %v", err)
	}
	srv := proxytest.Start(t, specs, func(c *proxy.Config) { c.AdminToken = withToken.AdminToken })
	base := "http://" + srv.MetricsAddr()

	b.run(t, "open the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`tr[data-name="analyzer-2"]`)))
	b.run(t, "click drain", chromedp.Click(chromedp.CSS(`tr[data-name="analyzer-1"] button.drain`)))
	await(t, b, "the page asks for the token", 5*time.Second, `!document.getElementById("token-form").hidden && document.getElementById("status").textContent`,
		func(s string) bool { return strings.Contains(s, "401") })

	b.run(t, "enter a wrong token",
		chromedp.SendKeys(chromedp.ID("token"), "wrong-token"),
		chromedp.Click(chromedp.CSS(`#token-form button`)))
	status := await(t, b, "a wrong token shows an error", 5*time.Second,
		`(() => { const s = document.getElementById("status"); return s.className + "|" + s.textContent })()`,
		func(s string) bool { return strings.HasPrefix(s, "error|") && strings.Contains(s, "refused") })
	if !strings.Contains(status, "401") {
		t.Errorf("status %q does not give the 401", status)
	}
	if s := analyzerState(t, srv.MetricsAddr(), "analyzer-1"); s == "drained" {
		t.Fatal("a wrong token drained analyzer-1")
	}
	if eval[bool](t, b, `sessionStorage.getItem("sluice-admin-token") !== null`) {
		t.Error("a refused token stays in sessionStorage")
	}

	// The right token (the form is offered again) does it, and is kept for the tab.
	b.run(t, "enter the token",
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.CSS(`#token-form button`)))
	await(t, b, "the drain with the right token", 5*time.Second, `document.getElementById("status").textContent`,
		func(s string) bool { return strings.HasPrefix(s, "drain analyzer-1: ok 200") })
	if s := analyzerState(t, srv.MetricsAddr(), "analyzer-1"); s != "drained" {
		t.Errorf("with the token: analyzer-1 is %s, want drained", s)
	}
	if !eval[bool](t, b, `sessionStorage.getItem("sluice-admin-token") !== null`) {
		t.Error("the accepted token was not kept in sessionStorage")
	}
	if p := b.problems(false); len(p) > 0 {
		t.Errorf("the page reported errors:\n%s", strings.Join(p, "\n"))
	}
}
