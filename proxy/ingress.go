package proxy

import (
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
	last      int64
}

// Admin pages served on the ingest port. Rendering them needs every shard's
// snapshot, which a loop must not wait for, so the connection is parked while a
// goroutine renders and AsyncWrites the answer, then woken to carry on.
const (
	pageNone = iota
	pageHealth
	pageMetricsJSON
	pageMetrics
)

// onRequests parses and answers every complete request buffered on c, in order,
// with one Write for all the answers.
func (s *shard) onRequests(in *ingress, c gnet.Conn) gnet.Action {
	if in.parked {
		return gnet.None
	}
	s.now = nanotime()
	in.last = s.now
	s.sync()
	buf, _ := c.Peek(-1)
	out := s.out[:0]
	off, answered := 0, 0
	action := gnet.None
	for off < len(buf) {
		n, err := in.parser.Parse(buf[off:], &in.req)
		if err != nil {
			e := asCodecError(err)
			out = s.answerError(out, e.Status, e.Reason, false, "")
			s.countReject(e.Status)
			off, action = len(buf), gnet.Close
			break
		}
		if n == 0 {
			if in.parser.HeadersDone() && in.req.ExpectContinue && !in.continued {
				out = append(out, codec.Continue100...)
				in.continued = true
			}
			break
		}
		off += n
		answered++
		in.continued = false
		s.stats.BytesIn += int64(n)
		var page int
		out, page = s.serve(&in.req, out)
		if page != pageNone {
			in.parked = true
			s.srv.renderAsync(c, in, page, in.req.KeepAlive, string(in.req.Method) == "HEAD")
			break
		}
		if !in.req.KeepAlive {
			off, action = len(buf), gnet.Close
			break
		}
	}
	if off > 0 {
		// Never Discard(0): gnet reads n <= 0 as "discard everything", which would
		// throw away the partial request waiting for its next bytes.
		_, _ = c.Discard(off)
	}
	if len(out) > 0 {
		_, _ = c.Write(out)
		s.observeRequests(answered)
	}
	s.out = out
	s.flushDirty()
	return action
}

var errInternal = &codec.Error{Status: 500, Reason: "internal error", Close: true}

// asCodecError is a type assertion, not errors.As: codec returns its *Error values
// unwrapped, and this path must not reflect.
func asCodecError(err error) *codec.Error {
	if e, ok := err.(*codec.Error); ok {
		return e
	}
	return errInternal
}

// serve answers one request into out, or names the admin page to render off-loop.
func (s *shard) serve(req *codec.Request, out []byte) ([]byte, int) {
	keep := req.KeepAlive
	method := string(req.Method)
	switch string(req.Path) {
	case "/ingest":
		if method != "POST" {
			return s.answerError(out, 405, "method not allowed, use POST", keep, "Allow: POST\r\n"), pageNone
		}
		return s.ingest(req, out), pageNone
	case "/health":
		return s.page(out, method, keep, pageHealth)
	case "/metrics-json":
		return s.page(out, method, keep, pageMetricsJSON)
	case "/metrics":
		return s.page(out, method, keep, pageMetrics)
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
	if err := codec.ValidatePacket(body, &pkt); err != nil {
		e := asCodecError(err)
		s.stats.Rejected[rejectInvalid]++
		return s.answerError(out, 400, e.Reason, keep, "")
	}
	switch s.accept(body, pkt.Messages) {
	case acceptOK:
		s.stats.Responses[status202]++
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

var status202 = statusIndex(202)

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
