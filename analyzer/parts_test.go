package analyzer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/sluicelog/sluice/codec"
)

func TestBatchScanner(t *testing.T) {
	p1 := packet("1", "INFO")
	// Brackets, braces and quotes inside strings, and a nested array after messages.
	p2 := `{"packet_id":"]}[{\"","messages":[{"timestamp":1,"level":"warn","message":"]"},` +
		`{"timestamp":2,"level":"x","message":"{"}],"b":[{}]}`
	lv1 := codec.Levels{codec.LevelInfo: 1}
	lv2 := codec.Levels{codec.LevelWarn: 1, codec.LevelOther: 1}
	for _, tc := range []struct {
		in     string
		elems  []string
		levels []codec.Levels
		reason string
	}{
		{"[]", nil, nil, ""},
		{" \n[ \t]\r\n", nil, nil, ""},
		{"[" + p1 + "]", []string{p1}, []codec.Levels{lv1}, ""},
		{"[" + p1 + "," + p2 + "]", []string{p1, p2}, []codec.Levels{lv1, lv2}, ""},
		{" [ " + p1 + " ,\n" + p2 + " ] ", []string{p1, p2}, []codec.Levels{lv1, lv2}, ""},
		{"", nil, nil, reasonBatchNotArray},
		{"{}", nil, nil, reasonBatchNotArray},
		{"[", nil, nil, reasonBatchSyntax},
		{"[" + p1, []string{p1}, []codec.Levels{lv1}, reasonBatchSyntax},
		{"[" + p1 + ",", []string{p1}, []codec.Levels{lv1}, reasonBatchSyntax},
		{"[" + p1 + "," + "]", []string{p1}, []codec.Levels{lv1}, reasonBatchElement},
		{"[" + p1 + "]x", []string{p1}, []codec.Levels{lv1}, reasonBatchSyntax},
		{"[] []", nil, nil, reasonBatchSyntax},
		{"[" + p1 + p2 + "]", []string{p1}, []codec.Levels{lv1}, reasonBatchSyntax},
		{"[1]", nil, nil, reasonBatchElement},
		{"[" + p1 + `,"p"]`, []string{p1}, []codec.Levels{lv1}, reasonBatchElement},
		// An element that is not a valid packet: the validator's reason.
		{`[{"a":"}]`, nil, nil, "invalid JSON"},
		{"[" + p1[:len(p1)-1] + "]", nil, nil, "invalid JSON"},
		{"[" + p1 + `,{"packet_id":"2"}]`, []string{p1}, []codec.Levels{lv1}, "messages must be a non-empty array"},
		{"[" + p1 + "," + p1 + "1]", []string{p1, p1}, []codec.Levels{lv1, lv1}, reasonBatchSyntax},
	} {
		var s batchScanner
		s.init([]byte(tc.in))
		var got []string
		var levels []codec.Levels
		reason := ""
		for {
			var p codec.Packet
			lv := codec.Levels{1} // next adds to it, only when the element is valid
			e, ok, r := s.next(&p, &lv)
			if r != "" {
				reason = r
				if lv != (codec.Levels{1}) {
					t.Errorf("%q: levels %v after %q", tc.in, lv, r)
				}
				break
			}
			if !ok {
				break
			}
			lv[0]--
			got = append(got, string(e))
			levels = append(levels, lv)
		}
		if reason != tc.reason || fmt.Sprint(got) != fmt.Sprint(tc.elems) || fmt.Sprint(levels) != fmt.Sprint(tc.levels) {
			t.Errorf("%q: elements %q levels %v reason %q, want %q %v %q", tc.in, got, levels, reason, tc.elems, tc.levels, tc.reason)
		}
	}
}

// FuzzBatchScanner holds the scanner to encoding/json and codec.ValidatePacket: it
// accepts a body exactly when encoding/json reads it as an array whose elements
// are each a valid packet, it returns exactly those elements, and each element's
// packet and levels are what validating it on its own gives.
func FuzzBatchScanner(f *testing.F) {
	f.Add([]byte("[" + packet("1", "INFO") + "," + packet("2", "WARN") + "]"))
	f.Add([]byte(`[{"a":"]"},{}]`))
	f.Add([]byte(` [ {"packet_id":"\"]","messages":[{"timestamp":1,"level":"err","message":""}]} ,` + "\n" + `{"packet_id":"q","messages":[{"timestamp":"1","level":"x","message":"[","metadata":null}]} ] `))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var s batchScanner
		s.init(body)
		var elems [][]byte
		var pkts []codec.Packet
		var levels []codec.Levels
		reason := ""
		for {
			var p codec.Packet
			var lv codec.Levels
			e, ok, r := s.next(&p, &lv)
			if r != "" {
				if lv != (codec.Levels{}) {
					t.Fatalf("levels %v counted for a refused element (%s): %q", lv, r, body)
				}
				reason = r
				break
			}
			if !ok {
				break
			}
			elems, pkts, levels = append(elems, e), append(pkts, p), append(levels, lv)
		}

		var arr []json.RawMessage
		valid := json.Unmarshal(body, &arr) == nil && bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("["))
		for _, e := range arr {
			var p codec.Packet
			if valid && codec.ValidatePacket(e, &p) != nil {
				valid = false
			}
		}
		if valid != (reason == "") {
			t.Fatalf("scanner says %q, encoding/json and ValidatePacket valid=%v: %q", reason, valid, body)
		}
		if !valid {
			return
		}
		if len(arr) != len(elems) {
			t.Fatalf("%d elements, encoding/json %d: %q", len(elems), len(arr), body)
		}
		for i := range arr {
			if string(arr[i]) != string(elems[i]) {
				t.Fatalf("element %d: %q, encoding/json %q", i, elems[i], arr[i])
			}
			var p codec.Packet
			var lv codec.Levels
			if err := codec.ValidatePacketLevels(arr[i], &p, &lv); err != nil || lv != levels[i] ||
				string(p.ID) != string(pkts[i].ID) || p.Messages != pkts[i].Messages {
				t.Fatalf("element %d %q: %+v %v in place, %+v %v (%v) alone", i, arr[i], pkts[i], levels[i], p, lv, err)
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
