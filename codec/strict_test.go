package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// msgWith is a valid one-message packet with the given metadata and extra message
// members (each a `,"k":v` fragment or empty).
func msgWith(metadata, extra string) string {
	return `{"packet_id":"a","messages":[{"timestamp":1,"level":"I","message":"m","metadata":` + metadata + extra + `}]}`
}

func manyKeys(n int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k` + strconv.Itoa(i) + `":` + strconv.Itoa(i))
	}
	b.WriteByte('}')
	return b.String()
}

// Issue #18: what RFC 8259 leaves open is refused.
func TestValidatePacketStrictRejects(t *testing.T) {
	const msgs = `,"messages":[` + oneMsg + `]}`
	for _, tt := range []struct {
		name, body, reason string
	}{
		{"invalid UTF-8 in message", "{\"packet_id\":\"a\",\"messages\":[{\"timestamp\":1,\"level\":\"I\",\"message\":\"a\xffb\"}]}", "string is not valid UTF-8"},
		{"invalid UTF-8 in level", "{\"packet_id\":\"a\",\"messages\":[{\"timestamp\":1,\"level\":\"\xc3\",\"message\":\"m\"}]}", "string is not valid UTF-8"},
		{"invalid UTF-8 in metadata key", msgWith("{\"\xe2\x82\":1}", ""), "string is not valid UTF-8"},
		{"invalid UTF-8 in nested metadata", msgWith("{\"k\":[\"ok\",{\"x\":\"\x80\"}]}", ""), "string is not valid UTF-8"},
		{"invalid UTF-8 in unknown top-level key", "{\"\xfe\":1,\"packet_id\":\"a\"" + msgs, "string is not valid UTF-8"},
		{"overlong encoding", msgWith("{\"k\":\"\xc0\xaf\"}", ""), "string is not valid UTF-8"},
		{"UTF-8 encoded surrogate", msgWith("{\"k\":\"\xed\xa0\x80\"}", ""), "string is not valid UTF-8"},
		{"above U+10FFFF", msgWith("{\"k\":\"\xf4\x90\x80\x80\"}", ""), "string is not valid UTF-8"},
		{"truncated sequence at the end of 8 bytes", msgWith("{\"k\":\"abcdefg\xe2\x82\"}", ""), "string is not valid UTF-8"},
		{"invalid UTF-8 packet_id keeps its reason", "{\"packet_id\":\"a\xff\"" + msgs, "packet_id must be valid UTF-8"},
		{"invalid UTF-8 emitter_id keeps its reason", "{\"packet_id\":\"a\",\"emitter_id\":\"\xff\"" + msgs, "emitter_id must be valid UTF-8"},
		{"lone high surrogate in message", `{"packet_id":"a","messages":[{"timestamp":1,"level":"I","message":"x\ud800"}]}`, "string has a lone UTF-16 surrogate escape"},
		{"high surrogate then text", msgWith(`{"k":"\ud800abcdef"}`, ""), "string has a lone UTF-16 surrogate escape"},
		{"high surrogate then non-surrogate escape", msgWith(`{"k":"\ud800\u0041"}`, ""), "string has a lone UTF-16 surrogate escape"},
		{"two high surrogates", msgWith(`{"k":"\udbff\udbff"}`, ""), "string has a lone UTF-16 surrogate escape"},
		{"lone low surrogate", msgWith(`{"k":"\udc00"}`, ""), "string has a lone UTF-16 surrogate escape"},
		{"reversed pair", msgWith(`{"k":"\ude00\ud83d"}`, ""), "string has a lone UTF-16 surrogate escape"},
		{"lone surrogate in packet_id", `{"packet_id":"\uDFFF"` + msgs, "string has a lone UTF-16 surrogate escape"},
		{"lone surrogate in a key", `{"packet_id":"a","\ud800":1` + msgs, "string has a lone UTF-16 surrogate escape"},
		{"duplicate metadata key", msgWith(`{"k":"v","k":"w"}`, ""), "message: duplicate metadata key"},
		{"duplicate metadata key far apart", msgWith(`{"a":1,"k":{"k":1},"b":2,"k":null}`, ""), "message: duplicate metadata key"},
		{"duplicate metadata key by escape", msgWith(`{"k":"v","\u006b":"w"}`, ""), "message: duplicate metadata key"},
		{"duplicate metadata key, escaped one first", msgWith(`{"a":0,"\u006b":"v","b":1,"k":"w"}`, ""), "message: duplicate metadata key"},
		{"duplicate metadata key among same-signature keys", msgWith(`{"ab":1,"cb":2,"xb":3,"cb":4}`, ""), "message: duplicate metadata key"},
		{"duplicate metadata key, both escaped differently", msgWith(`{"\u00e9":1,"\u00E9":2}`, ""), "message: duplicate metadata key"},
		{"duplicate metadata key, raw and escaped non-ASCII", msgWith(`{"é":1,"\u00e9":2}`, ""), "message: duplicate metadata key"},
		{"duplicate metadata key, surrogate pair and raw", msgWith(`{"😀":1,"\ud83d\ude00":2}`, ""), "message: duplicate metadata key"},
		{"duplicate empty metadata key", msgWith(`{"":1,"":2}`, ""), "message: duplicate metadata key"},
		{"duplicate unknown message key", msgWith(`null`, `,"x":1,"x":2`), "message: duplicate key"},
		{"duplicate unknown top-level key", `{"x":1,"packet_id":"a","x":2` + msgs, "duplicate key"},
		{"duplicate unknown top-level key by escape", `{"x":1,"packet_id":"a","\u0078":2` + msgs, "duplicate key"},
		{"65 metadata keys", msgWith(manyKeys(65), ""), "message: too many metadata keys"},
		{"65 message keys", `{"packet_id":"a","messages":[{"timestamp":1,"level":"I","message":"m",` + manyKeys(62)[1:] + `]}`, "message: too many keys"},
		{"65 top-level keys", `{"packet_id":"a","messages":[` + oneMsg + `],` + manyKeys(63)[1:], "too many keys in packet object"},
		{"timestamp with exponent", `{"packet_id":"a","messages":[{"timestamp":1.6409952E+12,"level":"I","message":"m"}]}`, "message: numeric timestamp must be an integer from 0 to 9007199254740991"},
		{"timestamp with fraction", `{"packet_id":"a","messages":[{"timestamp":1640995200000.5,"level":"I","message":"m"}]}`, "message: numeric timestamp must be an integer from 0 to 9007199254740991"},
		{"timestamp 1.0", `{"packet_id":"a","messages":[{"timestamp":1.0,"level":"I","message":"m"}]}`, "message: numeric timestamp must be an integer from 0 to 9007199254740991"},
		{"timestamp negative", `{"packet_id":"a","messages":[{"timestamp":-1,"level":"I","message":"m"}]}`, "message: numeric timestamp must be an integer from 0 to 9007199254740991"},
		{"timestamp minus zero", `{"packet_id":"a","messages":[{"timestamp":-0,"level":"I","message":"m"}]}`, "message: numeric timestamp must be an integer from 0 to 9007199254740991"},
		{"timestamp 2^53", `{"packet_id":"a","messages":[{"timestamp":9007199254740992,"level":"I","message":"m"}]}`, "message: numeric timestamp must be an integer from 0 to 9007199254740991"},
		{"timestamp 17 digits", `{"packet_id":"a","messages":[{"timestamp":10000000000000000,"level":"I","message":"m"}]}`, "message: numeric timestamp must be an integer from 0 to 9007199254740991"},
		{"timestamp 1e400", `{"packet_id":"a","messages":[{"timestamp":1e400,"level":"I","message":"m"}]}`, "number out of float64 range"},
		{"timestamp still JSON first", `{"packet_id":"a","messages":[{"timestamp":1.,"level":"I","message":"m"}]}`, "invalid JSON"},
		{"timestamp leading zero is not JSON", `{"packet_id":"a","messages":[{"timestamp":01,"level":"I","message":"m"}]}`, "invalid JSON"},
		{"timestamp -01 is not JSON", `{"packet_id":"a","messages":[{"timestamp":-01,"level":"I","message":"m"}]}`, "invalid JSON"},
		{"metadata 1e400", msgWith(`{"n":1e400}`, ""), "number out of float64 range"},
		{"metadata -1E+309", msgWith(`{"n":[-1E+309]}`, ""), "number out of float64 range"},
		{"metadata 310 digits", msgWith(`{"n":1`+strings.Repeat("0", 309)+`}`, ""), "number out of float64 range"},
		{"metadata 2^1024-2^970 rounds to Inf", msgWith(`{"n":`+float64Overflow+`}`, ""), "number out of float64 range"},
		{"metadata 1.7976931348623159e308", msgWith(`{"n":1.7976931348623159e308}`, ""), "number out of float64 range"},
		{"metadata 0.1e310", msgWith(`{"n":0.1e310}`, ""), "number out of float64 range"},
		{"metadata 1e99999999999999999999", msgWith(`{"n":1e99999999999999999999}`, ""), "number out of float64 range"},
		{"unknown top-level field 1e400", `{"x":1e400,"packet_id":"a"` + msgs, "number out of float64 range"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			err := ValidatePacket([]byte(tt.body), &p)
			if e, ok := err.(*Error); !ok || e.Status != 400 || e.Reason != tt.reason {
				t.Fatalf("%q: got %v, want 400 %q", tt.body, err, tt.reason)
			}
			if ref := strictReference([]byte(tt.body)); ref == nil {
				t.Fatalf("%q: the reference accepts it", tt.body)
			}
		})
	}
}

