package codec

import "math"

// Byte-level helpers shared by the request parser (request.go, chunked.go) and the
// upstream response parser (upstream.go).

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// tokenChar marks the tchar bytes of RFC 9110 §5.6.2 (field names, methods).
var tokenChar = byteClass(func(c byte) bool {
	return isDigit(c) || c|0x20 >= 'a' && c|0x20 <= 'z' || byteIn("!#$%&'*+-.^_`|~", c)
})

// equalFold compares b with lower, which holds only lowercase letters, digits and '-'.
// Setting bit 0x20 folds an ASCII capital to its lowercase letter, and only a capital
// folds onto a letter; no byte a field name or value (or a JSON string's raw
// contents, for ClassifyLevel) may hold folds onto a digit or '-' that it is not.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if b[i]|0x20 != lower[i] {
			return false
		}
	}
	return true
}

// listElem returns the next non-empty element of a comma-separated list (RFC 9110
// §5.6.1) at or after v[i], without surrounding whitespace, and where to go on from;
// nil when the list is exhausted.
func listElem(v []byte, i int) ([]byte, int) {
	for i < len(v) {
		for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == ',') {
			i++
		}
		start := i
		for i < len(v) && v[i] != ',' {
			i++
		}
		end := i
		for end > start && (v[end-1] == ' ' || v[end-1] == '\t') {
			end--
		}
		if end > start {
			return v[start:end], i
		}
	}
	return nil, i
}

// decimal reads a Content-Length value, 1*DIGIT (RFC 9110 §8.6). A number too big
// for int64 reads as math.MaxInt64, over any limit; ok is false for anything that
// is not 1*DIGIT.
func decimal(v []byte) (n int64, ok bool) {
	if len(v) == 0 {
		return 0, false
	}
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			n = math.MaxInt64 // keep checking the syntax; the value is over any limit
			continue
		}
		n = n*10 + d
	}
	return n, true
}

func byteClass(in func(c byte) bool) (t [256]bool) {
	for c := range 256 {
		t[c] = in(byte(c))
	}
	return t
}

func byteIn(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}
