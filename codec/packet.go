package codec

import "unicode/utf8"

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

	// Strict where RFC 8259 leaves room; docs/analyzer.md ("What is refused") says why.
	errStringUTF8       = &Error{Status: 400, Reason: "string is not valid UTF-8"}
	errSurrogate        = &Error{Status: 400, Reason: "string has a lone UTF-16 surrogate escape"}
	errNumberRange      = &Error{Status: 400, Reason: "number out of float64 range"}
	errTimestampInteger = &Error{Status: 400, Reason: "message: numeric timestamp must be an integer from 0 to 9007199254740991"}
	errDuplicateOther   = &Error{Status: 400, Reason: "duplicate key"}
	errDuplicateMsgKey  = &Error{Status: 400, Reason: "message: duplicate key"}
	errDuplicateMeta    = &Error{Status: 400, Reason: "message: duplicate metadata key"}
	errTooManyKeys      = &Error{Status: 400, Reason: "too many keys in packet object"}
	errTooManyMsgKeys   = &Error{Status: 400, Reason: "message: too many keys"}
	errTooManyMetaKeys  = &Error{Status: 400, Reason: "message: too many metadata keys"}
	errTooLarge         = &Error{Status: 400, Reason: "packet too large"}
)

// MaxObjectKeys is the most keys the packet object, a message object or a metadata
// object may have. Duplicates are found by comparing each key with the earlier
// keys of its object, so the bound keeps that at most MaxObjectKeys²/2 key
// comparisons per object, with no allocation.
const MaxObjectKeys = 64

// maxTimestamp is 2^53-1, the largest integer every JSON parser reading numbers as
// float64 holds exactly (RFC 8259 §6).
const maxTimestamp = 1<<53 - 1

// keySet holds the keys an object has had so far, as the offset and length of
// their raw contents in the body; the top bit of the length marks a key written
// with escapes. sigs has the bit keySig of every key without escapes, so a new key
// whose bit is clear (the common case) is compared with nothing unless the set
// holds an escaped key.
type keySet struct {
	n       int
	sigs    uint64
	escaped bool
	keys    [MaxObjectKeys][2]uint32
}

const keyEscaped = 1 << 31

// keySig picks one of 64 bits from a key's length and last byte.
func keySig(key []byte) uint64 {
	h := uint(len(key))
	if len(key) > 0 {
		h = h*7 + uint(key[len(key)-1])
	}
	return 1 << (h & 63)
}

// reset empties the set for the next object.
func (s *keySet) reset() { s.n, s.sigs, s.escaped = 0, 0, false }

// add records the key b[start:end] (raw contents, esc when it has escapes) and
// reports whether an earlier key of the set has the same value. Keys without
// escapes compare byte for byte (length first); a key with escapes compares by
// decoded value. The caller checks n < MaxObjectKeys first.
func (s *keySet) add(b []byte, start, end int, esc bool) (dup bool) {
	key := b[start:end]
	n := uint32(len(key))
	if esc {
		n |= keyEscaped
		s.escaped = true
	} else {
		sig := keySig(key)
		fresh := s.sigs&sig == 0 && !s.escaped
		s.sigs |= sig
		if fresh {
			s.keys[s.n] = [2]uint32{uint32(start), n}
			s.n++
			return false
		}
	}
	for _, k := range s.keys[:s.n] {
		if k[1] == n && !esc { // same length, neither escaped
			if string(b[k[0]:k[0]+n]) == string(key) {
				return true
			}
		} else if (k[1]|n)&keyEscaped != 0 && jsonDecodedEqual(b[k[0]:k[0]+k[1]&^keyEscaped], key) {
			return true
		}
	}
	s.keys[s.n] = [2]uint32{uint32(start), n}
	s.n++
	return false
}

