package proxy

import (
	"syscall"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicelog/sluice/codec"
)

// Lingering close, as nginx does it. A refusal that ends the connection (413, 431,
// 400 and the parser's other errors) usually comes while the client is still
// sending: a body over MAX_BODY_BYTES, a header line over MAX_HEADER_BYTES. Closing
// the socket with unread input makes the kernel send a reset, and a client that
// writes its whole request before reading (most do) gets ECONNRESET instead of the
// answer. So the connection is not closed at once: the answer is written (it says
// Connection: close), the write side is shut down once it is flushed (the client
// reads the answer, then end of stream), and what the client still sends is read
// and thrown away until it closes its side, for at most lingerTime and lingerBytes;
// then the connection is closed. Everything runs on the loop: reads in OnTraffic,
// the flush check and the deadline on the shard's tick (every 10 ms).
const (
	lingerTime  = 2 * 1e9 // ns: longest a refused connection is drained
	lingerBytes = 8 << 20 // most input discarded from a refused connection
	// maxLingerers bounds a loop's lingering connections; past it a refused
	// connection is closed at once. Those refused as they open (MAX_CONNS,
	// MAX_CONNS_PER_IP) are not counted in MAX_CONNS, so this is what bounds the
	// sockets a flood of them holds.
	maxLingerers = 1024
)

// linger starts the lingering close of in, whose answer was just written; false
// when the loop has maxLingerers already (the caller closes it then).
func (s *shard) linger(in *ingress, c gnet.Conn) bool {
	if in.gone {
		return true // the answer's write failed and closed it
	}
	if len(s.lingerers) >= maxLingerers {
		return false
	}
	in.lingering = true
	in.lingerUntil = s.now + lingerTime
	in.discarded = 0
	s.lingerers = append(s.lingerers, in)
	s.busy() // lingerTick runs on the fast tick
	s.lingerShut(in, c)
	return true
}

// refuseOpen answers 503 to a connection refused as it opens, and closes it
// lingering: its client may already be sending a request. Its answer is written
// by gnet after OnOpen returns, so the write side is shut down by the next tick
// that finds it flushed.
func (s *shard) refuseOpen(c gnet.Conn, reason string) ([]byte, gnet.Action) {
	s.stats.Responses[statusIndex(503)]++
	out := codec.AppendError(nil, 503, reason, false, "Retry-After: 1\r\n")
	if len(s.lingerers) >= maxLingerers {
		c.SetContext(nil)
		return out, gnet.Close
	}
	now := nanotime()
	in := &ingress{sh: s, c: c, refusedAtOpen: true, last: now, opened: now}
	c.SetContext(in)
	s.addIngress(in)
	// The write side is shut once the answer is out: by the next tick, or the
	// client's first bytes (gnet writes out right after OnOpen, before any read).
	in.lingering, in.lingerUntil = true, now+lingerTime
	s.lingerers = append(s.lingerers, in)
	s.busy()
	return out, gnet.None
}

// lingerShut shuts the write side of c down once its answer is flushed.
func (s *shard) lingerShut(in *ingress, c gnet.Conn) {
	if in.shut || c.OutboundBuffered() > 0 {
		return
	}
	in.shut = true
	if fc, ok := c.(interface{ Fd() int }); ok {
		_ = syscall.Shutdown(fc.Fd(), syscall.SHUT_WR)
	}
}

// lingerRead discards what a lingering connection sent; past the byte bound it is
// closed.
func (s *shard) lingerRead(in *ingress, c gnet.Conn) gnet.Action {
	n := c.InboundBuffered()
	if n > 0 {
		_, _ = c.Discard(n)
		in.discarded += n
	}
	s.now = nanotime()
	s.lingerShut(in, c)
	if in.discarded > lingerBytes || s.now > in.lingerUntil {
		s.stats.Closed[closeLingerLimit]++
		return gnet.Close
	}
	return gnet.None
}

// lingerTick shuts down the write side of lingering connections whose answer has
// since been flushed, and closes those past lingerTime.
func (s *shard) lingerTick() {
	for i := 0; i < len(s.lingerers); i++ {
		in := s.lingerers[i]
		if s.now > in.lingerUntil {
			s.stats.Closed[closeLingerLimit]++
			// Off the list first, not by OnClose: Close may not call it (a connection
			// gnet already let go of), and slot i must not be looked at forever.
			in.lingering = false
			last := len(s.lingerers) - 1
			s.lingerers[i], s.lingerers[last] = s.lingerers[last], nil
			s.lingerers = s.lingerers[:last]
			_ = s.loop.Close(in.c)
			i--
			continue
		}
		s.lingerShut(in, in.c)
	}
}

// unlinger takes a closed connection off s.lingerers.
func (s *shard) unlinger(in *ingress) {
	for i, x := range s.lingerers {
		if x == in {
			last := len(s.lingerers) - 1
			s.lingerers[i] = s.lingerers[last]
			s.lingerers[last] = nil
			s.lingerers = s.lingerers[:last]
			return
		}
	}
}
