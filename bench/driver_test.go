package bench

import (
	"bytes"
	"context"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicelog/sluice/bench/ceiling"
	"github.com/sluicelog/sluice/codec"
)

// packetServer answers 202 to valid packets and 400 to anything else, and keeps
// every packet id it was sent.
type packetServer struct {
	mu  sync.Mutex
	ids map[string]int
	bad int
}

func (s *packetServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var p codec.Packet
	err := codec.ValidatePacket(body, &p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || r.Method != http.MethodPost || r.URL.Path != "/ingest" || r.Header.Get("Content-Type") != "application/json" || p.Messages != MessagesPerPacket {
		s.bad++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.ids[string(p.ID)]++
	w.WriteHeader(http.StatusAccepted)
}

func TestVegetaSendsValidPacketsEachWithAFreshID(t *testing.T) {
	ps := &packetServer{ids: map[string]int{}}
	srv := httptest.NewServer(ps)
	defer srv.Close()
	v := Vegeta{Packet: NewPacket("e1", 1)}
	o, err := v.Run(context.Background(), Load{URL: srv.URL + "/ingest", Conns: 4, Duration: 300 * time.Millisecond, IDPrefix: "t-r1-"})
	if err != nil {
		t.Fatal(err)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.bad != 0 {
		t.Errorf("%d requests were not valid packets", ps.bad)
	}
	if o.Requests == 0 || o.OK != o.Requests || int64(len(ps.ids)) != o.OK {
		t.Errorf("requests %d, 2xx %d, distinct ids at the server %d", o.Requests, o.OK, len(ps.ids))
	}
	for id, n := range ps.ids {
		if n != 1 || !strings.HasPrefix(id, "t-r1-") {
			t.Errorf("id %q sent %d times", id, n)
		}
	}
	// vegeta's elapsed time runs from the first request to the last one's start plus
	// that one's wait: the last request may start a little before the 300 ms are up.
	if o.P50 <= 0 || o.P99 < o.P50 || o.P999 < o.P99 || o.Elapsed < 250*time.Millisecond || o.LoadCPU <= 0 {
		t.Errorf("outcome %+v", o)
	}
}

func TestVegetaConstantRateIsAnOpenLoop(t *testing.T) {
	// Every answer takes 50 ms: two connections in a closed loop would send at most
	// 40 requests a second. At a constant rate vegeta adds workers instead.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(50 * time.Millisecond)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	o, err := Vegeta{Packet: NewPacket("e1", 1)}.Run(context.Background(),
		Load{URL: srv.URL + "/ingest", Conns: 2, Duration: time.Second, Rate: 200, IDPrefix: "rate-"})
	if err != nil {
		t.Fatal(err)
	}
	// The pacer never runs ahead of 200/s; on a busy machine it may fall a little behind.
	if o.Requests < 120 || o.Requests > 201 || o.OK != o.Requests {
		t.Errorf("%d requests (%d accepted) at 200/s for 1 s against 50 ms answers", o.Requests, o.OK)
	}
	if o.P50 < 50*time.Millisecond {
		t.Errorf("p50 %v under the server's 50 ms", o.P50)
	}
}

func TestVegetaReportsATargetThatAnswersNothing(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	_, err := Vegeta{Packet: NewPacket("e1", 1)}.Run(context.Background(),
		Load{URL: srv.URL + "/ingest", Conns: 1, Duration: 100 * time.Millisecond, IDPrefix: "x-"})
	if err == nil || !strings.Contains(err.Error(), "no 2xx") {
		t.Errorf("got %v, want an error saying nothing was accepted", err)
	}
}

func TestChartIsAPNGWithOnePanelPerKindOfRun(t *testing.T) {
	rep := testReport()
	var b bytes.Buffer
	if err := WriteChart(rep, &b); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if got := img.Bounds().Size(); got.X != 1600 || got.Y != 500 {
		t.Errorf("chart is %v, want 1600x500 (two panels)", got)
	}
	rep.Latency = nil
	b.Reset()
	if err := WriteChart(rep, &b); err != nil {
		t.Fatal(err)
	}
	if img, err = png.Decode(&b); err != nil || img.Bounds().Size().X != 800 {
		t.Errorf("without latency rows: %v, %v; want one 800 px panel", img.Bounds(), err)
	}
	if err := WriteChart(&Report{}, &b); err == nil {
		t.Error("a chart of nothing was drawn")
	}
}

func TestEmitterCommandLine(t *testing.T) {
	e := Emitter{Path: "bin/sluice"}
	l := Load{URL: "http://127.0.0.1:1/ingest", Conns: 64, Duration: 8 * time.Second, Rate: 30123.6, IDPrefix: "b1-half-emitter-sluice-"}
	want := "bin/sluice emitter -target http://127.0.0.1:1/ingest -rate 30124 -concurrency 64 -duration 8s -emitter-id b1-half-emitter-sluice -retries -1 -json"
	if got := e.Command(l); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	l.Rate, l.IDPrefix = 0, "b1-x"
	if got := strings.Join(e.Args(l), " "); !strings.Contains(got, " -rate 0 ") || !strings.Contains(got, " -emitter-id b1-x ") {
		t.Errorf("closed loop: %s", got)
	}
}

func TestParseEmitterReport(t *testing.T) {
	out := []byte("some line a future emitter prints first\n" +
		`{"sent":120000,"accepted":119990,"rejected_503":4,"rejected_429":0,"other_errors":6,"retries":0,"gave_up":10,"unfinished":0,` +
		`"messages_accepted":599950,"duration_s":6.012,"rate_pps":19958.4,"p50_ms":0.21,"p99_ms":0.803,"p999_ms":2.5}` + "\n\n")
	o, err := ParseEmitterReport(out)
	if err != nil {
		t.Fatal(err)
	}
	want := Outcome{Requests: 120000, OK: 119990, Elapsed: 6012 * time.Millisecond, P50: 210 * time.Microsecond, P99: 803 * time.Microsecond, P999: 2500 * time.Microsecond}
	if o != want {
		t.Errorf("got %+v\nwant %+v", o, want)
	}
	for name, bad := range map[string]string{
		"empty":            "",
		"no JSON line":     "duration 6.000 s\nsent 10\naccepted 10\n",
		"JSON not last":    `{"sent":1,"accepted":1,"duration_s":1}` + "\nsluice emitter: something went wrong\n",
		"garbage":          `{"sent":1,"accepted":`,
		"wrong types":      `{"sent":"many","accepted":1,"duration_s":1}`,
		"not the report":   `{"status":"accepted"}`,
		"no duration":      `{"sent":1,"accepted":1,"duration_s":0}`,
		"no sent count":    `{"accepted":1,"duration_s":1}`,
		"only white space": " \n\t\n",
	} {
		if o, err := ParseEmitterReport([]byte(bad)); err == nil {
			t.Errorf("%s: parsed as %+v", name, o)
		}
	}
}

// buildSluice builds the sluice binary of this checkout into a temporary directory.
func buildSluice(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH: cannot build the sluice binary")
	}
	// The product's module directory as bench's go.mod resolves it (replace ../),
	// so the binary is built with the product's own go.mod, as make build does.
	dir, err := exec.Command(goBin, "list", "-m", "-f", "{{.Dir}}", "github.com/sluicelog/sluice").Output()
	if err != nil || strings.TrimSpace(string(dir)) == "" {
		t.Fatalf("go list -m github.com/sluicelog/sluice: %q, %v", dir, err)
	}
	bin := filepath.Join(t.TempDir(), "sluice")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	build.Dir = strings.TrimSpace(string(dir))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestEmitterAgainstTheCeiling(t *testing.T) {
	bin := buildSluice(t)
	srv, err := ceiling.Start("127.0.0.1:0", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	}()
	l := Load{URL: "http://" + srv.Addr() + "/ingest", Conns: 4, Duration: 600 * time.Millisecond, Rate: 2000, IDPrefix: "t-half-emitter-ceiling-"}
	o, err := Emitter{Path: bin}.Run(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	// 2000/s for 0.6 s is 1200 packets; a busy machine may fall behind the pacer.
	if o.OK <= 0 || o.OK > o.Requests || o.Requests > 1300 || o.P99 <= 0 || o.P50 > o.P99 || o.Elapsed < 600*time.Millisecond || o.LoadCPU <= 0 {
		t.Errorf("outcome %+v", o)
	}

	// A target nobody listens on is an error with the emitter's own words.
	dead := Load{URL: "http://127.0.0.1:1/ingest", Conns: 1, Duration: 200 * time.Millisecond, Rate: 100, IDPrefix: "t-dead-"}
	if _, err := (Emitter{Path: bin}).Run(context.Background(), dead); err == nil || !strings.Contains(err.Error(), "emitter") {
		t.Errorf("against a closed port: %v", err)
	}
}
