package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/analyzer"
	"github.com/sluicelog/sluice/sched"
)

// memberCall makes a membership call (declared JSON) and answers: status and the decoded JSON body.
func memberCall(t *testing.T, method, url, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	for k, v := range hdr {
		h[k] = v
	}
	st, _, b := adminCall(t, method, url, h, body)
	var out map[string]any
	if err := json.Unmarshal([]byte(b), &out); err != nil {
		t.Fatalf("%s %s: %d, answer not a JSON object: %s", method, url, st, b)
	}
	return st, out
}

// idOf is the id of the member called name in the current View, -1 when none.
func idOf(srv *Server, name string) int {
	for i, m := range srv.View().Members {
		if m.Name == name && m.State != sched.StateRemoved {
			return i
		}
	}
	return -1
}

// received is how many packets a fake analyzer has recorded.
func received(f *fakeAnalyzer) int {
	n, _, _ := f.counts()
	return n
}

// An analyzer added under load goes unknown -> (probe) -> slow start -> traffic,
// and nothing accepted is lost or doubled (by packet_id). Duplicates by name or URL
// are refused with 409, bad bodies with 400.
func TestAddAnalyzerUnderLoad(t *testing.T) {
	a, b, c := newFakeAnalyzer(t, false), newFakeAnalyzer(t, true), newFakeAnalyzer(t, false)
	srv := startDistributor(t, joinAnalyzers([]*fakeAnalyzer{a, b}, 0.5, 0.5), func(cfg *Config) {
		cfg.SlowStart = 3 * time.Second
	})
	base := "http://" + srv.MetricsAddr() + "/admin/analyzers"
	l := startLoad(t, srv, 4, "add-", fixedSize(3))
	waitFor(t, "traffic to the configured analyzers", 5*time.Second, func() bool { return received(a) > 0 && received(b) > 0 })

	st, e := memberCall(t, "POST", base, `{"url":"`+c.url()+`","weight":0.5,"name":"late"}`, nil)
	if st != 201 || e["name"] != "late" || e["url"] != c.url() || e["weight"] != 0.5 || e["state"] != "unknown" {
		t.Fatalf("add: %d %v, want 201 with name late, weight 0.5, state unknown", st, e)
	}
	if nw := e["normalised_weight"].(float64); nw < 0.33 || nw > 0.34 {
		t.Errorf("normalised weight %v of 0.5 next to 0.5+0.5, want 1/3", nw)
	}
	id := idOf(srv, "late")
	if id != 2 {
		t.Fatalf("the added analyzer has id %d, want 2 (the next one)", id)
	}
	// A run-time member ramps like a rejoining one, it is not at full weight at once.
	waitFor(t, "the added analyzer's probe", 5*time.Second, func() bool { return stateOf(srv, id) != sched.StateUnknown })
	if s := stateOf(srv, id); s != sched.StateSlowStart {
		t.Errorf("the added analyzer is %s once probed, want slow_start", s)
	}
	waitFor(t, "traffic to the added analyzer", 5*time.Second, func() bool { return received(c) > 20 })

	for _, tc := range []struct{ what, body string }{
		{"the same name", `{"url":"http://127.0.0.1:1","weight":1,"name":"late"}`},
		{"the same URL", `{"url":"` + c.url() + `","weight":1,"name":"other"}`},
		{"a configured URL", `{"url":"` + a.url() + `","weight":1}`},
	} {
		st, h, body := adminCall(t, "POST", base, jsonPost, tc.body)
		wantError(t, "add with "+tc.what, st, h, body, 409)
	}
	for _, tc := range []struct{ what, body string }{
		{"an unknown field", `{"url":"http://127.0.0.1:1","weight":1,"wieght":2}`},
		{"no weight", `{"url":"http://127.0.0.1:1"}`},
		{"a zero weight", `{"url":"http://127.0.0.1:1","weight":0}`},
		{"a negative weight", `{"url":"http://127.0.0.1:1","weight":-1}`},
		{"a weight that is a string", `{"url":"http://127.0.0.1:1","weight":"1"}`},
		{"no URL", `{"weight":1}`},
		{"an https URL", `{"url":"https://127.0.0.1:1","weight":1}`},
		{"a URL without host", `{"url":"http://","weight":1}`},
		{"a name with a slash", `{"url":"http://127.0.0.1:1","weight":1,"name":"a/b"}`},
		{"not JSON", `url=http://127.0.0.1:1`},
		{"two objects", `{"url":"http://127.0.0.1:1","weight":1}{}`},
	} {
		st, h, body := adminCall(t, "POST", base, jsonPost, tc.body)
		wantError(t, "add with "+tc.what, st, h, body, 400)
	}
	if n := srv.View().Live(); n != 3 {
		t.Fatalf("%d analyzers after the refused adds, want 3", n)
	}

	accepted := l.finish()
	settledNothingLost(t, srv, 10*time.Second)
	checkDelivered(t, accepted, []*fakeAnalyzer{a, b, c}, false)
	var list map[string]AnalyzerStats
	if st := fetchJSON(t, "GET", base, &list); st != 200 || list["late"].DeliveredPackets != int64(received(c)) {
		t.Errorf("GET /admin/analyzers: %d, late delivered %d, the analyzer got %d", st, list["late"].DeliveredPackets, received(c))
	}
}

