package codec

import (
	"bytes"
	"strconv"
)

// The distributor's side of the analyzer connection: it writes pipelined ingest
// requests and reads their responses back in order.

// Paths of the analyzer endpoints.
const (
	IngestPath = "/ingest"
	BatchPath  = "/ingest/batch"
)

// Bounds on one upstream response. An analyzer answers with a status and a short
// JSON body; anything near these limits is a broken or hostile peer.
const (
	MaxResponseHeaderBytes = 16 << 10 // status line and header fields, blank line included
	MaxResponseBodyBytes   = 1 << 20  // body bytes after de-chunking
	maxResponseChunkLine   = 4 << 10  // a chunk-size line with its extensions
)

// Refusals of the response parser. All of them mean the connection's framing is
// lost (Close), and the request in flight counts as failed. Status is what a proxy
// would answer for it.
var (
	ErrResponseStatusLine   = &Error{Status: 502, Reason: "malformed upstream status line", Close: true}
	ErrResponseHeader       = &Error{Status: 502, Reason: "malformed upstream header field", Close: true}
	ErrResponseHeaderTooBig = &Error{Status: 502, Reason: "upstream response head too large", Close: true}
	ErrResponseLength       = &Error{Status: 502, Reason: "invalid upstream content-length", Close: true}
	ErrResponseBodyTooLarge = &Error{Status: 502, Reason: "upstream response body too large", Close: true}
	ErrResponseChunk        = &Error{Status: 502, Reason: "malformed upstream chunked body", Close: true}
	ErrResponseSwitch       = &Error{Status: 502, Reason: "unexpected upstream protocol switch", Close: true}
)

// Response is one parsed upstream response. Body aliases the buffer passed to
// ResponseParser.Parse, or the parser's scratch buffer when the body came in more
// than one chunk; it stays valid until the caller discards those bytes or parses
// again.
type Response struct {
	Status        int
	Minor         int   // HTTP/1.<Minor>
	KeepAlive     bool  // the connection may carry the next response
	ContentLength int64 // -1 when absent (or ignored: chunked, or a status without body)
	Chunked       bool
	// UntilClose says the body runs to the end of the connection (neither
	// Content-Length nor chunked). Parse then returns the head alone with a nil
	// Body and KeepAlive false: the caller settles this response by its status and
	// closes the connection rather than reading further responses from it.
	UntilClose bool
	// Batch says the response carried "Sluice-Batch: 1": the analyzer accepts
	// POST /ingest/batch.
	Batch bool
	// RetryAfter is the delay-seconds form of a Retry-After header (capped at one
	// day), -1 when absent or in the HTTP-date form, which sluice never sends.
	RetryAfter int
	Body       []byte
}

// ResponseParser reads the responses of one upstream connection, in order. Each
// Parse call gets every byte buffered so far, starting at the current response; the
// parser remembers how far it got, so bytes are not rescanned when a response
// arrives in pieces. Call Reset when the connection is replaced.
type ResponseParser struct {
	start int // bytes of interim (1xx) responses already skipped at the front
	scan  int // where the search for the end of the head resumes

	// Chunked-body progress, as offsets from the start of the body.
	chunkPos   int   // next chunk-size line
	chunks     int   // data chunks seen
	firstOff   int   // the first chunk's data, aliased while it is the only one
	firstLen   int   //
	decoded    int64 // body bytes so far
	scratch    []byte
	scratchSet bool // scratch holds the body (more than one chunk)
}

// Reset forgets any partial response.
func (p *ResponseParser) Reset() {
	scratch := p.scratch[:0]
	*p = ResponseParser{scratch: scratch}
}

// Parse parses the response at the front of buf. It returns n > 0, the bytes the
// response took (skipped 1xx interim responses included), when a whole response is
// there; 0 and a nil error when more bytes are needed; or an *Error when the bytes
// cannot be an HTTP/1.x response, after which the connection is unusable.
func (p *ResponseParser) Parse(buf []byte, r *Response) (n int, err error) {
	for {
		*r = Response{ContentLength: -1, RetryAfter: -1}
		b := buf[p.start:]
		head, err := p.findHead(b)
		if err != nil || head == 0 {
			return p.done(0, err)
		}
		if err := parseResponseHead(b[:head], r); err != nil {
			return p.done(0, err)
		}
		switch {
		case r.Status == 101:
			return p.done(0, ErrResponseSwitch)
		case r.Status < 200: // interim: skip it, the real response follows
			if p.start+head > MaxResponseHeaderBytes {
				// A peer sending endless 100s would otherwise keep us buffering.
				return p.done(0, ErrResponseHeaderTooBig)
			}
			p.start += head
			p.scan = p.start
			continue
		case r.Status == 204 || r.Status == 304:
			r.ContentLength = -1
			return p.done(p.start+head, nil)
		case r.Chunked:
			r.ContentLength = -1
			m, err := p.dechunk(b[head:], r)
			if err != nil || m == 0 {
				return p.done(0, err)
			}
			return p.done(p.start+head+m, nil)
		case r.ContentLength >= 0:
			if r.ContentLength > MaxResponseBodyBytes {
				return p.done(0, ErrResponseBodyTooLarge)
			}
			end := head + int(r.ContentLength)
			if len(b) < end {
				return 0, nil
			}
			r.Body = b[head:end]
			return p.done(p.start+end, nil)
		default:
			r.UntilClose = true
			r.KeepAlive = false
			return p.done(p.start+head, nil)
		}
	}
}

