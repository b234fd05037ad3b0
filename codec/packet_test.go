package codec

import (
	"encoding/json"
	"math/bits"
	"strings"
	"testing"

	"github.com/bytedance/sonic"
)

// benchPacket is a realistic 5-message packet of ~1.1 KB, shaped like the emitter's.
var benchPacket = []byte(`{"emitter_id":"emitter-7","packet_id":"pkt-000123456-7f3a","messages":[` +
	`{"timestamp":1640995200000,"level":"INFO","message":"user login succeeded for account 8812","metadata":{"service":"auth","host":"auth-3","region":"eu-west-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}},` +
	`{"timestamp":1640995200013,"level":"WARN","message":"slow query on orders table took 812ms","metadata":{"service":"orders","host":"orders-1","region":"eu-west-1","trace_id":"00f067aa0ba902b7a3ce929d0e0e4736"}},` +
	`{"timestamp":1640995200021,"level":"ERROR","message":"payment gateway timeout after 3 retries","metadata":{"service":"payments","host":"pay-2","region":"eu-west-1","trace_id":"a3ce929d0e0e47364bf92f3577b34da6"}},` +
	`{"timestamp":1640995200034,"level":"DEBUG","message":"cache miss for key session:9f8e7d6c","metadata":{"service":"sessions","host":"sess-4","region":"eu-west-1","trace_id":"0e0e47364bf92f3577b34da6a3ce929d"}},` +
	`{"timestamp":1640995200050,"level":"INFO","message":"health check ok","metadata":{"service":"gateway","host":"gw-1","region":"eu-west-1","trace_id":"77b34da6a3ce929d0e0e47364bf92f35"}}]}`)

const oneMsg = `{"timestamp":1,"level":"INFO","message":"m"}`

func TestValidatePacketAccepts(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		id        string
		emitterID string
		messages  int
	}{
		{"seed example", `{"emitter_id":"e1","packet_id":"p-1","messages":[{"timestamp":1640995200000,"level":"INFO","message":"hi","metadata":{"k":"v"}}]}`, "p-1", "e1", 1},
		{"realistic 5 messages", string(benchPacket), "pkt-000123456-7f3a", "emitter-7", 5},
		{"no emitter, no metadata", `{"packet_id":"a","messages":[` + oneMsg + `]}`, "a", "", 1},
		{"emitter null", `{"packet_id":"a","emitter_id":null,"messages":[` + oneMsg + `]}`, "a", "", 1},
		{"metadata null", `{"packet_id":"a","messages":[{"timestamp":1,"level":"I","message":"m","metadata":null}]}`, "a", "", 1},
		{"metadata nested", `{"packet_id":"a","messages":[{"timestamp":1,"level":"I","message":"m","metadata":{"a":{"b":[1,{"c":"]}"}],"d":null},"e":[]}}]}`, "a", "", 1},
		{"timestamp string", `{"packet_id":"a","messages":[{"timestamp":"2023-01-01T00:00:00Z","level":"I","message":"m"}]}`, "a", "", 1},
		{"timestamp zero", `{"packet_id":"a","messages":[{"timestamp":0,"level":"I","message":"m"}]}`, "a", "", 1},
		{"timestamp 2^53-1", `{"packet_id":"a","messages":[{"timestamp":9007199254740991,"level":"I","message":"m"}]}`, "a", "", 1},
		{"whitespace everywhere", " \t\r\n{ \"packet_id\" :\n\"a\" ,\t\"messages\" : [ { \"timestamp\" : 1 , \"level\" : \"I\" , \"message\" : \"m\" } , \n" + oneMsg + " ] } \n", "a", "", 2},
		{"unicode id", `{"packet_id":"пакет-✓-😀","messages":[` + oneMsg + `]}`, "пакет-✓-😀", "", 1},
		{"escaped id kept raw", `{"packet_id":"a\"b\\c\u00e9\n","emitter_id":"\ud83d\ude00","messages":[` + oneMsg + `]}`, `a\"b\\c\u00e9\n`, `\ud83d\ude00`, 1},
		{"unknown fields everywhere", `{"x":[{"packet_id":1}],"packet_id":"a","y":{"messages":"no"},"messages":[{"timestamp":1,"level":"I","message":"m","extra":true,"more":[null,false]}],"z":-1}`, "a", "", 1},
		{"key order free", `{"messages":[{"metadata":{},"message":"m","level":"I","timestamp":2}],"packet_id":"a"}`, "a", "", 1},
		{"escaped key is the key", `{"packet\u005fid":"a","m\u0065ssages":[{"timestamp":1,"lev\u0065l":"I","message":"m"}]}`, "a", "", 1},
		{"strings holding brackets and quotes", `{"packet_id":"a","messages":[{"timestamp":1,"level":"}]","message":"\"{[","metadata":{"k":"\\"}}]}`, "a", "", 1},
		{"metadata holding every kind of value", `{"packet_id":"a","messages":[{"timestamp":0,"level":"I","message":"m","metadata":{"n":[0,-0,1.5,-2E-3,3e+10,123456789012345678901234567890],"l":[true,false,null],"e":[{},[],""],"u":"\u00e9\ud83d\ude00\/\b\f\n\r\t"}}]}`, "a", "", 1},
		{"many messages", `{"packet_id":"a","messages":[` + strings.Repeat(oneMsg+",", 99) + oneMsg + `]}`, "a", "", 100},
		{"empty strings allowed for level and message", `{"packet_id":"a","messages":[{"timestamp":"","level":"","message":""}]}`, "a", "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			if err := ValidatePacket([]byte(tt.body), &p); err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if string(p.ID) != tt.id || string(p.EmitterID) != tt.emitterID || p.Messages != tt.messages {
				t.Fatalf("got id=%q emitter=%q messages=%d, want %q %q %d", p.ID, p.EmitterID, p.Messages, tt.id, tt.emitterID, tt.messages)
			}
		})
	}
}

