package codec

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// parsed is what one Parse call produced, copied out of the buffers it aliased.
type parsed struct {
	n                                int
	err                              error
	method, path, query, host, body  string
	queryNil                         bool
	minor                            int
	keepAlive, expect, gzip, chunked bool
	contentLength                    int64
}

func snapshot(n int, err error, r *Request) parsed {
	if err != nil || n == 0 {
		return parsed{n: n, err: err}
	}
	return parsed{
		n: n, method: string(r.Method), path: string(r.Path), query: string(r.Query),
		queryNil: r.Query == nil, host: string(r.Host), body: string(r.Body), minor: r.Minor,
		keepAlive: r.KeepAlive, expect: r.ExpectContinue, gzip: r.Gzip, chunked: r.Chunked,
		contentLength: r.ContentLength,
	}
}

func newParser(l Limits) *Parser {
	p := new(Parser)
	p.Init(l)
	return p
}

// parseWhole parses the first request of in, given all at once.
func parseWhole(l Limits, in string) parsed {
	var req Request
	n, err := newParser(l).Parse([]byte(in), &req)
	return snapshot(n, err, &req)
}

// connection plays the gnet loop: bytes arrive in the given pieces, each event
// parses every complete request buffered, discards what was consumed, and the
// buffer is copied to a new array each time to catch any slice kept across calls.
// It returns every complete request and the refusal, if any.
func connection(l Limits, pieces ...string) []parsed {
	p := newParser(l)
	var req Request
	var buf []byte
	var out []parsed
	for _, piece := range pieces {
		buf = append(append(make([]byte, 0, len(buf)+len(piece)), buf...), piece...)
		for {
			n, err := p.Parse(buf, &req)
			if err != nil {
				return append(out, snapshot(n, err, &req))
			}
			if n > len(buf) {
				panic(fmt.Sprintf("n=%d > len(buf)=%d", n, len(buf)))
			}
			if n == 0 {
				if int64(len(buf)) > l.MaxRequestBytes() {
					panic(fmt.Sprintf("%d bytes buffered, neither complete nor refused", len(buf)))
				}
				break
			}
			out = append(out, snapshot(n, err, &req))
			buf = buf[n:]
		}
	}
	return out
}

func splitAt(s string, cuts ...int) []string {
	var pieces []string
	prev := 0
	for _, c := range cuts {
		pieces = append(pieces, s[prev:c])
		prev = c
	}
	return append(pieces, s[prev:])
}

func bytewise(s string) []string {
	pieces := make([]string, len(s))
	for i := 0; i < len(s); i++ {
		pieces[i] = s[i : i+1]
	}
	return pieces
}

