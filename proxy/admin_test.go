package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicelog/sluice/sched"
)

const testToken = "t0ken-for-tests-only"

// adminCall sends one request to base+path and returns the status, headers and body.
func adminCall(t *testing.T, method, url string, hdr map[string]string, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// wantError checks an answer is the one JSON error shape with this status.
func wantError(t *testing.T, what string, status int, hdr http.Header, body string, want int) {
	t.Helper()
	var e map[string]any
	if status != want || hdr.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &e) != nil ||
		len(e) != 2 || e["status"] != float64(want) || e["error"] == "" {
		t.Errorf("%s: %d %q %s, want %d with {\"error\":...,\"status\":%d}", what, status, hdr.Get("Content-Type"), body, want, want)
	}
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// jsonPost is what a script or the demo sends to the admin API.
var jsonPost = map[string]string{"Content-Type": "application/json"}

// With ADMIN_TOKEN, the admin API and pprof need the token from every peer,
// loopback included; scrapers and probes do not.
func TestAdminTokenRequired(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", func(c *Config) { c.AdminToken = Secret{v: testToken} })
	base := "http://" + srv.MetricsAddr()
	for _, p := range []string{"/admin/analyzers", "/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/nope"} {
		st, h, b := adminCall(t, "GET", base+p, nil, "")
		wantError(t, "GET "+p+" without a token", st, h, b, 401)
		if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("GET %s: WWW-Authenticate %q, want Bearer", p, h.Get("WWW-Authenticate"))
		}
		st, h, b = adminCall(t, "GET", base+p, bearer("wrong"), "")
		wantError(t, "GET "+p+" with a wrong token", st, h, b, 401)
		st, h, b = adminCall(t, "GET", base+p, map[string]string{"Authorization": "Basic " + testToken}, "")
		wantError(t, "GET "+p+" with the token as Basic", st, h, b, 401)
	}
	for _, p := range []string{"/metrics", "/metrics-json", "/health", "/livez", "/readyz", "/", "/console/data", "/console/console.js"} {
		if st, _, b := adminCall(t, "GET", base+p, nil, ""); st != 200 || b == "" {
			t.Errorf("GET %s without a token: %d %q, want it open", p, st, b)
		}
	}
	st, h, b := adminCall(t, "POST", base+"/admin/analyzers/analyzer-1/drain", jsonPost, "")
	wantError(t, "drain without a token", st, h, b, 401)
	if s := stateOf(srv, 0); s == sched.StateDrained {
		t.Fatal("drained without a token")
	}
	for _, p := range []string{"/admin/analyzers", "/debug/pprof/", "/debug/pprof/goroutine?debug=1"} {
		if st, _, b := adminCall(t, "GET", base+p, bearer(testToken), ""); st != 200 || b == "" {
			t.Errorf("GET %s with the token: %d %q", p, st, b)
		}
	}
	st, _, b = adminCall(t, "POST", base+"/admin/analyzers/analyzer-1/drain", map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/json"}, "")
	if st != 200 || stateOf(srv, 0) != sched.StateDrained {
		t.Errorf("drain with the token: %d %s, state %s", st, b, stateOf(srv, 0))
	}
}

// Without ADMIN_TOKEN the closed routes answer loopback peers only: checked on the
// handler with a documentation address as the peer.
func TestAdminLoopbackOnlyWithoutToken(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", nil)
	h := srv.adminHandler()
	serve := func(method, path, peer string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "http://127.0.0.1:9100"+path, nil) // a local client's Host
		r.RemoteAddr = peer
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for _, p := range []string{"/admin/analyzers", "/debug/pprof/", "/debug/pprof/cmdline"} {
		w := serve("GET", p, "192.0.2.10:1234")
		wantError(t, "GET "+p+" from 192.0.2.10", w.Code, w.Header(), w.Body.String(), 403)
		for _, peer := range []string{"127.0.0.1:5555", "[::1]:5555"} {
			if w := serve("GET", p, peer); w.Code != 200 {
				t.Errorf("GET %s from %s: %d %s", p, peer, w.Code, w.Body)
			}
		}
	}
	w := serve("POST", "/admin/analyzers/analyzer-1/drain", "192.0.2.10:1234")
	wantError(t, "drain from 192.0.2.10", w.Code, w.Header(), w.Body.String(), 403)
	if stateOf(srv, 0) == sched.StateDrained {
		t.Fatal("a non-loopback peer drained an analyzer")
	}
	for _, p := range []string{"/metrics", "/metrics-json", "/health", "/livez", "/readyz", "/", "/console/data"} {
		if w := serve("GET", p, "192.0.2.10:1234"); w.Code == 403 || w.Code == 401 {
			t.Errorf("GET %s from 192.0.2.10: %d, want it open", p, w.Code)
		}
	}
}

// The same with a real non-loopback peer: a network namespace joined to this one by
// a veth pair with addresses from 198.18.0.0/15, curl run inside it.
func TestAdminNonLoopbackPeer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (ip netns add)")
	}
	for _, bin := range []string{"ip", "curl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (make deps installs iproute2 and curl)", bin)
		}
	}
	hostIP, peerIP := vethPair(t)
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", func(c *Config) { c.MetricsAddr = net.JoinHostPort(hostIP, "0") })
	_, port, _ := net.SplitHostPort(srv.MetricsAddr())
	ns := "sluice-test-" + strconv.Itoa(os.Getpid())
	curl := func(path string, args ...string) (int, string) {
		t.Helper()
		argv := append([]string{"netns", "exec", ns, "curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}"}, args...)
		out, err := exec.Command("ip", append(argv, "http://"+net.JoinHostPort(hostIP, port)+path)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s from %s: %v\n%s", path, peerIP, err, out)
		}
		i := bytes.LastIndexByte(out, '\n') // -w puts the status on a line of its own
		n, _ := strconv.Atoi(string(out[i+1:]))
		return n, string(out[:i])
	}
	if st, b := curl("/admin/analyzers"); st != 403 || !strings.Contains(b, `"status":403`) {
		t.Errorf("GET /admin/analyzers from %s: %d %s, want 403 JSON", peerIP, st, b)
	}
	if st, b := curl("/admin/analyzers/analyzer-1/drain", "-X", "POST", "-H", "Content-Type: application/json"); st != 403 || stateOf(srv, 0) == sched.StateDrained {
		t.Errorf("drain from %s: %d %s, state %s", peerIP, st, b, stateOf(srv, 0))
	}
	if st, b := curl("/metrics-json"); st != 200 || !strings.Contains(b, "total_packets") {
		t.Errorf("GET /metrics-json from %s: %d, want it open", peerIP, st)
	}
	// From this namespace the host address is not loopback either.
	if st, _, b := adminCall(t, "GET", "http://"+net.JoinHostPort(hostIP, port)+"/admin/analyzers", nil, ""); st != 403 {
		t.Errorf("GET /admin/analyzers from %s (host side): %d %s, want 403", hostIP, st, b)
	}
}

