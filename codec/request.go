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

// withDefaults fills zero (or negative) fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxRequestLine <= 0 {
		l.MaxRequestLine = d.MaxRequestLine
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = d.MaxBodyBytes
	}
	return l
}

// MaxRequestBytes bounds the bytes one request can occupy on the wire before the
// Parser completes or refuses it: request line, header block, and a body of
// MaxBodyBytes sent with a Content-Length or chunked (data, framing bounded by
// MaxHeaderBytes+MaxBodyBytes plus the chunk-size line being read, trailers by
// MaxHeaderBytes). Callers can size their per-connection input bound by it.
func (l Limits) MaxRequestBytes() int64 {
	l = l.withDefaults()
	return int64(l.MaxRequestLine) + 3*int64(l.MaxHeaderBytes) + 2*l.MaxBodyBytes + maxChunkLine
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
	KeepAlive      bool   // HTTP/1.1 without "Connection: close", or 1.0 with "keep-alive"
	ExpectContinue bool   // "Expect: 100-continue"
	Gzip           bool   // "Content-Encoding: gzip"
	Chunked        bool   // "Transfer-Encoding: chunked"
	ContentLength  int64  // -1 when absent
	Deadline       []byte // value of the first X-Sluice-Deadline field, nil when absent (ParseDeadline reads it)
	Body           []byte
}

// Parser states. Each names what the next byte is expected to be; the parser keeps
// only the state and offsets into the request's bytes between calls, so a request
// may arrive split at any byte and is still scanned exactly once.
const (
	stStart       uint8 = iota // before the request line; empty lines are skipped
	stStartLF                  // CR of an empty line before the request line seen
	stMethod                   // in the method token
	stTarget                   // in the request target
	stVersion                  // in "HTTP/1.x"
	stRequestLF                // CR ending the request line seen
	stFieldStart               // at the start of a header (or trailer) line
	stFieldName                // in a field name
	stValueOWS                 // after the colon, skipping leading whitespace
	stValue                    // in a field value
	stFieldLF                  // CR ending a field line seen
	stEndLF                    // CR of the empty line ending the block seen
	stChunkSize                // in a chunk-size (hex digits)
	stChunkWS                  // whitespace after the chunk-size
	stChunkExt                 // in chunk extensions, ignored up to CR
	stChunkSizeLF              // CR ending a chunk-size line seen
	stChunkData                // copying chunk data
	stChunkDataCR              // chunk data done, CR expected
	stChunkDataLF              // chunk data done, LF expected
	stBody                     // head done, waiting for Content-Length body bytes
)

// Parser is an incremental HTTP/1.1 request parser for one connection. Parse is
// called with all bytes buffered so far, which start at the current request; the
// Parser remembers how far it has scanned them (offsets, never slices, since the
// caller's buffer may move between calls).
type Parser struct {
	limits Limits

	state  uint8
	pos    int    // next byte to scan; bytes before it have been scanned
	lim    int    // the current phase may not scan at or past this offset...
	limErr *Error // ...or it is refused with this
	err    *Error // a refusal sticks until Reset

	lineStart int // first byte of the line being scanned

	// request line
	methodStart, methodEnd int
	targetStart, targetEnd int
	queryAt                int // offset of the first '?' in the target, -1 when none
	versionStart           int
	minor                  int

	// the field line being scanned
	nameStart, nameEnd   int
	valueStart, valueEnd int

	headersDone bool
	bodyStart   int // first byte after the header block

	hostSeen           bool
	hostStart, hostEnd int
	lengthSeen         bool
	contentLength      int64
	teSeen             bool
	chunked            bool
	connClose          bool
	connKeepAlive      bool
	expectContinue     bool
	gzip               bool
	deadlineSeen       bool
	deadlineStart      int
	deadlineEnd        int

	// chunked body
	chunkLeft int64  // chunk-size being read, then chunk bytes not yet copied
	trailers  bool   // the field lines being scanned are trailers
	scratch   []byte // de-chunked body, reused across requests, at most MaxBodyBytes
}

// Init sets the limits and resets the parser.
func (p *Parser) Init(l Limits) {
	p.limits = l.withDefaults()
	p.Reset()
}

// Reset forgets the request being parsed (and a refusal), keeping limits and scratch.
func (p *Parser) Reset() {
	*p = Parser{
		limits:        p.limits,
		scratch:       p.scratch[:0],
		lim:           p.limits.MaxRequestLine,
		limErr:        ErrRequestLineTooLong,
		queryAt:       -1,
		contentLength: -1,
	}
}