// done resets the progress state unless more bytes are awaited.
func (p *ResponseParser) done(n int, err error) (int, error) {
	if n > 0 || err != nil {
		p.Reset()
	}
	return n, err
}

// findHead returns the length of the head at the front of b, blank line included,
// or 0 when it is not complete yet. Lines end in CRLF or a bare LF (RFC 9112 §2.2
// lets a recipient accept the latter, and some servers send it).
func (p *ResponseParser) findHead(b []byte) (int, error) {
	// Refuse garbage at once instead of waiting for 16 KiB of it.
	const proto = "HTTP/1."
	if k := min(len(b), len(proto)); string(b[:k]) != proto[:k] {
		return 0, ErrResponseStatusLine
	}
	i := max(p.scan-p.start, 0)
	limit := min(len(b), MaxResponseHeaderBytes)
	for {
		j := bytes.IndexByte(b[i:limit], '\n')
		if j < 0 {
			if len(b) >= MaxResponseHeaderBytes {
				return 0, ErrResponseHeaderTooBig
			}
			p.scan = p.start + limit
			return 0, nil
		}
		i += j
		// b[i] ends a line; the head ends if the next line is empty.
		switch {
		case i+1 < limit && b[i+1] == '\n':
			return i + 2, nil
		case i+2 < limit && b[i+1] == '\r' && b[i+2] == '\n':
			return i + 3, nil
		case i+2 >= limit && (i+1 >= limit || b[i+1] == '\r'):
			// Undecided until more bytes come: look at this newline again.
			if len(b) >= MaxResponseHeaderBytes {
				return 0, ErrResponseHeaderTooBig
			}
			p.scan = p.start + i
			return 0, nil
		}
		i++
	}
}

// parseResponseHead parses a complete head (status line, fields, blank line).
func parseResponseHead(h []byte, r *Response) error {
	line, rest := cutLine(h)
	// status-line = HTTP-version SP status-code SP [ reason-phrase ]
	if len(line) < len("HTTP/1.x 200") || line[7] < '0' || line[7] > '9' || line[8] != ' ' ||
		!isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) || line[9] == '0' ||
		(len(line) > 12 && line[12] != ' ') {
		return ErrResponseStatusLine
	}
	for _, c := range line[12:] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return ErrResponseStatusLine
		}
	}
	r.Minor = int(line[7] - '0')
	r.Status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')

	var closeConn, keepAlive, teSeen bool
	for {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break // the blank line; findHead put it last
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return ErrResponseHeader // no name, or obs-fold continuation, or no colon
		}
		name := line[:colon]
		for _, c := range name {
			if !tokenChar[c] {
				return ErrResponseHeader
			}
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return ErrResponseHeader
			}
		}
		switch {
		case equalFold(name, "content-length"):
			cl, ok := parseContentLength(value)
			if !ok || (r.ContentLength >= 0 && cl != r.ContentLength) {
				return ErrResponseLength
			}
			r.ContentLength = cl
		case equalFold(name, "transfer-encoding"):
			// The last coding decides (RFC 9112 §6.3): chunked delimits the body,
			// anything else leaves it running to the close.
			for coding, i := listElem(value, 0); coding != nil; coding, i = listElem(value, i) {
				teSeen = true
				r.Chunked = equalFold(coding, "chunked")
			}
		case equalFold(name, "connection"):
			for opt, i := listElem(value, 0); opt != nil; opt, i = listElem(value, i) {
				switch {
				case equalFold(opt, "close"):
					closeConn = true
				case equalFold(opt, "keep-alive"):
					keepAlive = true
				}
			}
		case equalFold(name, "sluice-batch"):
			r.Batch = string(value) == "1"
		case equalFold(name, "retry-after"):
			r.RetryAfter = delaySeconds(value)
		}
	}
	if teSeen {
		// Transfer-Encoding overrides Content-Length (RFC 9112 §6.3).
		r.ContentLength = -1
	}
	r.KeepAlive = !closeConn && (r.Minor >= 1 || keepAlive)
	return nil
}

