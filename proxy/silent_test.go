package proxy

import (
	"testing"
	"time"
)

// REQUEST_TIMEOUT_SEC=0 (no request deadline) with IDLE_TIMEOUT_SEC=1: a
// connection that never sends a byte still goes after the idle timeout (it stayed
// open for good once the request clock started at accept; found in review).
func TestSilentConnectionIdleWithoutRequestTimeout(t *testing.T) {
	f := newFakeAnalyzer(t, false)
	srv := startDistributor(t, f.url()+"=1", func(c *Config) {
		c.RequestTimeout = 0
		c.IdleTimeout = time.Second
	})
	c := dialFrom(t, "127.0.0.1", srv.Addr())
	if closed, _ := closedWithin(c, 4*time.Second); !closed {
		t.Fatal("a silent connection is still open 4 s after accept with IDLE_TIMEOUT_SEC=1 and REQUEST_TIMEOUT_SEC=0")
	}
}