// HeadersDone reports that the header block of the request being parsed is complete,
// so the header fields of the Request last passed to Parse are valid (the caller sends
// "100 Continue" then if ExpectContinue). It is false again once a request completes.
func (p *Parser) HeadersDone() bool { return p.headersDone }

// Parse parses the request at the start of buf.
//
// Complete: n > 0 is the number of bytes the whole request occupies (empty lines
// before it and the body included), err is nil and req is filled; the parser is
// reset for the next request, which starts at buf[n:].
//
// Incomplete: n == 0 and err == nil. The parser remembers how far it scanned; call
// Parse again with the same bytes and more appended (the buffer may have moved).
// Once HeadersDone reports true, req's header fields are filled.
//
// Refused: n == 0 and err is an *Error (one of the Err* values) to answer with. All
// have Close set: the request's end is unknown, so the connection must be closed after
// the answer. Parse keeps returning it until Reset.
func (p *Parser) Parse(buf []byte, req *Request) (n int, err error) {
	if p.limits.MaxRequestLine == 0 {
		p.Init(Limits{})
	}
	if p.err != nil {
		return 0, p.err
	}
	if len(buf) < p.pos {
		panic("codec: Parser.Parse given fewer bytes than already scanned; the buffer must start at the current request")
	}
	n, e := p.run(buf)
	if e != nil {
		p.err = e
		return 0, e
	}
	if p.headersDone {
		p.fill(buf, req, n > 0)
	}
	if n > 0 {
		p.Reset()
	}
	return n, nil
}

// run scans buf from p.pos and returns the request length once complete.
func (p *Parser) run(buf []byte) (int, *Error) {
	if p.state == stBody {
		return p.bodyEnd(len(buf)), nil
	}
	i := p.pos
	for i < len(buf) {
		if i >= p.lim {
			return 0, p.limErr
		}
		c := buf[i]
		switch p.state {
		case stStart:
			switch {
			case c == '\r':
				p.state = stStartLF
			case tokenChar[c]:
				p.methodStart = i
				p.state = stMethod
			case c == '\n':
				return 0, ErrBareLF
			default:
				return 0, ErrMethod
			}
			i++

		case stStartLF:
			if c != '\n' {
				return 0, ErrBareCR
			}
			p.state = stStart
			i++

		case stMethod:
			end := min(len(buf), p.lim)
			i = skip(buf[:end], i, &tokenChar)
			if i == end {
				continue
			}
			if buf[i] != ' ' {
				return 0, ErrMethod
			}
			p.methodEnd = i
			i++
			p.targetStart = i
			p.state = stTarget

		case stTarget:
			end := min(len(buf), p.lim)
			for i < end && targetChar[buf[i]] {
				if buf[i] == '?' && p.queryAt < 0 {
					p.queryAt = i
				}
				i++
			}
			if i == end {
				continue
			}
			if buf[i] != ' ' || i == p.targetStart {
				return 0, ErrTarget
			}
			p.targetEnd = i
			i++
			p.versionStart = i
			p.state = stVersion

		case stVersion:
			end := min(len(buf), p.lim)
			i = skip(buf[:end], i, &versionChar)
			if i == end {
				continue
			}
			switch buf[i] {
			case '\r':
			case '\n':
				return 0, ErrBareLF
			default:
				return 0, ErrVersion
			}
			if e := p.version(buf[p.versionStart:i]); e != nil {
				return 0, e
			}
			p.state = stRequestLF
			i++

		case stRequestLF:
			if c != '\n' {
				return 0, ErrBareCR
			}
			i++
			p.beginBlock(i)

		case stFieldStart:
			p.lineStart = i
			switch {
			case c == '\r':
				p.state = stEndLF
			case tokenChar[c]:
				p.nameStart = i
				p.state = stFieldName
			case c == ' ' || c == '\t':
				return 0, ErrObsFold
			case c == '\n':
				return 0, ErrBareLF
			default:
				return 0, ErrFieldName
			}
			i++

		case stFieldName:
			end := min(len(buf), p.lim)
			i = skip(buf[:end], i, &tokenChar)
			if i == end {
				continue
			}
			switch buf[i] {
			case ':':
				p.nameEnd = i
				p.state = stValueOWS
			case ' ', '\t':
				return 0, ErrSpaceBeforeColon
			default:
				return 0, ErrFieldName
			}
			i++

		case stValueOWS:
			end := min(len(buf), p.lim)
			for i < end && (buf[i] == ' ' || buf[i] == '\t') {
				i++
			}
			if i == end {
				continue
			}
			p.valueStart = i
			p.state = stValue // the value state judges this byte

		case stValue:
			end := min(len(buf), p.lim)
			i = skip(buf[:end], i, &valueChar)
			if i == end {
				continue
			}
			switch buf[i] {
			case '\r':
			case '\n':
				return 0, ErrBareLF
			default:
				return 0, ErrFieldValue
			}
			p.valueEnd = i
			p.state = stFieldLF
			i++

		case stFieldLF:
			if c != '\n' {
				return 0, ErrBareCR
			}
			i++
			if !p.trailers {
				if e := p.field(buf); e != nil {
					return 0, e
				}
			}
			p.state = stFieldStart

		case stEndLF:
			if c != '\n' {
				return 0, ErrBareCR
			}
			i++
			if p.trailers {
				return i, nil
			}
			if e := p.endHeaders(); e != nil {
				return 0, e
			}
			p.headersDone = true
			p.bodyStart = i
			switch {
			case p.chunked:
				p.beginChunkLine(i)
			case p.contentLength > 0:
				p.state = stBody
				p.pos = i
				return p.bodyEnd(len(buf)), nil
			default:
				return i, nil
			}

		default: // chunked body states
			var e *Error
			if i, e = p.chunk(buf, i); e != nil {
				return 0, e
			}
		}
	}
	p.pos = i
	return 0, nil
}