// dechunk decodes the chunked body at the front of b (RFC 9112 §7.1), resuming
// where the last call stopped. It returns the bytes the body took on the wire, 0
// when it is not complete. Extensions and trailer fields are read and ignored.
func (p *ResponseParser) dechunk(b []byte, r *Response) (int, error) {
	i := p.chunkPos
	for {
		line, next, err := chunkLine(b, i)
		if err != nil || next == 0 {
			return 0, err
		}
		size, ok := parseChunkSize(line, MaxResponseBodyBytes-p.decoded)
		if !ok {
			if size < 0 {
				return 0, ErrResponseBodyTooLarge
			}
			return 0, ErrResponseChunk
		}
		if size == 0 {
			// last-chunk, then trailer fields up to a blank line.
			for j := next; ; {
				trailer, after, err := chunkLine(b, j)
				if err != nil || after == 0 {
					return 0, err
				}
				if after-next > MaxResponseHeaderBytes {
					return 0, ErrResponseHeaderTooBig
				}
				if len(trailer) == 0 {
					r.Body = p.body(b)
					return after, nil
				}
				j = after
			}
		}
		end := next + int(size)
		if int64(next)-p.decoded > MaxResponseHeaderBytes+MaxResponseBodyBytes {
			// Framing (size lines, extensions, CRLFs) far beyond the data: tiny
			// chunks with long extensions would make a 1 MiB body cost gigabytes.
			return 0, ErrResponseChunk
		}
		switch {
		case len(b) < end+1 || (len(b) < end+2 && b[end] == '\r'):
			return 0, nil
		case b[end] == '\n':
			i = end + 1
		case b[end] == '\r' && b[end+1] == '\n':
			i = end + 2
		default:
			return 0, ErrResponseChunk
		}
		p.addChunk(b, next, end)
		p.chunkPos = i
	}
}

// addChunk records the chunk data b[from:to]. A body of one chunk is aliased;
// only a second chunk makes the parser copy into its scratch buffer.
func (p *ResponseParser) addChunk(b []byte, from, to int) {
	p.decoded += int64(to - from)
	switch p.chunks++; {
	case p.chunks == 1:
		p.firstOff, p.firstLen = from, to-from
	case !p.scratchSet:
		p.scratch = append(p.scratch[:0], b[p.firstOff:p.firstOff+p.firstLen]...)
		p.scratch = append(p.scratch, b[from:to]...)
		p.scratchSet = true
	default:
		p.scratch = append(p.scratch, b[from:to]...)
	}
}

func (p *ResponseParser) body(b []byte) []byte {
	switch {
	case p.scratchSet:
		return p.scratch
	case p.chunks == 1:
		return b[p.firstOff : p.firstOff+p.firstLen]
	default:
		return b[:0]
	}
}

// chunkLine returns the line starting at b[i] without its line end, and the index
// past it; next is 0 when the line is not complete yet.
func chunkLine(b []byte, i int) (line []byte, next int, err error) {
	limit := min(len(b), i+maxResponseChunkLine)
	j := bytes.IndexByte(b[i:limit], '\n')
	if j < 0 {
		if limit-i >= maxResponseChunkLine {
			return nil, 0, ErrResponseChunk
		}
		return nil, 0, nil
	}
	line = b[i : i+j]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, i + j + 1, nil
}

// parseChunkSize reads chunk-size [ BWS ";" ext ] from a chunk line. ok is false
// for a malformed line, and then size is -1 when the size is over room.
func parseChunkSize(line []byte, room int64) (size int64, ok bool) {
	i := 0
	for ; i < len(line); i++ {
		d := hexDigit[line[i]]
		if d < 0 {
			break
		}
		size = size<<4 | int64(d)
		if size > room {
			return -1, false
		}
	}
	if i == 0 {
		return 0, false
	}
	for ; i < len(line) && (line[i] == ' ' || line[i] == '\t'); i++ {
	}
	if i < len(line) && line[i] != ';' {
		return 0, false
	}
	for _, c := range line[i:] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, false
		}
	}
	return size, true
}

// parseContentLength accepts 1*DIGIT, and a list of identical such values, which
// RFC 9110 §8.6 lets a recipient read as one. A value of more than 18 digits is
// refused as malformed: no analyzer's answer is that long.
func parseContentLength(v []byte) (int64, bool) {
	n := int64(-1)
	for e, i := listElem(v, 0); e != nil; e, i = listElem(v, i) {
		x, ok := decimal(e)
		if !ok || len(e) > 18 || n >= 0 && x != n {
			return 0, false
		}
		n = x
	}
	return n, n >= 0
}