func TestValidatePacketStrictAccepts(t *testing.T) {
	for _, tt := range []struct{ name, body string }{
		{"surrogate pair", msgWith(`{"k":"\ud83d\ude00","\uD83D\uDE00":1}`, "")},
		{"highest pair", msgWith(`{"k":"\udbff\udfff"}`, "")},
		{"escapes next to surrogates", msgWith(`{"k":"\n\ud800\udc00\u0041\ud800\udc00"}`, "")},
		{"BMP escapes around the surrogate block", msgWith(`{"k":"\ud7ff\ue000\uffff\u0000"}`, "")},
		{"raw UTF-8 of every length", msgWith(`{"k":"aé✓😀\u00e9","é✓😀":"\uffff"}`, "")},
		{"U+10FFFF raw", msgWith("{\"k\":\"\xf4\x8f\xbf\xbf\"}", "")},
		{"U+FFFD raw is a character", msgWith("{\"k\":\"\xef\xbf\xbd\"}", "")},
		{"escaped keys that differ", msgWith(`{"\u006b":1,"\u006B1":2,"k2":3,"K":4,"\u004b2":5}`, "")},
		{"keys with the same length and last byte", msgWith(`{"ab":1,"cb":2,"\u0078b":3,"db":4}`, "")},
		{"keys that differ in case or length", msgWith(`{"k":1,"K":2,"kk":3,"":4,"k ":5}`, "")},
		{"same key in nested objects", msgWith(`{"k":{"k":1},"j":[{"k":1},{"k":2}]}`, `,"x":{"k":1,"k2":{"k":2}}`)},
		{"same key at different levels", `{"k":1,"packet_id":"a","messages":[{"k":1,"timestamp":1,"level":"I","message":"m","metadata":{"k":1}},{"k":2,"timestamp":2,"level":"I","message":"m","metadata":{"k":1}}]}`},
		{"64 metadata keys", msgWith(manyKeys(64), "")},
		{"64 message keys", `{"packet_id":"a","messages":[{"timestamp":1,"level":"I","message":"m",` + manyKeys(61)[1:] + `]}`},
		{"64 top-level keys", `{"packet_id":"a","messages":[` + oneMsg + `],` + manyKeys(62)[1:]},
		{"timestamp 0", `{"packet_id":"a","messages":[{"timestamp":0,"level":"I","message":"m"}]}`},
		{"timestamp 2^53-1", `{"packet_id":"a","messages":[{"timestamp":9007199254740991,"level":"I","message":"m"}]}`},
		{"timestamp string", `{"packet_id":"a","messages":[{"timestamp":"1e400","level":"I","message":"m"}]}`},
		{"max float64", msgWith(`{"n":[1.7976931348623157e308,-1.7976931348623157E+308,1.7976931348623158e308]}`, "")},
		{"just below the overflow bound", msgWith(`{"n":`+float64Overflow[:308]+`1}`, "")},
		{"309 digits", msgWith(`{"n":`+strings.Repeat("9", 308)+`}`, "")},
		{"underflow is zero", msgWith(`{"n":[1e-400,4.9e-324,-1e-99999999999999999999]}`, "")},
		{"zero with any exponent", msgWith(`{"n":[0e400,0.000e99999,-0E+999]}`, "")},
		{"big exponent, small value", msgWith(`{"n":[0.000001e313,1000e305,`+"0."+strings.Repeat("0", 400)+`1e708]}`, "")},
		{"other numbers are unconstrained", msgWith(`{"n":[-1,1.5,123456789012345678901234567890,-0.5e-3]}`, `,"x":1e308`)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			if err := ValidatePacket([]byte(tt.body), &p); err != nil {
				t.Fatalf("%q: %v", tt.body, err)
			}
			if err := strictReference([]byte(tt.body)); err != nil {
				t.Fatalf("%q: the reference refuses it: %v", tt.body, err)
			}
		})
	}
}

