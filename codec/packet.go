package codec

import (
	"math/bits"
	"unicode"
	"unicode/utf8"

	"github.com/bytedance/sonic"
)

// Packet is what validation learns about a log packet. ID and EmitterID are the raw
// contents of the JSON strings (escapes left as they are, so they can be echoed into
// JSON unchanged) and alias the body.
type Packet struct {
	ID        []byte
	EmitterID []byte
	Messages  int
}

// Validation errors. Each is static so a rejected packet costs no allocation, and
// each Reason is plain ASCII without quotes or backslashes so it can be embedded in
// a JSON error body verbatim.
var (
	errInvalidJSON      = &Error{Status: 400, Reason: "invalid JSON"}
	errNotObject        = &Error{Status: 400, Reason: "packet must be a JSON object"}
	errPacketID         = &Error{Status: 400, Reason: "packet_id must be a non-empty string"}
	errPacketIDUTF8     = &Error{Status: 400, Reason: "packet_id must be valid UTF-8"}
	errEmitterID        = &Error{Status: 400, Reason: "emitter_id must be a string"}
	errEmitterIDUTF8    = &Error{Status: 400, Reason: "emitter_id must be valid UTF-8"}
	errMessages         = &Error{Status: 400, Reason: "messages must be a non-empty array"}
	errMessageNotObject = &Error{Status: 400, Reason: "message: must be an object"}
	errTimestamp        = &Error{Status: 400, Reason: "message: timestamp must be a number or a string"}
	errLevel            = &Error{Status: 400, Reason: "message: level must be a string"}
	errMessageText      = &Error{Status: 400, Reason: "message: message must be a string"}
	errMetadata         = &Error{Status: 400, Reason: "message: metadata must be an object or null"}
)

// Keys validation knows. Top-level and message-level keys share one numbering so
// one table holds their names and their duplicate / case-variant errors.
const (
	pkKeyOther = iota
	pkKeyPacketID
	pkKeyEmitterID
	pkKeyMessages
	pkKeyTimestamp
	pkKeyLevel
	pkKeyMessage
	pkKeyMetadata
	pkNumKeys
)

var pkKeyNames = [pkNumKeys]string{
	pkKeyPacketID:  "packet_id",
	pkKeyEmitterID: "emitter_id",
	pkKeyMessages:  "messages",
	pkKeyTimestamp: "timestamp",
	pkKeyLevel:     "level",
	pkKeyMessage:   "message",
	pkKeyMetadata:  "metadata",
}

// Duplicate known keys are rejected rather than resolved "last one wins": JSON
// leaves duplicates undefined and parsers disagree (first wins, last wins, error).
// The distributor routes by the message count it sees here, so an analyzer that
// reads the other copy would be charged a different number of messages, and one
// that trips over the other copy would fail a packet we already accepted. Refusing
// costs one bit per key.
//
// Case variants ("Packet_ID", "LEVEL", or with U+212A KELVIN SIGN for k) are
// rejected for the same reason: encoding/json, which the reference analyzers use,
// matches struct fields case-insensitively, so it would read such a key as the
// field while we (and any case-sensitive parser) would not.
var (
	errDuplicateKey = [pkNumKeys]*Error{
		pkKeyPacketID:  {Status: 400, Reason: "duplicate key packet_id"},
		pkKeyEmitterID: {Status: 400, Reason: "duplicate key emitter_id"},
		pkKeyMessages:  {Status: 400, Reason: "duplicate key messages"},
		pkKeyTimestamp: {Status: 400, Reason: "message: duplicate key timestamp"},
		pkKeyLevel:     {Status: 400, Reason: "message: duplicate key level"},
		pkKeyMessage:   {Status: 400, Reason: "message: duplicate key message"},
		pkKeyMetadata:  {Status: 400, Reason: "message: duplicate key metadata"},
	}
	errCaseVariantKey = [pkNumKeys]*Error{
		pkKeyPacketID:  {Status: 400, Reason: "key must be spelled packet_id exactly"},
		pkKeyEmitterID: {Status: 400, Reason: "key must be spelled emitter_id exactly"},
		pkKeyMessages:  {Status: 400, Reason: "key must be spelled messages exactly"},
		pkKeyTimestamp: {Status: 400, Reason: "message: key must be spelled timestamp exactly"},
		pkKeyLevel:     {Status: 400, Reason: "message: key must be spelled level exactly"},
		pkKeyMessage:   {Status: 400, Reason: "message: key must be spelled message exactly"},
		pkKeyMetadata:  {Status: 400, Reason: "message: key must be spelled metadata exactly"},
	}
)