// jsonDecodedEqual reports whether two raw string contents checked by
// jsonScanString (valid UTF-8, no lone surrogates) decode to the same string.
func jsonDecodedEqual(x, y []byte) bool {
	i, j := 0, 0
	for i < len(x) && j < len(y) {
		var rx, ry rune
		rx, i = jsonDecodeRune(x, i)
		ry, j = jsonDecodeRune(y, j)
		if rx != ry {
			return false
		}
	}
	return i == len(x) && j == len(y)
}

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
// rejected for the same reason: encoding/json, which Go analyzers like the seed use,
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
// It is one strict pass over the body: the packet's own objects (and each metadata
// object's keys) are walked by the schema code below and every other value by
// jsonSkipValue, which checks the full JSON grammar as encoding/json does, strings
// included, and is stricter where RFC 8259 allows it: UTF-8, lone surrogate
// escapes, float64 overflow (docs/analyzer.md, "What is refused").
// docs/benchmarks.md measures it against sonic and encoding/json.
//
// FuzzValidatePacket holds the grammar to encoding/json.Valid (errInvalidJSON only
// for what it refuses, nothing accepted that it refuses); FuzzValidatePacketStrict
// holds the whole validator to a strict reference in both directions.
func ValidatePacket(body []byte, p *Packet) error {
	*p = Packet{}
	i, err := walkPacket(body, jsonSkipSpace(body, 0), p, nil)
	if err != nil {
		return err
	}
	if jsonSkipSpace(body, i) != len(body) {
		return errInvalidJSON
	}
	return nil
}

// ValidatePacketLevels is ValidatePacket that also counts the packet's messages by
// level (ClassifyLevel of each message's "level" string) in the same pass. The
// counts are added to lv only when the packet is valid; on an error lv is left as
// it was. A nil lv counts nothing.
func ValidatePacketLevels(body []byte, p *Packet, lv *Levels) error {
	if lv == nil {
		return ValidatePacket(body, p)
	}
	*p = Packet{}
	var tally Levels
	i, err := walkPacket(body, jsonSkipSpace(body, 0), p, &tally)
	if err != nil {
		return err
	}
	if jsonSkipSpace(body, i) != len(body) {
		return errInvalidJSON
	}
	lv.Add(&tally)
	return nil
}

// ValidatePacketAt validates the packet whose object starts at b[i] (after optional
// whitespace) and returns the index just past its closing '}'; unlike
// ValidatePacket, whatever follows is not looked at, so it validates a packet in
// place inside a larger document (an element of a batch array). p is filled as by
// ValidatePacket. With lv non-nil, the packet's messages are counted by level as by
// ValidatePacketLevels and added to lv only when the packet is valid. On an error
// end is 0 and lv is left as it was.
func ValidatePacketAt(b []byte, i int, p *Packet, lv *Levels) (end int, err error) {
	*p = Packet{}
	if lv == nil {
		return walkPacket(b, jsonSkipSpace(b, i), p, nil)
	}
	var tally Levels
	if end, err = walkPacket(b, jsonSkipSpace(b, i), p, &tally); err != nil {
		return 0, err
	}
	lv.Add(&tally)
	return end, nil
}

