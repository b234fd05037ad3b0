package proxy

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/panjf2000/gnet/v2"
)

// inConn is an emitter's connection as gnet shows it to onRequests while a request
// spans reads: Peek copies everything buffered into one slice, as gnet does when
// its ring buffer holds a partial request and a new read arrives.
type inConn struct {
	gnet.Conn
	buf     []byte // buffered, not yet discarded
	peek    []byte // Peek's copy, reused
	peeks   int
	copied  int // bytes Peek copied
	written bytes.Buffer
}

func (c *inConn) Peek(int) ([]byte, error) {
	c.peeks++
	c.copied += len(c.buf)
	c.peek = append(c.peek[:0], c.buf...)
	return c.peek, nil
}

func (c *inConn) Discard(n int) (int, error) {
	c.buf = c.buf[:copy(c.buf, c.buf[n:])]
	return n, nil
}

func (c *inConn) InboundBuffered() int            { return len(c.buf) }
func (c *inConn) OutboundBuffered() int           { return 0 }
func (c *inConn) Write(b []byte) (int, error)     { return c.written.Write(b) }
func (c *inConn) Writev(bs [][]byte) (int, error) { panic("not an upstream") }

// bigRequest is a POST /ingest of one packet with a body of about size bytes.
func bigRequest(size int) []byte {
	msg := strings.Repeat("x", size)
	body := `{"emitter_id":"big","packet_id":"big-1","messages":[{"timestamp":1,"level":"INFO","message":"` + msg + `"}]}`
	return []byte("POST /ingest HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// readInPieces feeds req to onRequests piece bytes at a time, as reads arrive.
func readInPieces(s *shard, in *ingress, c *inConn, req []byte, piece int) {
	for off := 0; off < len(req); off += piece {
		c.buf = append(c.buf, req[off:min(off+piece, len(req))]...)
		s.onRequests(in, c)
	}
}

func ingressShard(tb testing.TB) (*shard, *ingress, *inConn) {
	s := testShard(tb, 1, func(c *Config) { c.MaxBodyBytes = 4 << 20 })
	for _, u := range s.dests[0].conns {
		u.redialAt = math.MaxInt64
	}
	c := &inConn{}
	in := &ingress{sh: s, c: c}
	in.parser.Init(s.srv.cfg.Limits())
	return s, in, c
}

// A large body arriving in many reads is peeked (so copied) when its head arrives
// and once more when it is all in, not on every read: a 1 MiB body in 64 KiB reads
// was peeked 17 times, 9 MiB copied.
func TestLargeBodyIsNotPeekedOnEveryRead(t *testing.T) {
	s, in, c := ingressShard(t)
	req := bigRequest(1 << 20)
	for round := 0; round < 2; round++ { // and the next request on the connection too
		c.peeks, c.copied = 0, 0
		readInPieces(s, in, c, req, 64<<10)
		if !bytes.Contains(c.written.Bytes(), []byte(`"packet_id":"big-1"`)) || s.stats.AcceptedPackets != int64(round+1) {
			t.Fatalf("round %d: the request was not answered 202: %q", round, c.written.String())
		}
		c.written.Reset()
		if c.peeks > 2 || c.copied > len(req)+64<<10 {
			t.Fatalf("round %d: %d reads, %d peeks copying %d bytes for a %d-byte request; want 2 peeks, about one copy", round, (len(req)+64<<10-1)/(64<<10), c.peeks, c.copied, len(req))
		}
		s.drain()
	}
	// Split at every byte of the head, then the body: still one request, answered once.
	small := seedRequest("split")
	c.buf = c.buf[:0]
	readInPieces(s, in, c, small, 7)
	if s.stats.AcceptedPackets != 3 {
		t.Fatalf("a request in 7-byte reads: accepted %d, want 3", s.stats.AcceptedPackets)
	}
}

// BenchmarkLargeBody is one 1 MiB packet arriving in 64 KiB reads: what the
// connection's Peeks copy (peeked-B/op) and what the whole request costs.
func BenchmarkLargeBody(b *testing.B) {
	s, in, c := ingressShard(b)
	req := bigRequest(1 << 20)
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		readInPieces(s, in, c, req, 64<<10)
		s.drain()
	}
	b.ReportMetric(float64(c.copied)/float64(b.N), "peeked-B/op")
	b.ReportMetric(float64(c.peeks)/float64(b.N), "peeks/op")
}
