package emitter

import (
	"bytes"
	"time"
)

// maxRetryAfter bounds what a server can make the emitter wait for one packet.
const maxRetryAfter = time.Hour

// retryAfter reads the delay-seconds form of Retry-After from raw, the bytes of one
// whole response as the parser consumed them; 0 when absent or not a plain number
// (the HTTP-date form is not used by sluice and is treated as absent).
//
// TEMPORARY: codec.Response has no Retry-After field yet, so this scans the head
// itself. Replace it with the parser's field (RetryAfter int, seconds, -1 when
// absent) once codec has it; only 503 and 429 answers get here, never the hot path.
func retryAfter(raw []byte) time.Duration {
	head := raw
	if end := bytes.Index(raw, []byte("\r\n\r\n")); end >= 0 {
		head = raw[:end]
	}
	for len(head) > 0 {
		line := head
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			head = nil
		}
		line = bytes.TrimRight(line, "\r")
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !bytes.EqualFold(name, []byte("Retry-After")) {
			continue
		}
		value = bytes.TrimSpace(value)
		if len(value) == 0 {
			return 0
		}
		var secs int64
		for _, c := range value {
			if c < '0' || c > '9' {
				return 0
			}
			secs = secs*10 + int64(c-'0')
			if time.Duration(secs)*time.Second > maxRetryAfter {
				return maxRetryAfter
			}
		}
		return time.Duration(secs) * time.Second
	}
	return 0
}
