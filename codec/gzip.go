package codec

import (
	"bytes"
	"compress/gzip"
	"io"
	"math"
)

// Gunzipper inflates "Content-Encoding: gzip" request bodies. One per event loop:
// it keeps its gzip.Reader (and the inflate window inside it) and its output buffer
// across requests, so steady-state use does not allocate. Not safe for concurrent use.
type Gunzipper struct {
	src bytes.Reader
	zr  *gzip.Reader
	out []byte
}

// Gunzip inflates src. It reads at most limit+1 bytes of output, so a compression
// bomb costs at most that much memory and work: more than limit is ErrGzipTooLarge,
// anything that is not a well-formed gzip stream (concatenated members allowed,
// nothing after them) is ErrGzipBody. The result aliases the Gunzipper's buffer and
// is valid until the next call.
func (g *Gunzipper) Gunzip(src []byte, limit int64) ([]byte, error) {
	bound := math.MaxInt // output bytes to read at most: one past the limit
	if limit < int64(math.MaxInt) {
		bound = int(limit) + 1
	}
	g.src.Reset(src)
	if g.zr == nil {
		zr, err := gzip.NewReader(&g.src)
		if err != nil {
			return nil, ErrGzipBody
		}
		g.zr = zr
	} else if err := g.zr.Reset(&g.src); err != nil {
		return nil, ErrGzipBody
	}
	out := g.out[:0]
	defer func() { g.out = out[:0] }()
	for {
		room := min(cap(out), bound)
		if len(out) == room {
			if room == bound {
				return nil, ErrGzipTooLarge
			}
			out = growOutput(out, bound, len(src))
			continue
		}
		n, err := g.zr.Read(out[len(out):room])
		out = out[:len(out)+n]
		if err == io.EOF {
			if len(out) == bound {
				return nil, ErrGzipTooLarge
			}
			return out, nil
		}
		if err != nil {
			return nil, ErrGzipBody
		}
	}
}

// growOutput doubles out, starting from a guess at the inflated size, never past
// bound bytes of capacity.
func growOutput(out []byte, bound, srcLen int) []byte {
	c := min(max(2*cap(out), 4*srcLen, 16<<10), bound)
	grown := make([]byte, len(out), c)
	copy(grown, out)
	return grown
}
