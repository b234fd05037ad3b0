package codec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

func TestClassifyLevel(t *testing.T) {
	for in, want := range map[string]Level{
		"INFO": LevelInfo, "info": LevelInfo, "Info": LevelInfo, "WARN": LevelWarn, "WARNING": LevelWarn,
		"ERROR": LevelError, "ERR": LevelError, "DEBUG": LevelDebug, "TRACE": LevelTrace, "FATAL": LevelFatal,
		"": LevelOther, "INF": LevelOther, "INFO ": LevelOther, "CRITICAL": LevelOther, "iNfO": LevelInfo,
		"I\x00FO": LevelOther, `\u0049NFO`: LevelOther, `I\nFO`: LevelOther, "\u0131nfo": LevelOther,
		"warninG": LevelWarn, "eRr": LevelError, "fatal": LevelFatal, "trace": LevelTrace, "debug": LevelDebug,
		"WARNINGS": LevelOther, "ERRO": LevelOther, "I{FO": LevelOther, "INF\xcf": LevelOther,
	} {
		if got := ClassifyLevel([]byte(in)); got != want {
			t.Errorf("ClassifyLevel(%q) = %s, want %s", in, got, want)
		}
	}
	for l := LevelTrace; int(l) < NumLevels; l++ {
		if l != LevelOther && ClassifyLevel([]byte(l.String())) != l {
			t.Errorf("%s does not classify as itself", l)
		}
	}
}

// refLevel is the reference classifier: the decoded level, upper-cased in ASCII
// only, against the list of names and aliases.
func refLevel(s string) Level {
	up := []byte(s)
	for i, c := range up {
		if 'a' <= c && c <= 'z' {
			up[i] = c - 'a' + 'A'
		}
	}
	switch string(up) {
	case "TRACE":
		return LevelTrace
	case "DEBUG":
		return LevelDebug
	case "INFO":
		return LevelInfo
	case "WARN", "WARNING":
		return LevelWarn
	case "ERR", "ERROR":
		return LevelError
	case "FATAL":
		return LevelFatal
	}
	return LevelOther
}