// An analyzer removed under load gets nothing once the DELETE is answered: its
// queued packets went to the others, what it had in flight was answered first.
// Nothing accepted is lost, and it disappears from /health, the admin list and
// the metrics.
func TestRemoveAnalyzerUnderLoad(t *testing.T) {
	a, b, c := newFakeAnalyzer(t, false), newFakeAnalyzer(t, true), newFakeAnalyzer(t, false)
	c.delay.Store(int64(20 * time.Millisecond)) // so it has packets queued and in flight when removed
	srv := startDistributor(t, joinAnalyzers([]*fakeAnalyzer{a, b, c}, 0.3, 0.3, 0.4), nil)
	admin := "http://" + srv.MetricsAddr()
	name := srv.View().Members[2].Name
	l := startLoad(t, srv, 6, "rm-", fixedSize(2))
	waitFor(t, "traffic to every analyzer", 5*time.Second, func() bool { return received(a) > 0 && received(b) > 0 && received(c) > 20 })
	waitFor(t, "packets queued or in flight at the analyzer to remove", 5*time.Second, func() bool {
		d := srv.Snapshot().Dests[2]
		return d.Queued+d.InFlight > 0
	})

	st, out := memberCall(t, "DELETE", admin+"/admin/analyzers/"+name, "", nil)
	answered := time.Now().UnixNano()
	removed, _ := out["removed"].(map[string]any)
	if st != 200 || removed["name"] != name || removed["url"] != c.url() || out["in_flight"] != 0.0 || out["queued"] != 0.0 {
		t.Fatalf("DELETE: %d %v, want 200 naming %s with nothing left queued or in flight", st, out, name)
	}
	got, others := received(c), received(a)+received(b)
	waitFor(t, "more traffic to the others", 5*time.Second, func() bool { return received(a)+received(b) > others+100 })
	if n := received(c); n != got || c.lastAt.Load() > answered {
		t.Fatalf("the removed analyzer received %d packets after the DELETE was answered", n-got)
	}
	if st, body := memberCall(t, "DELETE", admin+"/admin/analyzers/"+name, "", nil); st != 404 {
		t.Errorf("second DELETE: %d %v, want 404", st, body)
	}
	h, _ := getHealth(t, admin)
	if h.TotalAnalyzers != 2 || len(h.Analyzers) != 2 || strings.Contains(scrape(t, admin), `analyzer="`+name+`"`) {
		t.Errorf("after removal: /health %d analyzers %v; the metrics still name %s", h.TotalAnalyzers, h.Analyzers, name)
	}
	waitFor(t, "the removed analyzer's connections closed", 5*time.Second, func() bool { return srv.Snapshot().Dests[2].Conns == 0 })
	accepted := l.finish()
	st2 := settledNothingLost(t, srv, 10*time.Second)
	if st2.Dests[2].Rerouted == 0 {
		t.Log("no packet of the removed analyzer needed moving (it had only in-flight ones)")
	}
	checkDelivered(t, accepted, []*fakeAnalyzer{a, b, c}, false)
	var list map[string]AnalyzerStats
	if fetchJSON(t, "GET", admin+"/admin/analyzers", &list); len(list) != 2 {
		t.Errorf("GET /admin/analyzers lists %d analyzers after the removal, want 2", len(list))
	}
}

