package analyzer

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/codec"
)

// withDeadline adds an X-Sluice-Deadline field with value v to a request.
func withDeadline(raw, v string) string {
	return strings.Replace(raw, "\r\nContent-Type:", "\r\n"+codec.DeadlineHeader+": "+v+"\r\nContent-Type:", 1)
}

// A request read after its deadline is answered 503 and its packets are not
// counted (nor remembered as seen: the same packet sent again in time counts once);
// one read before it, and one without the field, are counted as always. A
// malformed deadline is 400. The connection stays usable after each.
func TestIngestDeadline(t *testing.T) {
	a := startAnalyzer(t, Config{Batch: true, RecordIDs: true})
	c := dial(t, a.Addr())
	past := strconv.FormatInt(time.Now().Add(-time.Millisecond).UnixMilli(), 10)
	future := strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10)

	for _, tc := range []struct {
		name, raw string
		status    int
		body      string
	}{
		{"single, late", withDeadline(request("POST", "/ingest", packet("late-1", "INFO")), past), 503, `{"error":"deadline passed","status":503}`},
		{"batch, late", withDeadline(request("POST", "/ingest/batch", "["+packet("late-2", "INFO")+","+packet("late-3", "INFO")+"]"), past), 503, `{"error":"deadline passed","status":503}`},
		{"malformed", withDeadline(request("POST", "/ingest", packet("bad-1", "INFO")), "soon"), 400, `{"error":"invalid X-Sluice-Deadline","status":400}`},
		{"single, in time", withDeadline(request("POST", "/ingest", packet("late-1", "INFO")), future), 200, `{"status":"ok","packet_id":"late-1"}`},
		{"batch, in time", withDeadline(request("POST", "/ingest/batch", "["+packet("late-2", "INFO")+"]"), future), 200, `{"accepted":1,"duplicates":0}`},
		{"no deadline", request("POST", "/ingest", packet("late-3", "INFO")), 200, `{"status":"ok","packet_id":"late-3"}`},
	} {
		c.send(tc.raw)
		if r := c.read(); r.status != tc.status || r.body != tc.body || r.close {
			t.Fatalf("%s: %d %s close=%v, want %d %s", tc.name, r.status, r.body, r.close, tc.status, tc.body)
		}
	}
	st := a.Stats()
	if st.Expired != 2 || st.Packets != 3 || st.Duplicates != 0 || st.Invalid != 1 {
		t.Fatalf("expired %d packets %d duplicates %d invalid %d, want 2 3 0 1", st.Expired, st.Packets, st.Duplicates, st.Invalid)
	}
	if ids := a.IDs(); len(ids) != 3 || ids["late-1"] != 1 || ids["late-2"] != 1 || ids["late-3"] != 1 || ids["bad-1"] != 0 {
		t.Fatalf("ids %v: want each counted once, the late sends never", ids)
	}
	if m := c.do("GET", "/metrics", ""); !strings.Contains(m.body, "\nanalyzer_expired_total 2\n") {
		t.Fatalf("metrics lack analyzer_expired_total 2:\n%s", m.body)
	}
}

// Pipelined requests read in one event: the ones whose deadline passed are refused,
// the others counted, answers in order.
func TestIngestDeadlinePipelined(t *testing.T) {
	a := startAnalyzer(t, Config{})
	c := dial(t, a.Addr())
	past := strconv.FormatInt(time.Now().Add(-time.Second).UnixMilli(), 10)
	future := strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10)
	c.send(withDeadline(request("POST", "/ingest", packet("p1", "INFO")), future) +
		withDeadline(request("POST", "/ingest", packet("p2", "INFO")), past) +
		withDeadline(request("POST", "/ingest", packet("p3", "INFO")), future))
	for _, want := range []int{200, 503, 200} {
		if r := c.read(); r.status != want {
			t.Fatalf("status %d, want %d", r.status, want)
		}
	}
	if st := a.Stats(); st.Packets != 2 || st.Expired != 1 {
		t.Fatalf("packets %d expired %d", st.Packets, st.Expired)
	}
}

// IgnoreDeadline (the chaos harness's "without the deadline" runs) counts a late
// request as an analyzer that ignores the field would.
func TestIngestDeadlineIgnored(t *testing.T) {
	a := startAnalyzer(t, Config{IgnoreDeadline: true})
	c := dial(t, a.Addr())
	past := strconv.FormatInt(time.Now().Add(-time.Second).UnixMilli(), 10)
	if r := c.do2(withDeadline(request("POST", "/ingest", packet("p1", "INFO")), past)); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if st := a.Stats(); st.Packets != 1 || st.Expired != 0 {
		t.Fatalf("packets %d expired %d", st.Packets, st.Expired)
	}
}

func (c *client) do2(raw string) response {
	c.t.Helper()
	c.send(raw)
	return c.read()
}