// bodyEnd is the request length once a Content-Length body is all in, else 0.
func (p *Parser) bodyEnd(buffered int) int {
	end := p.bodyStart + int(p.contentLength)
	if buffered < end {
		return 0
	}
	return end
}

// beginBlock starts a header (or trailer) block at offset i.
func (p *Parser) beginBlock(i int) {
	p.lim = i + p.limits.MaxHeaderBytes
	p.limErr = ErrHeaderTooLarge
	p.state = stFieldStart
}

// version checks "HTTP/x.y" and keeps the minor version.
func (p *Parser) version(v []byte) *Error {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || !isDigit(v[5]) || v[6] != '.' || !isDigit(v[7]) {
		return ErrVersion
	}
	if v[5] != '1' || v[7] > '1' {
		return ErrVersionUnsupported
	}
	p.minor = int(v[7] - '0')
	return nil
}

// field interprets the header line just completed. Only the fields that change
// framing or the answer are looked at; the rest are syntax-checked and skipped.
func (p *Parser) field(buf []byte) *Error {
	name := buf[p.nameStart:p.nameEnd]
	end := p.valueEnd
	for end > p.valueStart && (buf[end-1] == ' ' || buf[end-1] == '\t') {
		end--
	}
	value := buf[p.valueStart:end]
	switch len(name) {
	case 4:
		if equalFold(name, "host") {
			if p.hostSeen {
				return ErrHostDuplicate
			}
			p.hostSeen = true
			p.hostStart, p.hostEnd = p.valueStart, end
		}
	case 6:
		if equalFold(name, "expect") {
			return p.expect(value)
		}
	case 10:
		if equalFold(name, "connection") {
			for e, i := listElem(value, 0); e != nil; e, i = listElem(value, i) {
				if equalFold(e, "close") {
					p.connClose = true
				} else if equalFold(e, "keep-alive") {
					p.connKeepAlive = true
				}
			}
		}
	case 14:
		if equalFold(name, "content-length") {
			return p.length(value)
		}
	case 16:
		if equalFold(name, "content-encoding") {
			return p.contentEncoding(value)
		}
	case 17:
		if equalFold(name, "transfer-encoding") {
			return p.transferEncoding(value)
		}
		if !p.deadlineSeen && equalFold(name, "x-sluice-deadline") {
			p.deadlineSeen = true
			p.deadlineStart, p.deadlineEnd = p.valueStart, end
		}
	}
	return nil
}