// ValidatePacket checks a packet body and fills p. On failure it returns a static
// *Error with Status 400 and a Reason naming the problem; p is then partly filled
// and must not be used.
//
// The work is split in two passes. sonic.Valid checks the grammar (native SIMD
// code, no allocation): structure, numbers, literals, nesting, trailing bytes. It
// does not look inside strings, though: it accepts raw control characters and
// unknown escapes such as \x, which encoding/json rejects, so forwarding them would
// hand analyzers packets they refuse. The second pass, walkPacket, walks the
// now-known-good structure with a small skipper to find the keys and check the
// value types; since it has to step over every string anyway it also checks string
// contents, closing that gap. sonic's other entry points were measured and are
// slower or allocate: a count-only sonic.Unmarshal costs ~2.9 µs and 3 allocs for
// a 1.1 KB packet (sonic.Valid alone ~1.4 µs); ast.Searcher/Preorder build nodes
// or visitor state on the heap and would still need the string check.
func ValidatePacket(body []byte, p *Packet) error {
	*p = Packet{}
	if !sonic.Valid(body) {
		return errInvalidJSON
	}
	return walkPacket(body, p)
}

// walkPacket reads the top-level object of a body that sonic.Valid accepted. The
// grammar is known good, so the walk only checks what the grammar cannot: keys,
// value types and string contents. Index arithmetic past a token relies on that
// (a ':' follows every key, a ',' or closing bracket every value).
func walkPacket(b []byte, p *Packet) error {
	i := jsonSkipSpace(b, 0)
	if b[i] != '{' {
		return errNotObject
	}
	i = jsonSkipSpace(b, i+1)
	var seen [pkNumKeys]bool
	for b[i] != '}' {
		key, end, err := jsonScanKey(b, i, pkKeyPacketID, pkKeyMessages)
		if err != nil {
			return err
		}
		i = jsonSkipSpace(b, jsonSkipSpace(b, end)+1) // past ':'
		if key != pkKeyOther {
			if seen[key] {
				return errDuplicateKey[key]
			}
			seen[key] = true
		}
		switch key {
		case pkKeyPacketID:
			if b[i] != '"' {
				return errPacketID
			}
			end, err = jsonScanString(b, i)
			if err != nil {
				return err
			}
			p.ID = b[i+1 : end-1]
			if len(p.ID) == 0 {
				return errPacketID
			}
			if !utf8.Valid(p.ID) {
				return errPacketIDUTF8
			}
		case pkKeyEmitterID:
			switch b[i] {
			case '"':
				end, err = jsonScanString(b, i)
				if err != nil {
					return err
				}
				p.EmitterID = b[i+1 : end-1]
				if !utf8.Valid(p.EmitterID) {
					return errEmitterIDUTF8
				}
			case 'n':
				end = i + len("null")
			default:
				return errEmitterID
			}
		case pkKeyMessages:
			if b[i] != '[' {
				return errMessages
			}
			end, p.Messages, err = walkMessages(b, i)
			if err != nil {
				return err
			}
			if p.Messages == 0 {
				return errMessages
			}
		default:
			end, err = jsonSkipValue(b, i)
			if err != nil {
				return err
			}
		}
		i = jsonSkipSpace(b, end)
		if b[i] == ',' {
			i = jsonSkipSpace(b, i+1)
		}
	}
	if !seen[pkKeyPacketID] {
		return errPacketID
	}
	if !seen[pkKeyMessages] {
		return errMessages
	}
	return nil
}

// walkMessages checks the array starting at b[i] == '[' and returns the index past
// it and the number of messages.
func walkMessages(b []byte, i int) (end, n int, err error) {
	i = jsonSkipSpace(b, i+1)
	for b[i] != ']' {
		if b[i] != '{' {
			return 0, 0, errMessageNotObject
		}
		if i, err = walkMessage(b, i); err != nil {
			return 0, 0, err
		}
		n++
		i = jsonSkipSpace(b, i)
		if b[i] == ',' {
			i = jsonSkipSpace(b, i+1)
		}
	}
	return i + 1, n, nil
}