func TestValidatePacketRejects(t *testing.T) {
	msgs := `,"messages":[` + oneMsg + `]}`
	tests := []struct {
		name   string
		body   string
		reason string
	}{
		{"empty", ``, "invalid JSON"},
		{"truncated", `{"packet_id":"a"`, "invalid JSON"},
		{"trailing garbage", `{"packet_id":"a"` + msgs + `x`, "invalid JSON"},
		{"trailing comma", `{"packet_id":"a","messages":[` + oneMsg + `,]}`, "invalid JSON"},
		{"raw control char in string", "{\"packet_id\":\"a\x01\"" + msgs, "invalid JSON"},
		{"raw tab in string", "{\"packet_id\":\"a\",\"messages\":[{\"timestamp\":1,\"level\":\"I\",\"message\":\"a\tb\"}]}", "invalid JSON"},
		{"unknown escape", `{"packet_id":"a\x"` + msgs, "invalid JSON"},
		{"short unicode escape", `{"packet_id":"a\u12"` + msgs, "invalid JSON"},
		{"bad escape inside metadata", `{"packet_id":"a","messages":[{"timestamp":1,"level":"I","message":"m","metadata":{"k":"\q"}}]}`, "invalid JSON"},
		{"byte order mark", "\xef\xbb\xbf{\"packet_id\":\"a\"" + msgs, "invalid JSON"},
		{"missing colon", `{"packet_id" "a"` + msgs, "invalid JSON"},
		{"missing comma", `{"packet_id":"a" "messages":[` + oneMsg + `]}`, "invalid JSON"},
		{"unquoted key", `{packet_id:"a"` + msgs, "invalid JSON"},
		{"second object", `{"packet_id":"a"` + msgs + `{}`, "invalid JSON"},
		{"closing bracket mismatch", `{"packet_id":"a","messages":[` + oneMsg + `}}`, "invalid JSON"},
		{"unclosed string", `{"packet_id":"a`, "invalid JSON"},
	}
	for _, bad := range []string{"01", "-", "+1", "1.", ".5", "1e", "1e+", "--1", "0x1", "1.e3", "tru", "nul", "True", "NaN",
		"[1,]", "[,1]", "[1 2]", "{,}", `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1 "b":2}`, `{1:2}`, "[}", "{]", "[", "{", `{"a":[}`, `"\u00zz"`, "\"\x00\""} {
		tests = append(tests, struct {
			name   string
			body   string
			reason string
		}{"metadata " + bad, `{"packet_id":"a","messages":[{"timestamp":1,"level":"I","message":"m","metadata":{"k":` + bad + `}}]}`, "invalid JSON"})
	}
	tests = append(tests, []struct {
		name   string
		body   string
		reason string
	}{
		{"array", `[` + oneMsg + `]`, "packet must be a JSON object"},
		{"string", `"packet"`, "packet must be a JSON object"},
		{"missing packet_id", `{"emitter_id":"e"` + msgs, "packet_id must be a non-empty string"},
		{"empty packet_id", `{"packet_id":""` + msgs, "packet_id must be a non-empty string"},
		{"numeric packet_id", `{"packet_id":7` + msgs, "packet_id must be a non-empty string"},
		{"null packet_id", `{"packet_id":null` + msgs, "packet_id must be a non-empty string"},
		{"invalid utf8 packet_id", "{\"packet_id\":\"a\xff\"" + msgs, "packet_id must be valid UTF-8"},
		{"numeric emitter_id", `{"packet_id":"a","emitter_id":1` + msgs, "emitter_id must be a string"},
		{"missing messages", `{"packet_id":"a"}`, "messages must be a non-empty array"},
		{"empty messages", `{"packet_id":"a","messages":[]}`, "messages must be a non-empty array"},
		{"messages object", `{"packet_id":"a","messages":{}}`, "messages must be a non-empty array"},
		{"messages null", `{"packet_id":"a","messages":null}`, "messages must be a non-empty array"},
		{"message not object", `{"packet_id":"a","messages":[` + oneMsg + `,"m"]}`, "message: must be an object"},
		{"missing timestamp", `{"packet_id":"a","messages":[{"level":"I","message":"m"}]}`, "message: timestamp must be a number or a string"},
		{"bool timestamp", `{"packet_id":"a","messages":[{"timestamp":true,"level":"I","message":"m"}]}`, "message: timestamp must be a number or a string"},
		{"null timestamp", `{"packet_id":"a","messages":[{"timestamp":null,"level":"I","message":"m"}]}`, "message: timestamp must be a number or a string"},
		{"missing level", `{"packet_id":"a","messages":[{"timestamp":1,"message":"m"}]}`, "message: level must be a string"},
		{"numeric level", `{"packet_id":"a","messages":[` + oneMsg + `,{"timestamp":1,"level":3,"message":"m"}]}`, "message: level must be a string"},
		{"missing message", `{"packet_id":"a","messages":[{"timestamp":1,"level":"I"}]}`, "message: message must be a string"},
		{"object message", `{"packet_id":"a","messages":[{"timestamp":1,"level":"I","message":{}}]}`, "message: message must be a string"},
		{"array metadata", `{"packet_id":"a","messages":[{"timestamp":1,"level":"I","message":"m","metadata":[]}]}`, "message: metadata must be an object or null"},
		{"string metadata", `{"packet_id":"a","messages":[{"timestamp":1,"level":"I","message":"m","metadata":"x"}]}`, "message: metadata must be an object or null"},
		{"duplicate packet_id", `{"packet_id":"a","packet_id":"b"` + msgs, "duplicate key packet_id"},
		{"duplicate packet_id via escape", `{"packet_id":"a","packet\u005fid":"b"` + msgs, "duplicate key packet_id"},
		{"duplicate messages", `{"packet_id":"a","messages":[` + oneMsg + `]` + msgs, "duplicate key messages"},
		{"duplicate emitter_id", `{"packet_id":"a","emitter_id":"x","emitter_id":"y"` + msgs, "duplicate key emitter_id"},
		{"duplicate level", `{"packet_id":"a","messages":[{"timestamp":1,"level":"I","level":"W","message":"m"}]}`, "message: duplicate key level"},
		{"case variant packet_id", `{"Packet_ID":"a"` + msgs, "key must be spelled packet_id exactly"},
		{"kelvin sign variant", `{"pac\u212aet_id":"a"` + msgs, "key must be spelled packet_id exactly"},
		{"long s variant", `{"packet_id":"a","meſſages":[` + oneMsg + `]}`, "key must be spelled messages exactly"},
		{"case variant level", `{"packet_id":"a","messages":[{"timestamp":1,"LEVEL":"I","message":"m"}]}`, "message: key must be spelled level exactly"},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			err := ValidatePacket([]byte(tt.body), &p)
			if err == nil {
				t.Fatalf("accepted %q", tt.body)
			}
			e, ok := err.(*Error)
			if !ok || e.Status != 400 || e.Reason != tt.reason {
				t.Fatalf("got %#v, want 400 %q", err, tt.reason)
			}
		})
	}
}

