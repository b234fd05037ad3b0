package proxy

import (
	"testing"

	"github.com/sluicelog/sluice/codec"
)

// Every status the ingest port can answer, as distributor_responses_total lists
// them, leaves with its RFC 9110 reason phrase (the ingest 401 once left as
// "HTTP/1.1 401 " with none).
func TestEveryAnsweredCodeHasAReasonPhrase(t *testing.T) {
	for _, code := range statusCodes {
		if codec.StatusText(code) == "" {
			t.Errorf("%d: codec.StatusText has no reason phrase", code)
		}
	}
}