// length reads a Content-Length. A value over MaxBodyBytes is refused here, before
// any of the body is waited for; one too big for int64 is just as over the limit.
func (p *Parser) length(v []byte) *Error {
	if p.teSeen {
		return ErrLengthAndChunked
	}
	n, ok := decimal(v)
	if !ok {
		return ErrContentLength
	}
	if p.lengthSeen {
		if n != p.contentLength {
			return ErrContentLengthDiffer
		}
		return nil
	}
	if n > p.limits.MaxBodyBytes {
		return ErrBodyTooLarge
	}
	p.lengthSeen = true
	p.contentLength = n
	return nil
}

// transferEncoding accepts only "chunked", once, as the only coding (RFC 9112 §6.1).
// Together with Content-Length it is a smuggling attempt (RFC 9112 §6.3), and an
// HTTP/1.0 recipient could not have framed it.
func (p *Parser) transferEncoding(v []byte) *Error {
	if p.minor == 0 {
		return ErrChunkedHTTP10
	}
	if p.lengthSeen {
		return ErrLengthAndChunked
	}
	p.teSeen = true
	for e, i := listElem(v, 0); e != nil; e, i = listElem(v, i) {
		if p.chunked || !equalFold(e, "chunked") {
			return ErrTransferEncoding
		}
		p.chunked = true
	}
	return nil
}

// expect accepts only 100-continue, which an HTTP/1.0 request may not ask for
// (RFC 9110 §10.1.1: ignored there).
func (p *Parser) expect(v []byte) *Error {
	for e, i := listElem(v, 0); e != nil; e, i = listElem(v, i) {
		if !equalFold(e, "100-continue") {
			return ErrExpectation
		}
		p.expectContinue = p.minor == 1
	}
	return nil
}

// contentEncoding accepts identity and one gzip layer.
func (p *Parser) contentEncoding(v []byte) *Error {
	for e, i := listElem(v, 0); e != nil; e, i = listElem(v, i) {
		switch {
		case equalFold(e, "identity"):
		case (equalFold(e, "gzip") || equalFold(e, "x-gzip")) && !p.gzip:
			p.gzip = true
		default:
			return ErrContentEncoding
		}
	}
	return nil
}

// endHeaders checks what only the whole header block can tell.
func (p *Parser) endHeaders() *Error {
	if p.minor == 1 && !p.hostSeen {
		return ErrHostMissing // RFC 9112 §3.2
	}
	if p.teSeen && !p.chunked {
		return ErrTransferEncoding // an empty Transfer-Encoding list
	}
	return nil
}

// fill points req at the request's parts; the body only once the request is complete.
func (p *Parser) fill(buf []byte, req *Request, complete bool) {
	req.Method = buf[p.methodStart:p.methodEnd]
	if p.queryAt >= 0 {
		req.Path = buf[p.targetStart:p.queryAt]
		req.Query = buf[p.queryAt+1 : p.targetEnd]
	} else {
		req.Path = buf[p.targetStart:p.targetEnd]
		req.Query = nil
	}
	req.Minor = p.minor
	req.Host = nil
	if p.hostSeen {
		req.Host = buf[p.hostStart:p.hostEnd]
	}
	req.KeepAlive = !p.connClose && (p.minor == 1 || p.connKeepAlive)
	req.ExpectContinue = p.expectContinue
	req.Gzip = p.gzip
	req.Chunked = p.chunked
	req.ContentLength = p.contentLength
	req.Deadline = nil
	if p.deadlineSeen {
		req.Deadline = buf[p.deadlineStart:p.deadlineEnd]
	}
	req.Body = nil
	if complete {
		switch {
		case p.chunked:
			req.Body = p.scratch
		case p.contentLength > 0:
			req.Body = buf[p.bodyStart : p.bodyStart+int(p.contentLength)]
		}
	}
}

// skip returns the offset of the first byte at or after b[i] not in class, or len(b).
func skip(b []byte, i int, class *[256]bool) int {
	for _, c := range b[i:] {
		if !class[c] {
			break
		}
		i++
	}
	return i
}

// Byte classes, from RFC 9110 §5.5 (field value) and RFC 3986 (request target:
// visible ASCII; the server judges the path itself); tokenChar is in token.go.
var (
	valueChar   = byteClass(func(c byte) bool { return c == '\t' || c >= 0x20 && c != 0x7f })
	targetChar  = byteClass(func(c byte) bool { return c > 0x20 && c < 0x7f })
	versionChar = byteClass(func(c byte) bool { return isDigit(c) || byteIn("HTP/.", c) })
)
