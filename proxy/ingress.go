package proxy

import (
	"bytes"
	"net/netip"
	"strconv"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicelog/sluice/codec"
)

// ingress is one emitter's connection. All of it lives on the connection's loop.
type ingress struct {
	sh        *shard
	parser    codec.Parser
	req       codec.Request
	continued bool // "100 Continue" already sent for the request being read
	parked    bool // an admin answer is being rendered off the loop; later requests wait
	// lingering: refused, answered, being drained before the close (lingerclose.go).
	lingering   bool
	shut        bool  // write side shut down
	lingerUntil int64 // nanotime the drain ends
	discarded   int   // bytes thrown away while lingering
	gone        bool  // closed: OnClose ran
	// refusedAtOpen: answered 503 as it opened (MAX_CONNS, MAX_CONNS_PER_IP) and
	// lingering; not counted in Server.conns nor Server.perIP.
	refusedAtOpen bool
	c             gnet.Conn
	ip            netip.Addr // client address, counted in Server.perIP (zero: none)
	slot          int        // index in shard.ingresses
	last          int64      // nanotime of the last bytes received (of accept, before any)
	opened        int64      // nanotime of accept
	// started is when the pending request began, 0 when none: its first byte, or
	// accept for the connection's first request, so a connection that never sends
	// a byte is closed after REQUEST_TIMEOUT_SEC, not IDLE_TIMEOUT_SEC.
	started int64
	// need is how many buffered bytes the partial request at the front needs to be
	// complete, once its head is parsed and it has a Content-Length (0: unknown).
	// Until gnet buffers that much, onRequests does not Peek: while a request spans
	// reads, every Peek copies all that is buffered into one slice, so a 1 MiB body
	// in 64 KiB reads was copied 16 times (8 MiB) instead of once.
	need int

	// Answers held for the spool's sync (SPOOL_SYNC=always, spool.go); the loop's.
	held       []byte     // answers not written yet, in request order, from the first 202 that waits
	marks      []heldMark // the held 202s in held
	waitFor    uint64     // the highest spool group the held 202s wait for
	waiting    bool       // in shard.waiting (held is not empty)
	waitSlot   int        // index in shard.waiting
	closeAfter closeAfter // a close asked for while answers were held: done after they are written
	page       pageLater  // an admin page asked for while answers were held: rendered after them
}

// Admin pages served on the ingest port. Rendering them needs every shard's
// snapshot, which a loop must not wait for, so the connection is parked while a
// goroutine renders and AsyncWrites the answer, then woken to carry on.
const (
	pageNone = iota
	pageHealth
	pageMetricsJSON
	pageMetrics
	pageLivez
	pageReadyz
)

// onRequests parses and answers every complete request buffered on c, in order,
// with one Write for all the answers.
func (s *shard) onRequests(in *ingress, c gnet.Conn) gnet.Action {
	if in.parked {
		return gnet.None
	}
	if in.lingering {
		return s.lingerRead(in, c)
	}
	s.now = nanotime()
	in.last = s.now
	if in.need > 0 && c.InboundBuffered() < in.need {
		return gnet.None // a large body is still arriving
	}
	if in.closeAfter != closeAfterNone {
		_, _ = c.Discard(-1) // it closes once its held answers are written
		return gnet.None
	}
	s.sync()
	buf, _ := c.Peek(-1)
	r := s.handle(in, buf, s.out[:0])
	if r.consumed > 0 {
		in.started = 0 // what is left, if anything, is a new request
	}
	if r.consumed < len(buf) && in.started == 0 {
		in.started = s.now
	}
	if r.consumed > 0 {
		// Never Discard(0): gnet reads n <= 0 as "discard everything", which would
		// throw away the partial request waiting for its next bytes.
		_, _ = c.Discard(r.consumed)
	}
	s.out = r.out
	if len(r.out) > 0 {
		now := r.out
		if s.log != nil {
			now = s.hold(in, now)
		}
		if len(now) > 0 {
			_, _ = c.Write(now)
		}
		s.observeRequests(r.answered)
	}
	if s.log != nil && in.waiting {
		return s.whileHeld(in, c, r)
	}
	if r.page != pageNone {
		in.parked = true
		s.srv.renderAsync(c, in, r.page, r.keepAlive, r.head)
	}
	s.flushDirty()
	if s.log != nil {
		s.flushSpool()
	}
	if r.refused && s.linger(in, c) {
		return gnet.None
	}
	if r.close {
		return gnet.Close
	}
	if c.OutboundBuffered() > maxUnreadAnswers {
		// The client sends but does not read: stop holding its answers.
		s.stats.Rejected[rejectProtocol]++
		s.srv.logIngress("closing connection: client does not read its answers", c.OutboundBuffered())
		return gnet.Close
	}
	return gnet.None
}