var validRequests = []struct {
	name string
	in   string
	want parsed
}{
	{"get 1.1", "GET /health HTTP/1.1\r\nHost: localhost:8080\r\n\r\n",
		parsed{method: "GET", path: "/health", queryNil: true, host: "localhost:8080", minor: 1, keepAlive: true, contentLength: -1}},
	{"post content-length with query", "POST /ingest?x=1&y HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\"bcd\"}",
		parsed{method: "POST", path: "/ingest", query: "x=1&y", host: "h", minor: 1, keepAlive: true, contentLength: 11, body: `{"a":"bcd"}`}},
	{"empty query", "GET /x? HTTP/1.1\r\nHost: h\r\n\r\n",
		parsed{method: "GET", path: "/x", query: "", host: "h", minor: 1, keepAlive: true, contentLength: -1}},
	{"post without length", "POST /ingest HTTP/1.1\r\nHost: h\r\n\r\n",
		parsed{method: "POST", path: "/ingest", queryNil: true, host: "h", minor: 1, keepAlive: true, contentLength: -1}},
	{"content-length zero", "POST /ingest HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		parsed{method: "POST", path: "/ingest", queryNil: true, host: "h", minor: 1, keepAlive: true, contentLength: 0}},
	{"identical duplicate content-length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc",
		parsed{method: "POST", path: "/", queryNil: true, host: "h", minor: 1, keepAlive: true, contentLength: 3, body: "abc"}},
	{"http/1.0 defaults to close, no host needed", "GET / HTTP/1.0\r\nUser-Agent: ApacheBench/2.3\r\n\r\n",
		parsed{method: "GET", path: "/", queryNil: true, minor: 0, contentLength: -1}},
	{"http/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: h\r\n\r\n",
		parsed{method: "GET", path: "/", queryNil: true, host: "h", minor: 0, keepAlive: true, contentLength: -1}},
	{"http/1.1 close in a token list", "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade ,, CLOSE\r\n\r\n",
		parsed{method: "GET", path: "/", queryNil: true, host: "h", minor: 1, contentLength: -1}},
	{"empty lines before the request line", "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
		parsed{method: "GET", path: "/", queryNil: true, host: "h", minor: 1, keepAlive: true, contentLength: -1}},
	{"whitespace around values, empty value, obs-text", "GET / HTTP/1.1\r\nHost: \t h \t\r\nX-Empty:\r\nX-Text: caf\xc3\xa9 \"q\"\r\n\r\n",
		parsed{method: "GET", path: "/", queryNil: true, host: "h", minor: 1, keepAlive: true, contentLength: -1}},
	{"expect 100-continue", "POST /ingest HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n{}",
		parsed{method: "POST", path: "/ingest", queryNil: true, host: "h", minor: 1, keepAlive: true, expect: true, contentLength: 2, body: "{}"}},
	{"expect 100-continue ignored in http/1.0", "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
		parsed{method: "POST", path: "/", queryNil: true, minor: 0, contentLength: 2, body: "{}"}},
	{"gzip", "POST / HTTP/1.1\r\nHost: h\r\nContent-Encoding: identity, GZIP\r\nContent-Length: 1\r\n\r\nz",
		parsed{method: "POST", path: "/", queryNil: true, host: "h", minor: 1, keepAlive: true, gzip: true, contentLength: 1, body: "z"}},
	{"identity", "POST / HTTP/1.1\r\nHost: h\r\nContent-Encoding: identity\r\nContent-Length: 1\r\n\r\nz",
		parsed{method: "POST", path: "/", queryNil: true, host: "h", minor: 1, keepAlive: true, contentLength: 1, body: "z"}},
	{"chunked", "POST /ingest HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
		parsed{method: "POST", path: "/ingest", queryNil: true, host: "h", minor: 1, keepAlive: true, chunked: true, contentLength: -1, body: "hello world"}},
	{"chunked with extensions, BWS, uppercase hex and trailers", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n" +
		"00A ;name=value;q=\"a b\"\r\n0123456789\r\n1;x\r\n!\r\n0 ; last\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n",
		parsed{method: "POST", path: "/", queryNil: true, host: "h", minor: 1, keepAlive: true, chunked: true, contentLength: -1, body: "0123456789!"}},
	{"chunked empty body", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		parsed{method: "POST", path: "/", queryNil: true, host: "h", minor: 1, keepAlive: true, chunked: true, contentLength: -1}},
	{"absolute form and asterisk-safe target chars", "OPTIONS http://h/a;b,c~!$&'()*+=:@% HTTP/1.1\r\nHost: h\r\n\r\n",
		parsed{method: "OPTIONS", path: "http://h/a;b,c~!$&'()*+=:@%", queryNil: true, host: "h", minor: 1, keepAlive: true, contentLength: -1}},
}

func TestParseValid(t *testing.T) {
	for _, tc := range validRequests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			want.n = len(tc.in)
			if got := parseWhole(Limits{}, tc.in); got != want {
				t.Fatalf("\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// Every valid request, alone and as pipelined pairs, parses the same however it is
// split: at each single byte offset, and one byte per event.
func TestParseSplitAnywhere(t *testing.T) {
	var inputs []string
	for _, tc := range validRequests {
		inputs = append(inputs, tc.in)
	}
	for i := range validRequests {
		j := (i + 5) % len(validRequests)
		inputs = append(inputs, validRequests[i].in+validRequests[j].in)
	}
	for _, in := range inputs {
		whole := connection(Limits{}, in)
		if len(whole) == 0 || whole[len(whole)-1].err != nil {
			t.Fatalf("%q: whole parse gave %+v", in, whole)
		}
		for cut := 0; cut <= len(in); cut++ {
			if got := connection(Limits{}, splitAt(in, cut)...); !equalResults(got, whole) {
				t.Fatalf("%q split at %d:\n got %+v\nwant %+v", in, cut, got, whole)
			}
		}
		if got := connection(Limits{}, bytewise(in)...); !equalResults(got, whole) {
			t.Fatalf("%q byte by byte:\n got %+v\nwant %+v", in, got, whole)
		}
	}
}

// Refusals too are decided the same however the bytes arrive.
func TestParseRefusalSplitAnywhere(t *testing.T) {
	for _, tc := range refusals {
		whole := connection(tc.limits, tc.in)
		if len(whole) != 1 || whole[0].err != tc.want {
			t.Fatalf("%s: whole gave %+v", tc.name, whole)
		}
		for cut := 0; cut <= len(tc.in); cut++ {
			if got := connection(tc.limits, splitAt(tc.in, cut)...); !equalResults(got, whole) {
				t.Fatalf("%s split at %d: got %+v want %+v", tc.name, cut, got, whole)
			}
		}
		if got := connection(tc.limits, bytewise(tc.in)...); !equalResults(got, whole) {
			t.Fatalf("%s byte by byte: got %+v want %+v", tc.name, got, whole)
		}
	}
}

func equalResults(a, b []parsed) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParsePipelinedThree(t *testing.T) {
	in := validRequests[1].in + validRequests[15].in + validRequests[0].in
	got := connection(Limits{}, in)
	want := []parsed{validRequests[1].want, validRequests[15].want, validRequests[0].want}
	want[0].n = len(validRequests[1].in)
	want[1].n = len(validRequests[15].in)
	want[2].n = len(validRequests[0].in)
	if !equalResults(got, want) {
		t.Fatalf("\n got %+v\nwant %+v", got, want)
	}
}

// A slowloris feeding one byte per event costs one scan of each byte: after every
// incomplete call the test overwrites all lines the parser has finished with NUL
// bytes, which would be refused if any of them were scanned again.
func TestParseResumesWithoutRescanning(t *testing.T) {
	in := "\r\nPOST /ingest?q HTTP/1.1\r\nHost: h\r\nUser-Agent: slow\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"3;e=1\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n"
	buf := []byte(in)
	p := newParser(Limits{})
	var req Request
	for k := 1; k <= len(buf); k++ {
		n, err := p.Parse(buf[:k], &req)
		if err != nil {
			t.Fatalf("at %d: %v", k, err)
		}
		if n > 0 {
			if n != len(buf) || k != len(buf) || string(req.Body) != "abcde" {
				t.Fatalf("complete at k=%d n=%d body %q", k, n, req.Body)
			}
			return
		}
		for j := 0; j < p.lineStart; j++ {
			buf[j] = 0
		}
	}
	t.Fatal("never completed")
}

// HeadersDone turns true, with the header fields filled, while the body is still
// awaited; that is when the caller answers "Expect: 100-continue".
func TestParseHeadersDoneBeforeBody(t *testing.T) {
	head := "POST /ingest HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
	p := newParser(Limits{})
	var req Request
	buf := []byte(head[:len(head)-1])
	if n, err := p.Parse(buf, &req); n != 0 || err != nil || p.HeadersDone() {
		t.Fatalf("partial head: n=%d err=%v done=%v", n, err, p.HeadersDone())
	}
	buf = append(buf, head[len(head)-1:]...)
	if n, err := p.Parse(buf, &req); n != 0 || err != nil || !p.HeadersDone() {
		t.Fatalf("whole head: n=%d err=%v done=%v", n, err, p.HeadersDone())
	}
	if !req.ExpectContinue || req.ContentLength != 4 || string(req.Path) != "/ingest" || req.Body != nil {
		t.Fatalf("header fields not filled: %+v", req)
	}
	buf = append(buf, "{}{}"...)
	if n, err := p.Parse(buf, &req); n != len(buf) || err != nil || string(req.Body) != "{}{}" {
		t.Fatalf("with body: n=%d err=%v body=%q", n, err, req.Body)
	}
	if p.HeadersDone() {
		t.Fatal("HeadersDone still true after the request completed")
	}
}

type refusal struct {
	name   string
	limits Limits
	in     string
	want   *Error
}

var small = Limits{MaxRequestLine: 32, MaxHeaderBytes: 64, MaxBodyBytes: 16}

var refusals = []refusal{
	// request line
	{"http/2.0", Limits{}, "GET / HTTP/2.0\r\n", ErrVersionUnsupported},
	{"http/1.2", Limits{}, "GET / HTTP/1.2\r\n", ErrVersionUnsupported},
	{"http/0.9 version", Limits{}, "GET / HTTP/0.9\r\n", ErrVersionUnsupported},
	{"lowercase http", Limits{}, "GET / http/1.1\r\n", ErrVersion},
	{"long version", Limits{}, "GET / HTTP/1.10\r\n", ErrVersion},
	{"junk after version", Limits{}, "GET / HTTP/1.1 x\r\n", ErrVersion},
	{"http/0.9 request", Limits{}, "GET /\r\n\r\n", ErrTarget},
	{"empty target", Limits{}, "GET  / HTTP/1.1\r\n", ErrTarget},
	{"control in target", Limits{}, "GET /a\x7fb HTTP/1.1\r\n", ErrTarget},
	{"non-ascii in target", Limits{}, "GET /caf\xc3\xa9 HTTP/1.1\r\n", ErrTarget},
	{"invalid method char", Limits{}, "G@T / HTTP/1.1\r\n", ErrMethod},
	{"space before method", Limits{}, " GET / HTTP/1.1\r\n", ErrMethod},
	{"tab after method", Limits{}, "GET\t/ HTTP/1.1\r\n", ErrMethod},
	{"bare LF before request line", Limits{}, "\nGET / HTTP/1.1\r\n", ErrBareLF},
	{"bare CR before request line", Limits{}, "\rGET / HTTP/1.1\r\n", ErrBareCR},
	{"bare LF ends request line", Limits{}, "GET / HTTP/1.1\nHost: h\r\n\r\n", ErrBareLF},
	{"bare CR in request line", Limits{}, "GET / HTTP/1.1\rHost: h\r\n\r\n", ErrBareCR},
	{"request line over limit", small, "GET /0123456789012345678 HTTP/1.1\r\n", ErrRequestLineTooLong},
	{"request line never ends", small, strings.Repeat("A", 40), ErrRequestLineTooLong},
	{"empty lines count toward the request line", small, strings.Repeat("\r\n", 17), ErrRequestLineTooLong},
	// header syntax
	{"obs-fold", Limits{}, "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", ErrObsFold},
	{"obs-fold with tab", Limits{}, "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", ErrObsFold},
	{"whitespace after request line", Limits{}, "GET / HTTP/1.1\r\n Host: h\r\n\r\n", ErrObsFold},
	{"space before colon", Limits{}, "GET / HTTP/1.1\r\nHost : h\r\n\r\n", ErrSpaceBeforeColon},
	{"tab before colon", Limits{}, "GET / HTTP/1.1\r\nContent-Length\t: 5\r\n\r\n", ErrSpaceBeforeColon},
	{"invalid name char", Limits{}, "GET / HTTP/1.1\r\nHo(st: h\r\n\r\n", ErrFieldName},
	{"empty name", Limits{}, "GET / HTTP/1.1\r\n: h\r\n\r\n", ErrFieldName},
	{"no colon", Limits{}, "GET / HTTP/1.1\r\nHost\r\n\r\n", ErrFieldName},
	{"NUL in value", Limits{}, "GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", ErrFieldValue},
	{"DEL in value", Limits{}, "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", ErrFieldValue},
	{"ESC in value", Limits{}, "GET / HTTP/1.1\r\nX: \x1b[0m\r\n\r\n", ErrFieldValue},
	{"bare CR in value", Limits{}, "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", ErrBareCR},
	{"bare LF ends field", Limits{}, "GET / HTTP/1.1\r\nHost: h\nX: 1\r\n\r\n", ErrBareLF},
	{"bare LF ends head", Limits{}, "GET / HTTP/1.1\r\nHost: h\r\n\n", ErrBareLF},
	{"bare CR ends head", Limits{}, "GET / HTTP/1.1\r\nHost: h\r\n\rX", ErrBareCR},
	{"header block over limit", small, "GET / HTTP/1.1\r\nHost: h\r\nX-Filler: " + strings.Repeat("f", 60) + "\r\n\r\n", ErrHeaderTooLarge},
	{"header block one over limit", small, "GET / HTTP/1.1\r\nHost: h\r\nX: " + strings.Repeat("f", 49) + "\r\n\r\n", ErrHeaderTooLarge},
	// host
	{"missing host in 1.1", Limits{}, "GET / HTTP/1.1\r\nX: 1\r\n\r\n", ErrHostMissing},
	{"duplicate host", Limits{}, "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", ErrHostDuplicate},
	// content-length
	{"non-digit content-length", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 1a\r\n", ErrContentLength},
	{"negative content-length", Limits{}, "POST / HTTP/1.1\r\nContent-Length: -1\r\n", ErrContentLength},
	{"signed content-length", Limits{}, "POST / HTTP/1.1\r\nContent-Length: +1\r\n", ErrContentLength},
	{"empty content-length", Limits{}, "POST / HTTP/1.1\r\nContent-Length: \r\n", ErrContentLength},
	{"content-length list", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n", ErrContentLength},
	{"inner space content-length", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n", ErrContentLength},
	{"differing content-length", Limits{}, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n", ErrContentLengthDiffer},
	{"content-length over limit, no body sent", small, "POST / HTTP/1.1\r\nContent-Length: 17\r\n", ErrBodyTooLarge},
	{"content-length overflowing int64", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n", ErrBodyTooLarge},
	// transfer-encoding
	{"gzip transfer-encoding", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n", ErrTransferEncoding},
	{"chunked not alone", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n", ErrTransferEncoding},
	{"chunked not final", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n", ErrTransferEncoding},
	{"chunked twice", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", ErrTransferEncoding},
	{"identity transfer-encoding", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n", ErrTransferEncoding},
	{"empty transfer-encoding", Limits{}, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \r\n\r\n", ErrTransferEncoding},
	{"chunked with content-length", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n", ErrLengthAndChunked},
	{"content-length with chunked", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n", ErrLengthAndChunked},
	{"transfer-encoding in http/1.0", Limits{}, "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n", ErrChunkedHTTP10},
	// chunked body
	{"chunk size not hex", Limits{}, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ErrChunkSize},
	{"chunk size missing", Limits{}, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n;a=b\r\n", ErrChunkSize},
	{"chunk size with junk after BWS", Limits{}, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\n", ErrChunkSize},
	{"chunk size over limit", small, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n", ErrBodyTooLarge},
	{"chunk size overflowing int64", Limits{}, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffffff\r\n", ErrBodyTooLarge},
	{"chunks adding up over limit", small, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n9\r\n", ErrBodyTooLarge},
	{"chunk data longer than its size", Limits{}, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", ErrChunkData},
	{"chunk data without LF", Limits{}, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\rX", ErrChunkData},
	{"bare LF after chunk size", Limits{}, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n", ErrBareLF},
	{"control char in chunk extension", Limits{}, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2;a\x01\r\n", ErrChunkExtension},
	{"chunk line over limit", Limits{}, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2;" + strings.Repeat("e", maxChunkLine), ErrChunkLineTooLong},
	{"chunk framing over the body limit", small, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n1;" + strings.Repeat("x", 73) + "\r\n", ErrChunkFraming},
	{"last chunk followed by neither trailer nor CRLF", Limits{}, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\x01", ErrFieldName},
	{"last chunk without final CRLF, next request read as trailer", Limits{}, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nGET / HTTP/1.1\r\n", ErrSpaceBeforeColon},
	{"obs-fold in trailer", Limits{}, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\n 2\r\n\r\n", ErrObsFold},
	{"trailers over limit", small, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: " + strings.Repeat("t", 64) + "\r\n\r\n", ErrHeaderTooLarge},
	// expect, content-encoding
	{"expect other than 100-continue", Limits{}, "POST / HTTP/1.1\r\nExpect: 200-ok\r\n", ErrExpectation},
	{"content-encoding br", Limits{}, "POST / HTTP/1.1\r\nContent-Encoding: br\r\n", ErrContentEncoding},
	{"content-encoding gzip twice", Limits{}, "POST / HTTP/1.1\r\nContent-Encoding: gzip, gzip\r\n", ErrContentEncoding},
}

func TestParseRefusals(t *testing.T) {
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			p := newParser(tc.limits)
			var req Request
			n, err := p.Parse([]byte(tc.in), &req)
			if n != 0 || err != tc.want {
				t.Fatalf("got n=%d err=%v, want %d %q", n, err, tc.want.Status, tc.want.Reason)
			}
			// The refusal sticks: more bytes do not revive the connection.
			if n, err := p.Parse([]byte(tc.in+"GET / HTTP/1.1\r\nHost: h\r\n\r\n"), &req); n != 0 || err != tc.want {
				t.Fatalf("after refusal: n=%d err=%v", n, err)
			}
		})
	}
}

// The limits are inclusive: exactly at the limit is accepted, one byte over refused.
func TestParseLimitBoundaries(t *testing.T) {
	l := Limits{MaxRequestLine: 24, MaxHeaderBytes: 20, MaxBodyBytes: 8}
	line := "GET /" + strings.Repeat("a", 8) + " HTTP/1.1\r\n" // 24 bytes
	head := "Host: " + strings.Repeat("h", 10) + "\r\n\r\n"    // 20 bytes
	if len(line) != 24 || len(head) != 20 {
		t.Fatal("test lengths are off")
	}
	cases := []struct {
		in   string
		want *Error
	}{
		{line + head, nil},
		{"GET /" + strings.Repeat("a", 10) + " HTTP/1.1\r\n" + head, ErrRequestLineTooLong},
		{line + "Host: " + strings.Repeat("h", 11) + "\r\n\r\n", ErrHeaderTooLarge},
		{"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 8\r\n\r\n12345678", nil},
		{"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n", ErrBodyTooLarge},
		{"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n123\r\n5\r\n45678\r\n0\r\n\r\n", nil},
		{"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n123\r\n6\r\n", ErrBodyTooLarge},
	}
	for i, tc := range cases {
		if i == 3 {
			l = Limits{MaxBodyBytes: 8}
		}
		got := parseWhole(l, tc.in)
		if tc.want == nil && (got.err != nil || got.n != len(tc.in)) || tc.want != nil && got.err != tc.want {
			t.Errorf("%q: got n=%d err=%v, want %v", tc.in, got.n, got.err, tc.want)
		}
	}
}

func TestParseZeroLimitsTakeDefaults(t *testing.T) {
	var p Parser // not even Init: the defaults apply
	var req Request
	in := "GET /" + strings.Repeat("a", 4000) + " HTTP/1.1\r\nHost: h\r\n\r\n"
	if n, err := p.Parse([]byte(in), &req); n != len(in) || err != nil {
		t.Fatalf("n=%d err=%v", n, err)
	}
	p.Init(Limits{MaxBodyBytes: 4})
	if p.limits.MaxRequestLine != DefaultLimits().MaxRequestLine || p.limits.MaxHeaderBytes != DefaultLimits().MaxHeaderBytes || p.limits.MaxBodyBytes != 4 {
		t.Fatalf("limits %+v", p.limits)
	}
}

// The de-chunking buffer is reused across requests and never grows past the body
// limit, however the chunks arrive.
func TestParseChunkScratchBounded(t *testing.T) {
	l := Limits{MaxBodyBytes: 10000}
	body := strings.Repeat("x", 10000)
	in := "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + "7d0\r\n" + body[:2000] + "\r\n" + "1f40\r\n" + body[2000:] + "\r\n0\r\n\r\n"
	p := newParser(l)
	var req Request
	for round := 0; round < 2; round++ {
		n, err := p.Parse([]byte(in), &req)
		if n != len(in) || err != nil || string(req.Body) != body {
			t.Fatalf("round %d: n=%d err=%v body len %d", round, n, err, len(req.Body))
		}
		if cap(p.scratch) > 10000 {
			t.Fatalf("scratch grew to %d", cap(p.scratch))
		}
	}
}

func TestErrorsAreClosingAndJSONSafe(t *testing.T) {
	all := []*Error{
		ErrRequestLineTooLong, ErrHeaderTooLarge, ErrMethod, ErrTarget, ErrVersion,
		ErrVersionUnsupported, ErrBareCR, ErrBareLF, ErrObsFold, ErrSpaceBeforeColon,
		ErrFieldName, ErrFieldValue, ErrHostMissing, ErrHostDuplicate, ErrContentLength,
		ErrContentLengthDiffer, ErrLengthAndChunked, ErrChunkedHTTP10, ErrTransferEncoding,
		ErrBodyTooLarge, ErrChunkSize, ErrChunkExtension, ErrChunkLineTooLong, ErrChunkData, ErrChunkFraming,
		ErrExpectation, ErrContentEncoding,
	}
	for _, e := range all {
		if !e.Close {
			t.Errorf("%q: parser refusals must close", e.Reason)
		}
	}
	for _, e := range append(all, ErrGzipTooLarge, ErrGzipBody) {
		if StatusText(e.Status) == "" {
			t.Errorf("%q: status %d has no reason phrase", e.Reason, e.Status)
		}
		for i := 0; i < len(e.Reason); i++ {
			if c := e.Reason[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				t.Errorf("%q needs JSON escaping", e.Reason)
			}
		}
	}
	// Every refusal the parser can make is exercised by the refusal table.
	seen := map[*Error]bool{}
	for _, tc := range refusals {
		seen[tc.want] = true
	}
	for _, e := range all {
		if !seen[e] {
			t.Errorf("%q is not tested", e.Reason)
		}
	}
}

func TestParseAllocs(t *testing.T) {
	buf := []byte(benchPost)
	chunked := []byte("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	p := newParser(Limits{})
	var req Request
	p.Parse(chunked, &req) // grows the scratch once
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := p.Parse(buf, &req); n != len(buf) || err != nil {
			t.Fatal(n, err)
		}
		if n, err := p.Parse(chunked, &req); n != len(chunked) || err != nil {
			t.Fatal(n, err)
		}
		p.Parse(buf[:100], &req)
		p.Reset()
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per run", allocs)
	}
}

// A typical emitter request: Go net/http headers plus a ~1.1 KB packet.
var benchPost = func() string {
	body := `{"emitter_id":"e1","packet_id":"p-1","messages":[` +
		strings.Repeat(`{"timestamp":1640995200000,"level":"INFO","message":"user login ok","metadata":{"k":"v"}},`, 12) +
		`{"timestamp":1640995200000,"level":"INFO","message":"hi","metadata":{"k":"v"}}]}`
	return "POST /ingest HTTP/1.1\r\nHost: distributor:8080\r\nUser-Agent: Go-http-client/1.1\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n", len(body)) +
		"Content-Type: application/json\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n" + body
}()

func BenchmarkParseRequest(b *testing.B) {
	buf := []byte(benchPost)
	var p Parser
	p.Init(Limits{})
	var req Request
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := p.Parse(buf, &req); n != len(buf) || err != nil {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkParseRequestHead(b *testing.B) {
	buf := []byte(benchPost[:strings.Index(benchPost, "\r\n\r\n")+4])
	var p Parser
	p.Init(Limits{})
	var req Request
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := p.Parse(buf, &req); n != 0 || err != nil || !p.HeadersDone() {
			b.Fatal(n, err)
		}
		p.Reset()
	}
}

func BenchmarkParseRequestChunked(b *testing.B) {
	body := benchPost[strings.Index(benchPost, "\r\n\r\n")+4:]
	in := "POST /ingest HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", 512, body[:512], len(body)-512, body[512:])
	buf := []byte(in)
	var p Parser
	p.Init(Limits{})
	var req Request
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := p.Parse(buf, &req); n != len(buf) || err != nil || !bytes.Equal(req.Body, []byte(body)) {
			b.Fatal(n, err)
		}
	}
}

// Chunk framing (size lines, extensions, CRLFs) may take MaxHeaderBytes+MaxBodyBytes.
func TestParseChunkFramingBoundary(t *testing.T) {
	l := Limits{MaxHeaderBytes: 64, MaxBodyBytes: 16}
	in := func(ext int) string {
		return "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;" + strings.Repeat("x", ext) + "\r\na\r\n0\r\n\r\n"
	}
	if got := parseWhole(l, in(71)); got.err != nil || got.body != "a" {
		t.Fatalf("80 bytes of framing: %+v", got)
	}
	if got := parseWhole(l, in(72)); got.err != ErrChunkFraming {
		t.Fatalf("81 bytes of framing: %+v", got)
	}
}

// The largest request the limits allow fits in MaxRequestBytes: the longest line,
// headers, a body at its limit with framing at its bound, and trailers.
func TestMaxRequestBytes(t *testing.T) {
	l := Limits{MaxRequestLine: 64, MaxHeaderBytes: 128, MaxBodyBytes: 32}
	line := "POST /" + strings.Repeat("p", 64-len("POST / HTTP/1.1\r\n")) + " HTTP/1.1\r\n"
	head := "Host: h\r\nTransfer-Encoding: chunked\r\nX: " + strings.Repeat("x", 128-len("Host: h\r\nTransfer-Encoding: chunked\r\nX: \r\n\r\n")) + "\r\n\r\n"
	// framing: "1;<ext>\r\n" + "\r\n" + "1f\r\n" + "\r\n" + "0\r\n" = ext+15 = 128+32
	body := "1;" + strings.Repeat("e", 145) + "\r\nd\r\n" + "1f\r\n" + strings.Repeat("d", 31) + "\r\n"
	trailers := "T: " + strings.Repeat("t", 128-len("T: \r\n\r\n")) + "\r\n\r\n"
	in := line + head + body + "0\r\n" + trailers
	if len(line) != 64 || len(head) != 128 || len(trailers) != 128 {
		t.Fatal("test lengths are off")
	}
	got := parseWhole(l, in)
	if got.err != nil || got.n != len(in) || len(got.body) != 32 {
		t.Fatalf("largest request refused: %+v", got)
	}
	if int64(len(in)) > l.MaxRequestBytes() {
		t.Fatalf("%d bytes > MaxRequestBytes %d", len(in), l.MaxRequestBytes())
	}
	if got := parseWhole(l, strings.Replace(in, "1;e", "1;ee", 1)); got.err != ErrChunkFraming {
		t.Fatalf("one more byte of framing: %+v", got)
	}
	if DefaultLimits().MaxRequestBytes() != (Limits{}).MaxRequestBytes() {
		t.Fatal("zero limits do not take the defaults")
	}
}
