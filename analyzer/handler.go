package analyzer

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicelog/sluice/codec"
)

// handler is the gnet event handler of one run (Start to Stop).
type handler struct {
	gnet.BuiltinEventEngine
	a *Analyzer

	addr    string   // the address this run binds
	delayer *delayer // holds back delayed answers of this run's connections

	// Set by OnBoot before booted is closed.
	booted                         chan struct{}
	eng                            gnet.Engine
	bindAddr, dialAddr, listenAddr string
	bootErr                        error

	// loopShards maps each event loop of this run to its counters. Written once per
	// loop (first connection), read once per connection.
	loopShards sync.Map // gnet.EventLoop → *shard
	nextShard  atomic.Int32
}

// conn is the state of one connection. It is created in OnOpen and touched only on
// the connection's event loop (the delayer's write callbacks run there too).
type conn struct {
	a  *Analyzer
	gc gnet.Conn
	sh *shard

	parser codec.Parser
	req    codec.Request
	out    []byte // answers of one OnTraffic, written with one Write
	body   []byte // scratch for a JSON answer body
	batch  []batchElem
	gunzip *codec.Gunzipper // created on the first gzip body

	wallMS    int64 // wall clock (Unix ms) of this OnTraffic, read at the first deadline; 0 until then
	need      int64 // don't re-parse before this many bytes are buffered (large bodies)
	continued bool  // "100 Continue" sent for the request being read
	pending   int   // delayed answer runs not yet written
	lastDue   int64 // due time of the latest delayed run
	closing   bool  // an answer that closes the connection is queued
}

// batchElem is one validated element of a batch, kept until the whole batch is known
// to be valid.
type batchElem struct {
	pkt    codec.Packet
	levels codec.Levels
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.eng = eng
	h.bindAddr, h.dialAddr, h.listenAddr, h.bootErr = boundAddrs(eng, h.addr)
	close(h.booted)
	if h.bootErr != nil {
		return gnet.Shutdown
	}
	return gnet.None
}

func (h *handler) shardOf(gc gnet.Conn) *shard {
	loop := gc.EventLoop()
	if s, ok := h.loopShards.Load(loop); ok {
		return s.(*shard)
	}
	// Only this loop stores its own entry, so there is no race to lose.
	s := h.a.shardAt(int(h.nextShard.Add(1) - 1))
	h.loopShards.Store(loop, s)
	return s
}

func (h *handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	a := h.a
	sh := h.shardOf(gc)
	if f := a.fault.Load(); f != nil && f.down(a.now()) {
		sh.refused.Add(1)
		return nil, gnet.Close
	}
	c := &conn{a: a, gc: gc, sh: sh}
	c.parser.Init(codec.Limits{MaxBodyBytes: MaxBodyBytes})
	gc.SetContext(c)
	a.connsMu.Lock()
	a.conns[c] = struct{}{}
	a.connsMu.Unlock()
	return nil, gnet.None
}

func (h *handler) OnClose(gc gnet.Conn, _ error) gnet.Action {
	if c, ok := gc.Context().(*conn); ok {
		h.a.connsMu.Lock()
		delete(h.a.conns, c)
		h.a.connsMu.Unlock()
	}
	return gnet.None
}