// expire closes connections that took too long to send a request they started
// (408) or, from accept, their first one (closed without an answer if they never
// sent a byte), or sat idle past the keep-alive timeout. It runs on the loop once
// a second.
func (s *shard) expire() {
	reqTimeout, idle := s.srv.knobs.requestTimeout.Load(), s.srv.knobs.idleTimeout.Load()
	for i := 0; i < len(s.ingresses); i++ {
		in := s.ingresses[i]
		switch {
		case in.parked, in.lingering: // lingering ones end in lingerTick
		case in.started != 0 && reqTimeout > 0 && s.now-in.started > reqTimeout:
			s.stats.Closed[closeRequestTimeout]++
			if in.last != in.opened { // it sent part of a request
				s.stats.Rejected[rejectProtocol]++
				_, _ = in.c.Write(s.answerError(s.out[:0], 408, "request timeout", false, ""))
				// A slow client may still be sending its body: closing now would
				// reset the connection under the 408 (lingerclose.go).
				if s.linger(in, in.c) {
					continue
				}
			}
			_ = s.loop.Close(in.c) // removes it from s.ingresses: look at slot i again
			i--
		case (in.started == 0 || in.last == in.opened) && idle > 0 && s.now-in.last > idle:
			// Idle between requests, or silent since accept (started is set at
			// accept, so with REQUEST_TIMEOUT_SEC=0 only this case closes it).
			s.stats.Closed[closeIdleTimeout]++
			_ = s.loop.Close(in.c)
			i--
		}
	}
}

// longestIdle is the loop's connection that has gone longest without receiving a
// byte among those with nothing in progress: no partial request buffered (a
// connection that never sent a byte counts), no admin page being rendered, no
// answer waiting to be written. nil when there is none. Over MAX_CONNS, it is
// closed to make room for a new connection; the search is the accepting loop's
// own connections (each loop owns its own), so a loop whose connections are all
// busy refuses the newcomer even if another loop has an idle one.
func (s *shard) longestIdle() *ingress {
	var v *ingress
	for _, in := range s.ingresses {
		if in.parked || in.lingering || in.waiting || (in.started != 0 && in.last != in.opened) ||
			in.c.InboundBuffered() > 0 || in.c.OutboundBuffered() > 0 {
			continue
		}
		if v == nil || in.last < v.last {
			v = in
		}
	}
	return v
}

func (s *shard) addIngress(in *ingress) {
	in.slot = len(s.ingresses)
	s.ingresses = append(s.ingresses, in)
	s.stats.Conns++
}

func (s *shard) removeIngress(in *ingress) {
	in.gone = true
	s.unwait(in) // its held answers are dropped; their packets are spooled and queued
	if in.lingering {
		s.unlinger(in)
	}
	last := s.ingresses[len(s.ingresses)-1]
	s.ingresses[in.slot], last.slot = last, in.slot
	s.ingresses[len(s.ingresses)-1] = nil
	s.ingresses = s.ingresses[:len(s.ingresses)-1]
	s.stats.Conns--
}

// maxUnreadAnswers bounds the answers buffered for a client that does not read
// them; past it the connection is closed.
const maxUnreadAnswers = 4 << 20

