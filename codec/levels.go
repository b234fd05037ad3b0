package codec

// Level is a message's log level as an analyzer counts it. The set is closed so a
// tally is a fixed array (Levels); a "level" that is none of the named ones is
// LevelOther.
type Level uint8

const (
	LevelTrace Level = iota
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
	LevelFatal
	LevelOther
)

// NumLevels is the number of Level values, LevelTrace..LevelOther.
const NumLevels = int(LevelOther) + 1

var levelNames = [NumLevels]string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OTHER"}

// String is the level's upper-case name: TRACE, DEBUG, INFO, WARN, ERROR, FATAL or
// OTHER.
func (l Level) String() string {
	if int(l) < NumLevels {
		return levelNames[l]
	}
	return "OTHER"
}

// Levels counts messages by level, indexed by Level.
type Levels [NumLevels]uint32

// Add adds the counts of o to l.
func (l *Levels) Add(o *Levels) {
	for i, n := range o {
		l[i] += n
	}
}

// Total is the number of messages counted.
func (l *Levels) Total() int {
	n := 0
	for _, c := range l {
		n += int(c)
	}
	return n
}

// ClassifyLevel maps the raw contents of a "level" JSON string (the bytes between
// the quotes, escapes as written) to a Level. Matching ignores ASCII case;
// "WARNING" counts as LevelWarn and "ERR" as LevelError. Anything else, including a
// level written with JSON escapes (a backslash never matches), is LevelOther.
func ClassifyLevel(s []byte) Level {
	switch len(s) {
	case 3:
		if equalFoldUpper(s, "ERR") {
			return LevelError
		}
	case 4:
		if equalFoldUpper(s, "INFO") {
			return LevelInfo
		}
		if equalFoldUpper(s, "WARN") {
			return LevelWarn
		}
	case 5:
		switch {
		case equalFoldUpper(s, "TRACE"):
			return LevelTrace
		case equalFoldUpper(s, "DEBUG"):
			return LevelDebug
		case equalFoldUpper(s, "ERROR"):
			return LevelError
		case equalFoldUpper(s, "FATAL"):
			return LevelFatal
		}
	case 7:
		if equalFoldUpper(s, "WARNING") {
			return LevelWarn
		}
	}
	return LevelOther
}

// equalFoldUpper reports whether s equals the upper-case ASCII word w (letters
// only), ignoring ASCII case. Clearing bit 0x20 maps only 'a'-'z' and 'A'-'Z' onto
// the letters w holds: no other byte, '\\' and non-ASCII included, can match.
func equalFoldUpper(s []byte, w string) bool {
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