// vethPair creates the namespace sluice-test-<pid> and a veth pair between it and
// this namespace; it returns the host side's and the namespace side's addresses.
func vethPair(t *testing.T) (hostIP, peerIP string) {
	pid := os.Getpid()
	ns := "sluice-test-" + strconv.Itoa(pid)
	hostIf, peerIf := "slh"+strconv.Itoa(pid), "sln"+strconv.Itoa(pid)
	b := (pid & 0x3fff) << 2 // a /30 of 198.18.0.0/16 per process
	prefix := "198.18." + strconv.Itoa(b>>8) + "."
	hostIP, peerIP = prefix+strconv.Itoa(b&0xff|1), prefix+strconv.Itoa(b&0xff|2)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Skipf("ip %s: %v: %s (no network namespaces here)", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", hostIf).Run()
		_ = exec.Command("ip", "netns", "del", ns).Run()
	})
	run("link", "add", hostIf, "type", "veth", "peer", "name", peerIf)
	run("link", "set", peerIf, "netns", ns)
	run("addr", "add", hostIP+"/30", "dev", hostIf)
	run("link", "set", hostIf, "up")
	run("netns", "exec", ns, "ip", "addr", "add", peerIP+"/30", "dev", peerIf)
	run("netns", "exec", ns, "ip", "link", "set", peerIf, "up")
	run("netns", "exec", ns, "ip", "link", "set", "lo", "up")
	return hostIP, peerIP
}

