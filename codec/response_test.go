package codec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// readResponse parses b with net/http, an independent HTTP/1.1 implementation.
func readResponse(t *testing.T, b []byte) (*http.Response, []byte) {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(b))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("net/http cannot read %q: %v", b, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body of %q: %v", b, err)
	}
	if r.Buffered() != 0 {
		t.Fatalf("%d bytes after the response in %q", r.Buffered(), b)
	}
	return resp, body
}

func TestAppendResponse(t *testing.T) {
	prefix := []byte("previous")
	out := AppendResponse(prefix, 503, false, "Retry-After: 1\r\n", []byte(`{"x":1}`))
	if !bytes.HasPrefix(out, []byte("previousHTTP/1.1 503 Service Unavailable\r\n")) {
		t.Fatalf("%q", out)
	}
	resp, body := readResponse(t, out[len(prefix):])
	if resp.StatusCode != 503 || !resp.Close || resp.Header.Get("Retry-After") != "1" ||
		resp.Header.Get("Content-Type") != "application/json" || resp.ContentLength != 7 || string(body) != `{"x":1}` {
		t.Fatalf("%+v %q", resp, body)
	}
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil || time.Since(date) > 2*time.Second || time.Until(date) > time.Second {
		t.Fatalf("Date %q (%v) is not now", resp.Header.Get("Date"), err)
	}

	out = AppendResponse(nil, 200, true, "", nil)
	resp, body = readResponse(t, out)
	if resp.StatusCode != 200 || resp.Close || resp.ContentLength != 0 || len(body) != 0 || resp.Header.Get("Content-Type") != "" {
		t.Fatalf("%q", out)
	}
	if !strings.Contains(string(out), "\r\nConnection: keep-alive\r\n") {
		t.Fatalf("no keep-alive for HTTP/1.0 clients in %q", out)
	}

	out = AppendResponse(nil, 204, true, "", nil)
	if strings.Contains(string(out), "Content-Length") {
		t.Fatalf("204 with Content-Length: %q", out)
	}
}

func TestAppendHeader(t *testing.T) {
	body := "# metrics\n"
	out := AppendHeader(nil, 200, true, "text/plain; version=0.0.4", len(body), "X-A: 1\r\n")
	out = append(out, body...)
	resp, got := readResponse(t, out)
	if resp.Header.Get("Content-Type") != "text/plain; version=0.0.4" || len(resp.Header.Values("Content-Type")) != 1 ||
		resp.Header.Get("X-A") != "1" || string(got) != body || resp.ContentLength != int64(len(body)) {
		t.Fatalf("%q", out)
	}

	// A HEAD answer: the length a GET would have had, no body.
	out = AppendHeader(nil, 200, true, "application/json", 1234, "")
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), &http.Request{Method: "HEAD"})
	if err != nil || resp.ContentLength != 1234 || len(resp.Header.Values("Content-Length")) != 1 {
		t.Fatalf("%q: %v", out, err)
	}

	// A code without a known phrase still makes a valid status line.
	resp, _ = readResponse(t, AppendResponse(nil, 299, true, "", nil))
	if resp.StatusCode != 299 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestAppendError(t *testing.T) {
	for _, e := range []*Error{ErrBodyTooLarge, ErrVersionUnsupported, ErrHeaderTooLarge, ErrGzipBody} {
		out := AppendError(nil, e.Status, e.Reason, !e.Close, "")
		resp, body := readResponse(t, out)
		var got struct {
			Error  string `json:"error"`
			Status int    `json:"status"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if resp.StatusCode != e.Status || got.Status != e.Status || got.Error != e.Reason || resp.Close != e.Close {
			t.Fatalf("%q", out)
		}
	}
}

func TestAppendAccepted(t *testing.T) {
	id := []byte(`p-1 \"quoted\" \u00e9`) // raw JSON string content, escapes kept
	resp, body := readResponse(t, AppendAccepted(nil, id, true))
	var got struct {
		Status   string `json:"status"`
		PacketID string `json:"packet_id"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%q: %v", body, err)
	}
	if resp.StatusCode != 202 || resp.Close || got.Status != "accepted" || got.PacketID != `p-1 "quoted" é` {
		t.Fatalf("%+v %q", resp, body)
	}
}

func TestContinue100(t *testing.T) {
	r := bufio.NewReader(strings.NewReader(Continue100))
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 100 || r.Buffered() != 0 {
		t.Fatalf("%v %v", resp, err)
	}
}

func TestStatusTextCoversUsedCodes(t *testing.T) {
	for _, code := range []int{100, 200, 202, 204, 400, 401, 404, 405, 408, 411, 413, 414, 415, 417, 429, 431, 500, 501, 502, 503, 504, 505} {
		want := http.StatusText(code)
		switch code { // net/http keeps the RFC 7231 names
		case 413:
			want = "Content Too Large"
		case 414:
			want = "URI Too Long"
		}
		if StatusText(code) != want {
			t.Errorf("%d: %q, want %q", code, StatusText(code), want)
		}
	}
	if StatusText(299) != "" {
		t.Error("unknown code has a phrase")
	}
}

func TestAppendAllocs(t *testing.T) {
	dst := make([]byte, 0, 4096)
	id := []byte("packet-123")
	allocs := testing.AllocsPerRun(100, func() {
		dst = AppendAccepted(dst[:0], id, true)
		dst = AppendError(dst, 413, ErrBodyTooLarge.Reason, false, "")
		dst = AppendResponse(dst, 503, true, "Retry-After: 1\r\n", nil)
	})
	if allocs != 0 {
		t.Fatalf("%v allocs", allocs)
	}
}

func BenchmarkAppendAccepted(b *testing.B) {
	dst := make([]byte, 0, 512)
	id := []byte("emitter-7-packet-0000123456")
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendAccepted(dst[:0], id, true)
	}
}
