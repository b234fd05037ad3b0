package analyzer

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// adminCall is one request the fake admin API received.
type adminCall struct {
	method, path, auth, contentType string
	body                            map[string]any
	listening                       bool // the analyzer still accepted connections then
}

// fakeAdmin is a distributor admin API on loopback that answers POST
// /admin/analyzers with the statuses in posts (then 201) and records every call.
type fakeAdmin struct {
	*httptest.Server
	calls     chan adminCall
	mu        sync.Mutex
	posts     []int
	analyzer  string // address to dial on DELETE, to see the listener is still open
	deleteSts int
}

func newFakeAdmin(t *testing.T, posts ...int) *fakeAdmin {
	f := &fakeAdmin{calls: make(chan adminCall, 16), posts: posts, deleteSts: http.StatusNoContent}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := adminCall{method: r.Method, path: r.URL.Path, auth: r.Header.Get("Authorization"), contentType: r.Header.Get("Content-Type")}
		b, _ := io.ReadAll(r.Body)
		if len(b) > 0 {
			if err := json.Unmarshal(b, &c.body); err != nil {
				t.Errorf("%s %s: body %q is not a JSON object: %v", r.Method, r.URL.Path, b, err)
			}
		}
		f.mu.Lock()
		status := http.StatusCreated
		if r.Method == http.MethodDelete {
			status = f.deleteSts
			if conn, err := net.DialTimeout("tcp", f.analyzer, time.Second); err == nil {
				c.listening = true
				conn.Close()
			}
		} else if len(f.posts) > 0 {
			status, f.posts = f.posts[0], f.posts[1:]
		}
		f.mu.Unlock()
		f.calls <- c
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"error":"fake"}`))
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAdmin) next(t *testing.T) adminCall {
	t.Helper()
	select {
	case c := <-f.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the fake admin API got no call")
		return adminCall{}
	}
}

// Registers on start (retrying a 503), deregisters on stop while still listening,
// with the bearer token and the documented JSON body; the token is not logged.
func TestRegistersAndDeregisters(t *testing.T) {
	f := newFakeAdmin(t, http.StatusServiceUnavailable)
	args := []string{"--port", "127.0.0.1:0", "--register", f.URL, "--token", "s3cret", "--weight", "0.2", "--name", "a1"}
	var stderr syncWriter
	done := make(chan int)
	var addr string
	go func() {
		done <- run(args, envOf(nil), io.Discard, &stderr, func(a *Analyzer, stop func()) {
			addr = a.Addr()
			f.mu.Lock()
			f.analyzer = addr
			f.mu.Unlock()
			for i := range 2 { // the 503, then the 201
				c := f.next(t)
				if c.method != "POST" || c.path != "/admin/analyzers" || c.auth != "Bearer s3cret" || c.contentType != "application/json" {
					t.Errorf("attempt %d: %+v", i+1, c)
				}
				if c.body["url"] != "http://"+addr || c.body["weight"] != 0.2 || c.body["name"] != "a1" || len(c.body) != 3 {
					t.Errorf("attempt %d: body %v, want url http://%s, weight 0.2, name a1", i+1, c.body, addr)
				}
			}
			stderr.waitFor(t, "registered with the distributor")
			stop()
		})
	}()
	if code := exitCode(t, done); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	c := f.next(t)
	if c.method != "DELETE" || c.path != "/admin/analyzers/a1" || c.auth != "Bearer s3cret" || !c.listening {
		t.Fatalf("deregistration %+v: want DELETE /admin/analyzers/a1 with the token while the analyzer still listens", c)
	}
	log := stderr.String()
	if !strings.Contains(log, "retrying") || !strings.Contains(log, "registered with the distributor") || strings.Contains(log, "s3cret") {
		t.Fatalf("log should show the retry and the registration, and never the token:\n%s", log)
	}
}

// A 4xx other than 409 is a clear error and exit 1; a 409 counts as registered.
func TestRegisterRefused(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   int
	}{{http.StatusUnauthorized, 1}, {http.StatusConflict, 0}} {
		f := newFakeAdmin(t, tc.status)
		var stderr syncWriter
		code := run([]string{"--port", "127.0.0.1:0", "--register", f.URL, "--weight", "1"}, envOf(nil), io.Discard, &stderr,
			func(a *Analyzer, stop func()) {
				f.next(t)
				if tc.code == 0 {
					stop()
				}
			})
		if code != tc.code {
			t.Errorf("POST answered %d: exit %d, want %d; stderr:\n%s", tc.status, code, tc.code, stderr.String())
		}
		if tc.status == http.StatusUnauthorized && !strings.Contains(stderr.String(), "refused the registration: 401 Unauthorized") {
			t.Errorf("401: stderr does not say so:\n%s", stderr.String())
		}
		if tc.status == http.StatusConflict {
			if c := f.next(t); c.method != "DELETE" {
				t.Errorf("after a 409 and a stop: %+v, want the deregistration", c)
			}
		}
	}
}

func TestRegisterNeedsWeight(t *testing.T) {
	var stderr bytes.Buffer
	code := run([]string{"--register", "http://127.0.0.1:1"}, envOf(nil), io.Discard, &stderr, func(*Analyzer, func()) { t.Error("started") })
	if code != 2 || !strings.Contains(stderr.String(), "--weight") {
		t.Fatalf("exit %d stderr %q", code, stderr.String())
	}
}

// The start-up line names the address the socket is bound to, not the loopback
// address a client would dial.
func TestStartupLineNamesTheBindAddress(t *testing.T) {
	var stderr syncWriter
	code := run([]string{"--port", "0"}, envOf(nil), io.Discard, &stderr, func(a *Analyzer, stop func()) { stop() })
	line := stderr.String()
	if code != 0 || strings.Contains(line, "listening on 127.0.0.1:") ||
		!(strings.Contains(line, "listening on 0.0.0.0:") || strings.Contains(line, "listening on [::]:")) {
		t.Fatalf("exit %d, stderr %q: want the all-interfaces address", code, line)
	}
}

func TestHelpExitsZero(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"-h"}, envOf(nil), &stdout, &stderr, func(*Analyzer, func()) { t.Error("started") })
	if code != 0 || stderr.Len() != 0 || !strings.Contains(stdout.String(), "/metrics, /stats and /internal/simulate/*") ||
		!strings.Contains(stdout.String(), "(env METRICS_ADDR") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr %q", code, stdout.String(), stderr.String())
	}
}

// exitCode awaits run's exit code after a stop.
func exitCode(t *testing.T, done <-chan int) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after stop")
		return -1
	}
}

// syncWriter is a buffer several goroutines write to; waitFor awaits a text in it.
type syncWriter struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{} // closed and replaced on every write
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written != nil {
		close(s.written)
		s.written = nil
	}
	return s.b.Write(p)
}

func (s *syncWriter) waitFor(t *testing.T, text string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		if strings.Contains(s.b.String(), text) {
			s.mu.Unlock()
			return
		}
		if s.written == nil {
			s.written = make(chan struct{})
		}
		written := s.written
		s.mu.Unlock()
		select {
		case <-written:
		case <-deadline:
			t.Fatalf("no %q in:\n%s", text, s.String())
		}
	}
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
