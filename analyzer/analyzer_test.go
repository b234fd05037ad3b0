package analyzer

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestIngestCountsPacketsMessagesAndLevels(t *testing.T) {
	a := startAnalyzer(t, Config{})
	c := dial(t, a.Addr())

	bodies := []string{
		packet("p-1", "INFO", "INFO", "ERROR"),
		packet("p-2", "warn", "DEBUG"),
		packet("p-3", "WARNING", "FATAL", "TRACE", "custom"),
	}
	var total int
	for _, b := range bodies {
		total += len(b)
		r := c.do("POST", "/ingest", b)
		if r.status != 200 {
			t.Fatalf("status %d, body %s", r.status, r.body)
		}
		if r.header.Get("Content-Type") != "application/json" {
			t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
		}
	}
	r := c.do("POST", "/ingest", bodies[0][:10])
	if r.status != 400 || !strings.Contains(r.body, `"error"`) {
		t.Fatalf("invalid packet: status %d body %s", r.status, r.body)
	}

	st := a.Stats()
	want := map[string]uint64{"TRACE": 1, "DEBUG": 1, "INFO": 2, "WARN": 2, "ERROR": 1, "FATAL": 1, "OTHER": 1}
	if st.Packets != 3 || st.Messages != 9 || st.Invalid != 1 || st.Duplicates != 0 {
		t.Fatalf("stats %+v", st)
	}
	for l, n := range want {
		if st.MessagesByLevel[l] != n {
			t.Errorf("level %s: %d, want %d", l, st.MessagesByLevel[l], n)
		}
	}
	if st.Bytes != uint64(total+10) {
		t.Errorf("bytes %d, want %d", st.Bytes, total+10)
	}

	// The same numbers over /stats and /metrics.
	var js Stats
	decode(t, c.do("GET", "/stats", "").body, &js)
	if js.Packets != 3 || js.Messages != 9 || js.MessagesByLevel["WARN"] != 2 || js.AnalyzerID != "a1" {
		t.Errorf("/stats %+v", js)
	}
	m := c.do("GET", "/metrics", "")
	if !strings.HasPrefix(m.header.Get("Content-Type"), "text/plain") {
		t.Errorf("/metrics Content-Type %q", m.header.Get("Content-Type"))
	}
	for _, line := range []string{
		"analyzer_packets_total 3\n",
		`analyzer_messages_total{level="INFO"} 2` + "\n",
		`analyzer_messages_total{level="OTHER"} 1` + "\n",
		"analyzer_invalid_requests_total 1\n",
		"analyzer_connections 1\n",
		`analyzer_ingest_duration_seconds_count{loop="`,
	} {
		if !strings.Contains(m.body, line) {
			t.Errorf("/metrics lacks %q:\n%s", line, m.body)
		}
	}
}

func TestIngestAnswersOKWithPacketID(t *testing.T) {
	a := startAnalyzer(t, Config{})
	r := dial(t, a.Addr()).do("POST", "/ingest", packet(`id-"quoted"`, "INFO"))
	if r.status != 200 || r.body != `{"status":"ok","packet_id":"id-\"quoted\""}` {
		t.Fatalf("status %d body %s", r.status, r.body)
	}
}

func TestDuplicatesAreAnsweredOKAndCountedOnce(t *testing.T) {
	a := startAnalyzer(t, Config{RecordIDs: true})
	c := dial(t, a.Addr())
	p := packet("dup", "INFO", "ERROR")
	for i := 0; i < 3; i++ {
		if r := c.do("POST", "/ingest", p); r.status != 200 || !strings.Contains(r.body, `"packet_id":"dup"`) {
			t.Fatalf("send %d: status %d body %s", i, r.status, r.body)
		}
	}
	// A duplicate may arrive on another connection (a retry from another loop).
	if r := dial(t, a.Addr()).do("POST", "/ingest", p); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	st := a.Stats()
	if st.Packets != 1 || st.Messages != 2 || st.Duplicates != 3 || st.DuplicateMessages != 6 {
		t.Fatalf("stats %+v", st)
	}
	if st.MessagesByLevel["INFO"] != 1 || st.MessagesByLevel["ERROR"] != 1 {
		t.Fatalf("levels count duplicates: %v", st.MessagesByLevel)
	}
	if ids := a.IDs(); len(ids) != 1 || ids["dup"] != 4 {
		t.Fatalf("IDs %v", ids)
	}
}