// handled is what one pass over a connection's buffered bytes produced.
type handled struct {
	consumed  int
	answered  int
	out       []byte
	close     bool
	refused   bool // close after a lingering drain: the request was refused (parser error)
	page      int  // admin page to render off the loop; parsing stopped after it
	keepAlive bool
	head      bool
}

// handle parses and answers every complete request at the start of buf, appending
// the answers to out. It stops at an incomplete request, a refused one (the
// connection must close), a request that asks to close, or an admin page.
func (s *shard) handle(in *ingress, buf, out []byte) handled {
	r := handled{out: out}
	if s.log != nil {
		s.startPass(in)
	}
	for r.consumed < len(buf) {
		n, err := in.parser.Parse(buf[r.consumed:], &in.req)
		if err != nil {
			e := asCodecError(err)
			r.out = s.answerError(r.out, e.Status, e.Reason, false, "")
			s.countReject(e.Status)
			r.consumed, r.close, r.refused = len(buf), true, true
			return r
		}
		if n == 0 {
			if in.parser.HeadersDone() {
				if in.req.ExpectContinue && !in.continued {
					r.out = append(r.out, codec.Continue100...)
					s.stats.Responses[status100]++
					in.continued = true
				}
				in.need = needed(buf[r.consumed:], &in.req)
			}
			return r
		}
		r.consumed += n
		r.answered++
		in.continued, in.need = false, 0
		s.stats.BytesIn += int64(n)
		var page int
		r.out, page = s.serve(&in.req, buf[r.consumed-n:r.consumed], r.out)
		if page != pageNone {
			r.page, r.keepAlive, r.head = page, in.req.KeepAlive, string(in.req.Method) == "HEAD"
			return r
		}
		if !in.req.KeepAlive {
			r.consumed, r.close = len(buf), true
			return r
		}
	}
	return r
}

// needed is how many bytes the request at the start of buf (head parsed, body not
// all in) occupies when complete: its head, up to the empty line that ends it, plus
// Content-Length. 0 when that is not known (a chunked body). It may only err low
// (a request preceded by empty lines): waiting for too few bytes costs one Peek
// more, waiting for too many would stall the connection.
func needed(buf []byte, req *codec.Request) int {
	if req.Chunked || req.ContentLength <= 0 {
		return 0
	}
	head := bytes.Index(buf, crlfcrlf)
	if head < 0 {
		return 0
	}
	return head + len(crlfcrlf) + int(req.ContentLength)
}

var crlfcrlf = []byte("\r\n\r\n")

var errInternal = &codec.Error{Status: 500, Reason: "internal error", Close: true}

// asCodecError is a type assertion, not errors.As: codec returns its *Error values
// unwrapped, and this path must not reflect.
func asCodecError(err error) *codec.Error {
	if e, ok := err.(*codec.Error); ok {
		return e
	}
	return errInternal
}

// serve answers one request (raw is its bytes) into out, or names the admin page
// to render off-loop.
func (s *shard) serve(req *codec.Request, raw, out []byte) ([]byte, int) {
	keep := req.KeepAlive
	method := string(req.Method)
	switch string(req.Path) {
	case "/ingest":
		if method != "POST" {
			return s.answerError(out, 405, "method not allowed, use POST", keep, "Allow: POST\r\n"), pageNone
		}
		if a := s.srv.auth; a != nil && !a.allow(raw) {
			s.stats.Rejected[rejectUnauthorized]++
			return s.answerError(out, 401, "missing or invalid bearer token", keep, "WWW-Authenticate: Bearer\r\n"), pageNone
		}
		return s.ingest(req, out), pageNone
	case "/health":
		return s.page(out, method, keep, pageHealth)
	case "/metrics-json":
		return s.page(out, method, keep, pageMetricsJSON)
	case "/metrics":
		return s.page(out, method, keep, pageMetrics)
	case "/livez":
		return s.page(out, method, keep, pageLivez)
	case "/readyz":
		return s.page(out, method, keep, pageReadyz)
	}
	return s.answerError(out, 404, "not found", keep, ""), pageNone
}

