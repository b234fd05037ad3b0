package analyzer

// Batch bodies are a JSON array whose elements are packets, each exactly the bytes
// the emitter sent (docs/analyzer.md). The analyzer never decodes the array into Go
// values: batchScanner finds where each element starts and ends, and each element
// then goes through codec.ValidatePacket like a single /ingest body. The scanner
// checks only the array's own punctuation; an element's insides are the validator's
// business, and since the validator sees exactly the bytes between the scanner's
// boundaries, anything malformed inside an element (a stray bracket that moved the
// boundary included) is refused by one or the other.

// Batch syntax errors. Reasons are plain ASCII for the JSON error body.
const (
	reasonBatchNotArray = "batch must be a JSON array of packets"
	reasonBatchElement  = "batch element must be a JSON object"
	reasonBatchSyntax   = "malformed batch array"
)

type batchScanner struct {
	b      []byte
	i      int
	opened bool // '[' consumed
	done   bool // ']' consumed
}

func (s *batchScanner) init(b []byte) { *s = batchScanner{b: b} }

// next returns the next element, or ok == false at the end of the array. reason is
// non-empty when the array is malformed.
func (s *batchScanner) next() (elem []byte, ok bool, reason string) {
	b := s.b
	if s.done {
		return nil, false, ""
	}
	i := skipSpace(b, s.i)
	if !s.opened {
		if i >= len(b) || b[i] != '[' {
			return nil, false, reasonBatchNotArray
		}
		s.opened = true
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return nil, false, s.finish(i + 1)
		}
	} else {
		// After an element: ',' and another element, or the closing ']'.
		if i >= len(b) {
			return nil, false, reasonBatchSyntax
		}
		switch b[i] {
		case ']':
			return nil, false, s.finish(i + 1)
		case ',':
			i = skipSpace(b, i+1)
		default:
			return nil, false, reasonBatchSyntax
		}
	}
	if i >= len(b) {
		return nil, false, reasonBatchSyntax
	}
	if b[i] != '{' {
		return nil, false, reasonBatchElement
	}
	end := skipNested(b, i)
	if end > len(b) || b[end-1] != '}' {
		return nil, false, reasonBatchSyntax
	}
	s.i = end
	return b[i:end], true, ""
}

// finish accepts the closing bracket ending at i when only whitespace follows.
func (s *batchScanner) finish(i int) string {
	s.done = true
	if skipSpace(s.b, i) != len(s.b) {
		return reasonBatchSyntax
	}
	return ""
}
