package codec

import (
	"math/bits"
	"unicode"
	"unicode/utf8"
)

// The JSON scanner under ValidatePacket: the grammar of RFC 8259 checked the way
// encoding/json checks it (strings included), plus UTF-8, lone surrogate escapes
// and float64 overflow, which encoding/json lets through; no allocation. packet.go walks
// the packet's own objects with it; everything else is skipped by jsonSkipValue.

// jsonMemberKey reads an object member's key (a checked string) and its colon at
// i, and returns where the member's value starts.
func jsonMemberKey(b []byte, i int) (int, error) {
	next, err := jsonScanKeyString(b, i)
	if err != nil {
		return 0, err
	}
	return jsonColon(b, next)
}

// jsonColon expects optional whitespace, ':' and optional whitespace at b[i] and
// returns the index of the value after them.
func jsonColon(b []byte, i int) (int, error) {
	i = jsonSkipSpace(b, i)
	if byteAt(b, i) != ':' {
		return 0, errInvalidJSON
	}
	return jsonSkipSpace(b, i+1), nil
}

// jsonNext expects optional whitespace and then ',' or closer after a value; it
// returns the index of that byte.
func jsonNext(b []byte, i int, closer byte) (int, error) {
	i = jsonSkipSpace(b, i)
	if c := byteAt(b, i); c != ',' && c != closer {
		return 0, errInvalidJSON
	}
	return i, nil
}

// byteAt is b[i], or 0 (never valid where it is tested) past the end.
func byteAt(b []byte, i int) byte {
	if i < len(b) {
		return b[i]
	}
	return 0
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
		r = r<<4 | rune(hexDigit[c])
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

// jsonMaxDepth bounds the nesting of a value inside a packet. encoding/json allows
// 10000; a log packet that nests beyond this is refused as invalid rather than
// given an unbounded stack.
const jsonMaxDepth = 1024

// jsonSkipValue checks the value starting at b[i] and returns the index past it.
func jsonSkipValue(b []byte, i int) (int, error) {
	switch byteAt(b, i) {
	case '{', '[':
		return jsonSkipContainer(b, i, jsonMaxDepth)
	default:
		return jsonSkipScalar(b, i)
	}
}

// jsonSkipScalar checks the string, number or literal starting at b[i] and returns
// the index past it.
func jsonSkipScalar(b []byte, i int) (int, error) {
	switch byteAt(b, i) {
	case '"':
		return jsonScanString(b, i)
	case 't':
		return jsonLiteral(b, i, "true")
	case 'f':
		return jsonLiteral(b, i, "false")
	case 'n':
		return jsonLiteral(b, i, "null")
	default:
		return jsonScanNumber(b, i)
	}
}

func jsonLiteral(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, errInvalidJSON
	}
	return i + len(lit), nil
}

// jsonScanNumber checks the number starting at b[i] (RFC 8259 §6) and returns the
// index past it. What may follow is the caller's business. A number too large for
// a float64 (its value rounds to ±Inf, like 1e400) is refused with errNumberRange:
// RFC 8259 §6 leaves the range to implementations, and parsers that read numbers as
// float64 (encoding/json, JavaScript) fail on or mangle such a value. Underflow
// (1e-400 reads as 0) is not refused.
func jsonScanNumber(b []byte, i int) (int, error) {
	start := i
	if byteAt(b, i) == '-' {
		i++
	}
	intStart := i
	switch c := byteAt(b, i); {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		i = jsonDigits(b, i+1)
	default:
		return 0, errInvalidJSON
	}
	intEnd := i
	if byteAt(b, i) == '.' {
		j := jsonDigits(b, i+1)
		if j == i+1 {
			return 0, errInvalidJSON
		}
		i = j
	}
	if c := byteAt(b, i); c == 'e' || c == 'E' {
		i++
		if c := byteAt(b, i); c == '+' || c == '-' {
			i++
		}
		j := jsonDigits(b, i)
		if j == i {
			return 0, errInvalidJSON
		}
		i = j
	} else if intEnd-intStart <= 308 {
		return i, nil // no exponent and below 10^308: finite
	}
	if !jsonNumberFinite(b[start:i]) {
		return 0, errNumberRange
	}
	return i, nil
}