func TestValidatePacketStrictAllocs(t *testing.T) {
	var p Packet
	bodies := [][]byte{
		[]byte(msgWith(manyKeys(64), `,"x":1,"\u0079":2`)),
		[]byte(msgWith(`{"k":1,"\u006b":2}`, "")),
		[]byte(msgWith(`{"k":"\ud800"}`, "")),
		[]byte(msgWith(`{"n":`+float64Overflow+`}`, "")),
		[]byte(msgWith("{\"k\":\"\xff\"}", "")),
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, b := range bodies {
			_ = ValidatePacket(b, &p)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per run", allocs)
	}
}

// strictReference is a strict packet reader built from the standard library, the
// reference FuzzValidatePacketStrict holds ValidatePacket to: encoding/json's
// grammar, utf8.Valid, a lone surrogate check, duplicate keys found by walking
// json.Decoder tokens (decoded, so escapes compare by value) in the packet object,
// each message and each metadata object, numbers checked with strconv, and the
// schema. nil means valid. Its limits are ValidatePacket's (MaxObjectKeys,
// jsonMaxDepth), so they are not differences.
func strictReference(body []byte) error {
	if !json.Valid(body) {
		return errors.New("invalid JSON")
	}
	if nestingDepth(body) > jsonMaxDepth {
		return errRefLimit // ValidatePacket's bound counts from a value below the packet's levels
	}
	if !utf8.Valid(body) { // outside strings, valid JSON is ASCII
		return errors.New("invalid UTF-8")
	}
	if loneSurrogate(body) {
		return errors.New("lone surrogate")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	return refValue(dec, refPacket)
}

// errRefLimit is a body nested deeper than jsonMaxDepth: ValidatePacket may accept
// it or not (the bound counts from the metadata object or an unknown field's value,
// not from the packet), so FuzzValidatePacketStrict does not compare.
var errRefLimit = errors.New("nested beyond jsonMaxDepth")

const (
	refOther = iota
	refPacket
	refMessages
	refMessage
	refMetadata
)

var refKnown = map[int][]string{
	refPacket:  {"packet_id", "emitter_id", "messages"},
	refMessage: {"timestamp", "level", "message", "metadata"},
}

// refValue reads one value in the given role from dec.
func refValue(dec *json.Decoder, role int) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			n := 0
			for dec.More() {
				elem := refOther
				if role == refMessages {
					elem = refMessage
				}
				if err := refValue(dec, elem); err != nil {
					return err
				}
				n++
			}
			if role == refMessages && n == 0 {
				return errors.New("no messages")
			}
			if role != refOther && role != refMessages {
				return errors.New("wrong type")
			}
			_, err := dec.Token()
			return err
		}
		if role != refOther && role != refPacket && role != refMessage && role != refMetadata {
			return errors.New("wrong type")
		}
		keys := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			k := kt.(string)
			if role != refOther {
				if keys[k] {
					return errors.New("duplicate key")
				}
				if len(keys) == MaxObjectKeys {
					return errors.New("too many keys")
				}
			}
			keys[k] = true
			sub := refOther
			for _, name := range refKnown[role] {
				if k != name && strings.EqualFold(k, name) {
					return errors.New("case variant") // what encoding/json would take for name
				}
			}
			switch {
			case role == refPacket && k == "messages":
				sub = refMessages
			case role == refMessage && k == "metadata":
				sub = refMetadata
			case role == refPacket || role == refMessage:
				for _, name := range refKnown[role] {
					if k == name {
						if err := refField(dec, name); err != nil {
							return err
						}
						sub = -1
					}
				}
			}
			if sub >= 0 {
				if err := refValue(dec, sub); err != nil {
					return err
				}
			}
		}
		if _, err := dec.Token(); err != nil {
			return err
		}
		for _, name := range []string{"packet_id", "messages", "timestamp", "level", "message"} {
			if role == refPacket && (name == "packet_id" || name == "messages") && !keys[name] ||
				role == refMessage && (name == "timestamp" || name == "level" || name == "message") && !keys[name] {
				return errors.New("missing " + name)
			}
		}
		return nil
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil && math.IsInf(f, 0) {
			return errors.New("number out of range")
		}
		if role != refOther {
			return errors.New("wrong type")
		}
		return nil
	case nil:
		if role == refMetadata {
			return nil
		}
	}
	if role != refOther {
		return errors.New("wrong type")
	}
	return nil
}

