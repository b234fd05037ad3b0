package analyzer

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startAnalyzer starts an analyzer on a free loopback port and stops it when the
// test ends.
func startAnalyzer(t testing.TB, cfg Config) *Analyzer {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.ID == "" {
		cfg.ID = "a1"
	}
	a := New(cfg)
	if err := a.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Stop(); err != nil && !errors.Is(err, ErrNotStarted) {
			t.Errorf("Stop: %v", err)
		}
	})
	return a
}

// client is a raw keep-alive HTTP/1.1 connection, so tests control pipelining and
// see exactly what the server writes.
type client struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func request(method, path, body string) string {
	return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		method, path, len(body), body)
}

func (c *client) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, raw); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

type response struct {
	status int
	header http.Header
	body   string
	close  bool // "Connection: close" (net/http removes the header itself)
}

// read reads one response, failing the test on error or after 5s.
func (c *client) read() response {
	c.t.Helper()
	r, err := c.readErr()
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	return r
}

func (c *client) readErr() (response, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return response{}, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b), close: resp.Close}, nil
}

func (c *client) do(method, path, body string) response {
	c.t.Helper()
	c.send(request(method, path, body))
	return c.read()
}

// closedByPeer reports whether the server has closed the connection: a read ends
// with EOF or a reset within the timeout.
func (c *client) closedByPeer(timeout time.Duration) bool {
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	_, err := c.br.ReadByte()
	if err == nil {
		return false
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

// packet builds a packet body with one message per level given.
func packet(id string, levels ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"emitter_id":"e1","packet_id":%q,"messages":[`, id)
	for i, l := range levels {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"timestamp":1640995200000,"level":%q,"message":"m%d","metadata":{"level":"not this one","n":[1,{"level":"nor this"}]}}`, l, i)
	}
	b.WriteString(`]}`)
	return b.String()
}

func decode(t testing.TB, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
}

// eventually polls cond every millisecond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}
