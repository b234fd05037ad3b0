// Package ceiling is the benchmark's ceiling: a gnet server with the distributor's
// engine settings that frames each HTTP/1.1 request with sluice's codec and answers
// 202 at once, forwarding nothing and validating nothing. No distributor on the
// same machine, loop count and load can answer faster, so its throughput is the
// measure the distributor's is divided by.
package ceiling

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/sluicelog/sluice/codec"
)

// acceptedBody is what every POST gets, the seed distributor's answer without the id.
var acceptedBody = []byte(`{"status":"accepted"}`)

var healthBody = []byte(`{"status":"healthy"}`)

// Server is a running ceiling server.
type Server struct {
	addr string
	eng  gnet.Engine
	done chan error
}

// Start listens on addr (host:port; port 0 picks one) with loops event loops (0:
// one per CPU) and returns once it accepts connections.
func Start(addr string, loops int) (*Server, error) {
	h := &handler{booted: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- gnet.Run(h, "tcp://"+addr,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(loops),
			gnet.WithReusePort(false),
			gnet.WithReuseAddr(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLoadBalancing(gnet.LeastConnections),
			gnet.WithLogger(quietLogger{}),
		)
	}()
	select {
	case <-h.booted:
	case err := <-done:
		return nil, fmt.Errorf("ceiling: listen on %s: %w", addr, err)
	}
	bound, err := boundAddr(h.eng)
	if err != nil {
		_ = h.eng.Stop(context.Background())
		<-done
		return nil, fmt.Errorf("ceiling: %w", err)
	}
	return &Server{addr: bound, eng: h.eng, done: done}, nil
}

// Addr is the address the server listens on (127.0.0.1:<port> when bound to all).
func (s *Server) Addr() string { return s.addr }

// Stop closes the listener and every connection.
func (s *Server) Stop() error {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel() // signal the stop only; waiting on done is quicker than gnet's polling
	if err := s.eng.Stop(cancelled); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("ceiling: stop: %w", err)
	}
	if err := <-s.done; err != nil {
		return fmt.Errorf("ceiling: stop: %w", err)
	}
	return nil
}

type handler struct {
	gnet.BuiltinEventEngine
	booted chan struct{}
	eng    gnet.Engine
}

// conn is one connection's parser and answer buffer; touched only on its loop.
type conn struct {
	parser codec.Parser
	req    codec.Request
	out    []byte
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.eng = eng
	close(h.booted)
	return gnet.None
}

func (h *handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	c := &conn{}
	c.parser.Init(codec.DefaultLimits())
	gc.SetContext(c)
	return nil, gnet.None
}

// OnTraffic answers every complete request buffered, in order, with one Write, and
// leaves a partial request for the next event.
func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.Close
	}
	buf, _ := gc.Peek(-1)
	c.out = c.out[:0]
	off := 0
	action := gnet.None
	for off < len(buf) {
		n, err := c.parser.Parse(buf[off:], &c.req)
		if err != nil {
			status, reason := 400, "bad request"
			var ce *codec.Error
			if errors.As(err, &ce) {
				status, reason = ce.Status, ce.Reason
			}
			c.out = codec.AppendError(c.out, status, reason, false, "")
			action = gnet.Close
			break
		}
		if n == 0 {
			break
		}
		off += n
		keep := c.req.KeepAlive
		if string(c.req.Method) == "GET" {
			c.out = codec.AppendResponse(c.out, 200, keep, "", healthBody)
		} else {
			c.out = codec.AppendResponse(c.out, 202, keep, "", acceptedBody)
		}
		if !keep {
			action = gnet.Close
			break
		}
	}
	if off > 0 && action == gnet.None {
		_, _ = gc.Discard(off)
	}
	if len(c.out) > 0 {
		_, _ = gc.Write(c.out)
	}
	return action
}

// boundAddr reads the listener's address, so port 0 can be used.
func boundAddr(eng gnet.Engine) (string, error) {
	fd, err := eng.Dup()
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", fmt.Errorf("getsockname: %w", err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		ip := net.IP(sa.Addr[:])
		if ip.IsUnspecified() {
			ip = net.IPv4(127, 0, 0, 1)
		}
		return net.JoinHostPort(ip.String(), strconv.Itoa(sa.Port)), nil
	case *unix.SockaddrInet6:
		ip := net.IP(sa.Addr[:])
		if ip.IsUnspecified() {
			ip = net.IPv6loopback
		}
		return net.JoinHostPort(ip.String(), strconv.Itoa(sa.Port)), nil
	}
	return "", fmt.Errorf("unexpected listener address %T", sa)
}

// quietLogger keeps gnet's errors and drops its start-up chatter.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any)        {}
func (quietLogger) Infof(string, ...any)         {}
func (quietLogger) Warnf(f string, args ...any)  { log.Printf("gnet: "+f, args...) }
func (quietLogger) Errorf(f string, args ...any) { log.Printf("gnet: "+f, args...) }
func (quietLogger) Fatalf(f string, args ...any) { log.Fatalf("gnet: "+f, args...) }
