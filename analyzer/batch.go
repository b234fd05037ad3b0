package analyzer

import "github.com/sluicelog/sluice/codec"

// Batch bodies are a JSON array whose elements are packets, each exactly the bytes
// the emitter sent (docs/analyzer.md). The analyzer never decodes the array into Go
// values: batchScanner checks the array's own punctuation, and each element, which
// must start with '{', is validated in place by codec.ValidatePacketAt with the
// rules of a single /ingest body. The validator finds where the element ends and
// counts its messages by level in the same pass, so each packet's bytes are walked
// once.

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

// next validates the next element, fills p and lv (its messages by level, added to
// what lv holds) and returns its bytes, or returns ok == false at the end of the
// array. reason is non-empty when the array is malformed or the element is not a
// valid packet (the validator's reason); lv is then unchanged.
func (s *batchScanner) next(p *codec.Packet, lv *codec.Levels) (elem []byte, ok bool, reason string) {
	b := s.b
	if s.done {
		return nil, false, ""
	}
	i := codec.SkipJSONSpace(b, s.i)
	if !s.opened {
		if i >= len(b) || b[i] != '[' {
			return nil, false, reasonBatchNotArray
		}
		s.opened = true
		i = codec.SkipJSONSpace(b, i+1)
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
			i = codec.SkipJSONSpace(b, i+1)
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
	end, err := codec.ValidatePacketAt(b, i, p, lv)
	if err != nil {
		return nil, false, reasonOf(err)
	}
	s.i = end
	return b[i:end], true, ""
}

// finish accepts the closing bracket ending at i when only whitespace follows.
func (s *batchScanner) finish(i int) string {
	s.done = true
	if codec.SkipJSONSpace(s.b, i) != len(s.b) {
		return reasonBatchSyntax
	}
	return ""
}
