package emitter

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

const (
	backoffBase = 50 * time.Millisecond
	backoffCap  = 5 * time.Second
	// retryBudgetFloor is the smallest number of re-sends the budget can bank, so a
	// short or slow run can still retry a few packets before it has sent many.
	retryBudgetFloor = 10
)

// backoff is the wait before re-send number retry (1 for the first re-send): "full
// jitter", uniform in [0, min(cap, base·2^(retry-1))), and never shorter than what
// the server asked for in Retry-After.
func backoff(retry int, retryAfter time.Duration, rng *rand.Rand) time.Duration {
	ceiling := backoffCap
	if retry < 1 {
		retry = 1
	}
	if retry <= 20 { // past 2^20 · 50 ms the cap has long won
		if c := backoffBase << (retry - 1); c < ceiling {
			ceiling = c
		}
	}
	d := time.Duration(rng.Int64N(int64(ceiling)))
	if retryAfter > d {
		d = retryAfter
	}
	return d
}

// retryBudget caps re-sends at a fraction of first sends over the whole run, so a
// dead or overloaded distributor sees at most (1+ratio)× the offered load instead of
// (1+retries)×. It is a token bucket filled by first sends: each adds ratio tokens,
// each re-send takes one. The bucket holds at most max tokens, so a long healthy run
// cannot bank a flood of retries for the moment the distributor falls over.
//
// The lock is taken only when a packet is about to be re-sent, never per packet:
// first sends are counted by the connections themselves and summed here lazily.
type retryBudget struct {
	mu       sync.Mutex
	earn     int64 // milli-tokens per first send; < 0: unlimited
	max      int64 // milli-tokens
	balance  int64 // milli-tokens: counted in thousandths so 0.2 per send adds up exactly
	lastSent uint64
}

func newRetryBudget(ratio float64, slots int) *retryBudget {
	capacity := int64(max(slots, retryBudgetFloor)) * 1000
	earn := int64(math.Round(ratio * 1000))
	if ratio < 0 {
		earn = -1
	}
	return &retryBudget{earn: earn, max: capacity, balance: capacity}
}

// take reports whether one more re-send is allowed. sent is the number of first
// sends so far over all connections.
func (b *retryBudget) take(sent uint64) bool {
	if b.earn < 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if sent > b.lastSent {
		b.balance = min(b.max, b.balance+int64(sent-b.lastSent)*b.earn)
		b.lastSent = sent
	}
	if b.balance < 1000 {
		return false
	}
	b.balance -= 1000
	return true
}
