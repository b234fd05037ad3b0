package codec

// Limits bounds what a Parser accepts from one connection. Zero fields take the
// defaults of DefaultLimits.
type Limits struct {
	MaxRequestLine int   // bytes in the request line, CRLF included; over → 414
	MaxHeaderBytes int   // bytes in the whole header block; over → 431
	MaxBodyBytes   int64 // body bytes after de-chunking; over → 413
}

// DefaultLimits are the limits sluice ships with.
func DefaultLimits() Limits {
	return Limits{MaxRequestLine: 8 << 10, MaxHeaderBytes: 16 << 10, MaxBodyBytes: 1 << 20}
}

// Request is one parsed HTTP/1.1 request. Every slice aliases the buffer passed to
// Parser.Parse (Body may instead alias the Parser's scratch buffer when the body was
// chunked) and stays valid until the caller discards those bytes or parses again.
type Request struct {
	Method         []byte
	Path           []byte // request target up to '?'
	Query          []byte // after '?', without it
	Minor          int    // HTTP/1.<Minor>
	Host           []byte
	KeepAlive      bool  // HTTP/1.1 without "Connection: close", or 1.0 with "keep-alive"
	ExpectContinue bool  // "Expect: 100-continue"
	Gzip           bool  // "Content-Encoding: gzip"
	Chunked        bool  // "Transfer-Encoding: chunked"
	ContentLength  int64 // -1 when absent
	Body           []byte
}

// Parser is an incremental HTTP/1.1 request parser for one connection.
type Parser struct {
	limits Limits
}

// Init sets the limits and resets the parser.
func (p *Parser) Init(l Limits) { p.limits = l }
