package codec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// typicalResponse is what a Go net/http analyzer sends for an accepted packet.
const typicalResponse = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 23 Nov 2026 09:00:00 GMT\r\nContent-Length: 40\r\n\r\n" +
	`{"status":"ok","packet_id":"pkt-000123"}`

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Response
		n    int // 0: the whole input
	}{
		{"typical", typicalResponse,
			Response{RetryAfter: -1, Status: 200, Minor: 1, KeepAlive: true, ContentLength: 40, Body: []byte(`{"status":"ok","packet_id":"pkt-000123"}`)}, 0},
		{"batch capable", "HTTP/1.1 202 Accepted\r\nsluice-batch: 1\r\nContent-Length: 0\r\n\r\n",
			Response{RetryAfter: -1, Status: 202, Minor: 1, KeepAlive: true, Batch: true, ContentLength: 0, Body: []byte{}}, 0},
		{"batch hint other value", "HTTP/1.1 202 Accepted\r\nSluice-Batch: 0\r\nContent-Length: 0\r\n\r\n",
			Response{RetryAfter: -1, Status: 202, Minor: 1, KeepAlive: true, ContentLength: 0, Body: []byte{}}, 0},
		{"connection close", "HTTP/1.1 503 Service Unavailable\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nno",
			Response{RetryAfter: -1, Status: 503, Minor: 1, ContentLength: 2, Body: []byte("no")}, 0},
		{"http/1.0 closes", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
			Response{RetryAfter: -1, Status: 200, Minor: 0, ContentLength: 2, Body: []byte("ok")}, 0},
		{"http/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
			Response{RetryAfter: -1, Status: 200, Minor: 0, KeepAlive: true, ContentLength: 2, Body: []byte("ok")}, 0},
		{"no reason phrase", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
			Response{RetryAfter: -1, Status: 200, Minor: 1, KeepAlive: true, ContentLength: 0, Body: []byte{}}, 0},
		{"bare LF lines", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
			Response{RetryAfter: -1, Status: 200, Minor: 1, KeepAlive: true, ContentLength: 2, Body: []byte("ok")}, 0},
		{"204 ignores length", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
			Response{RetryAfter: -1, Status: 204, Minor: 1, KeepAlive: true, ContentLength: -1}, 0},
		{"304 has no body", "HTTP/1.1 304 Not Modified\r\n\r\n",
			Response{RetryAfter: -1, Status: 304, Minor: 1, KeepAlive: true, ContentLength: -1}, 0},
		{"100 continue skipped", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
			Response{RetryAfter: -1, Status: 200, Minor: 1, KeepAlive: true, ContentLength: 2, Body: []byte("ok")}, 0},
		{"several interim responses", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
			Response{RetryAfter: -1, Status: 201, Minor: 1, KeepAlive: true, ContentLength: 0, Body: []byte{}}, 0},
		{"chunked one chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			Response{RetryAfter: -1, Status: 200, Minor: 1, KeepAlive: true, ContentLength: -1, Chunked: true, Body: []byte("hello")}, 0},
		{"chunked many chunks, extensions, trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" +
			"5;ext=1\r\nhello\r\nA ; x\r\n, world!!!\r\n1\r\n\n\r\n000\r\nTrailer: yes\r\nOther: 1\r\n\r\n",
			Response{RetryAfter: -1, Status: 200, Minor: 1, KeepAlive: true, ContentLength: -1, Chunked: true, Body: []byte("hello, world!!!\n")}, 0},
		{"chunked empty body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			Response{RetryAfter: -1, Status: 200, Minor: 1, KeepAlive: true, ContentLength: -1, Chunked: true, Body: []byte{}}, 0},
		{"chunked wins over length", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
			Response{RetryAfter: -1, Status: 200, Minor: 1, KeepAlive: true, ContentLength: -1, Chunked: true, Body: []byte("ok")}, 0},
		{"until close", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall the rest",
			Response{RetryAfter: -1, Status: 200, Minor: 1, UntilClose: true, ContentLength: -1}, len("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")},
		{"non-chunked coding runs until close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nContent-Length: 3\r\n\r\nxyz",
			Response{RetryAfter: -1, Status: 200, Minor: 1, UntilClose: true, ContentLength: -1}, len("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nContent-Length: 3\r\n\r\n")},
		{"repeated equal lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok",
			Response{RetryAfter: -1, Status: 200, Minor: 1, KeepAlive: true, ContentLength: 2, Body: []byte("ok")}, 0},
		{"pipelined: first only", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
			Response{RetryAfter: -1, Status: 200, Minor: 1, KeepAlive: true, ContentLength: 1, Body: []byte("a")}, len("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p ResponseParser
			var r Response
			wantN := tt.n
			if wantN == 0 {
				wantN = len(tt.in)
			}
			// Every proper prefix of the response is incomplete, not an error.
			for k := 0; k < wantN; k++ {
				if n, err := p.Parse([]byte(tt.in[:k]), &r); n != 0 || err != nil {
					t.Fatalf("prefix %d: n=%d err=%v", k, n, err)
				}
			}
			n, err := p.Parse([]byte(tt.in), &r)
			if err != nil || n != wantN {
				t.Fatalf("n=%d err=%v, want n=%d", n, err, wantN)
			}
			if fmt.Sprintf("%+v", r) != fmt.Sprintf("%+v", tt.want) || (r.Body == nil) != (tt.want.Body == nil) {
				t.Fatalf("got  %+v\nwant %+v", r, tt.want)
			}
		})
	}
}

func TestParseResponseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *Error
	}{
		{"garbage detected early", "XTTP", ErrResponseStatusLine},
		{"html", "<html>", ErrResponseStatusLine},
		{"http/2", "HTTP/2 200 OK\r\n\r\n", ErrResponseStatusLine},
		{"four digit status", "HTTP/1.1 2000 OK\r\n\r\n", ErrResponseStatusLine},
		{"short status", "HTTP/1.1 20 OK\r\n\r\n", ErrResponseStatusLine},
		{"status 099", "HTTP/1.1 099 OK\r\n\r\n", ErrResponseStatusLine},
		{"no space after version", "HTTP/1.1\t200 OK\r\n\r\n", ErrResponseStatusLine},
		{"control char in reason", "HTTP/1.1 200 O\x00K\r\n\r\n", ErrResponseStatusLine},
		{"field without colon", "HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\nok", ErrResponseHeader},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n", ErrResponseHeader},
		{"space in field name", "HTTP/1.1 200 OK\r\nContent Length: 2\r\n\r\nok", ErrResponseHeader},
		{"control char in value", "HTTP/1.1 200 OK\r\nX-A: a\x01b\r\n\r\n", ErrResponseHeader},
		{"bare CR in value", "HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n", ErrResponseHeader},
		{"length not a number", "HTTP/1.1 200 OK\r\nContent-Length: 2a\r\n\r\nok", ErrResponseLength},
		{"negative length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", ErrResponseLength},
		{"empty length", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", ErrResponseLength},
		{"conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk", ErrResponseLength},
		{"length overflow", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", ErrResponseLength},
		{"body over limit", "HTTP/1.1 200 OK\r\nContent-Length: 1048577\r\n\r\n", ErrResponseBodyTooLarge},
		{"head over limit", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", MaxResponseHeaderBytes) + "\r\n\r\n", ErrResponseHeaderTooBig},
		{"head over limit, no newline", "HTTP/1.1 200 OK" + strings.Repeat("a", MaxResponseHeaderBytes), ErrResponseHeaderTooBig},
		{"switching protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", ErrResponseSwitch},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ErrResponseChunk},
		{"chunk size junk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n", ErrResponseChunk},
		{"chunk data too long", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n", ErrResponseChunk},
		{"chunk line too long", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("x", maxResponseChunkLine), ErrResponseChunk},
		{"chunk over body limit", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n", ErrResponseBodyTooLarge},
		{"chunks over body limit together", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n80000\r\n" + strings.Repeat("a", 0x80000) +
			"\r\n80001\r\n", ErrResponseBodyTooLarge},
		{"error after interim", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2x0 OK\r\n\r\n", ErrResponseStatusLine},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p ResponseParser
			var r Response
			n, err := p.Parse([]byte(tt.in), &r)
			if err != tt.want || n != 0 {
				t.Fatalf("n=%d err=%v, want %v", n, err, tt.want)
			}
			if !tt.want.Close || tt.want.Status != 502 {
				t.Fatalf("%v must close and map to 502", tt.want)
			}
		})
	}
}

// The parser holds progress between calls; a finished response must not leak any
// of it into the next one.
func TestParseResponseSequence(t *testing.T) {
	stream := "HTTP/1.1 100 Continue\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n" +
		"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n" +
		typicalResponse +
		"HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\nContent-Length: 4\r\n\r\nfail"
	want := []string{"200 abcdef", "202 xy", `200 {"status":"ok","packet_id":"pkt-000123"}`, "500 fail"}
	var p ResponseParser
	var r Response
	var got []string
	buf := []byte(stream)
	for off, end := 0, 0; end <= len(buf); end++ {
		for {
			n, err := p.Parse(buf[off:end], &r)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			got = append(got, fmt.Sprintf("%d %s", r.Status, r.Body))
			off += n
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestParseResponseAllocs(t *testing.T) {
	var p ResponseParser
	var r Response
	typical := []byte(typicalResponse)
	chunked := []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n")
	p.Parse(chunked, &r) // grows the scratch buffer once
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := p.Parse(typical, &r); n != len(typical) || err != nil {
			t.Fatal(n, err)
		}
		if n, err := p.Parse(chunked, &r); n != len(chunked) || err != nil {
			t.Fatal(n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per run", allocs)
	}
}

func TestAppendIngestRequest(t *testing.T) {
	body := []byte(`{"packet_id":"p","messages":[{"timestamp":1,"level":"I","message":"m"}]}`)
	got := AppendIngestRequest([]byte("prefix"), IngestPath, "analyzer-1:9001", body)
	want := "prefixPOST /ingest HTTP/1.1\r\nHost: analyzer-1:9001\r\nContent-Type: application/json\r\nContent-Length: 72\r\n\r\n" + string(body)
	if string(got) != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	req, err := http.ReadRequest(upstreamReader(got[len("prefix"):]))
	if err != nil {
		t.Fatal(err)
	}
	read, _ := io.ReadAll(req.Body)
	if req.Method != "POST" || req.URL.Path != "/ingest" || req.Host != "analyzer-1:9001" || !bytes.Equal(read, body) {
		t.Fatalf("net/http reads %s %s host=%s body=%q", req.Method, req.URL, req.Host, read)
	}
}

func TestAppendPostHeadWith(t *testing.T) {
	got := AppendPostHeadWith([]byte("prefix"), IngestPath, "d:8080", "\r\nAuthorization: Bearer t", 2)
	got, ok := bytes.CutPrefix(got, []byte("prefix"))
	if !ok || string(AppendPostHeadWith(nil, IngestPath, "d:8080", "", 2)) != string(AppendPostHead(nil, IngestPath, "d:8080", 2)) {
		t.Fatalf("%q: the prefix is lost, or no extra fields is not AppendPostHead", got)
	}
	req, err := http.ReadRequest(upstreamReader(append(got, "{}"...)))
	if err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("Authorization") != "Bearer t" || req.Host != "d:8080" || req.ContentLength != 2 ||
		req.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("net/http reads %q as host %s, headers %v", got, req.Host, req.Header)
	}
}

func TestAppendBatchRequest(t *testing.T) {
	for _, packets := range [][][]byte{
		{[]byte(`{"packet_id":"a"}`)},
		{[]byte(`{"packet_id":"a"}`), []byte(`{"packet_id":"b"}`), []byte(` {"packet_id":"c"} `)},
		{},
	} {
		out := AppendBatchRequest(nil, "h:1", packets)
		req, err := http.ReadRequest(upstreamReader(out))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(req.Body)
		if req.URL.Path != BatchPath || int(req.ContentLength) != len(body) || len(body) != BatchBodyLen(packets) {
			t.Fatalf("%s %d %q", req.URL.Path, req.ContentLength, body)
		}
		var arr []json.RawMessage
		if err := json.Unmarshal(body, &arr); err != nil || len(arr) != len(packets) {
			t.Fatalf("body %q: %v, %d elements", body, err, len(arr))
		}
		for i := range arr {
			if !bytes.Equal(bytes.TrimSpace(arr[i]), bytes.TrimSpace(packets[i])) {
				t.Fatalf("element %d: %q", i, arr[i])
			}
		}
	}
}

// parsedResponse is one Parse result with the body copied out of the buffers.
type parsedResponse struct {
	n    int
	resp Response
	body string
}

// parseStream feeds data to a fresh parser as it would arrive, ending at each of
// ends in turn, and returns the responses and the error it ends with.
func parseStream(data []byte, ends []int) ([]parsedResponse, error) {
	var p ResponseParser
	var out []parsedResponse
	off := 0
	for _, end := range ends {
		for {
			var r Response
			n, err := p.Parse(data[off:end], &r)
			if err != nil {
				return out, err
			}
			if n == 0 {
				break
			}
			if n > end-off {
				panic("n beyond buffer")
			}
			body := string(r.Body)
			r.Body = nil
			out = append(out, parsedResponse{n, r, body})
			off += n
			if r.UntilClose {
				return out, nil // the rest belongs to the body
			}
		}
	}
	return out, nil
}

func FuzzParseResponse(f *testing.F) {
	f.Add([]byte(typicalResponse), uint16(10))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n3\r\ndef\r\n0\r\nT: 1\r\n\r\n"+typicalResponse), uint16(30))
	f.Add([]byte("HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\nHTTP/1.1 202 Accepted\nSluice-Batch: 1\nContent-Length: 2\n\nok"), uint16(5))
	f.Add([]byte("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n\r\nbusy"), uint16(50))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\nTransfer-Encoding: x, chunked\r\n\r\n1\r\n\n\r\n0\r\n\r\n"), uint16(60))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		whole, wholeErr := parseStream(data, []int{len(data)})
		for _, r := range whole {
			if r.resp.KeepAlive && r.resp.UntilClose || len(r.body) > MaxResponseBodyBytes || r.resp.Status < 200 || r.resp.Status > 999 {
				t.Fatalf("inconsistent response %+v", r)
			}
		}
		k := int(split) % (len(data) + 1)
		ways := [][]int{{k, len(data)}}
		if len(data) <= 2048 {
			bytewise := make([]int, len(data)+1)
			for i := range bytewise {
				bytewise[i] = i
			}
			ways = append(ways, bytewise)
		}
		for _, ends := range ways {
			got, err := parseStream(data, ends)
			if err != wholeErr || fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", whole) {
				t.Fatalf("split %v: got %+v, %v\nwhole: %+v, %v", ends[:min(len(ends), 3)], got, err, whole, wholeErr)
			}
		}
	})
}

func BenchmarkParseResponse(b *testing.B) {
	buf := []byte(typicalResponse)
	var p ResponseParser
	var r Response
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := p.Parse(buf, &r); n != len(buf) || err != nil {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkParseResponseChunked(b *testing.B) {
	buf := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"14\r\n{\"status\":\"ok\",\"pac\r\n14\r\nket_id\":\"pkt-000123\"\r\n1\r\n}\r\n0\r\n\r\n")
	var p ResponseParser
	var r Response
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := p.Parse(buf, &r); n != len(buf) || err != nil {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkAppendIngestRequest(b *testing.B) {
	dst := make([]byte, 0, 4096)
	b.SetBytes(int64(len(benchPacket)))
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendIngestRequest(dst[:0], IngestPath, "analyzer-1:9001", benchPacket)
	}
}

func BenchmarkAppendBatchRequest(b *testing.B) {
	packets := make([][]byte, 32)
	for i := range packets {
		packets[i] = benchPacket
	}
	dst := make([]byte, 0, 64<<10)
	b.SetBytes(int64(BatchBodyLen(packets)))
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendBatchRequest(dst[:0], "analyzer-1:9001", packets)
	}
}

func upstreamReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

func TestResponseRetryAfter(t *testing.T) {
	for _, c := range []struct {
		header string
		want   int
	}{
		{"", -1},
		{"Retry-After: 3\r\n", 3},
		{"retry-after: 0\r\n", 0},
		{"Retry-After: 999999\r\n", 86400},
		{"Retry-After: Fri, 31 Dec 1999 23:59:59 GMT\r\n", -1},
		{"Retry-After: 1x\r\n", -1},
	} {
		raw := "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n" + c.header + "\r\n"
		var p ResponseParser
		var r Response
		n, err := p.Parse([]byte(raw), &r)
		if err != nil || n != len(raw) {
			t.Fatalf("%q: n=%d err=%v", c.header, n, err)
		}
		if r.RetryAfter != c.want {
			t.Errorf("%q: RetryAfter = %d, want %d", c.header, r.RetryAfter, c.want)
		}
	}
}

// Bounded input on the response side: endless interim responses, and chunk
// framing out of all proportion to the data, are refused instead of buffered.
func TestResponseInputIsBounded(t *testing.T) {
	var p ResponseParser
	var r Response
	interim := []byte(strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 2000))
	if _, err := p.Parse(interim, &r); err != ErrResponseHeaderTooBig {
		t.Fatalf("50 KB of 100 Continue: err %v, want ErrResponseHeaderTooBig", err)
	}
	var b strings.Builder
	b.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
	ext := ";x=" + strings.Repeat("y", 4000)
	for b.Len() < MaxResponseHeaderBytes+MaxResponseBodyBytes+64<<10 {
		b.WriteString("1" + ext + "\r\na\r\n")
	}
	p = ResponseParser{}
	if _, err := p.Parse([]byte(b.String()), &r); err != ErrResponseChunk {
		t.Fatalf("chunk framing of %d bytes for a tiny body: err %v, want ErrResponseChunk", b.Len(), err)
	}
}

// The deadline field is what the analyzer's parser reads back: the same head
// parsed by codec.Parser (split at every byte) and by net/http carries it, and
// writing it does not allocate.
func TestAppendPostHeadDeadline(t *testing.T) {
	const deadline = int64(1796544000123)
	body := `[{"packet_id":"p","messages":[]}]`
	for _, head := range [][]byte{
		AppendPostHeadDeadline([]byte("prefix"), IngestPath, "a:9001", len(body), deadline),
		AppendBatchHeadDeadline([]byte("prefix"), "a:9001", len(body), deadline),
	} {
		head, ok := bytes.CutPrefix(head, []byte("prefix"))
		if !ok || !bytes.HasSuffix(head, []byte("\r\nX-Sluice-Deadline: 1796544000123\r\n\r\n")) {
			t.Fatalf("head %q", head)
		}
		req, err := http.ReadRequest(upstreamReader(append(head, body...)))
		if err != nil || req.Header.Get(DeadlineHeader) != "1796544000123" || req.ContentLength != int64(len(body)) {
			t.Fatalf("net/http reads %v %v", req, err)
		}
		whole := append(append([]byte(nil), head...), body...)
		for cut := 1; cut < len(whole); cut++ {
			var p Parser
			p.Init(Limits{})
			var r Request
			if n, err := p.Parse(whole[:cut], &r); n != 0 || err != nil {
				t.Fatalf("cut %d: %d %v", cut, n, err)
			}
			n, err := p.Parse(whole, &r)
			ms, ok := ParseDeadline(r.Deadline)
			if n != len(whole) || err != nil || !ok || ms != deadline {
				t.Fatalf("cut %d: n=%d err=%v deadline %q", cut, n, err, r.Deadline)
			}
		}
	}
	var p Parser
	p.Init(Limits{})
	var r Request
	if _, err := p.Parse([]byte("POST /ingest HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), &r); err != nil || r.Deadline != nil {
		t.Fatalf("no field: deadline %q err %v", r.Deadline, err)
	}
	for _, bad := range []string{"", "12a", "-5", "1.5"} {
		if _, ok := ParseDeadline([]byte(bad)); ok {
			t.Fatalf("ParseDeadline(%q) ok", bad)
		}
	}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendBatchHeadDeadline(buf[:0], "a:9001", 1000, deadline)
	}); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}