// A page on another site can make a browser POST a form to the admin port; the
// browser adds Origin, and a form cannot be application/json without a preflight.
func TestAdminRefusesCrossSiteMutations(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", nil)
	base := "http://" + srv.MetricsAddr()
	drain := base + "/admin/analyzers/analyzer-1/drain"
	form := map[string]string{"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"}
	st, h, b := adminCall(t, "POST", drain, form, "a=b")
	wantError(t, "cross-site form POST", st, h, b, 403)
	st, h, b = adminCall(t, "POST", drain, map[string]string{"Origin": "http://evil.example", "Content-Type": "application/json"}, "")
	wantError(t, "cross-site JSON POST", st, h, b, 403)
	st, h, b = adminCall(t, "POST", drain, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "a=b")
	wantError(t, "form POST without Origin", st, h, b, 415)
	st, h, b = adminCall(t, "POST", drain, nil, "")
	wantError(t, "POST without Content-Type", st, h, b, 415)
	if s := stateOf(srv, 0); s == sched.StateDrained {
		t.Fatal("a refused request drained the analyzer")
	}
	// A script: JSON (or an empty body declared JSON), with or without its own Origin.
	if st, _, b := adminCall(t, "POST", drain, map[string]string{"Origin": base, "Content-Type": "application/json; charset=utf-8"}, ""); st != 200 || stateOf(srv, 0) != sched.StateDrained {
		t.Fatalf("same-origin JSON drain: %d %s, state %s", st, b, stateOf(srv, 0))
	}
	if st, _, b := adminCall(t, "POST", base+"/admin/analyzers/analyzer-1/undrain", jsonPost, ""); st != 200 || stateOf(srv, 0) == sched.StateDrained {
		t.Fatalf("undrain: %d %s, state %s", st, b, stateOf(srv, 0))
	}
	st, h, b = adminCall(t, "POST", base+"/admin/analyzers/analyzer-1/weight", jsonPost, "value=3")
	wantError(t, "weight with a body that is not JSON", st, h, b, 400)
}