func TestDedupWindowForgetsOldestIDs(t *testing.T) {
	a := startAnalyzer(t, Config{DedupWindow: 3})
	c := dial(t, a.Addr())
	for _, id := range []string{"a", "b", "c", "a", "d", "a", "b"} {
		if r := c.do("POST", "/ingest", packet(id, "INFO")); r.status != 200 {
			t.Fatalf("%s: status %d", id, r.status)
		}
	}
	// a b c are new; a is a duplicate (window a b c); d evicts a; a is new again and
	// evicts b; b is new again.
	st := a.Stats()
	if st.Packets != 6 || st.Duplicates != 1 {
		t.Fatalf("packets %d duplicates %d, want 6 and 1", st.Packets, st.Duplicates)
	}
}

func TestBatchEndpoint(t *testing.T) {
	a := startAnalyzer(t, Config{Batch: true, RecordIDs: true})
	c := dial(t, a.Addr())

	h := c.do("GET", "/health", "")
	if h.status != 200 || h.header.Get("Sluice-Batch") != "1" {
		t.Fatalf("health %d, Sluice-Batch %q", h.status, h.header.Get("Sluice-Batch"))
	}
	var hb struct{ Status, AnalyzerID string }
	decode(t, h.body, &hb)

	if r := c.do("POST", "/ingest", packet("b-0", "INFO")); r.status != 200 {
		t.Fatal(r.status)
	}
	batch := "[" + packet("b-1", "INFO", "WARN") + ",\n " + packet("b-2", "ERROR") + "," +
		packet("b-1", "INFO", "WARN") + "," + packet("b-0", "INFO") + "]"
	r := c.do("POST", "/ingest/batch", batch)
	if r.status != 200 || r.body != `{"accepted":2,"duplicates":2}` {
		t.Fatalf("batch: status %d body %s", r.status, r.body)
	}
	st := a.Stats()
	if st.Packets != 3 || st.Messages != 4 || st.Duplicates != 2 || st.Batches != 1 || st.BatchPackets != 4 {
		t.Fatalf("stats after batch %+v", st)
	}
	if st.MessagesByLevel["WARN"] != 1 || st.MessagesByLevel["ERROR"] != 1 || st.MessagesByLevel["INFO"] != 2 {
		t.Fatalf("levels %v", st.MessagesByLevel)
	}
	if ids := a.IDs(); ids["b-1"] != 2 || ids["b-0"] != 2 || ids["b-2"] != 1 {
		t.Fatalf("IDs %v", ids)
	}

	// All or nothing: one bad element and nothing of the batch is counted.
	before := a.Stats()
	bad := []struct{ body, reason string }{
		{"[" + packet("n-1", "INFO") + `,{"packet_id":"n-2","messages":[]}]`, `"error":"messages must be a non-empty array","status":400,"index":1`},
		{"[" + packet("n-1", "INFO") + "," + packet("n-2", "INFO") + ",", "malformed batch array"},
		{"[" + packet("n-1", "INFO") + "]]", "malformed batch array"},
		{"[" + packet("n-1", "INFO") + " " + packet("n-2", "INFO") + "]", "malformed batch array"},
		{packet("n-1", "INFO"), "batch must be a JSON array"},
		{`[1]`, "batch element must be a JSON object"},
		{`[{"packet_id":"n-1","messages":[{"timestamp":1,"level":"INFO","message":"x"}]]`, `"error":"invalid JSON","status":400,"index":0`},
	}
	for _, b := range bad {
		r := c.do("POST", "/ingest/batch", b.body)
		if r.status != 400 || !strings.Contains(r.body, b.reason) {
			t.Errorf("batch %q: status %d body %s, want 400 with %s", b.body, r.status, r.body, b.reason)
		}
	}
	after := a.Stats()
	if after.Packets != before.Packets || after.Duplicates != before.Duplicates || after.Messages != before.Messages ||
		after.Batches != before.Batches || after.Invalid != before.Invalid+uint64(len(bad)) {
		t.Fatalf("a refused batch changed the counts: before %+v after %+v", before, after)
	}
	if ids := a.IDs(); ids["n-1"] != 0 {
		t.Fatalf("refused batch recorded ids: %v", ids)
	}
	// The packets of a refused batch are still new.
	if r := c.do("POST", "/ingest/batch", "["+packet("n-1", "INFO")+"]"); r.body != `{"accepted":1,"duplicates":0}` {
		t.Fatalf("retry: %s", r.body)
	}
	if r := c.do("POST", "/ingest/batch", " [ ] "); r.status != 200 || r.body != `{"accepted":0,"duplicates":0}` {
		t.Fatalf("empty batch: %d %s", r.status, r.body)
	}
}