func scrape(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Removing the last analyzer is allowed: new packets get 503 (all down); adding it
// back (the same URL takes its old id) brings traffic back.
func TestRemoveLastAnalyzerThenAddBack(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", nil)
	admin := "http://" + srv.MetricsAddr() + "/admin/analyzers"
	s := newSender(ingestURL(srv), 1)
	if code, _ := s.send(t, "before", 1); code != 202 {
		t.Fatalf("before: %d", code)
	}
	if st, out := memberCall(t, "DELETE", admin+"/analyzer-1", "", nil); st != 200 {
		t.Fatalf("DELETE the only analyzer: %d %v", st, out)
	}
	if code, h := s.send(t, "during", 1); code != 503 || h.Get("Retry-After") == "" {
		t.Fatalf("with no analyzer: %d, Retry-After %q, want 503 with one", code, h.Get("Retry-After"))
	}
	if st, out := memberCall(t, "POST", admin, `{"url":"`+f.url()+`","weight":2}`, nil); st != 201 || out["name"] != "analyzer-127.0.0.1-"+f.addr[strings.LastIndexByte(f.addr, ':')+1:] {
		t.Fatalf("add back: %d %v", st, out)
	}
	if n := len(srv.View().Members); n != 1 {
		t.Errorf("the View has %d ids after adding the same URL back, want 1 (its old id)", n)
	}
	waitFor(t, "the analyzer back", 5*time.Second, func() bool { return srv.View().Members[0].Eligible })
	if code, _ := s.send(t, "after", 1); code != 202 {
		t.Fatalf("after: %d", code)
	}
	settledNothingLost(t, srv, 5*time.Second)
	checkDelivered(t, s.accepted, []*fakeAnalyzer{f}, false)
}

// PUT sets a weight and answers the configured and the normalised weight; the
// membership routes go through the admin guard (token, method, JSON).
func TestPutWeightAndGuard(t *testing.T) {
	a, b := newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)
	srv := startDistributor(t, joinAnalyzers([]*fakeAnalyzer{a, b}, 0.5, 0.5), func(c *Config) {
		c.AdminToken = Secret{v: testToken}
	})
	base := "http://" + srv.MetricsAddr() + "/admin/analyzers"
	tok := bearer(testToken)
	authJSON := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + testToken}
	st, e := memberCall(t, "PUT", base+"/analyzer-2", `{"weight":1.5}`, tok)
	if st != 200 || e["weight"] != 1.5 || e["normalised_weight"] != 0.75 || e["name"] != "analyzer-2" {
		t.Fatalf("PUT weight 1.5: %d %v, want weight 1.5 and normalised_weight 0.75", st, e)
	}
	if w := srv.View().Members[1].Weight; w != 0.75 {
		t.Errorf("the View's weight %v, want 0.75", w)
	}
	for _, body := range []string{`{"weight":0}`, `{"value":1}`, `{}`, `1`} {
		st, h, b := adminCall(t, "PUT", base+"/analyzer-2", authJSON, body)
		wantError(t, "PUT "+body, st, h, b, 400)
	}
	st, h, body := adminCall(t, "PUT", base+"/nobody", authJSON, `{"weight":1}`)
	wantError(t, "PUT an unknown analyzer", st, h, body, 404)
	// The guard: no token, wrong method, a form.
	st, h, body = adminCall(t, "POST", base, jsonPost, `{"url":"http://127.0.0.1:1","weight":1}`)
	wantError(t, "add without the token", st, h, body, 401)
	st, h, body = adminCall(t, "DELETE", base+"/analyzer-1", jsonPost, "")
	wantError(t, "DELETE without the token", st, h, body, 401)
	st, h, body = adminCall(t, "PATCH", base+"/analyzer-1", authJSON, `{"weight":1}`)
	wantError(t, "PATCH", st, h, body, 405)
	if h.Get("Allow") != "PUT, DELETE" {
		t.Errorf("405 Allow %q, want PUT, DELETE", h.Get("Allow"))
	}
	st, h, body = adminCall(t, "POST", base, map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Bearer " + testToken}, "url=x")
	wantError(t, "add as a form", st, h, body, 415)
	if n := srv.View().Live(); n != 2 {
		t.Errorf("%d analyzers after refused calls, want 2", n)
	}
	// The old action routes keep working beside the new ones.
	if st, e := memberCall(t, "POST", base+"/analyzer-1/drain", "", tok); st != 200 || e["state"] != "drained" {
		t.Errorf("drain: %d %v", st, e)
	}
}

