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
		if equalFold(s, "err") {
			return LevelError
		}
	case 4:
		if equalFold(s, "info") {
			return LevelInfo
		}
		if equalFold(s, "warn") {
			return LevelWarn
		}
	case 5:
		switch {
		case equalFold(s, "trace"):
			return LevelTrace
		case equalFold(s, "debug"):
			return LevelDebug
		case equalFold(s, "error"):
			return LevelError
		case equalFold(s, "fatal"):
			return LevelFatal
		}
	case 7:
		if equalFold(s, "warning") {
			return LevelWarn
		}
	}
	return LevelOther
}
