package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// refusedWhole writes req whole before reading, as most clients do, and returns the
// answer: a refusal that ends the connection is read, then end of stream, not a
// reset that loses it (which is what closing with unread input did).
func refusedWhole(t *testing.T, srv *Server, req []byte) *http.Response {
	t.Helper()
	c := dialFrom(t, "127.0.0.1", srv.Addr())
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatalf("writing the %d-byte request: %v", len(req), err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer after writing %d bytes: %v", len(req), err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the %d answer's body: %v", resp.StatusCode, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if !resp.Close {
		t.Errorf("%d answer without Connection: close", resp.StatusCode)
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the %d answer: %q, %v; want end of stream", resp.StatusCode, rest, err)
	}
	_ = c.Close()
	return resp
}

func lingerDistributor(t *testing.T) *Server {
	f := newFakeAnalyzer(t, false)
	return startDistributor(t, f.url()+"=1", func(c *Config) { c.MaxBodyBytes = 1 << 20 })
}

// A 2 MiB body (MAX_BODY_BYTES 1 MiB) and a 1 MB header line, each written whole
// before the client reads: the client reads the 413 / 431.
func TestLingeringCloseAfterRefusal(t *testing.T) {
	srv := lingerDistributor(t)
	body := bytes.Repeat([]byte("x"), 2<<20)
	big := append([]byte("POST /ingest HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"), body...)
	if resp := refusedWhole(t, srv, big); resp.StatusCode != 413 {
		t.Fatalf("2 MiB body: %d, want 413", resp.StatusCode)
	}
	line := "POST /ingest HTTP/1.1\r\nHost: sluice\r\nX-Big: " + strings.Repeat("h", 1_000_000) + "\r\nContent-Length: 2\r\n\r\n{}"
	if resp := refusedWhole(t, srv, []byte(line)); resp.StatusCode != 431 {
		t.Fatalf("1 MB header line: %d, want 431", resp.StatusCode)
	}
	// The connections were closed once the clients had closed theirs.
	waitFor(t, "the refused connections closed", 5*time.Second, func() bool { return srv.Snapshot().Conns == 0 })
	if n := srv.Snapshot().Closed[closeLingerLimit]; n != 0 {
		t.Fatalf("closed{linger_limit} = %d for clients that stopped sending, want 0", n)
	}
}

// A client that keeps sending after the refusal is cut off after lingerTime, and
// the connection does not stay open.
func TestLingeringCloseIsBounded(t *testing.T) {
	srv := lingerDistributor(t)
	c := dialFrom(t, "127.0.0.1", srv.Addr())
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	head := "POST /ingest HTTP/1.1\r\nHost: sluice\r\nContent-Length: " + strconv.Itoa(1<<30) + "\r\n\r\n"
	if _, err := c.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 413 {
		t.Fatalf("1 GiB Content-Length: %v %v, want 413", resp, err)
	}
	start := time.Now()
	chunk := make([]byte, 64<<10)
	for time.Since(start) < 10*time.Second {
		if _, err := c.Write(chunk); err != nil {
			break // cut off: by lingerBytes or lingerTime
		}
		time.Sleep(time.Millisecond)
	}
	if took := time.Since(start); took > lingerTime+3*time.Second {
		t.Fatalf("a client that never stops sending was drained for %v, want at most about %v", took, time.Duration(lingerTime))
	}
	waitFor(t, "the refused connection closed", 5*time.Second, func() bool { return srv.Snapshot().Conns == 0 })
	if n := srv.Snapshot().Closed[closeLingerLimit]; n != 1 {
		t.Fatalf("closed{linger_limit} = %d, want 1", n)
	}
}

// Python's http.client and curl send a large body (6 MiB: 2 MiB fits in the
// loopback's kernel buffers, so even an immediate close lost nothing) whole before reading the
// answer; both see the 413.
func TestLingeringCloseRealClients(t *testing.T) {
	srv := lingerDistributor(t)
	url := ingestURL(srv) + "/ingest"
	file := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(file, bytes.Repeat([]byte("x"), 6<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) {
		t.Helper()
		if _, err := exec.LookPath(name); err != nil {
			t.Logf("%s not on PATH: not tried", name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "413" {
			t.Errorf("%s: %q, %v; want 413", name, out, err)
		}
	}
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(ingestURL(srv), "http://"))
	run("python3", "-c", `import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)
c.request("POST", "/ingest", body=open(sys.argv[3], "rb").read(), headers={"Content-Type": "application/json"})
print(c.getresponse().status)`, host, port, file)
	// Expect: (empty) stops curl from waiting for 100 Continue: it sends the body at once.
	run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:", "-H", "Content-Type: application/json", "--data-binary", "@"+file, url)
}

// A connection refused as it opens (here MAX_CONNS_PER_IP) whose client sends its
// request at once, whole, before reading, reads the 503 too.
func TestLingeringCloseAtOpen(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", func(c *Config) { c.MaxConnsPerIP = 1 })
	held := dialFrom(t, "127.0.0.2", srv.Addr())
	if code := postOn(t, bufio.NewReader(held), held, "held"); code != 202 {
		t.Fatalf("first connection from 127.0.0.2: %d", code)
	}
	body := bytes.Repeat([]byte("x"), 2<<20)
	req := append([]byte("POST /ingest HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"), body...)
	c := dialFrom(t, "127.0.0.2", srv.Addr())
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatalf("writing the request on the refused connection: %v", err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("refused connection: %v %v, want 503 + Retry-After", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the 503: %q, %v; want end of stream", rest, err)
	}
	_ = c.Close()
	waitFor(t, "the refused connection closed", 5*time.Second, func() bool { return srv.Snapshot().Conns == 1 })
	if code := postOn(t, bufio.NewReader(held), held, "held-again"); code != 202 {
		t.Fatalf("the held connection after the refusal: %d", code)
	}
	if n := srv.perIP.count(netip.MustParseAddr("127.0.0.2")); n != 1 {
		t.Fatalf("127.0.0.2 counted with %d connections, want 1", n)
	}
}

// A client too slow to finish its request within REQUEST_TIMEOUT_SEC, still
// sending when it is timed out, and that reads only once it has written its whole
// request (as most clients do), reads the 408: the connection closes lingering,
// as after a refusal, so its writes are drained, not reset under the answer.
func TestLingeringCloseAfterRequestTimeout(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
	c := dialFrom(t, "127.0.0.1", srv.Addr())
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	const size = 512 << 10
	head := "POST /ingest HTTP/1.1\r\nHost: sluice\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n"
	if _, err := c.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	// The slow part: 1 KiB every 10 ms for 1.5 s, past the timeout (checked once
	// a second); then the rest of the body at once, then the read.
	chunk := bytes.Repeat([]byte(" "), 1<<10)
	sent := 0
	for start := time.Now(); time.Since(start) < 1500*time.Millisecond; sent += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			t.Fatalf("slow write after %d bytes: %v", sent, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.Write(bytes.Repeat([]byte(" "), size-sent)); err != nil {
		t.Fatalf("the rest of the body: %v (reset instead of a lingering close)", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 408 {
		t.Fatalf("a slow request past REQUEST_TIMEOUT_SEC: %v %v, want to read the 408", resp, err)
	}
	if srv.Snapshot().Closed[closeRequestTimeout] != 1 {
		t.Fatalf("closed %v, want one request_timeout", srv.Snapshot().Closed)
	}
}
