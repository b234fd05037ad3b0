package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// distributor_responses_total counts every answer on the ingest port: the admin
// pages (rendered off the loop, counted in their write's callback on the loop),
// /health's 503, and the MAX_CONNS 503 sent as a connection opens. Pages and the
// MAX_CONNS 503 were not counted.
func TestEveryAnswerIsCounted(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", func(c *Config) {
		c.MaxConns = 1
		c.Loops = 1
	})
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	get := func(path string) int {
		resp, err := client.Get(ingestURL(srv) + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	counted := func(code int) int64 { return srv.Snapshot().Responses[statusIndex(code)] }
	base200, base503, base404 := counted(200), counted(503), counted(404)
	for _, p := range []string{"/health", "/metrics-json", "/metrics"} {
		if code := get(p); code != 200 {
			t.Fatalf("GET %s: %d", p, code)
		}
	}
	if code := get("/nope"); code != 404 {
		t.Fatalf("GET /nope: %d", code)
	}
	_, _, _ = srv.ctl.setDrained(srv.View().Members[0].Name, true) // no analyzer left: /health answers 503
	if code := get("/health"); code != 503 {
		t.Fatalf("GET /health with every analyzer drained: %d", code)
	}
	// The connection MAX_CONNS allows is busy (a request under way: an idle one
	// would be closed to make room); a second is refused with a 503 as it opens.
	client.CloseIdleConnections()
	waitFor(t, "the client's connection closed", 5*time.Second, func() bool { return srv.Snapshot().Conns == 0 })
	busy, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := busy.Write([]byte("POST /ingest HTTP/1.1\r\nHost: sluice\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the partial request read", 5*time.Second, func() bool {
		return onSomeLoop(srv, func(sh *shard) bool {
			for _, in := range sh.ingresses {
				if in.last != in.opened {
					return true
				}
			}
			return false
		})
	})
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("second connection over MAX_CONNS=1: %v %v", resp, err)
	}
	// A page's callback may run just after the client has read the page.
	waitFor(t, "every answer counted", 5*time.Second, func() bool {
		return counted(200)-base200 == 3 && counted(404)-base404 == 1 && counted(503)-base503 == 2
	})
}

// onSomeLoop reports whether cond holds on some shard, each checked on its own loop.
func onSomeLoop(srv *Server, cond func(*shard) bool) bool {
	for _, sh := range srv.shardList() {
		ch := make(chan bool, 1)
		run := gnet.RunnableFunc(func(context.Context) error { ch <- cond(sh); return nil })
		if sh.loop.Execute(context.Background(), run) != nil {
			continue
		}
		select {
		case ok := <-ch:
			if ok {
				return true
			}
		case <-time.After(5 * time.Second):
		}
	}
	return false
}