// walkMessage checks one message object starting at b[i] == '{' and returns the
// index past it.
func walkMessage(b []byte, i int) (int, error) {
	i = jsonSkipSpace(b, i+1)
	var seen [pkNumKeys]bool
	for b[i] != '}' {
		key, end, err := jsonScanKey(b, i, pkKeyTimestamp, pkKeyMetadata)
		if err != nil {
			return 0, err
		}
		i = jsonSkipSpace(b, jsonSkipSpace(b, end)+1) // past ':'
		if key != pkKeyOther {
			if seen[key] {
				return 0, errDuplicateKey[key]
			}
			seen[key] = true
		}
		c := b[i]
		switch key {
		case pkKeyTimestamp:
			if c != '"' && c != '-' && (c < '0' || c > '9') {
				return 0, errTimestamp
			}
		case pkKeyLevel:
			if c != '"' {
				return 0, errLevel
			}
		case pkKeyMessage:
			if c != '"' {
				return 0, errMessageText
			}
		case pkKeyMetadata:
			if c != '{' && c != 'n' {
				return 0, errMetadata
			}
		}
		if end, err = jsonSkipValue(b, i); err != nil {
			return 0, err
		}
		i = jsonSkipSpace(b, end)
		if b[i] == ',' {
			i = jsonSkipSpace(b, i+1)
		}
	}
	switch {
	case !seen[pkKeyTimestamp]:
		return 0, errTimestamp
	case !seen[pkKeyLevel]:
		return 0, errLevel
	case !seen[pkKeyMessage]:
		return 0, errMessageText
	}
	return i + 1, nil
}

// jsonScanKey reads the object key starting at b[i] == '"' and returns which of the
// known keys first..last it is (pkKeyOther for any other), and the index past it.
func jsonScanKey(b []byte, i, first, last int) (key, end int, err error) {
	end, err = jsonScanString(b, i)
	if err != nil {
		return pkKeyOther, 0, err
	}
	raw := b[i+1 : end-1]
	for k := first; k <= last; k++ {
		if string(raw) == pkKeyNames[k] {
			return k, end, nil
		}
	}
	if jsonPlainKey(raw) {
		return pkKeyOther, end, nil
	}
	// Rare: escapes, upper case or non-ASCII. Decide what the key means to a JSON
	// parser (exactly a known key) and to encoding/json (case-folded match).
	for k := first; k <= last; k++ {
		switch jsonKeyMatch(raw, pkKeyNames[k]) {
		case keyMatchExact:
			return k, end, nil
		case keyMatchFolded:
			return pkKeyOther, 0, errCaseVariantKey[k]
		}
	}
	return pkKeyOther, end, nil
}

// jsonPlainKey reports whether raw holds only bytes that stand for themselves and
// cannot fold to another byte: no escapes, no upper case, no non-ASCII. Such a key
// that is not byte-equal to a known key cannot match it in any parser.
func jsonPlainKey(raw []byte) bool {
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

const (
	keyMatchNone = iota
	keyMatchExact
	keyMatchFolded
)

// jsonKeyMatch compares the raw (escaped) key with an ASCII name: keyMatchExact when the
// decoded key equals name, keyMatchFolded when it only equals it the way encoding/json
// matches field names (each rune folded to the smallest of its simple-fold orbit,
// invalid UTF-8 read as U+FFFD).
func jsonKeyMatch(raw []byte, name string) int {
	exact := true
	j := 0
	for i := 0; i < len(raw); {
		var r rune
		r, i = jsonDecodeRune(raw, i)
		if j >= len(name) {
			return keyMatchNone
		}
		want := rune(name[j])
		j++
		if r == want {
			continue
		}
		if jsonFoldRune(r) != jsonFoldRune(want) {
			return keyMatchNone
		}
		exact = false
	}
	if j != len(name) {
		return keyMatchNone
	}
	if exact {
		return keyMatchExact
	}
	return keyMatchFolded
}

// jsonDecodeRune decodes the rune at raw[i] of a JSON string's contents, which
// jsonScanString has checked, and returns it with the index past it. Escaped UTF-16
// surrogate pairs are joined; a lone surrogate or invalid UTF-8 gives U+FFFD, as in
// encoding/json.
func jsonDecodeRune(raw []byte, i int) (rune, int) {
	c := raw[i]
	if c < utf8.RuneSelf && c != '\\' {
		return rune(c), i + 1
	}
	if c != '\\' {
		r, size := utf8.DecodeRune(raw[i:])
		return r, i + size
	}
	switch raw[i+1] {
	case 'b':
		return '\b', i + 2
	case 'f':
		return '\f', i + 2
	case 'n':
		return '\n', i + 2
	case 'r':
		return '\r', i + 2
	case 't':
		return '\t', i + 2
	case 'u':
		r := jsonHex4(raw[i+2:])
		i += 6
		if r >= 0xD800 && r < 0xDC00 {
			if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
				if lo := jsonHex4(raw[i+2:]); lo >= 0xDC00 && lo < 0xE000 {
					return 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00), i + 6
				}
			}
			return utf8.RuneError, i
		}
		if r >= 0xDC00 && r < 0xE000 {
			return utf8.RuneError, i
		}
		return r, i
	default: // '"', '\\', '/'
		return rune(raw[i+1]), i + 2
	}
}