// Every admin change is logged at Info with the client address and what changed;
// the token never appears in the log. On the handler of a server that is built but
// not started, so nothing else writes to the log.
func TestAdminChangesLogged(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Analyzers, _ = ParseAnalyzers("http://analyzer-1:1=0.5,http://analyzer-2:1=0.5")
	cfg.AdminToken = Secret{v: testToken}
	var logBuf bytes.Buffer
	srv, err := New(cfg, slog.New(slog.NewJSONHandler(&logBuf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	post := func(path, body string) {
		t.Helper()
		r := httptest.NewRequest("POST", path, strings.NewReader(body))
		r.RemoteAddr = "198.51.100.7:4321"
		r.Header.Set("Authorization", "Bearer "+testToken)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		srv.adminHandler().ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("POST %s %s: %d %s", path, body, w.Code, w.Body)
		}
	}
	post("/admin/analyzers/analyzer-2/weight", `{"value":1.5}`)
	if w := srv.View().Members[1].Weight; w < 0.74 || w > 0.76 {
		t.Errorf("analyzer-2 weight %v after weight 1.5 against 0.5, want 0.75", w)
	}
	post("/admin/analyzers/analyzer-1/drain", "")
	var changes []map[string]any
	for _, line := range strings.Split(logBuf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "admin change" {
			changes = append(changes, rec)
		}
	}
	if len(changes) != 2 {
		t.Fatalf("%d admin change records, want 2:\n%s", len(changes), logBuf.String())
	}
	for _, c := range changes {
		if c["level"] != "INFO" || c["client"] != "198.51.100.7:4321" {
			t.Errorf("admin change record %v: want level INFO and the client's address", c)
		}
	}
	if c := changes[0]; c["analyzer"] != "analyzer-2" || c["action"] != "weight" || c["weight"] != "0.5 -> 0.75" {
		t.Errorf("weight change logged as %v, want analyzer-2 weight 0.5 -> 0.75", c)
	}
	if c := changes[1]; c["analyzer"] != "analyzer-1" || c["action"] != "drain" || !strings.HasSuffix(fmt.Sprint(c["state"]), "-> drained") {
		t.Errorf("drain logged as %v, want analyzer-1 state ... -> drained", c)
	}
	if strings.Contains(logBuf.String(), testToken) {
		t.Error("the admin token is in the log")
	}
}

// One error shape on every port: the admin listener's 404 is byte for byte the
// ingest port's, and 405 carries Allow on both.
func TestOneErrorShapeOnEveryPort(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", nil)
	admin := "http://" + srv.MetricsAddr()
	_, _, ingest404 := adminCall(t, "GET", ingestURL(srv)+"/nope", nil, "")
	st, h, admin404 := adminCall(t, "GET", admin+"/nope", nil, "")
	wantError(t, "admin 404", st, h, admin404, 404)
	if admin404 != ingest404 {
		t.Errorf("admin 404 body %s, ingest 404 body %s: want one shape", admin404, ingest404)
	}
	st, h, b := adminCall(t, "GET", admin+"/admin/analyzers/analyzer-1/drain", nil, "")
	wantError(t, "GET on an action", st, h, b, 405)
	if h.Get("Allow") != "POST" {
		t.Errorf("GET on an action: Allow %q, want POST", h.Get("Allow"))
	}
	st, h, b = adminCall(t, "POST", admin+"/metrics", jsonPost, "")
	wantError(t, "POST /metrics", st, h, b, 405)
	if h.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /metrics: Allow %q, want GET, HEAD", h.Get("Allow"))
	}
	st, h, ingest405 := adminCall(t, "POST", ingestURL(srv)+"/metrics", nil, "")
	wantError(t, "POST /metrics on the ingest port", st, h, ingest405, 405)
	if b != ingest405 || h.Get("Allow") != "GET, HEAD" {
		t.Errorf("admin 405 %s, ingest 405 %s (Allow %q): want the same", b, ingest405, h.Get("Allow"))
	}
	for _, path := range []string{"/admin/analyzers/nobody/drain", "/admin/analyzers/nobody/undrain", "/admin/analyzers/nobody/weight?value=0.5"} {
		st, h, b = adminCall(t, "POST", admin+path, jsonPost, "")
		wantError(t, "unknown analyzer: "+path, st, h, b, 404)
	}
}

// /livez and /readyz answer on both ports; /readyz turns 503 once every analyzer
// is down, while /livez stays 200.
func TestProbesBothPortsAllAnalyzersDown(t *testing.T) {
	f1, f2 := newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)
	srv := startDistributor(t, joinAnalyzers([]*fakeAnalyzer{f1, f2}, 0.5, 0.5), failureConfig)
	bases := []string{ingestURL(srv), "http://" + srv.MetricsAddr()}
	for _, base := range bases {
		for _, p := range []string{"/livez", "/readyz"} {
			st, h, b := adminCall(t, "GET", base+p, nil, "")
			if st != 200 || b != `{"status":"ok"}` || h.Get("Content-Type") != "application/json" {
				t.Errorf("GET %s%s: %d %q %s, want 200 {\"status\":\"ok\"}", base, p, st, h.Get("Content-Type"), b)
			}
			if st, _, b := adminCall(t, "HEAD", base+p, nil, ""); st != 200 || b != "" {
				t.Errorf("HEAD %s%s: %d %q", base, p, st, b)
			}
		}
	}
	f1.stop()
	f2.stop()
	for _, base := range bases {
		b := awaitNotReady(t, base, 10*time.Second)
		var p ProbeJSON
		if json.Unmarshal([]byte(b), &p) != nil || p.Status != "not_ready" || !strings.Contains(p.Reason, "no analyzer can take packets") {
			t.Errorf("%s/readyz with every analyzer down: %s", base, b)
		}
		if st, _, b := adminCall(t, "GET", base+"/livez", nil, ""); st != 200 {
			t.Errorf("%s/livez with every analyzer down: %d %s, want 200 (the process is fine)", base, st, b)
		}
	}
}

// awaitNotReady polls base/readyz until it answers 503 and returns that body.
func awaitNotReady(t *testing.T, base string, within time.Duration) (body string) {
	t.Helper()
	waitFor(t, "/readyz 503 on "+base, within, func() bool {
		var st int
		st, _, body = adminCall(t, "GET", base+"/readyz", nil, "")
		return st == 503
	})
	return body
}

