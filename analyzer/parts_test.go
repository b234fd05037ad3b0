package analyzer

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sluicelog/sluice/codec"
)

// levelsByJSON is the reference for countLevels: decode with encoding/json.
func levelsByJSON(t testing.TB, body []byte) (lc levelCounts) {
	var p struct {
		Messages []struct {
			Level string `json:"level"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("reference decode: %v", err)
	}
	for _, m := range p.Messages {
		lc[classifyLevel([]byte(m.Level))]++
	}
	return lc
}

func TestCountLevelsMatchesEncodingJSON(t *testing.T) {
	bodies := []string{
		packet("p", "INFO"),
		packet("p", "INFO", "ERROR", "warn", "Warning", "err", "x", "FATAL", "trace", "DEBUG"),
		// Keys in any order, "level" inside metadata and strings, escapes, whitespace.
		`{ "messages" : [ { "metadata" : { "level" : "ERROR" , "x" : "\"level\":\"ERROR\"" } , "message" : "level" ,
		   "level" : "DEBUG" , "timestamp" : "2024" } , {"level":"INFO","timestamp":1,"message":"]}\"}"} ] ,
		   "packet_id" : "p" }`,
		`{"packet_id":"p","before":{"messages":[{"level":"FATAL"}]},"messages":[{"timestamp":-1.5e3,"message":"","level":"WARN","metadata":null}]}`,
		`{"packet_id":"p","messages":[{"timestamp":1,"message":"m","level":"\u0049NFO"}]}`, // escaped: OTHER
	}
	for _, b := range bodies {
		var pkt codec.Packet
		if err := codec.ValidatePacket([]byte(b), &pkt); err != nil {
			t.Fatalf("test body invalid (%v): %s", err, b)
		}
		var got levelCounts
		countLevels([]byte(b), &got)
		want := levelsByJSON(t, []byte(b))
		if b == bodies[4] {
			want = levelCounts{levelOther: 1} // encoding/json unescapes; we count raw bytes
		}
		if got != want {
			t.Errorf("countLevels(%s) = %v, want %v", b, got, want)
		}
		var n uint32
		for _, c := range got {
			n += c
		}
		if int(n) != pkt.Messages {
			t.Errorf("countLevels found %d messages, validator %d", n, pkt.Messages)
		}
	}
}

func FuzzCountLevels(f *testing.F) {
	f.Add([]byte(packet("p", "INFO", "WARN")))
	f.Add([]byte(`{"messages":[{"level":"ERROR","message":"\\\"","timestamp":1}],"packet_id":"x"}`))
	f.Add([]byte(`{"packet_id":"x","messages":[{"level":"a","message":"[{","timestamp":"1","metadata":{"a":[]}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var got levelCounts
		countLevels(body, &got) // must not panic or loop on anything
		var pkt codec.Packet
		if codec.ValidatePacket(body, &pkt) != nil {
			return
		}
		var n uint32
		for _, c := range got {
			n += c
		}
		if int(n) != pkt.Messages {
			t.Fatalf("countLevels found %d messages, validator %d: %q", n, pkt.Messages, body)
		}
		if !strings.Contains(string(body), `\`) { // without escapes the reference agrees exactly
			if want := levelsByJSON(t, body); got != want {
				t.Fatalf("countLevels = %v, encoding/json %v: %q", got, want, body)
			}
		}
	})
}

// FuzzCountLevelsPackets builds valid packets around fuzzed strings (levels, text,
// metadata keys and values that may themselves say "level"), so every input reaches
// the comparison with encoding/json.
func FuzzCountLevelsPackets(f *testing.F) {
	f.Add("INFO", "warn", `"level":"ERROR"`, "level", "{[\\\"")
	f.Add("", "WARNING", "]}", "messages", "FATAL")
	f.Fuzz(func(t *testing.T, l1, l2, text, key, value string) {
		q := func(s string) string {
			b, _ := json.Marshal(s) // invalid UTF-8 becomes U+FFFD: still a valid string
			return string(b)
		}
		body := fmt.Sprintf(`{"packet_id":"p","x":{%s:[%s]},"messages":[`+
			`{"level":%s,"message":%s,"timestamp":1,"metadata":{%s:%s,"n":{%s:[%s]}}},`+
			`{"metadata":null,%s:%s,"timestamp":"t","message":"","level":%s}]}`,
			q(key), q(value), q(l1), q(text), q(key), q(value), q(key), q(value), q(key+"_"), q(value), q(l2))
		var pkt codec.Packet
		if err := codec.ValidatePacket([]byte(body), &pkt); err != nil {
			return // a fuzzed key collided with a known one (duplicate or case variant)
		}
		var got levelCounts
		countLevels([]byte(body), &got)
		if want := levelsByJSON(t, []byte(body)); got != want {
			t.Fatalf("countLevels = %v, encoding/json %v: %s", got, want, body)
		}
	})
}

func TestSkipString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int // index past the closing quote
	}{
		{`""`, 2},
		{`"a"x`, 3},
		{`"\""x`, 4},
		{`"\\"x`, 4},
		{`"\\\""x`, 6},
		{`"0123456789abcdef\"0123456789"x`, 30},
		{`"0123456789abcdef\\"0123456789"x`, 20},
		{`"unterminated`, 13},
		{`"ends in a backslash\`, 21},
	} {
		if got := skipString([]byte(tc.in), 0); got != tc.want {
			t.Errorf("skipString(%s) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestClassifyLevel(t *testing.T) {
	for in, want := range map[string]int{
		"INFO": levelInfo, "info": levelInfo, "Info": levelInfo, "WARN": levelWarn, "WARNING": levelWarn,
		"ERROR": levelError, "ERR": levelError, "DEBUG": levelDebug, "TRACE": levelTrace, "FATAL": levelFatal,
		"": levelOther, "INF": levelOther, "INFO ": levelOther, "CRITICAL": levelOther, "iNfO": levelInfo,
		"I\x00FO": levelOther,
	} {
		if got := classifyLevel([]byte(in)); got != want {
			t.Errorf("classifyLevel(%q) = %s, want %s", in, levelNames[got], levelNames[want])
		}
	}
}

func TestBatchScanner(t *testing.T) {
	p1, p2 := packet("1", "INFO"), `{"a":"]}[{\"","b":[{}]}`
	for _, tc := range []struct {
		in     string
		elems  []string
		reason string
	}{
		{"[]", nil, ""},
		{" \n[ \t]\r\n", nil, ""},
		{"[" + p1 + "]", []string{p1}, ""},
		{"[" + p1 + "," + p2 + "]", []string{p1, p2}, ""},
		{" [ " + p1 + " ,\n" + p2 + " ] ", []string{p1, p2}, ""},
		{"", nil, reasonBatchNotArray},
		{"{}", nil, reasonBatchNotArray},
		{"[", nil, reasonBatchSyntax},
		{"[" + p1, []string{p1}, reasonBatchSyntax},
		{"[" + p1 + ",", []string{p1}, reasonBatchSyntax},
		{"[" + p1 + "," + "]", []string{p1}, reasonBatchElement},
		{"[" + p1 + "]x", []string{p1}, reasonBatchSyntax},
		{"[] []", nil, reasonBatchSyntax},
		{"[" + p1 + p2 + "]", []string{p1}, reasonBatchSyntax},
		{"[1]", nil, reasonBatchElement},
		{`[{"a":"}]`, nil, reasonBatchSyntax},
	} {
		var s batchScanner
		s.init([]byte(tc.in))
		var got []string
		reason := ""
		for {
			e, ok, r := s.next()
			if r != "" {
				reason = r
				break
			}
			if !ok {
				break
			}
			got = append(got, string(e))
		}
		if reason != tc.reason || fmt.Sprint(got) != fmt.Sprint(tc.elems) {
			t.Errorf("%q: elements %q reason %q, want %q %q", tc.in, got, reason, tc.elems, tc.reason)
		}
	}
}

func FuzzBatchScanner(f *testing.F) {
	f.Add([]byte("[" + packet("1", "INFO") + "," + packet("2", "WARN") + "]"))
	f.Add([]byte(`[{"a":"]"},{}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var s batchScanner
		s.init(body)
		var elems [][]byte
		for {
			e, ok, reason := s.next()
			if reason != "" {
				return
			}
			if !ok {
				break
			}
			elems = append(elems, e)
		}
		// Accepted: when every element is valid JSON, so is the whole array, and it
		// holds exactly those elements.
		for _, e := range elems {
			if !json.Valid(e) {
				return
			}
		}
		var arr []json.RawMessage
		if err := json.Unmarshal(body, &arr); err != nil {
			t.Fatalf("scanner accepted an array encoding/json refuses (%v): %q", err, body)
		}
		if len(arr) != len(elems) {
			t.Fatalf("%d elements, encoding/json %d: %q", len(elems), len(arr), body)
		}
		for i := range arr {
			if string(arr[i]) != string(elems[i]) {
				t.Fatalf("element %d: %q, encoding/json %q", i, elems[i], arr[i])
			}
		}
	})
}

func TestDedupWindowExactFIFO(t *testing.T) {
	w := newDedupWindow(4)
	seen := func(id string) bool { return w.seen(w.hash([]byte(id))) }
	for _, step := range []struct {
		id   string
		want bool
	}{
		{"a", false}, {"b", false}, {"a", true}, {"c", false}, {"d", false},
		{"a", true},                              // window a b c d: a re-sent does not refresh it
		{"e", false}, {"a", false}, {"b", false}, // e evicts a, a evicts b, b evicts c
		{"c", false}, {"b", true}, {"e", true}, {"d", false},
	} {
		if got := seen(step.id); got != step.want {
			t.Fatalf("seen(%s) = %v, want %v", step.id, got, step.want)
		}
	}
	if w.size() != 4 {
		t.Fatalf("size %d", w.size())
	}
}

func TestDedupWindowStripedRemembersAboutN(t *testing.T) {
	const n = 1 << 17
	w := newDedupWindow(n)
	if len(w.stripes) != dedupStripes || w.size() < n {
		t.Fatalf("%d stripes, size %d", len(w.stripes), w.size())
	}
	r := rand.New(rand.NewPCG(1, 2))
	ids := make([]uint64, 2*n)
	for i := range ids {
		ids[i] = r.Uint64()
		if w.seen(ids[i]) {
			t.Fatalf("fresh id %d reported seen", i)
		}
	}
	// The newest 90% of a window are all remembered; the oldest ids, 2n back, are all
	// forgotten; in between the stripes' fill decides.
	for _, h := range ids[2*n-n*9/10:] {
		if !w.seen(h) {
			t.Fatal("a recent id was forgotten")
		}
	}
	forgotten := 0
	for _, h := range ids[:n/2] {
		if !w.seen(h) {
			forgotten++
		}
	}
	if forgotten != n/2 {
		t.Fatalf("%d of %d ids from two windows back still remembered", n/2-forgotten, n/2)
	}
}

func TestQueryValue(t *testing.T) {
	for _, tc := range []struct {
		q, name, want string
		ok            bool
	}{
		{"ms=10", "ms", "10", true},
		{"x=1&ms=20&y", "ms", "20", true},
		{"period_ms=5", "ms", "", false},
		{"ms", "ms", "", false},
		{"", "ms", "", false},
		{"ms=", "ms", "", true},
	} {
		v, ok := queryValue([]byte(tc.q), tc.name)
		if string(v) != tc.want || ok != tc.ok {
			t.Errorf("queryValue(%q, %q) = %q %v", tc.q, tc.name, v, ok)
		}
	}
}