// walkPacket checks the top-level object starting at b[i] and returns the index
// past it. With lv non-nil it counts the messages by level into lv as it goes, so
// on an error lv holds a partial count.
func walkPacket(b []byte, i int, p *Packet, lv *Levels) (int, error) {
	if len(b) >= keyEscaped { // keySet's offsets
		return 0, errTooLarge
	}
	switch byteAt(b, i) {
	case '{':
	case '[', '"', 't', 'f', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if _, err := jsonSkipValue(b, i); err != nil {
			return 0, err
		}
		return 0, errNotObject
	default:
		return 0, errInvalidJSON
	}
	i = jsonSkipSpace(b, i+1)
	var seen [pkNumKeys]bool
	var top, msg, meta keySet // the packet's other keys, a message's, a metadata object's
	if byteAt(b, i) != '}' {
		for nkeys := 1; ; nkeys++ {
			if nkeys > MaxObjectKeys {
				return 0, errTooManyKeys
			}
			key, next, err := jsonScanKey(b, i, pkKeyPacketID, pkKeyMessages)
			if err != nil {
				return 0, err
			}
			if key != pkKeyOther {
				if seen[key] {
					return 0, errDuplicateKey[key]
				}
				seen[key] = true
			} else if top.add(b, i+1, next-1, hasBackslash(b[i+1:next-1])) {
				return 0, errDuplicateOther
			}
			if i, err = jsonColon(b, next); err != nil {
				return 0, err
			}
			var end int
			switch c := byteAt(b, i); key {
			case pkKeyPacketID:
				if c != '"' {
					return 0, typeError(b, i, errPacketID)
				}
				if end, err = jsonScanString(b, i); err != nil {
					if err == errStringUTF8 {
						err = errPacketIDUTF8
					}
					return 0, err
				}
				p.ID = b[i+1 : end-1]
				if len(p.ID) == 0 {
					return 0, errPacketID
				}
			case pkKeyEmitterID:
				if c != '"' && c != 'n' {
					return 0, typeError(b, i, errEmitterID)
				}
				if end, err = jsonSkipValue(b, i); err != nil {
					if err == errStringUTF8 {
						err = errEmitterIDUTF8
					}
					return 0, err
				}
				if c == '"' {
					p.EmitterID = b[i+1 : end-1]
				}
			case pkKeyMessages:
				if c != '[' {
					return 0, typeError(b, i, errMessages)
				}
				if end, p.Messages, err = walkMessages(b, i, lv, &msg, &meta); err != nil {
					return 0, err
				}
				if p.Messages == 0 {
					return 0, errMessages
				}
			default:
				if end, err = jsonSkipValue(b, i); err != nil {
					return 0, err
				}
			}
			if i, err = jsonNext(b, end, '}'); err != nil {
				return 0, err
			}
			if b[i] == '}' {
				break
			}
			i = jsonSkipSpace(b, i+1)
		}
	}
	if !seen[pkKeyPacketID] {
		return 0, errPacketID
	}
	if !seen[pkKeyMessages] {
		return 0, errMessages
	}
	return i + 1, nil
}

// walkMessages checks the array starting at b[i] == '[' and returns the index past
// it and the number of messages; with lv non-nil it counts them by level into lv.
func walkMessages(b []byte, i int, lv *Levels, msg, meta *keySet) (end, n int, err error) {
	i = jsonSkipSpace(b, i+1)
	if byteAt(b, i) == ']' {
		return i + 1, 0, nil
	}
	for {
		if byteAt(b, i) != '{' {
			return 0, 0, typeError(b, i, errMessageNotObject)
		}
		if i, err = walkMessage(b, i, lv, msg, meta); err != nil {
			return 0, 0, err
		}
		n++
		if i, err = jsonNext(b, i, ']'); err != nil {
			return 0, 0, err
		}
		if b[i] == ']' {
			return i + 1, n, nil
		}
		i = jsonSkipSpace(b, i+1)
	}
}