// refField reads the scalar value of a known key other than messages and metadata.
func refField(dec *json.Decoder, name string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if _, ok := tok.(json.Delim); ok {
		return errors.New("wrong type") // a container where a scalar belongs (the grammar was checked first)
	}
	switch v := tok.(type) {
	case string:
		if name == "packet_id" && v == "" {
			return errors.New("empty packet_id")
		}
		return nil
	case json.Number:
		if f, err := strconv.ParseFloat(string(v), 64); err != nil && math.IsInf(f, 0) {
			return errors.New("number out of range")
		}
		if name != "timestamp" {
			return errors.New("wrong type")
		}
		t, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil || t > 1<<53-1 || string(v) != strconv.FormatUint(t, 10) {
			return errors.New("timestamp not an integer in range")
		}
		return nil
	case nil:
		if name == "emitter_id" {
			return nil
		}
	}
	return errors.New("wrong type")
}

// loneSurrogate reports whether a string of the valid JSON text b has a \u escape
// of a surrogate that is not half of a high-low pair.
func loneSurrogate(b []byte) bool {
	hex := func(i int) rune {
		r, err := strconv.ParseUint(string(b[i:i+4]), 16, 32)
		if err != nil {
			panic(err)
		}
		return rune(r)
	}
	inString := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inString && c == '\\':
			if b[i+1] != 'u' {
				i++
				continue
			}
			r := hex(i + 2)
			i += 5
			if r >= 0xDC00 && r < 0xE000 {
				return true
			}
			if r >= 0xD800 && r < 0xDC00 {
				if i+7 > len(b) || b[i+1] != '\\' || b[i+2] != 'u' {
					return true
				}
				if lo := hex(i + 3); lo < 0xDC00 || lo >= 0xE000 {
					return true
				}
				i += 6
			}
		case c == '"':
			inString = !inString
		}
	}
	return false
}