// gateAnalyzer is healthy but holds every /ingest answer until release.
func gateAnalyzer(t *testing.T) (url string, release func()) {
	gate := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{"status":"healthy"}`) })
	mux.HandleFunc("POST /ingest", func(w http.ResponseWriter, r *http.Request) {
		<-gate
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	srv := httptest.NewServer(mux)
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(func() { release(); srv.Close() })
	return srv.URL, release
}

// /readyz is 503 "shutting down" on both ports while Shutdown drains, and /livez
// stays 200 until the loops stop.
func TestReadyzDuringShutdown(t *testing.T) {
	url, release := gateAnalyzer(t)
	srv := startDistributor(t, url+"=1", func(c *Config) { c.SenderTimeout = 30 * time.Second })
	bases := []string{ingestURL(srv), "http://" + srv.MetricsAddr()}
	s := newSender(ingestURL(srv), 1)
	if st, _ := s.send(t, "held", 1); st != 202 {
		t.Fatalf("send: %d", st)
	}
	waitFor(t, "the packet in flight", 5*time.Second, func() bool { st := srv.Snapshot(); return st.Total().InFlight == 1 })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	for _, base := range bases {
		if b := awaitNotReady(t, base, 5*time.Second); b != `{"status":"not_ready","reason":"shutting down"}` {
			t.Errorf("%s/readyz while shutting down: %s", base, b)
		}
		if st, _, b := adminCall(t, "GET", base+"/livez", nil, ""); st != 200 {
			t.Errorf("%s/livez while shutting down: %d %s, want 200", base, st, b)
		}
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := srv.Snapshot(); st.Total().DeliveredPackets != 1 {
		t.Errorf("delivered %d after the drain, want the held packet", st.Total().DeliveredPackets)
	}
}

// LISTEN_ADDR binds the ingest port to that address only.
func TestListenAddrBindsOnlyThatAddress(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", func(c *Config) { c.ListenAddr = "127.0.0.1:0"; c.Port = 1 })
	host, port, _ := net.SplitHostPort(srv.Addr())
	if host != "127.0.0.1" {
		t.Fatalf("ingest bound to %s, want 127.0.0.1 only", srv.Addr())
	}
	if st, _, _ := adminCall(t, "GET", "http://127.0.0.1:"+port+"/livez", nil, ""); st != 200 {
		t.Fatalf("/livez on 127.0.0.1:%s: %d", port, st)
	}
	// Any other address of this machine must refuse the port.
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		ip, ok := a.(*net.IPNet)
		if !ok || ip.IP.IsLoopback() || ip.IP.To4() == nil {
			continue
		}
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip.IP.String(), port), time.Second); err == nil {
			_ = c.Close()
			t.Errorf("ingest port answers on %s; LISTEN_ADDR=127.0.0.1 should bind loopback only", ip.IP)
		}
	}
}

// distributor_build_info is a gauge of 1 carrying version, commit and Go version.
func TestBuildInfoGauge(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", nil)
	_, _, prom := adminCall(t, "GET", "http://"+srv.MetricsAddr()+"/metrics", nil, "")
	sc := bufio.NewScanner(strings.NewReader(prom))
	found := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "distributor_build_info{") {
			found = strings.Contains(line, `version="`) && strings.Contains(line, `commit="`) && strings.Contains(line, `goversion="go`) && strings.HasSuffix(line, "} 1")
			if !found {
				t.Errorf("build info series %q", line)
			}
		}
	}
	if !found || !strings.Contains(prom, "# TYPE distributor_build_info gauge") {
		t.Errorf("no distributor_build_info gauge in /metrics")
	}
}

