package codec

import "math"

// maxChunkLine bounds a chunk-size line with its extensions. Extensions are ignored,
// so nothing legitimate comes near it; it keeps a peer from streaming one endless line.
const maxChunkLine = 4 << 10

// beginChunkLine starts a chunk-size line at offset i.
func (p *Parser) beginChunkLine(i int) {
	p.lineStart = i
	p.lim = i + maxChunkLine
	p.limErr = ErrChunkLineTooLong
	p.chunkLeft = 0
	p.state = stChunkSize
}

// chunk runs the chunked-body states (RFC 9112 §7.1) from buf[i] until the buffer
// ends or the last chunk's line is done (trailers then go through the field states).
// Chunk data is copied into p.scratch as it arrives, so each byte is touched once.
func (p *Parser) chunk(buf []byte, i int) (int, *Error) {
	for i < len(buf) {
		if i >= p.lim {
			return i, p.limErr
		}
		c := buf[i]
		switch p.state {
		case stChunkSize:
			if h := hexDigit[c]; h >= 0 {
				d := int64(h)
				// Refuse as soon as the size read so far, with the body before it,
				// is over the limit: a huge size is never waited for, nor overflows.
				if p.chunkLeft > (math.MaxInt64-d)>>4 {
					return i, ErrBodyTooLarge
				}
				p.chunkLeft = p.chunkLeft<<4 | d
				if p.chunkLeft > p.limits.MaxBodyBytes-int64(len(p.scratch)) {
					return i, ErrBodyTooLarge
				}
				i++
				continue
			}
			if i == p.lineStart {
				return i, ErrChunkSize // no digits
			}
			switch c {
			case '\r':
				p.state = stChunkSizeLF
			case ';':
				p.state = stChunkExt
			case ' ', '\t':
				p.state = stChunkWS
			case '\n':
				return i, ErrBareLF
			default:
				return i, ErrChunkSize
			}
			i++

		case stChunkWS: // BWS before ';' (RFC 9112 §7.1.1)
			switch c {
			case ' ', '\t':
			case ';':
				p.state = stChunkExt
			case '\r':
				p.state = stChunkSizeLF
			case '\n':
				return i, ErrBareLF
			default:
				return i, ErrChunkSize
			}
			i++

		case stChunkExt:
			end := min(len(buf), p.lim)
			i = skip(buf[:end], i, &valueChar)
			if i == end {
				continue
			}
			switch buf[i] {
			case '\r':
				p.state = stChunkSizeLF
			case '\n':
				return i, ErrBareLF
			default:
				return i, ErrChunkExtension
			}
			i++

		case stChunkSizeLF:
			if c != '\n' {
				return i, ErrBareCR
			}
			i++
			// The request stays buffered until it is complete, so the framing around
			// the data is bounded too (by header plus body limit: generous for any
			// client's chunking): 1-byte chunks with 4 KiB extensions would otherwise
			// make a 1 MiB body cost gigabytes.
			if int64(i-p.bodyStart-len(p.scratch)) > int64(p.limits.MaxHeaderBytes)+p.limits.MaxBodyBytes {
				return i, ErrChunkFraming
			}
			if p.chunkLeft == 0 { // last-chunk: trailers follow
				p.trailers = true
				p.lineStart = i
				p.beginBlock(i)
				return i, nil
			}
			p.lim = math.MaxInt // the data and its CRLF are bounded by the chunk size
			p.state = stChunkData

		case stChunkData:
			k := len(buf) - i
			if int64(k) > p.chunkLeft {
				k = int(p.chunkLeft)
			}
			p.scratch = appendBody(p.scratch, buf[i:i+k], p.limits.MaxBodyBytes)
			p.chunkLeft -= int64(k)
			i += k
			if p.chunkLeft == 0 {
				p.state = stChunkDataCR
			}

		case stChunkDataCR:
			if c != '\r' {
				return i, ErrChunkData
			}
			p.state = stChunkDataLF
			i++

		case stChunkDataLF:
			if c != '\n' {
				return i, ErrChunkData
			}
			i++
			p.beginChunkLine(i)

		default:
			return i, nil // not a chunk state: the caller goes on
		}
	}
	return i, nil
}

// appendBody appends data to body, growing it at most to limit bytes of capacity (the
// caller has already checked that the data fits within limit).
func appendBody(body, data []byte, limit int64) []byte {
	need := len(body) + len(data)
	if need > cap(body) {
		c := max(2*cap(body), need, 4<<10)
		if int64(c) > limit {
			c = int(limit)
		}
		grown := make([]byte, len(body), c)
		copy(grown, body)
		body = grown
	}
	return append(body, data...)
}

// hexDigit maps a byte to its hexadecimal digit value, -1 when it is not one.
// Chunk sizes in requests and responses and JSON \u escapes all read it.
var hexDigit = func() (t [256]int8) {
	for c := range 256 {
		switch {
		case c >= '0' && c <= '9':
			t[c] = int8(c - '0')
		case c >= 'a' && c <= 'f':
			t[c] = int8(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			t[c] = int8(c - 'A' + 10)
		default:
			t[c] = -1
		}
	}
	return t
}()