// Reasons go into JSON bodies verbatim.
func TestValidationReasonsArePlainASCII(t *testing.T) {
	all := []*Error{errInvalidJSON, errNotObject, errPacketID, errPacketIDUTF8, errEmitterID, errEmitterIDUTF8,
		errMessages, errMessageNotObject, errTimestamp, errLevel, errMessageText, errMetadata,
		errStringUTF8, errSurrogate, errNumberRange, errTimestampInteger, errDuplicateOther, errDuplicateMsgKey,
		errDuplicateMeta, errTooManyKeys, errTooManyMsgKeys, errTooManyMetaKeys, errTooLarge}
	for k := pkKeyPacketID; k < pkNumKeys; k++ {
		all = append(all, errDuplicateKey[k], errCaseVariantKey[k])
	}
	for _, e := range all {
		if e == nil || e.Reason == "" {
			t.Fatalf("missing error in %v", all)
		}
		for _, c := range []byte(e.Reason) {
			if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
				t.Fatalf("reason %q has byte %q", e.Reason, c)
			}
		}
	}
}

// jsonSpecialMask's lowest flag must name the first special byte exactly, whatever
// precedes or follows it.
func TestSpecialMaskFindsFirstSpecialByte(t *testing.T) {
	fillers := []byte{'a', ' ', '!', '#', '[', ']', 0x7f}
	for c := 0; c < 256; c++ {
		special := c < 0x20 || c == '"' || c == '\\' || c >= 0x80
		for pos := 0; pos < 8; pos++ {
			for _, fill := range fillers {
				w := []byte{fill, fill, fill, fill, fill, fill, fill, fill}
				w[pos] = byte(c)
				for after := pos + 1; after < 8; after++ {
					w[after] = 0x01 // later specials must not move the first hit
				}
				m := jsonSpecialMask(loadLE64(w))
				first := bits.TrailingZeros64(m) >> 3
				if special && first != pos || !special && m != 0 && first <= pos {
					t.Fatalf("byte %#x at %d among %#x: mask %#x", c, pos, fill, m)
				}
			}
		}
	}
	if jsonSpecialMask(loadLE64([]byte("\x7f ~!#az["))) != 0 {
		t.Fatal("plain ASCII flagged")
	}
	if m := jsonSpecialMask(loadLE64([]byte("abc\x80\xff\x00\"\\"))); bits.TrailingZeros64(m)>>3 != 3 {
		t.Fatalf("non-ASCII not flagged first: %#x", m)
	}
}