// cutLine splits b after its first '\n' and returns the line without CRLF / LF.
func cutLine(b []byte) (line, rest []byte) {
	j := bytes.IndexByte(b, '\n')
	if j < 0 {
		return b, nil
	}
	line, rest = b[:j], b[j+1:]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, rest
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// AppendIngestRequest appends a POST request carrying body, a packet's original
// bytes, to dst.
func AppendIngestRequest(dst []byte, path, host string, body []byte) []byte {
	dst = AppendPostHead(dst, path, host, len(body))
	return append(dst, body...)
}

// AppendBatchRequest appends a POST /ingest/batch request whose body is the JSON
// array of the packets' original bytes: [p1,p2,...].
func AppendBatchRequest(dst []byte, host string, packets [][]byte) []byte {
	dst = AppendBatchHead(dst, host, BatchBodyLen(packets))
	dst = append(dst, '[')
	for i, pk := range packets {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, pk...)
	}
	return append(dst, ']')
}

// AppendBatchHead appends the head of a batch request whose body will be
// bodyLen bytes, for callers that write the packets themselves (from an outbox,
// say) as '[' p1 ',' p2 ... ']'.
func AppendBatchHead(dst []byte, host string, bodyLen int) []byte {
	return AppendPostHead(dst, BatchPath, host, bodyLen)
}

// BatchBodyLen is the length of the batch body holding packets.
func BatchBodyLen(packets [][]byte) int {
	n := 2 + max(len(packets)-1, 0)
	for _, pk := range packets {
		n += len(pk)
	}
	return n
}

// AppendPostHead appends the head of a JSON POST to path with a body of bodyLen
// bytes, which the caller sends after it (e.g. in the same writev).
func AppendPostHead(dst []byte, path, host string, bodyLen int) []byte {
	dst = append(dst, "POST "...)
	dst = append(dst, path...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(bodyLen), 10)
	return append(dst, "\r\n\r\n"...)
}

// DeadlineHeader carries a request's absolute deadline to the analyzer, in
// milliseconds since the Unix epoch: the distributor stops waiting for the answer
// at about that time and sends the packets elsewhere, so an analyzer that reads the
// request only after it must refuse it without counting it (docs/analyzer.md).
const DeadlineHeader = "X-Sluice-Deadline"

// AppendPostHeadDeadline is AppendPostHead with a DeadlineHeader field carrying
// deadline (Unix milliseconds). It appends digits, so it does not allocate.
func AppendPostHeadDeadline(dst []byte, path, host string, bodyLen int, deadline int64) []byte {
	dst = AppendPostHead(dst, path, host, bodyLen)
	dst = dst[:len(dst)-2] // reopen the header block: it ends with the Content-Length line
	dst = append(dst, DeadlineHeader+": "...)
	dst = strconv.AppendInt(dst, deadline, 10)
	return append(dst, "\r\n\r\n"...)
}

// AppendBatchHeadDeadline is AppendBatchHead with a DeadlineHeader field.
func AppendBatchHeadDeadline(dst []byte, host string, bodyLen int, deadline int64) []byte {
	return AppendPostHeadDeadline(dst, BatchPath, host, bodyLen, deadline)
}

// ParseDeadline reads a DeadlineHeader value: decimal Unix milliseconds.
func ParseDeadline(v []byte) (ms int64, ok bool) { return decimal(v) }

// AppendPostHeadWith is AppendPostHead with extra header fields after Host: extra
// is empty or fields each preceded by CRLF ("\r\nAuthorization: Bearer x"). It
// moves the fields after Host to make room, so that AppendPostHead, on the
// distributor's path, stays as it was.
func AppendPostHeadWith(dst []byte, path, host, extra string, bodyLen int) []byte {
	at := len(dst) + len("POST ") + len(path) + len(" HTTP/1.1\r\nHost: ") + len(host)
	dst = AppendPostHead(dst, path, host, bodyLen)
	if extra == "" {
		return dst
	}
	end := len(dst)
	dst = append(dst, extra...)
	copy(dst[at+len(extra):], dst[at:end])
	copy(dst[at:], extra)
	return dst
}

// delaySeconds reads Retry-After's delay-seconds form; -1 when it is not one.
func delaySeconds(v []byte) int {
	if len(v) == 0 {
		return -1
	}
	n := 0
	for _, c := range v {
		if !isDigit(c) {
			return -1
		}
		if n = n*10 + int(c-'0'); n > 86400 {
			n = 86400
		}
	}
	return n
}
