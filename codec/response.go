package codec

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Continue100 is the interim answer to "Expect: 100-continue".
const Continue100 = "HTTP/1.1 100 Continue\r\n\r\n"

// AppendResponse appends a complete HTTP/1.1 response: status line, Date,
// Content-Type: application/json when body is not empty, Content-Length, the
// connection header, the extra header lines (each already CRLF-terminated; may be
// ""), the blank line and body.
//
// keepAlive writes "Connection: keep-alive", otherwise "Connection: close". HTTP/1.1
// clients need neither, but an HTTP/1.0 client (ab -k) keeps the connection only when
// told, and the writer does not know the request's version.
func AppendResponse(dst []byte, status int, keepAlive bool, extra string, body []byte) []byte {
	dst = AppendHeader(dst, status, keepAlive, jsonType(len(body)), len(body), extra)
	return append(dst, body...)
}

// AppendError appends a response whose JSON body is {"error":"<reason>","status":<code>}.
// reason goes into the JSON as it is: a plain ASCII phrase with no '"', '\\' or
// control characters, as every Err* reason is.
func AppendError(dst []byte, status int, reason string, keepAlive bool, extra string) []byte {
	bodyLen := len(`{"error":"","status":}`) + len(reason) + decimalLen(status)
	dst = AppendHeader(dst, status, keepAlive, jsonType(bodyLen), bodyLen, extra)
	dst = append(dst, `{"error":"`...)
	dst = append(dst, reason...)
	dst = append(dst, `","status":`...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	return append(dst, '}')
}

// AppendAccepted appends the 202 answer to an accepted packet:
// {"status":"accepted","packet_id":"<id>"}, id being the raw content of the packet's
// JSON string (escapes kept), so it is already valid inside quotes.
func AppendAccepted(dst []byte, id []byte, keepAlive bool) []byte {
	dst = AppendHeader(dst, 202, keepAlive, "application/json", len(`{"status":"accepted","packet_id":""}`)+len(id), "")
	dst = append(dst, `{"status":"accepted","packet_id":"`...)
	dst = append(dst, id...)
	return append(dst, `"}`...)
}

// AppendHeader appends the status line and header block of a response whose body of
// bodyLen bytes the caller appends itself, or leaves out when answering HEAD (bodyLen
// is then the length a GET would have had). contentType "" writes no Content-Type.
// Use it for bodies that are not JSON rather than putting Content-Type or
// Content-Length into AppendResponse's extra, which would repeat them.
func AppendHeader(dst []byte, status int, keepAlive bool, contentType string, bodyLen int, extra string) []byte {
	if status >= 100 && status < len(statusLines) && statusLines[status] != "" {
		dst = append(dst, statusLines[status]...)
	} else {
		dst = appendStatusLine(dst, status)
	}
	dst = append(dst, *httpDate()...)
	if contentType != "" {
		dst = append(dst, "\r\nContent-Type: "...)
		dst = append(dst, contentType...)
	}
	// 1xx and 204 answers must not carry Content-Length (RFC 9110 §8.6).
	if status >= 200 && status != 204 {
		dst = append(dst, "\r\nContent-Length: "...)
		dst = strconv.AppendInt(dst, int64(bodyLen), 10)
	}
	if keepAlive {
		dst = append(dst, "\r\nConnection: keep-alive\r\n"...)
	} else {
		dst = append(dst, "\r\nConnection: close\r\n"...)
	}
	dst = append(dst, extra...)
	return append(dst, "\r\n"...)
}

func jsonType(bodyLen int) string {
	if bodyLen > 0 {
		return "application/json"
	}
	return ""
}

// statusLines holds "HTTP/1.1 <code> <reason>\r\nDate: " for every code StatusText
// knows, so the common answers start with one copy.
var statusLines = func() (t [600]string) {
	for code := range t {
		if StatusText(code) != "" {
			t[code] = string(appendStatusLine(nil, code))
		}
	}
	return t
}()

func appendStatusLine(dst []byte, status int) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, StatusText(status)...)
	return append(dst, "\r\nDate: "...)
}

func decimalLen(n int) int {
	l := 1
	for ; n >= 10; n /= 10 {
		l++
	}
	return l
}

// StatusText is the reason phrase of every status sluice answers with, "" for others
// (an empty reason phrase is valid, RFC 9112 §4).
func StatusText(code int) string {
	switch code {
	case 100:
		return "Continue"
	case 200:
		return "OK"
	case 202:
		return "Accepted"
	case 204:
		return "No Content"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 411:
		return "Length Required"
	case 413:
		return "Content Too Large"
	case 414:
		return "URI Too Long"
	case 415:
		return "Unsupported Media Type"
	case 417:
		return "Expectation Failed"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	}
	return ""
}

// The Date header is formatted once per second by one goroutine and read with one
// atomic load. Reading the clock per response instead would cost a time.Now and a
// comparison on every answer of every loop; the goroutine costs one wake-up a second
// and starts only in a process that writes a response. It wakes just after each
// second boundary, so the value lags the clock by a scheduling delay, which RFC 9110
// §6.6.1 allows (Date is the best available approximation).
var (
	dateValue atomic.Pointer[[]byte]
	dateOnce  sync.Once
)

const dateLayout = "Mon, 02 Jan 2006 15:04:05 GMT" // IMF-fixdate, RFC 9110 §5.6.7

func httpDate() *[]byte {
	dateOnce.Do(startDateClock)
	return dateValue.Load()
}

func startDateClock() {
	storeDate(time.Now())
	go func() {
		for {
			now := time.Now()
			time.Sleep(now.Truncate(time.Second).Add(time.Second).Sub(now))
			storeDate(time.Now())
		}
	}()
}

func storeDate(now time.Time) {
	b := now.UTC().AppendFormat(make([]byte, 0, len(dateLayout)), dateLayout)
	dateValue.Store(&b)
}
