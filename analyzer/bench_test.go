package analyzer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicelog/sluice/codec"
)

// The end-to-end benchmarks drive an analyzer over loopback TCP with keep-alive
// POST /ingest requests (five messages each, unique packet ids), the way a
// distributor does. BenchmarkAnalyzerIngest is this package's server,
// BenchmarkNetHTTPAnalyzerIngest a plain net/http server doing the same work per
// packet (same validation and level count, de-duplication window and counters). Each
// server runs in its own process (this test binary started again), like a real
// analyzer, and the client is the same for both.
//
// Two numbers per run: packets/s is the wall-clock rate with client and server
// sharing the machine's cores; server-µs/pkt is the CPU time (user+system, all
// threads, from /proc) the server process spent per packet, whose inverse is what
// one core of the server can take. The second is the fairer comparison on a small
// or busy machine, since it leaves the client out.
//
//	go test ./analyzer -run='^$' -bench . -benchmem -count 3

const benchConns = 4 // client connections

// benchDepths are the requests in flight per connection: 32 pipelined (how the
// distributor drives an analyzer) and 1 (plain keep-alive, what net/http is built for).
var benchDepths = []int{32, 1}

func BenchmarkAnalyzerIngest(b *testing.B) { benchServerProcess(b, "gnet") }

func BenchmarkNetHTTPAnalyzerIngest(b *testing.B) { benchServerProcess(b, "nethttp") }

func benchServerProcess(b *testing.B, kind string) {
	for _, depth := range benchDepths {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			srv := startBenchServer(b, kind)
			defer srv.stop()
			runIngestLoad(b, srv.addr, depth, srv.cpu)
			var st struct{ Packets, Duplicates uint64 }
			srv.getJSON(b, "/stats", &st)
			if st.Packets+st.Duplicates < uint64(b.N) {
				b.Fatalf("server counted %d packets, sent %d", st.Packets+st.Duplicates, b.N)
			}
		})
	}
}

// benchServerEnv, when set, makes the test binary a benchmark server (see TestMain).
const benchServerEnv = "SLUICE_ANALYZER_BENCH_SERVER"

func TestMain(m *testing.M) {
	if kind := os.Getenv(benchServerEnv); kind != "" {
		os.Exit(serveForBenchmark(kind))
	}
	os.Exit(m.Run())
}

// serveForBenchmark runs one server, prints its address and serves until stdin is
// closed.
func serveForBenchmark(kind string) int {
	var addr string
	switch kind {
	case "gnet":
		a := New(Config{Addr: "127.0.0.1:0", ID: "bench", Batch: true})
		if err := a.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer a.Stop()
		addr = a.Addr()
	case "nethttp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		srv := &http.Server{Handler: newNetHTTPAnalyzer()}
		go srv.Serve(ln)
		defer srv.Close()
		addr = ln.Addr().String()
	default:
		fmt.Fprintln(os.Stderr, "unknown server kind", kind)
		return 2
	}
	fmt.Println(addr)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

type benchServer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

func startBenchServer(b *testing.B, kind string) *benchServer {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchServerEnv+"="+kind)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		b.Fatalf("benchmark server: %v", err)
	}
	return &benchServer{cmd: cmd, stdin: stdin, addr: strings.TrimSpace(line)}
}

func (s *benchServer) stop() {
	s.stdin.Close()
	_ = s.cmd.Wait()
}

// cpu is the CPU time the server process has used so far, all threads, user and
// system, in the kernel's clock ticks (USER_HZ, 100 per second on Linux).
func (s *benchServer) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	// Fields after the parenthesised command name; utime and stime are the 14th and
	// 15th fields of the line, the 12th and 13th after ")".
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return -1
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * (time.Second / 100)
}

func (s *benchServer) getJSON(b *testing.B, path string, v any) {
	resp, err := http.Get("http://" + s.addr + path)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		b.Fatal(err)
	}
}