// OnTraffic answers every complete request buffered on the connection, in order,
// with one Write (pipelining), and leaves a partial request for the next event.
func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.Close
	}
	a := h.a
	f := a.fault.Load()
	start := a.now()
	if f != nil && f.down(start) {
		return gnet.Close // closeAllConns has counted it, or is about to
	}
	if c.closing {
		_, _ = gc.Discard(gc.InboundBuffered())
		return gnet.None
	}
	if c.need > 0 && int64(gc.InboundBuffered()) < c.need {
		// A large body is still arriving: peeking would copy the buffered part again
		// on every read.
		return gnet.None
	}

	delay := a.cfg.Delay
	if f != nil {
		delay += f.slow
	}
	buf, _ := gc.Peek(-1)
	c.out = c.out[:0]
	c.wallMS = 0
	delayFrom := -1 // offset in c.out where delayed answers begin
	if c.pending > 0 {
		delayFrom = 0 // earlier answers are still held back: nothing may overtake them
	}
	ingestsNow, ingestsLater := 0, 0
	closeAfter := false
	off := 0
	for off < len(buf) && !closeAfter {
		n, err := c.parser.Parse(buf[off:], &c.req)
		if err != nil {
			// Every parser refusal leaves the framing unknown: answer and close.
			ce, ok := err.(*codec.Error)
			if !ok {
				ce = errBadRequest
			}
			c.out = codec.AppendError(c.out, ce.Status, ce.Reason, false, "")
			closeAfter = true
			break
		}
		if n == 0 {
			if c.parser.HeadersDone() {
				if c.req.ExpectContinue && !c.continued {
					c.out = append(c.out, codec.Continue100...)
					c.continued = true
				}
				c.need = c.req.ContentLength
			}
			break
		}
		off += n
		c.need, c.continued = 0, false
		at := len(c.out)
		keepAlive := c.req.KeepAlive
		if h.serve(c, f, keepAlive) {
			if delay > 0 && delayFrom < 0 {
				delayFrom = at
			}
			if delayFrom >= 0 {
				ingestsLater++
			} else {
				ingestsNow++
			}
		}
		closeAfter = !keepAlive
	}
	if off > 0 && !closeAfter {
		_, _ = gc.Discard(off)
	}

	if delayFrom < 0 || delayFrom == len(c.out) { // nothing to hold back
		if len(c.out) > 0 {
			_, _ = gc.Write(c.out)
		}
		if ingestsNow > 0 {
			c.sh.observeLatency(ingestsNow, a.now()-start)
		}
		if closeAfter {
			return gnet.Close
		}
		return gnet.None
	}

	if delayFrom > 0 {
		_, _ = gc.Write(c.out[:delayFrom])
		if ingestsNow > 0 {
			c.sh.observeLatency(ingestsNow, a.now()-start)
		}
	}
	// Answers held only to stay behind earlier delayed ones leave with the last of
	// those; only an ingest answered now is itself held for the delay.
	due := c.lastDue
	if ingestsLater > 0 {
		due = max(start+int64(delay), c.lastDue)
	}
	c.lastDue = due
	c.pending++
	c.closing = closeAfter
	h.delayer.push(&delayed{
		due:     due,
		c:       c,
		data:    append([]byte(nil), c.out[delayFrom:]...),
		ingests: ingestsLater,
		start:   start,
		close:   closeAfter,
	})
	if closeAfter {
		_, _ = gc.Discard(gc.InboundBuffered())
	}
	return gnet.None
}

// serve appends the answer to the request in c.req to c.out and reports whether it
// was an ingest request (the kind that is delayed and timed).
func (h *handler) serve(c *conn, f *faultState, keepAlive bool) (ingest bool) {
	a := h.a
	req := &c.req
	// They do not escape, so the usual short paths are copied to the stack, not the heap.
	path, method := string(req.Path), string(req.Method)
	var route, allow string
	switch {
	case path == "/ingest", path == "/ingest/batch" && a.cfg.Batch:
		route, allow = path, "POST"
	case path == "/health", path == "/stats", path == "/metrics":
		route, allow = path, "GET"
	case len(path) > len(simulatePrefix) && path[:len(simulatePrefix)] == simulatePrefix:
		route, allow = simulatePrefix, "POST"
	default:
		c.out = codec.AppendError(c.out, 404, "not found", keepAlive, "")
		return false
	}
	if method != allow {
		c.out = codec.AppendError(c.out, 405, "method not allowed", keepAlive, "Allow: "+allow+"\r\n")
		return false
	}

	switch route {
	case "/ingest", "/ingest/batch":
		if req.ContentLength < 0 && !req.Chunked {
			c.sh.invalid.Add(1)
			c.out = codec.AppendError(c.out, 411, "length required", keepAlive, "")
		} else if route == "/ingest" {
			c.ingest(f, keepAlive)
		} else {
			c.ingestBatch(f, keepAlive)
		}
		return true
	case "/health":
		body, status := a.healthyBody, 200
		if f != nil && f.healthFail {
			c.sh.healthFailed.Add(1)
			body, status = a.unhealthyBody, 503
		}
		c.out = codec.AppendResponse(c.out, status, keepAlive, a.healthExtra, body)
	case "/stats":
		c.out = codec.AppendResponse(c.out, 200, keepAlive, "", a.statsJSON())
	case "/metrics":
		c.body = c.body[:0]
		a.writePrometheus(byteWriter{&c.body})
		c.out = appendTextResponse(c.out, keepAlive, c.body)
	case simulatePrefix:
		status, body := a.simulateAnswer(path[len(simulatePrefix):], req.Query)
		c.out = codec.AppendResponse(c.out, status, keepAlive, "", body)
	}
	return false
}