// FuzzValidatePacketStrict holds ValidatePacket to strictReference in both
// directions: a body one accepts the other accepts, with the same message count.
// The seed corpus (testdata/fuzz/FuzzValidatePacketStrict) holds the cases of issue
// #18: invalid UTF-8, lone surrogates, duplicate keys at each level, numbers out of
// range.
func FuzzValidatePacketStrict(f *testing.F) {
	f.Add(benchPacket)
	f.Add([]byte(msgWith(`{"k":"v","\u006b":"w"}`, "")))
	f.Add([]byte(msgWith(`{"k":"\ud83d\ude00","\ud800":1e400}`, `,"x":1,"x":2`)))
	f.Fuzz(func(t *testing.T, body []byte) {
		var p Packet
		err := ValidatePacket(body, &p)
		ref := strictReference(body)
		if ref == errRefLimit {
			return
		}
		if (err == nil) != (ref == nil) {
			t.Fatalf("%q: ValidatePacket %v, reference %v", body, err, ref)
		}
		if err == nil {
			var m struct{ Messages []json.RawMessage }
			if json.Unmarshal(body, &m) != nil || len(m.Messages) != p.Messages {
				t.Fatalf("%q: %d messages, encoding/json %d", body, p.Messages, len(m.Messages))
			}
		}
	})
}