func jsonHex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		r = r<<4 | rune(jsonHexDigit[c])
	}
	return r
}

// jsonFoldRune is encoding/json's fold: the smallest rune of r's simple-fold orbit.
func jsonFoldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// jsonSkipValue returns the index past the value starting at b[i] (not whitespace).
func jsonSkipValue(b []byte, i int) (int, error) {
	switch b[i] {
	case '"':
		return jsonScanString(b, i)
	case '{', '[':
		return jsonSkipContainer(b, i)
	default: // number or literal: runs to the next delimiter
		for i++; i < len(b); i++ {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i, nil
			}
		}
		return i, nil
	}
}

// jsonSkipContainer returns the index past the object or array starting at b[i],
// checking the strings inside it.
func jsonSkipContainer(b []byte, i int) (int, error) {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			end, err := jsonScanString(b, i)
			if err != nil {
				return 0, err
			}
			i = end
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1, nil
			}
		}
		i++
	}
	return 0, errInvalidJSON // unreachable after sonic.Valid
}

// jsonScanString returns the index past the string starting at b[i] == '"'. It rejects
// what sonic.Valid lets through: raw control characters and unknown or short
// escapes.
func jsonScanString(b []byte, i int) (int, error) {
	i++
	for {
		// Jump to the next byte that needs a look, eight bytes at a time.
		for {
			if i+8 > len(b) {
				for i < len(b) && !jsonStringSpecial[b[i]] {
					i++
				}
				break
			}
			if m := jsonSpecialMask(loadLE64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(b) {
			return 0, errInvalidJSON
		}
		switch b[i] {
		case '"':
			return i + 1, nil
		case '\\':
			if i+1 >= len(b) {
				return 0, errInvalidJSON
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return 0, errInvalidJSON
				}
				for _, h := range b[i+2 : i+6] {
					if jsonHexDigit[h] == 0xff {
						return 0, errInvalidJSON
					}
				}
				i += 6
			default:
				return 0, errInvalidJSON
			}
		default: // control character
			return 0, errInvalidJSON
		}
	}
}

// loadLE64 loads eight bytes little-endian; the compiler turns it into one load.
func loadLE64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// jsonSpecialMask flags (in the high bit of each byte) the bytes of w that are '"',
// '\\' or below 0x20, with the SWAR zero-byte test. Borrows can flag bytes above a
// true hit, never below, so the lowest flag is exact: its byte is the first
// special one.
func jsonSpecialMask(w uint64) uint64 {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	quote := w ^ (ones * '"')
	backslash := w ^ (ones * '\\')
	t := (quote - ones) &^ quote
	t |= (backslash - ones) &^ backslash
	t |= (w - ones*0x20) &^ w // a byte below 0x20 borrows into its high bit
	return t & high
}

// jsonStringSpecial marks the bytes jsonScanString must stop at.
var jsonStringSpecial = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

func jsonSkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// jsonHexDigit maps a byte to its hex digit value, 0xff for non-digits.
var jsonHexDigit = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c-'a') + 10
		t[c-'a'+'A'] = byte(c-'a') + 10
	}
	return t
}()