// A real analyzer (analyzer.New) registers itself through the admin API the way
// `sluice analyzer --register` does, takes traffic, and deregisters: nothing lost.
func TestAnalyzerRegistersAndDeregisters(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", nil)
	an := analyzer.New(analyzer.Config{Addr: "127.0.0.1:0", ID: "self", RecordIDs: true, Batch: true})
	if err := an.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = an.Stop() })
	reg := &analyzer.Registration{Admin: "http://" + srv.MetricsAddr(), Name: "self", Weight: 1, Advertise: "http://" + an.Addr()}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := reg.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(ctx); err != nil { // 409: already registered, taken as done
		t.Fatalf("second registration: %v", err)
	}
	l := startLoad(t, srv, 4, "reg-", fixedSize(2))
	waitFor(t, "traffic to the registered analyzer", 5*time.Second, func() bool { return len(an.IDs()) > 20 })
	if err := reg.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	got := len(an.IDs())
	waitFor(t, "more traffic to the other analyzer", 5*time.Second, func() bool { return received(f) > 50 })
	if n := len(an.IDs()); n != got {
		t.Errorf("the deregistered analyzer got %d packets after the DELETE was answered", n-got)
	}
	if err := reg.Deregister(ctx); err != nil { // 404: gone already, taken as done
		t.Fatalf("second deregistration: %v", err)
	}
	accepted := l.finish()
	settledNothingLost(t, srv, 10*time.Second)
	gotIDs := map[string]int{}
	for id, n := range an.IDs() {
		gotIDs[id] += n
	}
	_, _, fids := f.counts()
	for id, n := range fids {
		gotIDs[id] += n
	}
	for id := range accepted {
		if gotIDs[id] != 1 {
			t.Fatalf("packet %s delivered %d times, want once", id, gotIDs[id])
		}
	}
	if len(gotIDs) != len(accepted) {
		t.Fatalf("%d packet ids delivered, %d accepted", len(gotIDs), len(accepted))
	}
}

// With every analyzer id taken, adding an analyzer takes over the id of one
// removed before (DNS discovery of pods that come back with new addresses would
// otherwise run out of ids). Under load: the loops had open connections to the
// removed analyzer at that id; they close them, dial the new address, and the
// new analyzer gets its share while the removed one gets nothing more. Every
// accepted packet is delivered.
func TestReclaimedIDUnderLoad(t *testing.T) {
	a, b := newFakeAnalyzer(t, false), newFakeAnalyzer(t, false)
	srv := startDistributor(t, joinAnalyzers([]*fakeAnalyzer{a, b}, 0.5, 0.5), nil)
	bID, bName := 1, srv.View().Members[1].Name
	// Take every other id with analyzers that are added and removed at once
	// (nothing listens at their addresses; they never take a packet).
	for i := 2; i < maxAnalyzers; i++ {
		spec, _ := analyzerURL("http://127.0.0.1:" + strconv.Itoa(20000+i))
		spec.Name, spec.Weight = "filler-"+strconv.Itoa(i), 0.1
		if _, err := srv.AddAnalyzer(spec, "test"); err != nil {
			t.Fatalf("filler %d: %v", i, err)
		}
		if _, _, err := srv.ctl.remove(spec.Name, "test"); err != nil {
			t.Fatal(err)
		}
	}
	// Only b's id may be reclaimed, and at once once it holds nothing, so the test
	// needs no 10 s wait and the id taken over is the one with open connections.
	srv.ctl.mu.Lock()
	srv.ctl.reclaimAfter = 0
	srv.ctl.retired = func(id int) bool { return id == bID && srv.budget.dests[id].n.Load() == 0 }
	srv.ctl.mu.Unlock()

	l := startLoad(t, srv, 4, "rc-", fixedSize(2))
	waitFor(t, "traffic to both analyzers", 5*time.Second, func() bool { return received(a) > 50 && received(b) > 50 })
	if srv.Snapshot().Dests[bID].Conns == 0 {
		t.Fatal("no open connection to the analyzer about to be removed")
	}
	if _, err := srv.RemoveAnalyzer(bName, "test"); err != nil {
		t.Fatal(err)
	}
	removedAt := time.Now().UnixNano()
	bGot := received(b)
	c := newFakeAnalyzer(t, false)
	spec, _ := analyzerURL(c.url())
	spec.Name, spec.Weight = "newcomer", 0.5
	var err error
	waitFor(t, "the add to take b's id over", 5*time.Second, func() bool {
		_, err = srv.AddAnalyzer(spec, "test")
		return err == nil
	})
	if m := srv.View().Members[bID]; m.Name != "newcomer" || m.URL != c.url() {
		t.Fatalf("id %d is %s (%s), want the newcomer at %s", bID, m.Name, m.URL, c.url())
	}
	waitFor(t, "traffic to the newcomer", 10*time.Second, func() bool { return received(c) > 50 })
	if n := received(b); n != bGot || b.lastAt.Load() > removedAt {
		t.Fatalf("the removed analyzer received %d packets after its removal", n-bGot)
	}
	accepted := l.finish()
	settledNothingLost(t, srv, 10*time.Second)
	checkDelivered(t, accepted, []*fakeAnalyzer{a, b, c}, false)
}