// netHTTPAnalyzer is the comparison: the analyzer's per-packet work behind net/http.
type netHTTPAnalyzer struct {
	dedup                         *dedupWindow
	packets, messages, duplicates atomic.Uint64
	levels                        [codec.NumLevels]atomic.Uint64
	bufs                          sync.Pool
}

func newNetHTTPAnalyzer() *netHTTPAnalyzer {
	return &netHTTPAnalyzer{dedup: newDedupWindow(0), bufs: sync.Pool{New: func() any { return new(bytes.Buffer) }}}
}

func (s *netHTTPAnalyzer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == "GET" && r.URL.Path == "/stats" {
		fmt.Fprintf(w, `{"packets":%d,"duplicates":%d}`, s.packets.Load(), s.duplicates.Load())
		return
	}
	if r.Method != "POST" || r.URL.Path != "/ingest" {
		http.NotFound(w, r)
		return
	}
	buf := s.bufs.Get().(*bytes.Buffer)
	defer s.bufs.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, MaxBodyBytes)); err != nil {
		http.Error(w, `{"error":"read"}`, 400)
		return
	}
	var pkt codec.Packet
	var lc codec.Levels
	if err := codec.ValidatePacketLevels(buf.Bytes(), &pkt, &lc); err != nil {
		http.Error(w, `{"error":"invalid"}`, 400)
		return
	}
	if s.dedup.seen(s.dedup.hash(pkt.ID)) {
		s.duplicates.Add(1)
	} else {
		for i, n := range lc {
			if n != 0 {
				s.levels[i].Add(uint64(n))
			}
		}
		s.packets.Add(1)
		s.messages.Add(uint64(pkt.Messages))
	}
	w.Header().Set("Content-Type", "application/json")
	out := append(buf.Bytes()[:0], `{"status":"ok","packet_id":"`...)
	out = append(out, pkt.ID...)
	out = append(out, `"}`...)
	w.Write(out)
}

// benchIDs makes packet ids unique across every run in the process.
var benchIDs atomic.Uint64

const benchIDWidth = 16

// runIngestLoad sends b.N packets over benchConns connections, depth pipelined
// at a time on each, and reports packets/s and, with serverCPU, the server's CPU
// time per packet.
func runIngestLoad(b *testing.B, addr string, depth int, serverCPU func() time.Duration) {
	msgs := `[`
	for i, l := range []string{"INFO", "INFO", "WARN", "ERROR", "DEBUG"} {
		if i > 0 {
			msgs += ","
		}
		msgs += fmt.Sprintf(`{"timestamp":1640995200000,"level":%q,"message":"user 4711 logged in from 10.0.0.%d","metadata":{"service":"auth","region":"eu-west-1"}}`, l, i)
	}
	msgs += `]`
	body := `{"emitter_id":"bench","packet_id":"` + string(bytes.Repeat([]byte{'0'}, benchIDWidth)) + `","messages":` + msgs + `}`
	req := request("POST", "/ingest", body)
	idAt := bytes.Index([]byte(req), []byte(`"packet_id":"`)) + len(`"packet_id":"`)

	conns := make([]net.Conn, benchConns)
	for i := range conns {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		conns[i] = nc
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	errs := make(chan error, benchConns)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := serverCPU()
	start := time.Now()
	for _, nc := range conns {
		go func() { errs <- pipeline(nc, []byte(req), idAt, depth, &left) }()
	}
	for range conns {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	cpu := serverCPU() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "packets/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "server-µs/pkt")
}

// pipeline keeps up to depth requests in flight on one connection until the shared
// budget is spent, checking that every answer is a 200.
func pipeline(nc net.Conn, req []byte, idAt, depth int, left *atomic.Int64) error {
	out := make([]byte, 0, len(req)*depth)
	in := make([]byte, 0, 64<<10)
	for {
		n := int(min(left.Add(-int64(depth))+int64(depth), int64(depth)))
		if n <= 0 {
			return nil
		}
		out = out[:0]
		var digits [20]byte
		for i := 0; i < n; i++ {
			at := len(out)
			out = append(out, req...)
			id := strconv.AppendUint(digits[:0], benchIDs.Add(1), 10)
			copy(out[at+idAt+benchIDWidth-len(id):], id)
		}
		if _, err := nc.Write(out); err != nil {
			return err
		}
		for got := 0; got < n; {
			if len(in) == cap(in) {
				return errors.New("response buffer full")
			}
			m, err := nc.Read(in[len(in):cap(in)])
			if err != nil {
				return err
			}
			in = in[:len(in)+m]
			for {
				size, err := responseSize(in)
				if err != nil {
					return err
				}
				if size == 0 {
					break
				}
				in = in[:copy(in, in[size:])]
				got++
			}
		}
	}
}

// responseSize returns the length of the complete 200 response at the start of b,
// or 0 when it is not all there yet.
func responseSize(b []byte) (int, error) {
	head := bytes.Index(b, []byte("\r\n\r\n"))
	if head < 0 {
		return 0, nil
	}
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 200 ")) {
		return 0, fmt.Errorf("unexpected response %q", b[:head])
	}
	i := bytes.Index(b[:head], []byte("\r\nContent-Length: "))
	if i < 0 {
		return 0, fmt.Errorf("no Content-Length in %q", b[:head])
	}
	i += len("\r\nContent-Length: ")
	n := 0
	for ; b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int(b[i]-'0')
	}
	if len(b) < head+4+n {
		return 0, nil
	}
	return head + 4 + n, nil
}