// METRICS_ADDR="" in the environment turns the admin listener off, as the flag does.
func TestMetricsAddrEmptyEnvTurnsPortOff(t *testing.T) {
	if os.Getenv("SLUICE_ADMIN_CHILD") == "1" {
		os.Exit(Main(nil))
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMetricsAddrEmptyEnvTurnsPortOff$")
	cmd.Env = append(os.Environ(), "SLUICE_ADMIN_CHILD=1", "ANALYZERS=http://127.0.0.1:1=1", "PORT=0",
		"LISTEN_ADDR=127.0.0.1:0", "METRICS_ADDR=", "LOG_FORMAT=json", "ADMIN_TOKEN="+testToken)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var seen []string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		seen = append(seen, sc.Text())
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec["msg"] != "distributor listening" {
			continue
		}
		if rec["metrics"] != "" {
			t.Errorf("METRICS_ADDR=\"\": admin listener on %v, want none", rec["metrics"])
		}
		break
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		seen = append(seen, sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("distributor exit: %v", err)
	}
	all := strings.Join(seen, "\n")
	if !strings.Contains(all, "distributor listening") || strings.Contains(all, "admin API listening") {
		t.Errorf("want a distributor without an admin listener; log:\n%s", all)
	}
	if strings.Contains(all, testToken) {
		t.Error("the admin token is in the log")
	}
}

func TestConfigEmptyVariables(t *testing.T) {
	lookup := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	base := map[string]string{"ANALYZERS": "http://a:1=1", "LOG_LEVEL": ""}
	c, err := LoadConfigLookup(nil, lookup(base), io.Discard)
	if err != nil || c.MetricsAddr != ":9100" || c.LogLevel != "info" {
		t.Fatalf("unset METRICS_ADDR: %q %v; LOG_LEVEL=\"\" gave %q, want the default", c.MetricsAddr, err, c.LogLevel)
	}
	base["METRICS_ADDR"] = ""
	if c, err = LoadConfigLookup(nil, lookup(base), io.Discard); err != nil || c.MetricsAddr != "" {
		t.Fatalf("METRICS_ADDR=\"\": %q %v, want off", c.MetricsAddr, err)
	}
	base["LISTEN_ADDR"], base["PORT"] = "127.0.0.1:7000", "7001"
	if c, err = LoadConfigLookup(nil, lookup(base), io.Discard); err != nil || c.IngestAddr() != "127.0.0.1:7000" {
		t.Fatalf("LISTEN_ADDR and PORT: ingest on %q (%v), want LISTEN_ADDR", c.IngestAddr(), err)
	}
	delete(base, "LISTEN_ADDR")
	if c, err = LoadConfigLookup(nil, lookup(base), io.Discard); err != nil || c.IngestAddr() != ":7001" {
		t.Fatalf("PORT alone: ingest on %q (%v)", c.IngestAddr(), err)
	}
	base["LISTEN_ADDR"] = "127.0.0.1"
	if _, err = LoadConfigLookup(nil, lookup(base), io.Discard); err == nil || !strings.Contains(err.Error(), "LISTEN_ADDR") {
		t.Fatalf("LISTEN_ADDR without a port: %v, want an error naming it", err)
	}
}

func TestAdminTokenConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, empty := write("token", testToken+"\n"), write("empty", "\n")
	c, err := LoadConfig(nil, env(map[string]string{"ANALYZERS": "http://a:1=1", "ADMIN_TOKEN_FILE": good}), io.Discard)
	if err != nil || !c.AdminToken.Matches(testToken) || c.AdminToken.Matches(testToken+"\n") {
		t.Fatalf("ADMIN_TOKEN_FILE with a trailing newline: %v, token matches %v", err, c.AdminToken.Matches(testToken))
	}
	for _, cs := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"empty file", map[string]string{"ADMIN_TOKEN_FILE": empty}, nil},
		{"missing file", map[string]string{"ADMIN_TOKEN_FILE": filepath.Join(dir, "nope")}, nil},
		{"both", map[string]string{"ADMIN_TOKEN_FILE": good, "ADMIN_TOKEN": testToken}, nil},
		{"both, one a flag", map[string]string{"ADMIN_TOKEN_FILE": good}, []string{"-admin-token", testToken}},
	} {
		cs.env["ANALYZERS"] = "http://a:1=1"
		_, err := LoadConfig(cs.args, env(cs.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "ADMIN_TOKEN_FILE") || strings.Contains(err.Error(), testToken) {
			t.Errorf("%s: error %v, want one naming ADMIN_TOKEN_FILE and not showing the token", cs.name, err)
		}
	}
	// Every way of printing the configuration hides the token.
	c, err = LoadConfig([]string{"-admin-token", testToken}, env(map[string]string{"ANALYZERS": "http://a:1=1"}), io.Discard)
	if err != nil || !c.AdminToken.Matches(testToken) {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", c, "token", c.AdminToken)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "cfg", c, "token", c.AdminToken)
	js, _ := json.Marshal(c)
	for _, out := range []string{fmt.Sprintf("%v %+v %#v %s %q %x", c, c, c, c.AdminToken, c.AdminToken, c.AdminToken), logged.String(), string(js)} {
		if strings.Contains(out, testToken) || strings.Contains(out, fmt.Sprintf("%x", testToken)) || !strings.Contains(out, "[redacted]") {
			t.Errorf("the token shows (or [redacted] does not) in %s", out)
		}
	}
}
