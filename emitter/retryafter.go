package emitter

import "time"

// maxRetryAfter bounds what a server can make the emitter wait for one packet.
const maxRetryAfter = time.Hour

// retryAfter turns the parser's Retry-After (delay-seconds, -1 when absent or in
// the HTTP-date form, which sluice never sends) into a wait; 0 when there is none.
func retryAfter(seconds int) time.Duration {
	if seconds <= 0 {
		return 0
	}
	return min(time.Duration(seconds)*time.Second, maxRetryAfter)
}
