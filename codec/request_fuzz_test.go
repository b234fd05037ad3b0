package codec

import (
	"strconv"
	"testing"
)

// fuzzLimits are small so that fuzzed inputs reach every limit.
var fuzzLimits = Limits{MaxRequestLine: 256, MaxHeaderBytes: 512, MaxBodyBytes: 2048}

// FuzzParseRequest checks, on any bytes: no panic; n within the buffer; a refusal is
// one of the closing *Error values; the same bytes arriving split at an arbitrary
// point, or one byte per event, give the same requests and refusal as all at once;
// and every complete request, written out again from what was parsed (method,
// target, version, host, body), parses back to the same thing.
//
// The seed corpus in testdata/fuzz/FuzzParseRequest holds the bytes curl, Go's
// net/http, python's http.client and requests, wrk and ab (HTTP/1.0) send, plus
// smuggling attempts.
func FuzzParseRequest(f *testing.F) {
	for _, tc := range validRequests {
		f.Add([]byte(tc.in), uint16(len(tc.in)/3))
	}
	for _, tc := range refusals {
		f.Add([]byte(tc.in), uint16(len(tc.in)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		whole := connection(fuzzLimits, string(data))
		for i, r := range whole {
			if r.err != nil {
				e, ok := r.err.(*Error)
				if !ok || !e.Close || e.Status < 400 || e.Status > 505 || i != len(whole)-1 {
					t.Fatalf("refusal %#v after %d requests", r.err, i)
				}
			}
		}

		k := int(split) % (len(data) + 1)
		if got := connection(fuzzLimits, string(data[:k]), string(data[k:])); !equalResults(got, whole) {
			t.Fatalf("split at %d:\n got %+v\nwant %+v", k, got, whole)
		}
		if len(data) <= 1024 { // quadratic in the test helper, not in the parser
			if got := connection(fuzzLimits, bytewise(string(data))...); !equalResults(got, whole) {
				t.Fatalf("byte by byte:\n got %+v\nwant %+v", got, whole)
			}
		}

		for _, r := range whole {
			if r.err == nil {
				checkRoundTrip(t, r)
			}
		}
	})
}

func checkRoundTrip(t *testing.T, r parsed) {
	t.Helper()
	out := r.method + " " + r.path
	if !r.queryNil {
		out += "?" + r.query
	}
	out += " HTTP/1." + strconv.Itoa(r.minor) + "\r\n"
	if r.minor == 1 || r.host != "" {
		out += "Host: " + r.host + "\r\n"
	}
	if r.body != "" {
		out += "Content-Length: " + strconv.Itoa(len(r.body)) + "\r\n"
	}
	out += "\r\n" + r.body
	l := fuzzLimits
	l.MaxRequestLine, l.MaxHeaderBytes = 1<<20, 1<<20 // the copy may be a few bytes longer
	back := parseWhole(l, out)
	if back.err != nil || back.n != len(out) || back.method != r.method || back.path != r.path ||
		back.query != r.query || back.queryNil != r.queryNil || back.host != r.host || back.body != r.body || back.minor != r.minor {
		t.Fatalf("round trip of %+v through %q gave %+v", r, out, back)
	}
}