func TestBatchLargerThanReadBuffer(t *testing.T) {
	a := startAnalyzer(t, Config{Batch: true})
	var b strings.Builder
	b.WriteByte('[')
	const n = 3000 // ~600 KB, many gnet reads
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(packet(fmt.Sprintf("big-%d", i), "INFO", "DEBUG"))
	}
	b.WriteByte(']')
	r := dial(t, a.Addr()).do("POST", "/ingest/batch", b.String())
	if r.status != 200 || r.body != fmt.Sprintf(`{"accepted":%d,"duplicates":0}`, n) {
		t.Fatalf("status %d body %s", r.status, r.body)
	}
	if st := a.Stats(); st.Packets != n || st.Messages != 2*n {
		t.Fatalf("stats %+v", st)
	}
}

func TestPlainAnalyzerHasNoBatchEndpoint(t *testing.T) {
	a := startAnalyzer(t, Config{Batch: false})
	c := dial(t, a.Addr())
	h := c.do("GET", "/health", "")
	if h.status != 200 || h.header.Get("Sluice-Batch") != "" {
		t.Fatalf("health %d, Sluice-Batch %q", h.status, h.header.Get("Sluice-Batch"))
	}
	if r := c.do("POST", "/ingest/batch", "["+packet("x", "INFO")+"]"); r.status != 404 {
		t.Fatalf("batch on a plain analyzer: %d", r.status)
	}
	if st := a.Stats(); st.Packets != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestGzipBody(t *testing.T) {
	a := startAnalyzer(t, Config{})
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write([]byte(packet("gz", "INFO", "INFO")))
	zw.Close()
	c := dial(t, a.Addr())
	c.send(fmt.Sprintf("POST /ingest HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s", z.Len(), z.String()))
	if r := c.read(); r.status != 200 {
		t.Fatalf("status %d body %s", r.status, r.body)
	}
	c.send("POST /ingest HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope")
	if r := c.read(); r.status != 400 {
		t.Fatalf("bad gzip: status %d", r.status)
	}
	if st := a.Stats(); st.Packets != 1 || st.MessagesByLevel["INFO"] != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBodyFraming(t *testing.T) {
	a := startAnalyzer(t, Config{})
	c := dial(t, a.Addr())
	c.send("POST /ingest HTTP/1.1\r\nHost: t\r\n\r\n")
	if r := c.read(); r.status != 411 {
		t.Fatalf("no length: %d %s", r.status, r.body)
	}
	body := packet("chunked", "INFO")
	c.send(fmt.Sprintf("POST /ingest HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n",
		10, body[:10], len(body)-10, body[10:]))
	if r := c.read(); r.status != 200 || !strings.Contains(r.body, "chunked") {
		t.Fatalf("chunked: %d %s", r.status, r.body)
	}
	big := "[" + strings.Repeat(packet("x", "INFO")+",", MaxBodyBytes/len(packet("x", "INFO"))) + packet("x", "INFO") + "]"
	// The answer comes as soon as the head is read; the rest of the body meets a
	// closed connection.
	go c.nc.Write([]byte(request("POST", "/ingest", big)))
	if r := c.read(); r.status != 413 || !r.close {
		t.Fatalf("%d bytes: %d close=%v", len(big), r.status, r.close)
	}
	if st := a.Stats(); st.Packets != 1 || st.Invalid != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRoutingAndMethods(t *testing.T) {
	a := startAnalyzer(t, Config{Batch: true})
	c := dial(t, a.Addr())
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/ingest", 405},
		{"GET", "/ingest/batch", 405},
		{"POST", "/health", 405},
		{"GET", "/internal/simulate/fail", 405},
		{"POST", "/internal/simulate/explode", 404},
		{"POST", "/internal/simulate/slow", 400}, // ms missing
		{"POST", "/internal/simulate/down?ms=x", 400},
		{"GET", "/nope", 404},
	} {
		if r := c.do(tc.method, tc.path, ""); r.status != tc.status {
			t.Errorf("%s %s: %d, want %d (%s)", tc.method, tc.path, r.status, tc.status, r.body)
		}
	}
	if f := a.Fault(); f != (Fault{}) {
		t.Fatalf("refused simulate calls changed the fault: %+v", f)
	}
}

func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	a := startAnalyzer(t, Config{Batch: true})
	c := dial(t, a.Addr())
	var raw strings.Builder
	const n = 200
	for i := 0; i < n; i++ {
		switch i % 4 {
		case 0, 1:
			raw.WriteString(request("POST", "/ingest", packet(fmt.Sprintf("pipe-%d", i), "INFO")))
		case 2:
			raw.WriteString(request("GET", "/health", ""))
		case 3:
			raw.WriteString(request("POST", "/ingest", `{"bad":`))
		}
	}
	c.send(raw.String()) // one write: the server sees many requests per read
	for i := 0; i < n; i++ {
		r := c.read()
		switch i % 4 {
		case 0, 1:
			if want := fmt.Sprintf(`{"status":"ok","packet_id":"pipe-%d"}`, i); r.body != want {
				t.Fatalf("answer %d: %s, want %s", i, r.body, want)
			}
		case 2:
			if r.status != 200 || !strings.Contains(r.body, "healthy") {
				t.Fatalf("answer %d: %d %s", i, r.status, r.body)
			}
		case 3:
			if r.status != 400 {
				t.Fatalf("answer %d: %d %s", i, r.status, r.body)
			}
		}
	}
	if st := a.Stats(); st.Packets != n/2 || st.Invalid != n/4 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRequestSplitAtEveryByte(t *testing.T) {
	a := startAnalyzer(t, Config{})
	c := dial(t, a.Addr())
	raw := request("POST", "/ingest", packet("split", "INFO"))
	for i := 0; i < len(raw); i++ {
		c.send(raw[i : i+1])
	}
	if r := c.read(); r.status != 200 || !strings.Contains(r.body, "split") {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func TestExpectContinue(t *testing.T) {
	a := startAnalyzer(t, Config{})
	c := dial(t, a.Addr())
	body := packet("cont", "INFO")
	c.send(fmt.Sprintf("POST /ingest HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", len(body)))
	line, err := c.br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim answer %q, %v", line, err)
	}
	if blank, _ := c.br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("after 100: %q", blank)
	}
	c.send(body)
	if r := c.read(); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func TestConnectionCloseAndParseErrorsCloseTheConnection(t *testing.T) {
	a := startAnalyzer(t, Config{})
	c := dial(t, a.Addr())
	body := packet("last", "INFO")
	c.send(fmt.Sprintf("POST /ingest HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body) +
		request("POST", "/ingest", packet("after-close", "INFO")))
	if r := c.read(); r.status != 200 || !r.close {
		t.Fatalf("%d %v", r.status, r.header)
	}
	if !c.closedByPeer(2 * time.Second) {
		t.Fatal("connection still open after Connection: close")
	}

	c = dial(t, a.Addr())
	c.send("BAD\x00 / HTTP/1.1\r\n\r\n")
	if r := c.read(); r.status != 400 {
		t.Fatalf("garbage: %d", r.status)
	}
	if !c.closedByPeer(2 * time.Second) {
		t.Fatal("connection still open after a parse error")
	}
	if st := a.Stats(); st.Packets != 1 {
		t.Fatalf("the request after Connection: close was served: %+v", st)
	}
}

func TestStopAndStartOnTheSameAddress(t *testing.T) {
	a := startAnalyzer(t, Config{Addr: "127.0.0.1:0"})
	addr := a.Addr()
	c := dial(t, addr)
	if r := c.do("POST", "/ingest", packet("s-1", "INFO")); r.status != 200 {
		t.Fatal(r.status)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if !c.closedByPeer(2 * time.Second) {
		t.Fatal("Stop left a connection open")
	}
	if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		nc.Close()
		t.Fatal("dial succeeded while stopped")
	}
	if err := a.Stop(); err != ErrNotStarted {
		t.Fatalf("second Stop: %v", err)
	}
	if err := a.Start(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if a.Addr() != addr {
		t.Fatalf("restarted on %s, was %s", a.Addr(), addr)
	}
	c = dial(t, addr)
	if r := c.do("POST", "/ingest", packet("s-1", "INFO")); r.status != 200 {
		t.Fatal(r.status)
	}
	if r := c.do("POST", "/ingest", packet("s-2", "INFO")); r.status != 200 {
		t.Fatal(r.status)
	}
	// Counters and the de-duplication window belong to the Analyzer, not the run.
	if st := a.Stats(); st.Packets != 2 || st.Duplicates != 1 {
		t.Fatalf("stats %+v", st)
	}
	if err := a.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
}

func TestTwoAnalyzersCannotShareAPort(t *testing.T) {
	a := startAnalyzer(t, Config{})
	b := New(Config{Addr: a.Addr()})
	if err := b.Start(); err == nil {
		b.Stop()
		t.Fatal("a second analyzer bound a port in use")
	}
}

func TestMetricsAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	maddr := ln.Addr().String()
	ln.Close()
	a := startAnalyzer(t, Config{MetricsAddr: maddr})
	dial(t, a.Addr()).do("POST", "/ingest", packet("m-1", "INFO"))

	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(b.String(), "analyzer_packets_total 1\n") {
		t.Fatalf("metrics:\n%s", b.String())
	}
	resp, err = http.Post("http://"+maddr+"/internal/simulate/fail", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("simulate over the metrics port: %v %v", resp, err)
	}
	resp.Body.Close()
	if !a.Fault().Fail {
		t.Fatal("fail fault not set")
	}
}