func (s *shard) page(out []byte, method string, keep bool, page int) ([]byte, int) {
	if method != "GET" && method != "HEAD" {
		return s.answerError(out, 405, "method not allowed, use GET", keep, "Allow: GET, HEAD\r\n"), pageNone
	}
	return out, page
}

// ingest is POST /ingest: validate, route, enqueue, answer.
func (s *shard) ingest(req *codec.Request, out []byte) []byte {
	keep := req.KeepAlive
	if req.ContentLength < 0 && !req.Chunked {
		s.stats.Rejected[rejectProtocol]++
		return s.answerError(out, 411, "length required", keep, "")
	}
	body := req.Body
	if req.Gzip {
		var err error
		if body, err = s.gunzip.Gunzip(body, s.srv.cfg.MaxBodyBytes); err != nil {
			e := asCodecError(err)
			s.countReject(e.Status)
			return s.answerError(out, e.Status, e.Reason, keep, "")
		}
	}
	var pkt codec.Packet
	top, err := s.validate(body, &pkt) // top: the most severe level, only with SHED_BELOW (shed.go)
	if err != nil {
		e := asCodecError(err)
		s.stats.Rejected[rejectInvalid]++
		return s.answerError(out, 400, e.Reason, keep, "")
	}
	if lim := s.srv.limit; lim != nil {
		if ok, wait := lim.allow(pkt.EmitterID, s.now); !ok {
			s.stats.Rejected[rejectRateLimited]++
			return s.answerError(out, 429, "emitter over its rate limit", keep, retryAfterHeader(wait))
		}
	}
	if s.shed(top) {
		return s.answerBusy(out, "overloaded: shedding packets below SHED_BELOW", keep)
	}
	if s.log != nil && !s.spoolTakes() {
		return s.refuseSpool(out, keep)
	}
	s.emitter = pkt.EmitterID // for AFFINITY's route (affinity.go)
	switch s.accept(body, pkt.Messages) {
	case acceptOK:
		s.stats.Responses[status202]++
		if s.log != nil {
			return s.spoolAccepted(out, pkt.ID, body, keep)
		}
		return codec.AppendAccepted(out, pkt.ID, keep)
	case acceptFull:
		s.stats.Rejected[rejectFull]++
		return s.answerBusy(out, "distributor queue full", keep)
	case acceptNoAnalyzer:
		s.stats.Rejected[rejectNoAnalyzer]++
		return s.answerBusy(out, "no analyzer available", keep)
	case acceptQueueFull:
		s.stats.Rejected[rejectQueueFull]++
		return s.answerBusy(out, "analyzer queues full", keep)
	default:
		s.stats.Rejected[rejectShutdown]++
		return s.answerBusy(out, "shutting down", keep)
	}
}

var (
	status100 = statusIndex(100)
	status202 = statusIndex(202)
)

// answerBusy is the 503 that tells an emitter to come back: Retry-After carries the
// controller's estimate of how long the queues take to drain.
func (s *shard) answerBusy(out []byte, reason string, keep bool) []byte {
	return s.answerError(out, 503, reason, keep, retryAfterHeader(s.srv.retryAfter.Load()))
}

func (s *shard) answerError(out []byte, status int, reason string, keep bool, extra string) []byte {
	s.stats.Responses[statusIndex(status)]++
	return codec.AppendError(out, status, reason, keep, extra)
}

// countReject files a parser or codec refusal under its reason.
func (s *shard) countReject(status int) {
	switch status {
	case 413:
		s.stats.Rejected[rejectTooLarge]++
	default:
		s.stats.Rejected[rejectProtocol]++
	}
}

// retryAfterHeaders are the Retry-After lines for 1..maxRetryAfter seconds, built
// once so the 503 path formats nothing.
const maxRetryAfter = 60

var retryAfterHeaders = func() [maxRetryAfter + 1]string {
	var h [maxRetryAfter + 1]string
	for i := range h {
		h[i] = "Retry-After: " + strconv.Itoa(max(i, 1)) + "\r\n"
	}
	return h
}()

func retryAfterHeader(sec int32) string {
	return retryAfterHeaders[min(max(int(sec), 1), maxRetryAfter)]
}
