package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// dialFrom opens a connection to addr from the loopback address from (127.0.0.x).
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// closedWithin reports whether the server closed c (EOF or reset) within d,
// reading and returning whatever it sent first.
func closedWithin(c net.Conn, d time.Duration) (bool, []byte) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, got
	}
	return true, got
}

// postOn sends one POST /ingest on c (keep-alive) and returns the status.
func postOn(t *testing.T, br *bufio.Reader, c net.Conn, id string) int {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	body := packetBody(id, 1)
	req := "POST /ingest HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + string(body)
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatalf("post %s: %v", id, err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("post %s: %v", id, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// Connections that never send a byte are closed after REQUEST_TIMEOUT_SEC from
// accept, not left until IDLE_TIMEOUT_SEC (they were: 10,000 silent connections
// held MAX_CONNS for two minutes), and counted; a client that sends keeps being
// answered meanwhile.
func TestSilentConnectionsClosedAfterRequestTimeout(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", func(c *Config) {
		c.RequestTimeout = time.Second
		c.IdleTimeout = time.Minute
	})
	const silent = 20
	conns := make([]net.Conn, silent)
	for i := range conns {
		conns[i] = dialFrom(t, "127.0.0.1", srv.Addr())
	}
	client := dialFrom(t, "127.0.0.1", srv.Addr())
	br := bufio.NewReader(client)
	start := time.Now()
	for i := 0; time.Since(start) < 2500*time.Millisecond; i++ {
		if code := postOn(t, br, client, "alive-"+strconv.Itoa(i)); code != 202 {
			t.Fatalf("request %d on the busy connection: %d", i, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, c := range conns {
		// Closed 1 s after accept, by a check once a second: by 2 s at most; the
		// deadline leaves room for a slow machine.
		closed, got := closedWithin(c, 5*time.Second-time.Since(start))
		if !closed {
			t.Fatalf("silent connection %d still open %v after accept with REQUEST_TIMEOUT_SEC=1", i, time.Since(start))
		}
		if len(got) != 0 {
			t.Fatalf("silent connection %d was answered %q; want a plain close", i, got)
		}
	}
	waitFor(t, "the closes counted", 5*time.Second, func() bool {
		return srv.Snapshot().Closed[closeRequestTimeout] >= silent
	})
	if code := postOn(t, br, client, "still-alive"); code != 202 {
		t.Fatalf("the busy connection after the silent ones closed: %d", code)
	}
}

// MAX_CONNS_PER_IP counts an address's connections on every loop: over it, a new
// connection from that address gets 503 + Retry-After and is closed, while another
// address still connects; when one closes, the address may connect again.
func TestMaxConnsPerIP(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", func(c *Config) {
		c.Loops = 2
		c.MaxConnsPerIP = 2
	})
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c := dialFrom(t, "127.0.0.2", srv.Addr())
		if code := postOn(t, bufio.NewReader(c), c, "a-"+strconv.Itoa(i)); code != 202 {
			t.Fatalf("connection %d from 127.0.0.2 under the limit: %d", i, code)
		}
		held = append(held, c)
	}
	refused := func(from string) {
		t.Helper()
		c := dialFrom(t, from, srv.Addr())
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection over MAX_CONNS_PER_IP from %s: %v, want a 503", from, err)
		}
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("connection over MAX_CONNS_PER_IP from %s: %d %v, want 503 + Retry-After", from, resp.StatusCode, resp.Header)
		}
		if closed, _ := closedWithin(c, 5*time.Second); !closed {
			t.Fatalf("connection over MAX_CONNS_PER_IP from %s left open", from)
		}
	}
	refused("127.0.0.2")
	other := dialFrom(t, "127.0.0.3", srv.Addr())
	if code := postOn(t, bufio.NewReader(other), other, "b-0"); code != 202 {
		t.Fatalf("connection from 127.0.0.3 while 127.0.0.2 is at its limit: %d", code)
	}
	if got := srv.Snapshot().Rejected[rejectConnsPerIP]; got != 1 {
		t.Fatalf("rejected{max_conns_per_ip} = %d, want 1", got)
	}
	_ = held[0].Close()
	ip := netip.MustParseAddr("127.0.0.2")
	waitFor(t, "the closed connection uncounted", 5*time.Second, func() bool { return srv.perIP.count(ip) == 1 })
	again := dialFrom(t, "127.0.0.2", srv.Addr())
	if code := postOn(t, bufio.NewReader(again), again, "a-again"); code != 202 {
		t.Fatalf("connection from 127.0.0.2 after one of its connections closed: %d", code)
	}
	refused("127.0.0.2")
}

// At MAX_CONNS a new client is not refused while its loop holds an idle keep-alive
// connection: the longest-idle one is closed to make room. Only when none is idle
// is the newcomer refused (TestEveryAnswerIsCounted).
func TestMaxConnsEvictsLongestIdle(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	const max = 4
	srv := startDistributor(t, f.url()+"=1", func(c *Config) {
		c.Loops = 1
		c.MaxConns = max
	})
	held := make([]net.Conn, max)
	readers := make([]*bufio.Reader, max)
	for i := range held {
		held[i] = dialFrom(t, "127.0.0.1", srv.Addr())
		readers[i] = bufio.NewReader(held[i])
		if code := postOn(t, readers[i], held[i], "held-"+strconv.Itoa(i)); code != 202 {
			t.Fatalf("connection %d of %d: %d", i+1, max, code)
		}
		time.Sleep(20 * time.Millisecond) // held[0] is the longest idle
	}
	// The most recent is used again: still not the longest idle.
	if code := postOn(t, readers[max-1], held[max-1], "held-again"); code != 202 {
		t.Fatalf("held connection again: %d", code)
	}
	c := dialFrom(t, "127.0.0.1", srv.Addr())
	if code := postOn(t, bufio.NewReader(c), c, "newcomer"); code != 202 {
		t.Fatalf("newcomer at MAX_CONNS with idle connections open: %d, want 202", code)
	}
	if closed, got := closedWithin(held[0], 5*time.Second); !closed || len(got) != 0 {
		t.Fatalf("longest-idle connection: closed %v, sent %q; want closed without an answer", closed, got)
	}
	for i := 1; i < max; i++ {
		if code := postOn(t, readers[i], held[i], "after-"+strconv.Itoa(i)); code != 202 {
			t.Fatalf("held connection %d after the eviction: %d", i, code)
		}
	}
	st := srv.Snapshot()
	if st.Closed[closeEvicted] != 1 || st.Rejected[rejectConns] != 0 || st.Conns != max {
		t.Fatalf("closed{evicted_idle} %d, rejected{max_conns} %d, open %d; want 1, 0, %d", st.Closed[closeEvicted], st.Rejected[rejectConns], st.Conns, max)
	}
}