// walkMessage checks one message object starting at b[i] == '{' and returns the
// index past it; with lv non-nil it counts the message's level in lv.
func walkMessage(b []byte, i int, lv *Levels, msg, meta *keySet) (int, error) {
	i = jsonSkipSpace(b, i+1)
	var seen [pkNumKeys]bool
	level := LevelOther
	msg.reset()
	if byteAt(b, i) != '}' {
		for nkeys := 1; ; nkeys++ {
			if nkeys > MaxObjectKeys {
				return 0, errTooManyMsgKeys
			}
			key, next, err := jsonScanKey(b, i, pkKeyTimestamp, pkKeyMetadata)
			if err != nil {
				return 0, err
			}
			if key != pkKeyOther {
				if seen[key] {
					return 0, errDuplicateKey[key]
				}
				seen[key] = true
			} else if msg.add(b, i+1, next-1, hasBackslash(b[i+1:next-1])) {
				return 0, errDuplicateMsgKey
			}
			if i, err = jsonColon(b, next); err != nil {
				return 0, err
			}
			c := byteAt(b, i)
			var end int
			switch key {
			case pkKeyTimestamp:
				switch {
				case c == '"':
					end, err = jsonScanString(b, i)
				case c == '-' || (c >= '0' && c <= '9'):
					end, err = jsonScanTimestamp(b, i)
				default:
					return 0, typeError(b, i, errTimestamp)
				}
			case pkKeyLevel:
				if c != '"' {
					return 0, typeError(b, i, errLevel)
				}
				if end, err = jsonScanString(b, i); err == nil && lv != nil {
					level = ClassifyLevel(b[i+1 : end-1])
				}
			case pkKeyMessage:
				if c != '"' {
					return 0, typeError(b, i, errMessageText)
				}
				end, err = jsonScanString(b, i)
			case pkKeyMetadata:
				switch c {
				case '{':
					end, err = walkMetadata(b, i, meta)
				case 'n':
					end, err = jsonLiteral(b, i, "null")
				default:
					return 0, typeError(b, i, errMetadata)
				}
			default:
				end, err = jsonSkipValue(b, i)
			}
			if err != nil {
				return 0, err
			}
			if i, err = jsonNext(b, end, '}'); err != nil {
				return 0, err
			}
			if b[i] == '}' {
				break
			}
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
	if lv != nil {
		lv[level]++
	}
	return i + 1, nil
}

// jsonScanTimestamp checks the number at b[i] that is a message's timestamp: an
// integer from 0 to 2^53-1 (milliseconds), written without sign, fraction or
// exponent. Any other number is errTimestampInteger (errInvalidJSON when it is not
// a JSON number at all).
func jsonScanTimestamp(b []byte, i int) (int, error) {
	// Fast path: up to 16 digits, not a leading zero before more digits, and no
	// fraction or exponent after them.
	j := i
	var t uint64
	for j < len(b) && j-i < 17 {
		c := b[j]
		if c < '0' || c > '9' {
			break
		}
		t = t*10 + uint64(c-'0')
		j++
	}
	if n := j - i; n > 0 && n <= 16 && (b[i] != '0' || n == 1) {
		if c := byteAt(b, j); c != '.' && c != 'e' && c != 'E' {
			if t > maxTimestamp {
				return 0, errTimestampInteger
			}
			return j, nil
		}
	}
	// A sign, fraction, exponent or too many digits: refused, but broken JSON is
	// reported as such.
	end, err := jsonScanNumber(b, i)
	if err != nil {
		return 0, err
	}
	if c := byteAt(b, end); c >= '0' && c <= '9' {
		return 0, errInvalidJSON // a leading zero ("01")
	}
	return 0, errTimestampInteger
}

// walkMetadata checks the metadata object starting at b[i] == '{' and returns the
// index past it. Its keys must be distinct (compared with set) and at most
// MaxObjectKeys; its values are skipped by jsonSkipValue (objects nested in them
// are not checked for duplicates).
func walkMetadata(b []byte, i int, set *keySet) (int, error) {
	set.reset()
	i = jsonSkipSpace(b, i+1)
	if byteAt(b, i) == '}' {
		return i + 1, nil
	}
	for {
		if byteAt(b, i) != '"' {
			return 0, errInvalidJSON
		}
		next, esc, err := jsonScanStringEsc(b, i)
		if err != nil {
			return 0, err
		}
		if set.n == MaxObjectKeys {
			return 0, errTooManyMetaKeys
		}
		if set.add(b, i+1, next-1, esc) {
			return 0, errDuplicateMeta
		}
		if i, err = jsonColon(b, next); err != nil {
			return 0, err
		}
		if c := byteAt(b, i); c == '{' || c == '[' {
			i, err = jsonSkipContainer(b, i, jsonMaxDepth-1) // metadata is the first level
		} else {
			i, err = jsonSkipScalar(b, i)
		}
		if err != nil {
			return 0, err
		}
		if i, err = jsonNext(b, i, '}'); err != nil {
			return 0, err
		}
		if b[i] == '}' {
			return i + 1, nil
		}
		i = jsonSkipSpace(b, i+1)
	}
}

// hasBackslash reports whether a raw key has an escape.
func hasBackslash(raw []byte) bool {
	for _, c := range raw {
		if c == '\\' {
			return true
		}
	}
	return false
}

// typeError returns want when the value at b[i] is well-formed JSON of the wrong
// type, and errInvalidJSON when it is not JSON at all, so a broken body is always
// reported as such.
func typeError(b []byte, i int, want *Error) error {
	if _, err := jsonSkipValue(b, i); err != nil {
		return err
	}
	return want
}

// jsonScanKey reads the object key at b[i], which must be a string, and returns
// which of the known keys first..last it is (pkKeyOther for any other) and the
// index past it.
func jsonScanKey(b []byte, i, first, last int) (key, end int, err error) {
	if byteAt(b, i) != '"' {
		return pkKeyOther, 0, errInvalidJSON
	}
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