const simulatePrefix = "/internal/simulate/"

// ingest handles POST /ingest: one packet.
func (c *conn) ingest(f *faultState, keepAlive bool) {
	if f != nil && f.fail {
		c.sh.failed.Add(1)
		c.out = codec.AppendError(c.out, 500, "simulated failure", keepAlive, "")
		return
	}
	if c.expired(keepAlive) {
		return
	}
	body, ok := c.requestBody(keepAlive)
	if !ok {
		return
	}
	var pkt codec.Packet
	var levels codec.Levels
	if err := codec.ValidatePacketLevels(body, &pkt, &levels); err != nil {
		c.sh.invalid.Add(1)
		c.out = codec.AppendError(c.out, 400, reasonOf(err), keepAlive, "")
		return
	}
	c.process(&pkt, &levels)
	c.body = append(c.body[:0], `{"status":"ok","packet_id":"`...)
	c.body = append(c.body, pkt.ID...)
	c.body = append(c.body, `"}`...)
	c.out = codec.AppendResponse(c.out, 200, keepAlive, "", c.body)
}

// expired answers a request read after its X-Sluice-Deadline (codec.DeadlineHeader)
// and reports true: the distributor has stopped waiting for it and sent its packets
// to another analyzer, so counting them here would count them twice. The answer is
// 503 (the distributor retries the packets elsewhere and charges this analyzer's
// breaker, as for any answer that says "not processed, try elsewhere"); usually
// nobody reads it, since the distributor closed the connection when it gave up. The
// wall clock is read once per OnTraffic, at the first request that has a deadline.
// A malformed deadline is 400: the request is the distributor's mistake, not this
// analyzer's, and is retried elsewhere.
func (c *conn) expired(keepAlive bool) bool {
	v := c.req.Deadline
	if v == nil || c.a.cfg.IgnoreDeadline {
		return false
	}
	deadline, ok := codec.ParseDeadline(v)
	if !ok {
		c.sh.invalid.Add(1)
		c.out = codec.AppendError(c.out, 400, "invalid "+codec.DeadlineHeader, keepAlive, "")
		return true
	}
	if c.wallMS == 0 {
		c.wallMS = time.Now().UnixMilli()
	}
	if c.wallMS < deadline {
		return false
	}
	c.sh.expired.Add(1)
	c.out = codec.AppendError(c.out, 503, "deadline passed", keepAlive, "")
	return true
}

// requestBody counts the body's bytes as received and returns it, inflated when it
// came with "Content-Encoding: gzip". On a bad gzip body it answers and returns false.
func (c *conn) requestBody(keepAlive bool) ([]byte, bool) {
	body := c.req.Body
	c.sh.bytes.Add(uint64(len(body)))
	if !c.req.Gzip {
		return body, true
	}
	if c.gunzip == nil {
		c.gunzip = new(codec.Gunzipper) // only connections that send gzip pay for one
	}
	body, err := c.gunzip.Gunzip(body, MaxBodyBytes)
	if err != nil {
		ce, ok := err.(*codec.Error)
		if !ok {
			ce = codec.ErrGzipBody
		}
		c.sh.invalid.Add(1)
		c.out = codec.AppendError(c.out, ce.Status, ce.Reason, keepAlive, "")
		return nil, false
	}
	return body, true
}