// float64Overflow is the decimal digits of 2^1024 - 2^970, the smallest value that
// rounds to +Inf as a float64 (halfway between MaxFloat64 and 2^1024, and a tie
// rounds to the even 2^1024); 309 digits, no trailing zero.
const float64Overflow = "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792"

// jsonNumberFinite reports whether the grammar-checked number raw is finite as a
// float64: its magnitude is below float64Overflow. It reads the number as
// 0.d1d2... × 10^e with d1 its first non-zero digit and compares e, and for
// e == 309 the digits, exactly; no allocation and no float arithmetic.
func jsonNumberFinite(raw []byte) bool {
	i := 0
	if raw[0] == '-' {
		i++
	}
	// Digits of the mantissa (integer and fraction part), and the exponent.
	e := 0 // position of the decimal point relative to the digits seen so far
	first := -1
	point := false
	for ; i < len(raw) && raw[i] != 'e' && raw[i] != 'E'; i++ {
		c := raw[i]
		if c == '.' {
			point = true
			continue
		}
		if first < 0 {
			if c == '0' {
				if point {
					e--
				}
				continue
			}
			first = i
		}
		if !point {
			e++
		}
	}
	if first < 0 {
		return true // zero, whatever the exponent
	}
	if i < len(raw) { // the exponent, saturated well beyond any body size
		i++
		neg := raw[i] == '-'
		if raw[i] == '-' || raw[i] == '+' {
			i++
		}
		x := 0
		for ; i < len(raw); i++ {
			if x < 1<<40 {
				x = x*10 + int(raw[i]-'0')
			}
		}
		if neg {
			x = -x
		}
		e += x
	}
	switch {
	case e < len(float64Overflow):
		return true
	case e > len(float64Overflow):
		return false
	}
	// Same order of magnitude: compare the significant digits with the bound.
	k := 0
	for j := first; j < len(raw) && raw[j] != 'e' && raw[j] != 'E'; j++ {
		if raw[j] == '.' {
			continue
		}
		if k == len(float64Overflow) {
			return false // equal so far, and the bound has no more digits
		}
		if raw[j] != float64Overflow[k] {
			return raw[j] < float64Overflow[k]
		}
		k++
	}
	return k < len(float64Overflow) // a prefix of the bound: smaller (it ends in a non-zero digit)
}

func jsonDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// jsonSkipContainer checks the object or array starting at b[i] and returns the
// index past it, allowing maxDepth (at most jsonMaxDepth) levels of nesting. It
// keeps its own stack (one bit per level: object or array), so hostile nesting
// costs neither recursion nor allocation.
func jsonSkipContainer(b []byte, i, maxDepth int) (int, error) {
	var objects [jsonMaxDepth / 64]uint64
	depth := 0
	inObject := false
	for {
		// b[i] starts a value inside the current container (or is the outer one).
		if c := byteAt(b, i); c == '{' || c == '[' {
			if depth == maxDepth {
				return 0, errInvalidJSON
			}
			inObject = c == '{'
			if inObject {
				objects[depth>>6] |= 1 << (depth & 63)
			} else {
				objects[depth>>6] &^= 1 << (depth & 63)
			}
			depth++
			i = jsonSkipSpace(b, i+1)
			if c := byteAt(b, i); c != '}' && c != ']' {
				if inObject {
					var err error
					if i, err = jsonMemberKey(b, i); err != nil {
						return 0, err
					}
				}
				continue // the first element
			}
			// An empty container: its closer is checked below.
		} else {
			end, err := jsonSkipScalar(b, i)
			if err != nil {
				return 0, err
			}
			i = jsonSkipSpace(b, end)
		}
		// After a value: ',' and the next element, or closers.
		for {
			c := byteAt(b, i)
			if c == ',' {
				i = jsonSkipSpace(b, i+1)
				if inObject {
					var err error
					if i, err = jsonMemberKey(b, i); err != nil {
						return 0, err
					}
				}
				break
			}
			if c != '}' && c != ']' || (c == '}') != inObject {
				return 0, errInvalidJSON
			}
			depth--
			if depth == 0 {
				return i + 1, nil
			}
			inObject = objects[(depth-1)>>6]&(1<<((depth-1)&63)) != 0
			i = jsonSkipSpace(b, i+1)
		}
	}
}