func TestValidatePacketAllocs(t *testing.T) {
	var p Packet
	bad := []byte(`{"packet_id":"a","messages":[{"timestamp":1,"level":3,"message":"m"}]}`)
	allocs := testing.AllocsPerRun(100, func() {
		_ = ValidatePacket(benchPacket, &p)
		_ = ValidatePacket(bad, &p)
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per run", allocs)
	}
}

// fuzzReference decodes body with encoding/json the way a reference analyzer would.
type fuzzReference struct {
	PacketID  string            `json:"packet_id"`
	EmitterID *string           `json:"emitter_id"`
	Messages  []json.RawMessage `json:"messages"`
}

func FuzzValidatePacket(f *testing.F) {
	f.Add(benchPacket)
	f.Add([]byte(`{"emitter_id":"e1","packet_id":"p-1","messages":[{"timestamp":1640995200000,"level":"INFO","message":"hi","metadata":{"k":"v"}}]}`))
	f.Add([]byte(`{"packet_id":"a\"b\\c\u00e9","messages":[{"timestamp":"t","level":"I","message":"m","metadata":null},` + oneMsg + `]}`))
	f.Add([]byte(`{"packet\u005fid":"\ud83d\ude00","messages":[{"timestamp":1500,"level":"","message":"","metadata":{"a":[{"b":"]}"}]}}]}`))
	f.Add([]byte(`{"Packet_ID":"a","messages":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var p Packet
		err := ValidatePacket(body, &p)
		if err != nil {
			if e, ok := err.(*Error); !ok || e.Status != 400 || e.Reason == "" {
				t.Fatalf("bad error %#v", err)
			}
			// The grammar is encoding/json's, except for nesting beyond our bound.
			if err == errInvalidJSON && json.Valid(body) && nestingDepth(body) <= jsonMaxDepth {
				t.Fatalf("rejected valid JSON %q", body)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		var ref fuzzReference
		if err := json.Unmarshal(body, &ref); err != nil {
			t.Fatalf("accepted %q, encoding/json says %v", body, err)
		}
		if len(ref.Messages) != p.Messages {
			t.Fatalf("%q: %d messages, encoding/json counts %d", body, p.Messages, len(ref.Messages))
		}
		var id string
		if err := json.Unmarshal([]byte(`"`+string(p.ID)+`"`), &id); err != nil || id != ref.PacketID || id == "" {
			t.Fatalf("%q: packet_id raw %q decodes to %q (%v), encoding/json has %q", body, p.ID, id, err, ref.PacketID)
		}
		if p.EmitterID != nil {
			var eid string
			if err := json.Unmarshal([]byte(`"`+string(p.EmitterID)+`"`), &eid); err != nil || ref.EmitterID == nil || eid != *ref.EmitterID {
				t.Fatalf("%q: emitter_id raw %q decodes to %q (%v)", body, p.EmitterID, eid, err)
			}
		}
		for _, m := range ref.Messages {
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(m, &fields); err != nil {
				t.Fatalf("%q: message %s is not an object: %v", body, m, err)
			}
			for _, k := range []string{"timestamp", "level", "message"} {
				if _, ok := fields[k]; !ok {
					t.Fatalf("%q: message %s lacks %s", body, m, k)
				}
			}
		}
	})
}

// nestingDepth is the deepest bracket nesting of a valid JSON text.
func nestingDepth(b []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && (c == '{' || c == '['):
			depth++
			deepest = max(deepest, depth)
		case !inString && (c == '}' || c == ']'):
			depth--
		}
	}
	return deepest
}

func TestValidatePacketDeepNesting(t *testing.T) {
	nest := func(n int) string { return strings.Repeat(`[`, n) + strings.Repeat(`]`, n) }
	ok := `{"packet_id":"a","messages":[{"timestamp":1,"level":"I","message":"m","metadata":{"x":` + nest(jsonMaxDepth-1) + `}}]}`
	var p Packet
	if err := ValidatePacket([]byte(ok), &p); err != nil {
		t.Fatalf("depth %d rejected: %v", jsonMaxDepth, err)
	}
	deep := `{"packet_id":"a","messages":[{"timestamp":1,"level":"I","message":"m","metadata":{"x":` + nest(jsonMaxDepth) + `}}]}`
	if err := ValidatePacket([]byte(deep), &p); err != errInvalidJSON {
		t.Fatalf("depth %d: %v", jsonMaxDepth+1, err)
	}
}

func BenchmarkValidatePacket(b *testing.B) {
	var p Packet
	b.SetBytes(int64(len(benchPacket)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ValidatePacket(benchPacket, &p); err != nil || p.Messages != 5 {
			b.Fatal(err)
		}
	}
}

// BenchmarkSonicUnmarshalCount is the baseline ValidatePacket has to beat: sonic
// decoding only what is needed to count messages.
func BenchmarkSonicUnmarshalCount(b *testing.B) {
	type countOnly struct {
		PacketID string     `json:"packet_id"`
		Messages []struct{} `json:"messages"`
	}
	b.SetBytes(int64(len(benchPacket)))
	b.ReportAllocs()
	for b.Loop() {
		var c countOnly
		if err := sonic.Unmarshal(benchPacket, &c); err != nil || len(c.Messages) != 5 {
			b.Fatal(err)
		}
	}
}

// BenchmarkSonicValid is the grammar pass alone, to show what the walk adds.
func BenchmarkSonicValid(b *testing.B) {
	b.SetBytes(int64(len(benchPacket)))
	b.ReportAllocs()
	for b.Loop() {
		if !sonic.Valid(benchPacket) {
			b.Fatal()
		}
	}
}