// levelsByJSON is the reference tally of a valid packet, decoded with encoding/json:
// every message's "level" string, classified by its value; a level written with a
// backslash escape counts as OTHER, since the codec classifies the raw bytes.
func levelsByJSON(t testing.TB, body []byte) (lv Levels) {
	t.Helper()
	var p struct {
		Messages []struct {
			Level json.RawMessage `json:"level"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("reference decode of %q: %v", body, err)
	}
	for _, m := range p.Messages {
		var s string
		if err := json.Unmarshal(m.Level, &s); err != nil {
			t.Fatalf("reference decode of level %s in %q: %v", m.Level, body, err)
		}
		if bytes.IndexByte(m.Level, '\\') >= 0 {
			lv[LevelOther]++
		} else {
			lv[refLevel(s)]++
		}
	}
	return lv
}

// presetLevels is a non-zero starting tally: the entry points add to what is there.
var presetLevels = Levels{1, 2, 3, 4, 5, 6, 7}

func sub(a, b Levels) (d Levels) {
	for i := range a {
		d[i] = a[i] - b[i]
	}
	return d
}

func trimSpaceRight(b []byte) []byte { return bytes.TrimRight(b, " \t\r\n") }

// checkLevels holds ValidatePacketLevels and ValidatePacketAt to ValidatePacket and
// to the encoding/json reference on one body.
func checkLevels(t *testing.T, body []byte) {
	t.Helper()
	var want Packet
	wantErr := ValidatePacket(body, &want)

	var p Packet
	lv := presetLevels
	err := ValidatePacketLevels(body, &p, &lv)
	if err != wantErr {
		t.Fatalf("%q: ValidatePacketLevels %v, ValidatePacket %v", body, err, wantErr)
	}
	if err != nil {
		if lv != presetLevels {
			t.Fatalf("%q: levels changed to %v on error %v", body, lv, err)
		}
	} else {
		samePacket(t, body, &p, &want)
		got := sub(lv, presetLevels)
		if ref := levelsByJSON(t, body); got != ref {
			t.Fatalf("%q: levels %v, encoding/json %v", body, got, ref)
		}
		if got.Total() != want.Messages {
			t.Fatalf("%q: %d levels counted, %d messages", body, got.Total(), want.Messages)
		}
	}

	// In place: alone, and inside a larger buffer that goes on after the packet.
	lvAt := presetLevels
	end, errAt := ValidatePacketAt(body, 0, &p, &lvAt)
	var pNil Packet
	endNil, errNil := ValidatePacketAt(body, 0, &pNil, nil)
	if errNil != errAt || endNil != end || (errAt == nil && !bytes.Equal(pNil.ID, p.ID)) {
		t.Fatalf("%q: ValidatePacketAt with levels %d %v, without %d %v", body, end, errAt, endNil, errNil)
	}
	if errAt != nil {
		if wantErr != errAt || end != 0 || lvAt != presetLevels {
			t.Fatalf("%q: ValidatePacketAt %d %v (levels %v), ValidatePacket %v", body, end, errAt, lvAt, wantErr)
		}
		return
	}
	if end <= 0 || end > len(body) || body[end-1] != '}' {
		t.Fatalf("%q: ValidatePacketAt ended at %d", body, end)
	}
	restIsSpace := len(trimSpaceRight(body[end:])) == 0
	if restIsSpace != (wantErr == nil) {
		t.Fatalf("%q: ValidatePacketAt ended at %d, ValidatePacket %v", body, end, wantErr)
	}
	if wantErr == nil {
		samePacket(t, body, &p, &want)
		if lvAt != lv {
			t.Fatalf("%q: ValidatePacketAt levels %v, ValidatePacketLevels %v", body, lvAt, lv)
		}
	}
	for _, frame := range [][2]string{{"", ""}, {"[", "]"}, {`[{"packet_id":"x"}, `, `,{}]`}, {" \n\t", "}}}\"\\"}} {
		buf := append(append([]byte(frame[0]), body...), frame[1]...)
		var pIn Packet
		lvIn := presetLevels
		endIn, errIn := ValidatePacketAt(buf, len(frame[0]), &pIn, &lvIn)
		if errIn != nil || endIn != len(frame[0])+end || lvIn != lvAt || !bytes.Equal(pIn.ID, p.ID) || pIn.Messages != p.Messages {
			t.Fatalf("%q inside %q: end %d %v levels %v, alone %d levels %v", body, frame, endIn, errIn, lvIn, end, lvAt)
		}
	}
}

func samePacket(t *testing.T, body []byte, got, want *Packet) {
	t.Helper()
	if !bytes.Equal(got.ID, want.ID) || !bytes.Equal(got.EmitterID, want.EmitterID) ||
		(got.EmitterID == nil) != (want.EmitterID == nil) || got.Messages != want.Messages {
		t.Fatalf("%q: packet %+v, ValidatePacket %+v", body, got, want)
	}
}

// levelsPacket is a valid packet whose messages have the given levels, with
// "level" also appearing where it must not be counted.
func levelsPacket(id string, levels ...string) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"emitter_id":"e1","packet_id":%q,"messages":[`, id)
	for i, l := range levels {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"timestamp":1640995200000,"level":%q,"message":"m%d","metadata":{"level":"not this one","n":[1,{"level":"nor this"}]}}`, l, i)
	}
	b.WriteString(`]}`)
	return b.String()
}

var levelsBodies = []string{
	levelsPacket("p", "INFO"),
	levelsPacket("p", "INFO", "ERROR", "warn", "Warning", "err", "x", "FATAL", "trace", "DEBUG"),
	// Keys in any order, "level" inside metadata and strings, escapes, whitespace.
	`{ "messages" : [ { "metadata" : { "level" : "ERROR" , "x" : "\"level\":\"ERROR\"" } , "message" : "level" ,
	   "level" : "DEBUG" , "timestamp" : "2024" } , {"level":"INFO","timestamp":1,"message":"]}\"}"} ] ,
	   "packet_id" : "p" }  ` + "\n",
	`{"packet_id":"p","before":{"messages":[{"level":"FATAL"}]},"messages":[{"timestamp":1500,"message":"","level":"WARN","metadata":null}]}`,
	`{"packet_id":"p","messages":[{"timestamp":1,"message":"m","level":"\u0049NFO"}]}`, // escaped value: OTHER
	`{"packet_id":"p","messages":[{"timestamp":1,"message":"m","lev\u0065l":"INFO"}]}`, // escaped key: still the level
	`{"packet_id":"p","m\u0065ssages":[{"timestamp":1,"message":"m","level":"WARN"}]}`, // and still the messages
	`{"packet_id":"p","messages":[{"timestamp":1,"message":"m","level":"INFO\\"}]}`,
	`{"packet_id":"p","messages":[{"timestamp":1,"message":"m","level":""},{"timestamp":1,"message":"m","level":"ınfo"}]}`,
	string(benchPacket),
	// Invalid: the count must not leak.
	`{"packet_id":"p","messages":[{"timestamp":1,"message":"m","level":"INFO"},{"timestamp":1,"message":"m"}]}`,
	`{"packet_id":"p","messages":[{"timestamp":1,"message":"m","level":"INFO"}]} x`,
	`{"packet_id":"p","messages":[{"timestamp":1,"message":"m","level":"INFO"}],"packet_id":"q"}`,
	`{"messages":[{"timestamp":1,"message":"m","level":"INFO"}]}`,
	`{"packet_id":"p","messages":[{"timestamp":1,"message":"m","level":"INFO"}]`,
	`[{"packet_id":"p","messages":[{"timestamp":1,"message":"m","level":"INFO"}]}]`,
	``, ` `, `{`, `}`, `"x"`,
}

func TestValidatePacketLevels(t *testing.T) {
	for _, b := range levelsBodies {
		checkLevels(t, []byte(b))
	}
	for _, tc := range []struct {
		body string
		want Levels
	}{
		{levelsBodies[1], Levels{LevelTrace: 1, LevelDebug: 1, LevelInfo: 1, LevelWarn: 2, LevelError: 2, LevelFatal: 1, LevelOther: 1}},
		{levelsBodies[4], Levels{LevelOther: 1}},
		{levelsBodies[5], Levels{LevelInfo: 1}},
		{levelsBodies[6], Levels{LevelWarn: 1}},
		{levelsBodies[8], Levels{LevelOther: 2}},
		{string(benchPacket), Levels{LevelInfo: 2, LevelWarn: 1, LevelError: 1, LevelDebug: 1}},
	} {
		var p Packet
		var lv Levels
		if err := ValidatePacketLevels([]byte(tc.body), &p, &lv); err != nil || lv != tc.want {
			t.Errorf("%s: levels %v (%v), want %v", tc.body, lv, err, tc.want)
		}
	}
}

func TestValidatePacketAtBatch(t *testing.T) {
	p1, p2 := levelsPacket("1", "INFO", "WARN"), levelsPacket("2", "err")
	b := []byte("[" + p1 + " ,\n" + p2 + "]")
	var p Packet
	var lv Levels
	end, err := ValidatePacketAt(b, 1, &p, &lv)
	if err != nil || end != 1+len(p1) || string(p.ID) != "1" || lv != (Levels{LevelInfo: 1, LevelWarn: 1}) {
		t.Fatalf("first: %d %v %s %v", end, err, p.ID, lv)
	}
	end, err = ValidatePacketAt(b, end+2, &p, &lv) // from the whitespace after ','
	if err != nil || end != len(b)-1 || string(p.ID) != "2" || lv != (Levels{LevelInfo: 1, LevelWarn: 1, LevelError: 1}) {
		t.Fatalf("second: %d %v %s %v", end, err, p.ID, lv)
	}
	if end, err = ValidatePacketAt(b, len(b), &p, &lv); err != errInvalidJSON || end != 0 {
		t.Fatalf("past the end: %d %v", end, err)
	}
}

func TestValidatePacketLevelsAllocs(t *testing.T) {
	var p Packet
	var lv Levels
	bad := []byte(`{"packet_id":"a","messages":[{"timestamp":1,"level":3,"message":"m"}]}`)
	allocs := testing.AllocsPerRun(100, func() {
		_ = ValidatePacketLevels(benchPacket, &p, &lv)
		_ = ValidatePacketLevels(bad, &p, &lv)
		_, _ = ValidatePacketAt(benchPacket, 0, &p, &lv)
		_, _ = ValidatePacketAt(benchPacket, 0, &p, nil)
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per run", allocs)
	}
}

// FuzzValidatePacketLevels checks any body: ValidatePacketLevels and ValidatePacketAt
// agree with ValidatePacket, and on a valid packet the levels agree with
// encoding/json.
func FuzzValidatePacketLevels(f *testing.F) {
	for _, b := range levelsBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkLevels(t, body)
	})
}

// FuzzValidatePacketLevelsStrings builds valid packets around fuzzed strings
// (levels, text, keys and values that may themselves say "level"), so that most
// inputs reach the comparison with encoding/json.
func FuzzValidatePacketLevelsStrings(f *testing.F) {
	f.Add("INFO", "warn", `"level":"ERROR"`, "level", "{[\\\"")
	f.Add("", "WARNING", "]}", "messages", "FATAL")
	f.Add("\\u0045RR", "Err", "}", "lev\\u0065l", "trace")
	f.Fuzz(func(t *testing.T, l1, l2, text, key, value string) {
		q := func(s string) string {
			b, _ := json.Marshal(s) // invalid UTF-8 becomes U+FFFD: still a valid string
			return string(b)
		}
		body := fmt.Sprintf(`{"packet_id":"p","x":{%s:[%s]},"messages":[`+
			`{"level":%s,"message":%s,"timestamp":1,"metadata":{%s:%s,"n":{%s:[%s]}}},`+
			`{"metadata":null,%s:%s,"timestamp":"t","message":"","level":%s},`+
			`{"message":"","level":"%s","timestamp":2}]}`,
			q(key), q(value), q(l1), q(text), q(key), q(value), q(key), q(value), q(key+"_"), q(value), q(l2), l1)
		checkLevels(t, []byte(body))
	})
}

func BenchmarkValidatePacketLevels(b *testing.B) {
	var p Packet
	var lv Levels
	b.SetBytes(int64(len(benchPacket)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ValidatePacketLevels(benchPacket, &p, &lv); err != nil || p.Messages != 5 {
			b.Fatal(err)
		}
	}
	if lv[LevelInfo] == 0 {
		b.Fatal(lv)
	}
}