// jsonScanKeyString checks the object key at b[i], which must be a string.
func jsonScanKeyString(b []byte, i int) (int, error) {
	if byteAt(b, i) != '"' {
		return 0, errInvalidJSON
	}
	return jsonScanString(b, i)
}

// jsonScanString returns the index past the string starting at b[i] == '"'. It rejects
// what sonic.Valid lets through, raw control characters and unknown or short
// escapes, and what encoding/json lets through: invalid UTF-8 (errStringUTF8) and
// lone UTF-16 surrogate escapes (errSurrogate).
func jsonScanString(b []byte, i int) (int, error) {
	end, _, err := jsonScanStringEsc(b, i)
	return end, err
}

// jsonScanStringEsc is jsonScanString that also reports whether the string has a
// backslash escape, i.e. whether its raw bytes differ from its value.
//
// RFC 8259 §8.1 requires UTF-8, and RFC 3629 §3 defines it: no overlong forms, no
// encoded surrogates (U+D800..U+DFFF), nothing above U+10FFFF; utf8.DecodeRune
// checks exactly that. §7 of RFC 8259 escapes a character outside the BMP as a
// UTF-16 surrogate pair; a high surrogate escape not followed by a low one, or a
// low one alone, is no character at all (RFC 8259 §8.2 calls the behaviour of
// software receiving it unpredictable; encoding/json turns it into U+FFFD).
func jsonScanStringEsc(b []byte, i int) (end int, esc bool, err error) {
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
			return 0, false, errInvalidJSON
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, esc, nil
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return 0, false, errStringUTF8
			}
			i += size
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				return 0, false, errInvalidJSON
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				r, ok := jsonEscapeHex(b, i)
				if !ok {
					return 0, false, errInvalidJSON
				}
				i += 6
				if r >= 0xD800 && r < 0xE000 {
					if r >= 0xDC00 {
						return 0, false, errSurrogate // a low surrogate first
					}
					lo, ok := jsonEscapeHex(b, i)
					if !ok || lo < 0xDC00 || lo >= 0xE000 {
						return 0, false, errSurrogate // a high one not followed by a low one
					}
					i += 6
				}
			default:
				return 0, false, errInvalidJSON
			}
		default: // control character
			return 0, false, errInvalidJSON
		}
	}
}

// jsonEscapeHex reads the escape \uXXXX at b[i] and returns its value; ok is false
// when b[i:] is not such an escape.
func jsonEscapeHex(b []byte, i int) (r rune, ok bool) {
	if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
		return 0, false
	}
	for _, h := range b[i+2 : i+6] {
		d := hexDigit[h]
		if d < 0 {
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

// loadLE64 loads eight bytes little-endian; the compiler turns it into one load.
func loadLE64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// jsonSpecialMask flags (in the high bit of each byte) the bytes of w that are '"',
// '\\', below 0x20 or above 0x7f (non-ASCII, whose UTF-8 is checked), with the SWAR
// zero-byte test. Borrows can flag bytes above a true hit, never below, so the
// lowest flag is exact: its byte is the first special one.
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
	t |= w                    // a byte above 0x7f has its high bit set
	return t & high
}

// jsonStringSpecial marks the bytes jsonScanString must stop at.
var jsonStringSpecial = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	for c := utf8.RuneSelf; c < 256; c++ {
		t[c] = true
	}
	return t
}()

// SkipJSONSpace returns the index of the first byte at or after i that is not JSON
// whitespace (len(b) if there is none), for callers that frame JSON around packets,
// such as the analyzer's batch arrays.
func SkipJSONSpace(b []byte, i int) int { return jsonSkipSpace(b, i) }

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
