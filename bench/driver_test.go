package bench

import (
	"bytes"
	"context"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

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
	if o.P50 <= 0 || o.P99 < o.P50 || o.P999 < o.P99 || o.Elapsed < 300*time.Millisecond || o.LoadCPU <= 0 {
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
