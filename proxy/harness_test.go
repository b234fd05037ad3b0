package proxy

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"testing"

	"github.com/panjf2000/gnet/v2"
)

// The fake-upstream harness: a shard with no event loop behind it, whose upstream
// connections are fakeConns that record what the shard writes and hand it the
// answers a test scripts. Everything runs on the test's goroutine, so shard logic
// (retry, evacuate, spill, the linger, plan, dropAll) is tested deterministically
// and without sockets.

// testShard builds a one-loop shard for analyzers fake analyzers (weights 1..5 by
// position), with tweak applied to the configuration first.
func testShard(tb testing.TB, analyzers int, tweak func(*Config)) *shard {
	tb.Helper()
	cfg := DefaultConfig()
	spec := ""
	for i := 0; i < analyzers; i++ {
		if i > 0 {
			spec += ","
		}
		spec += "http://127.0.0.1:" + strconv.Itoa(9001+i) + "=" + strconv.Itoa(1+i%5)
	}
	var err error
	if cfg.Analyzers, err = ParseAnalyzers(spec); err != nil {
		tb.Fatal(err)
	}
	cfg.Loops = 1
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	answerProbes(srv) // every analyzer answered its first probe: eligible
	s := newShard(srv, 0, &fakeLoop{})
	s.loop.(*fakeLoop).sh = s
	for _, d := range s.dests {
		for _, u := range d.conns {
			u.redialAt = math.MaxInt64 // never dial: connections are opened by open()
		}
	}
	return s
}

// fakeLoop stands in for the shard's gnet loop: Close closes a fakeConn at once and
// runs the shard's OnClose work, as gnet does on the loop.
type fakeLoop struct {
	gnet.EventLoop
	sh *shard
}

func (l *fakeLoop) Close(c gnet.Conn) error {
	fc := c.(*fakeConn)
	if !fc.closed {
		fc.closed = true
		l.sh.closed(fc.u, nil)
	}
	return nil
}

// fakeConn is one upstream connection: what the shard wrote, and the answers
// waiting to be read.
type fakeConn struct {
	gnet.Conn
	u       *upstream
	wrote   bytes.Buffer
	in      []byte
	closed  bool
	discard bool // benchmarks: count what is written, keep none of it
	written int
}

func (c *fakeConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		if !c.discard {
			c.wrote.Write(b)
		}
		n += len(b)
	}
	c.written += n
	return n, nil
}

func (c *fakeConn) Peek(n int) ([]byte, error) { return c.in, nil }

func (c *fakeConn) Discard(n int) (int, error) {
	c.in = c.in[n:]
	return n, nil
}

// open connects every upstream slot of every analyzer to a fakeConn, as OnOpen
// would, and returns them by analyzer and slot.
func open(s *shard) [][]*fakeConn {
	var all [][]*fakeConn
	for _, d := range s.dests {
		var cs []*fakeConn
		for _, u := range d.conns {
			c := &fakeConn{u: u}
			s.opened(u, c)
			cs = append(cs, c)
		}
		all = append(all, cs)
	}
	return all
}

// answer feeds n answers of status to c and lets the shard read them.
func answer(s *shard, c *fakeConn, n, status int) {
	for range n {
		c.in = append(c.in, "HTTP/1.1 "+strconv.Itoa(status)+" X\r\nContent-Length: 0\r\n\r\n"...)
	}
	if s.onResponses(c.u, c) == gnet.Close {
		_ = s.loop.Close(c)
	}
	s.flushDirty()
}

// requests parses what the shard wrote to c (and forgets it): each request's path
// and body.
func requests(t *testing.T, c *fakeConn) (paths []string, bodies [][]byte) {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(c.wrote.Bytes()))
	c.wrote.Reset()
	for {
		req, err := http.ReadRequest(r)
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("the shard wrote an unreadable request: %v", err)
		}
		b, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatalf("body: %v", err)
		}
		paths, bodies = append(paths, req.URL.Path), append(bodies, b)
	}
}

// offer runs one packet of msgs messages through the shard's accept and flushes,
// as the end of an event does.
func offer(s *shard, id string, msgs int) acceptResult {
	r := s.accept(packetBody(id, msgs), msgs)
	s.flushDirty()
	return r
}

// shardInvariant checks the accounting on the shard's own counters, and that the
// distributor's budget agrees with them.
func shardInvariant(t *testing.T, s *shard) {
	t.Helper()
	st := s.stats.clone()
	tot := st.Total()
	if got := tot.DeliveredPackets + tot.Queued + tot.InFlight + tot.DroppedTotal() + tot.LeftInSpool; got != st.AcceptedPackets {
		t.Fatalf("accepted %d != delivered %d + queued %d + in flight %d + dropped %d",
			st.AcceptedPackets, tot.DeliveredPackets, tot.Queued, tot.InFlight, tot.DroppedTotal())
	}
	if h := s.srv.budget.held.Load(); h != tot.Queued+tot.InFlight {
		t.Fatalf("budget holds %d packets, the shard %d", h, tot.Queued+tot.InFlight)
	}
	for i, d := range s.dests {
		ds := &st.Dests[i]
		if got := ds.DeliveredPackets + ds.Queued + ds.InFlight + ds.DroppedTotal() + ds.LeftInSpool + ds.Rerouted; got != ds.RoutedPackets {
			t.Fatalf("%s: routed %d != delivered+queued+in flight+dropped+rerouted %d", d.name, ds.RoutedPackets, got)
		}
		if ds.Queued != int64(d.outbox.len()) {
			t.Fatalf("%s: Queued %d, outbox holds %d", d.name, ds.Queued, d.outbox.len())
		}
		inFlight, bytes := 0, int64(0)
		for _, u := range d.conns {
			inFlight += u.parcels.len()
			for k := range u.parcels.len() {
				bytes += int64(u.parcels.at(k).body.Len())
			}
		}
		for k := range d.outbox.len() {
			bytes += int64(d.outbox.at(k).body.Len())
		}
		if ds.InFlight != int64(inFlight) || ds.QueuedBytes != bytes {
			t.Fatalf("%s: InFlight %d QueuedBytes %d, connections hold %d, %d bytes held", d.name, ds.InFlight, ds.QueuedBytes, inFlight, bytes)
		}
		b := &s.srv.budget.dests[i]
		if b.n.Load() != ds.Queued+ds.InFlight || b.bytes.Load() != ds.QueuedBytes {
			t.Fatalf("%s: budget %d packets %d bytes, shard %d, %d", d.name, b.n.Load(), b.bytes.Load(), ds.Queued+ds.InFlight, ds.QueuedBytes)
		}
	}
}