// process counts one valid packet, whose messages by level are levels, or counts it
// as a duplicate, and reports which.
func (c *conn) process(pkt *codec.Packet, levels *codec.Levels) (duplicate bool) {
	a := c.a
	if a.ids != nil {
		a.recordID(pkt.ID)
	}
	if a.dedup.seen(a.dedup.hash(pkt.ID)) {
		c.sh.duplicates.Add(1)
		c.sh.dupMessages.Add(uint64(pkt.Messages))
		return true
	}
	c.sh.addLevels(levels)
	c.sh.packets.Add(1)
	c.sh.messages.Add(uint64(pkt.Messages))
	return false
}

// ingestBatch handles POST /ingest/batch. All or nothing: every element is validated
// before any is counted, so a 400 leaves no trace but the invalid counter and the
// distributor may retry the batch (or its packets) without double counting.
func (c *conn) ingestBatch(f *faultState, keepAlive bool) {
	if f != nil && f.fail {
		c.sh.failed.Add(1)
		c.out = codec.AppendError(c.out, 500, "simulated failure", keepAlive, "")
		return
	}
	if c.expired(keepAlive) {
		return
	}
	body, ok := c.requestBody(keepAlive)
	if !ok {
		return
	}
	var sc batchScanner
	sc.init(body)
	c.batch = c.batch[:0]
	for {
		// Validated and counted by level in place; kept until the whole batch is.
		c.batch = append(c.batch, batchElem{})
		e := &c.batch[len(c.batch)-1]
		_, ok, reason := sc.next(&e.pkt, &e.levels)
		if !ok {
			c.batch = c.batch[:len(c.batch)-1]
		}
		if reason != "" {
			c.batchError(reason, len(c.batch), keepAlive)
			return
		}
		if !ok {
			break
		}
	}
	dups := 0
	for i := range c.batch {
		e := &c.batch[i]
		if c.process(&e.pkt, &e.levels) {
			dups++
		}
	}
	c.sh.batches.Add(1)
	c.sh.batchPackets.Add(uint64(len(c.batch)))
	c.body = append(c.body[:0], `{"accepted":`...)
	c.body = strconv.AppendInt(c.body, int64(len(c.batch)-dups), 10)
	c.body = append(c.body, `,"duplicates":`...)
	c.body = strconv.AppendInt(c.body, int64(dups), 10)
	c.body = append(c.body, '}')
	c.out = codec.AppendResponse(c.out, 200, keepAlive, "", c.body)
}

// batchError answers 400 naming the reason and the index of the offending element.
func (c *conn) batchError(reason string, index int, keepAlive bool) {
	c.sh.invalid.Add(1)
	c.body = append(c.body[:0], `{"error":"`...)
	c.body = append(c.body, reason...)
	c.body = append(c.body, `","status":400,"index":`...)
	c.body = strconv.AppendInt(c.body, int64(index), 10)
	c.body = append(c.body, '}')
	c.out = codec.AppendResponse(c.out, 400, keepAlive, "", c.body)
}

// reasonOf is the JSON-safe reason of a validation error (codec's reasons are plain
// ASCII by contract).
func reasonOf(err error) string {
	if ce, ok := err.(*codec.Error); ok {
		return ce.Reason
	}
	return "invalid packet"
}

var errBadRequest = &codec.Error{Status: 400, Reason: "bad request", Close: true}

// appendTextResponse writes a 200 with the Prometheus text format. codec's writers
// label every body application/json, which a Prometheus 3 scraper refuses.
func appendTextResponse(dst []byte, keepAlive bool, body []byte) []byte {
	dst = append(dst, "HTTP/1.1 200 OK\r\nContent-Type: "...)
	dst = append(dst, metricsContentType...)
	dst = append(dst, "\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	if keepAlive {
		dst = append(dst, "\r\nConnection: keep-alive\r\n\r\n"...)
	} else {
		dst = append(dst, "\r\nConnection: close\r\n\r\n"...)
	}
	return append(dst, body...)
}

// byteWriter appends to a byte slice (the metrics Set writes to an io.Writer).
type byteWriter struct{ b *[]byte }

func (w byteWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
}