// BenchmarkServeIngest runs the event-loop handler without sockets on a fake
// connection: 32 pipelined POST /ingest requests per OnTraffic. It is the proof
// that serving a packet allocates nothing.
func BenchmarkServeIngest(b *testing.B) {
	a := New(Config{ID: "bench", Batch: true})
	h := &handler{a: a, delayer: newDelayer(a)}
	defer h.delayer.shutdown()
	fc := &fakeConn{loop: &fakeLoop{}}
	h.OnOpen(fc)

	body := packet("0000000000000000", "INFO", "INFO", "WARN", "ERROR", "DEBUG")
	req := []byte(request("POST", "/ingest", body))
	idAt := bytes.Index(req, []byte(`"packet_id":"`)) + len(`"packet_id":"`)
	const depth = 32
	in := bytes.Repeat(req, depth)
	var id uint64
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += depth {
		for j := 0; j < depth; j++ {
			id++
			v := id
			for k := idAt + j*len(req) + 15; v > 0; k-- { // unique id, in place
				in[k] = byte('0' + v%10)
				v /= 10
			}
		}
		fc.in, fc.out = in, fc.out[:0]
		if h.OnTraffic(fc) != gnet.None || len(fc.in) != 0 {
			b.Fatalf("request not consumed: %q", fc.out)
		}
	}
	b.StopTimer()
	if st := a.Stats(); st.Packets < uint64(b.N) || st.Invalid != 0 {
		b.Fatalf("stats %+v", st)
	}
}

// fakeConn is the part of gnet.Conn the handler uses; calling anything else panics.
type fakeConn struct {
	gnet.Conn
	in, out []byte
	ctx     any
	loop    gnet.EventLoop
}

func (c *fakeConn) Peek(n int) ([]byte, error) {
	if n <= 0 || n > len(c.in) {
		return c.in, nil
	}
	return c.in[:n], nil
}
func (c *fakeConn) Discard(n int) (int, error) {
	if n <= 0 || n > len(c.in) {
		n = len(c.in)
	}
	c.in = c.in[n:]
	return n, nil
}
func (c *fakeConn) InboundBuffered() int                        { return len(c.in) }
func (c *fakeConn) Write(p []byte) (int, error)                 { c.out = append(c.out, p...); return len(p), nil }
func (c *fakeConn) Context() any                                { return c.ctx }
func (c *fakeConn) SetContext(ctx any)                          { c.ctx = ctx }
func (c *fakeConn) EventLoop() gnet.EventLoop                   { return c.loop }
func (c *fakeConn) AsyncWrite([]byte, gnet.AsyncCallback) error { return nil }

type fakeLoop struct{ gnet.EventLoop }
