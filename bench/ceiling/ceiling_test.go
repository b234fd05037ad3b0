package ceiling

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func start(t *testing.T) *Server {
	t.Helper()
	srv, err := Start("127.0.0.1:0", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	return srv
}

func dial(t *testing.T, srv *Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

func TestPipelinedRequestsAreAnsweredInOrderWithoutForwarding(t *testing.T) {
	srv := start(t)
	c := dial(t, srv)
	body := `{"packet_id":"p-1","messages":[]}` // not validated: the ceiling only frames
	post := "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
	// Two posts and a health check in one write, the second post split across writes.
	first := post + post[:20]
	if _, err := io.WriteString(c, first); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, post[20:]+"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for i, want := range []int{202, 202, 200} {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i+1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Errorf("answer %d: %d %s, want %d", i+1, resp.StatusCode, b, want)
		}
		if want == 202 && string(b) != `{"status":"accepted"}` {
			t.Errorf("answer %d body %s", i+1, b)
		}
	}
}

func TestMalformedRequestIsRefusedAndClosed(t *testing.T) {
	srv := start(t)
	c := dial(t, srv)
	if _, err := io.WriteString(c, "POST /ingest HTTP/1.1\r\nContent-Length: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 || !resp.Close {
		t.Errorf("got %d close=%t, want 400 and close", resp.StatusCode, resp.Close)
	}
	io.Copy(io.Discard, resp.Body)
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("connection still open after a refusal: %v", err)
	}
}

func TestConnectionCloseIsHonoured(t *testing.T) {
	srv := start(t)
	c := dial(t, srv)
	if _, err := io.WriteString(c, "POST /ingest HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"); err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(all), "HTTP/1.1 202 ") || !strings.Contains(string(all), "Connection: close") {
		t.Errorf("got %q", all)
	}
}
