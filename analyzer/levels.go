package analyzer

import (
	"encoding/binary"
	"math/bits"
)

// Log levels the analyzer counts messages by. The set is closed so the counters can
// be a fixed array per event loop; anything else is counted as "OTHER".
const (
	levelTrace = iota
	levelDebug
	levelInfo
	levelWarn
	levelError
	levelFatal
	levelOther
	numLevels
)

// levelNames are the label values of analyzer_messages_total{level=...}.
var levelNames = [numLevels]string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OTHER"}

// levelCounts is how many messages of each level one packet carries.
type levelCounts [numLevels]uint32

// classifyLevel maps the raw contents of a "level" JSON string to a level index.
// Matching ignores ASCII case; "WARNING" and "ERR" are the usual aliases. A level
// written with JSON escapes is counted as OTHER.
func classifyLevel(s []byte) int {
	switch len(s) {
	case 3:
		if equalFold(s, "ERR") {
			return levelError
		}
	case 4:
		if equalFold(s, "INFO") {
			return levelInfo
		}
		if equalFold(s, "WARN") {
			return levelWarn
		}
	case 5:
		switch {
		case equalFold(s, "TRACE"):
			return levelTrace
		case equalFold(s, "DEBUG"):
			return levelDebug
		case equalFold(s, "ERROR"):
			return levelError
		case equalFold(s, "FATAL"):
			return levelFatal
		}
	case 7:
		if equalFold(s, "WARNING") {
			return levelWarn
		}
	}
	return levelOther
}

// equalFold reports whether s equals the upper-case ASCII word w, ignoring case.
func equalFold(s []byte, w string) bool {
	if len(s) != len(w) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i]&^0x20 != w[i] {
			return false
		}
	}
	return true
}

// countLevels adds the level of every message in body to lc.
//
// body must already have passed codec.ValidatePacket: it is then a well-formed JSON
// object whose "messages" member is an array of objects, so this walk only has to
// find the members it wants and step over the others; it does not re-validate.
// The codec reports the message count but not the levels, and sonic's visitor costs
// about ten times this walk (measured: ~2µs for a three-message packet), so the
// analyzer keeps this narrow walker. It allocates nothing.
func countLevels(body []byte, lc *levelCounts) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return
	}
	i++
	for {
		i = skipSpace(body, i)
		if i >= len(body) || body[i] != '"' {
			return // '}' or malformed: nothing more to find
		}
		keyStart := i + 1
		i = skipString(body, i)
		key := stringContents(body, keyStart, i)
		i = skipSpace(body, i)
		if i >= len(body) || body[i] != ':' {
			return
		}
		i = skipSpace(body, i+1)
		if string(key) == "messages" && i < len(body) && body[i] == '[' {
			countMessageLevels(body, i, lc)
			return
		}
		i = skipValue(body, i)
		i = skipSpace(body, i)
		if i >= len(body) || body[i] != ',' {
			return
		}
		i++
	}
}

// countMessageLevels walks the array that starts at body[i] == '['.
func countMessageLevels(body []byte, i int, lc *levelCounts) {
	i++
	for {
		i = skipSpace(body, i)
		if i >= len(body) || body[i] != '{' {
			return // ']' or malformed
		}
		level := levelOther
		i++
		for {
			i = skipSpace(body, i)
			if i >= len(body) || body[i] != '"' {
				break
			}
			keyStart := i + 1
			i = skipString(body, i)
			key := stringContents(body, keyStart, i)
			i = skipSpace(body, i)
			if i >= len(body) || body[i] != ':' {
				return
			}
			i = skipSpace(body, i+1)
			if string(key) == "level" && i < len(body) && body[i] == '"' {
				end := skipString(body, i)
				level = classifyLevel(stringContents(body, i+1, end))
				i = end
			} else {
				i = skipValue(body, i)
			}
			i = skipSpace(body, i)
			if i < len(body) && body[i] == ',' {
				i++
			}
		}
		// body[i] is the message object's '}'.
		lc[level]++
		i = skipSpace(body, i+1)
		if i >= len(body) || body[i] != ',' {
			return
		}
		i++
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// stringContents is b[start:end-1], the inside of a string that skipString ended at
// end, or nothing when the string was cut off.
func stringContents(b []byte, start, end int) []byte {
	if end-1 < start {
		return nil
	}
	return b[start : end-1]
}

// skipString returns the index just past the string whose opening quote is b[i].
// It looks at eight bytes at a time for the next '"' or '\\' (most strings in a
// packet are short, where this beats a call to bytes.IndexByte) and steps over
// each escape as a pair.
func skipString(b []byte, i int) int {
	i++
	for {
		for i+8 <= len(b) {
			if m := quoteOrBackslash(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				goto found
			}
			i += 8
		}
		for i < len(b) && b[i] != '"' && b[i] != '\\' {
			i++
		}
		if i >= len(b) {
			return len(b)
		}
	found:
		if b[i] == '"' {
			return i + 1
		}
		i += 2 // a backslash and the byte it escapes
	}
}

// quoteOrBackslash flags, in the high bit of each byte, the bytes of w that are '"'
// or '\\' (the SWAR zero-byte test). A borrow can flag a byte above a true hit but
// never one below, so the lowest flag is exact.
func quoteOrBackslash(w uint64) uint64 {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	q := w ^ (ones * '"')
	s := w ^ (ones * '\\')
	return ((q-ones)&^q | (s-ones)&^s) & high
}

// skipValue returns the index just past the JSON value that starts at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		return skipNested(b, i)
	}
	// Number or literal: runs until a delimiter.
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
		i++
	}
	return i
}

// skipNested returns the index just past the object or array that starts at b[i].
// Brackets of both kinds count towards the depth; strings are stepped over so the
// brackets inside them do not.
func skipNested(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			i = skipString(b, i)
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
		i++
	}
	return len(b)
}
