package main

// A fault proxy in the path from the distributor to one analyzer, for the faults
// the kernel cannot make here (no netem): latency with jitter, a bandwidth limit,
// answers cut into 1-byte writes, resets in the middle of answers. It is ours and
// small, not toxiproxy: we need four behaviours switched at run time from the same
// process, and toxiproxy as a library brings its HTTP API server, metrics and
// logging modules into go.mod for them (docs/design.md, "Chaos harness").
//
// One goroutine per direction per connection. The fault is read per chunk, so it
// takes effect mid-connection, as a network fault would.

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// faultKind is what the proxy does to the bytes it carries.
type faultKind uint8

const (
	fkNone      faultKind = iota // pass through
	fkLatency                    // hold every chunk 200 ms ± 50 ms (order kept)
	fkBandwidth                  // at most 1 Mbit/s each way
	fkSlice                      // answers written one byte per write
	fkReset                      // an answer is cut halfway by a reset (one in five)
	numFaultKinds
)

var faultKindNames = [numFaultKinds]string{"none", "latency", "bandwidth", "slice", "reset"}

func (k faultKind) String() string {
	if k < numFaultKinds {
		return faultKindNames[k]
	}
	return "faultKind(?)"
}

// faultProxy listens on loopback and forwards every connection to target.
type faultProxy struct {
	ln     net.Listener
	target string
	kind   atomic.Uint32 // faultKind now
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newFaultProxy(target string) (*faultProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &faultProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *faultProxy) addr() string      { return p.ln.Addr().String() }
func (p *faultProxy) set(k faultKind)   { p.kind.Store(uint32(k)) }
func (p *faultProxy) fault() faultKind  { return faultKind(p.kind.Load()) }
func (p *faultProxy) track(c net.Conn)  { p.mu.Lock(); p.conns[c] = struct{}{}; p.mu.Unlock() }
func (p *faultProxy) forget(c net.Conn) { p.mu.Lock(); delete(p.conns, c); p.mu.Unlock() }
func (p *faultProxy) closeAll(cs ...net.Conn) {
	for _, c := range cs {
		_ = c.Close()
	}
}

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// close stops the listener and every connection, and waits for the goroutines.
func (p *faultProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *faultProxy) serve(down net.Conn) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		_ = down.Close()
		return
	}
	p.track(down)
	p.track(up)
	defer func() {
		p.forget(down)
		p.forget(up)
	}()
	var once sync.Once
	reset := func() {
		once.Do(func() {
			// SO_LINGER 0: close sends RST, as a crashed middlebox or peer would.
			for _, c := range []net.Conn{down, up} {
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
				_ = c.Close()
			}
		})
	}
	done := make(chan struct{}, 2)
	go func() { p.pipe(up, down, false, reset); done <- struct{}{} }() // requests
	go func() { p.pipe(down, up, true, reset); done <- struct{}{} }()  // answers
	<-done
	p.closeAll(down, up)
	<-done
}

// timed is one chunk and when it may be written.
type timed struct {
	b  []byte
	at time.Time
}

// pipe copies src to dst applying the current fault; answers tells which direction
// this is (slice and reset apply to answers only).
func (p *faultProxy) pipe(dst, src net.Conn, answers bool, reset func()) {
	// A writer goroutine behind a queue, so latency delays each chunk without
	// stalling the reads (the delay is per chunk, not cumulative) and order is kept.
	q := make(chan timed, 4096)
	werr := make(chan struct{})
	go func() {
		defer close(werr)
		for t := range q {
			if d := time.Until(t.at); d > 0 {
				time.Sleep(d)
			}
			if err := p.write(dst, t.b, answers, reset); err != nil {
				for range q { // drain so the reader never blocks
				}
				return
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			b := append([]byte(nil), buf[:n]...)
			at := time.Now()
			switch p.fault() {
			case fkLatency:
				at = at.Add(150*time.Millisecond + rand.N(100*time.Millisecond))
			}
			q <- timed{b, at}
		}
		if err != nil {
			break
		}
	}
	close(q)
	<-werr
}

// bandwidth is the fkBandwidth limit, bytes per second (1 Mbit/s).
const bandwidth = 1_000_000 / 8

// write writes b to dst under the current fault.
func (p *faultProxy) write(dst net.Conn, b []byte, answers bool, reset func()) error {
	switch k := p.fault(); {
	case k == fkBandwidth:
		for len(b) > 0 {
			n := min(len(b), 1250) // 10 ms at 1 Mbit/s
			if _, err := dst.Write(b[:n]); err != nil {
				return err
			}
			time.Sleep(time.Duration(n) * time.Second / bandwidth)
			b = b[n:]
		}
		return nil
	case k == fkSlice && answers:
		for i := range b {
			if _, err := dst.Write(b[i : i+1]); err != nil {
				return err
			}
		}
		return nil
	case k == fkReset && answers && rand.N(5) == 0:
		_, _ = dst.Write(b[:len(b)/2])
		reset()
		return errors.New("reset")
	}
	_, err := dst.Write(b)
	return err
}
