package emitter

import (
	"io"
	"os"
	"strconv"
	"time"
)

// progressInterval is how often the live line is redrawn.
const progressInterval = time.Second

// progressLine reports progress once an interval: on a terminal it redraws one
// line in place with a carriage return; anywhere else (a file, a pipe, a CI log)
// each report is a line of its own. Rate and latency are over the last interval,
// counts since the start.
type progressLine struct {
	w       io.Writer
	inPlace bool // redraw with '\r' (a terminal) instead of writing lines
	buf     []byte
	lastLen int
	prev    totals
	prevLat histSnapshot
	cur     histSnapshot
	prevAt  time.Duration
}

func (p *progressLine) draw(elapsed time.Duration, t totals, lat *histSnapshot) {
	p.cur = *lat
	p.cur.sub(&p.prevLat)
	p.prevLat = *lat
	rate := 0.0
	if dt := (elapsed - p.prevAt).Seconds(); dt > 0 {
		rate = float64(t.accepted-p.prev.accepted) / dt
	}
	p.prev, p.prevAt = t, elapsed

	b := p.buf[:0]
	if p.inPlace {
		b = append(b, '\r')
	}
	start := len(b)
	b = strconv.AppendInt(b, int64(elapsed/time.Second), 10)
	b = append(b, "s  "...)
	b = strconv.AppendInt(b, int64(rate+0.5), 10)
	b = append(b, " pkt/s  accepted "...)
	b = strconv.AppendUint(b, t.accepted, 10)
	b = append(b, "  rejected "...)
	b = strconv.AppendUint(b, t.rejected503+t.rejected429, 10)
	b = append(b, "  errors "...)
	b = strconv.AppendUint(b, t.otherErrors, 10)
	b = append(b, "  retries "...)
	b = strconv.AppendUint(b, t.retries, 10)
	b = append(b, "  gave up "...)
	b = strconv.AppendUint(b, t.gaveUp, 10)
	b = append(b, "  p50 "...)
	b = appendMs(b, p.cur.quantileMs(0.50))
	b = append(b, "  p99 "...)
	b = appendMs(b, p.cur.quantileMs(0.99))
	n := len(b) - start
	if p.inPlace {
		for i := n; i < p.lastLen; i++ { // blank what a longer previous line left
			b = append(b, ' ')
		}
	} else {
		b = append(b, '\n')
	}
	p.lastLen = n
	p.buf = b
	_, _ = p.w.Write(b)
}

// finish ends a redrawn line so the report starts on a fresh one.
func (p *progressLine) finish() {
	if p.inPlace && p.lastLen > 0 {
		_, _ = p.w.Write([]byte{'\n'})
	}
}

// redraws reports whether progress written to w can be redrawn in place: only on
// a terminal.
func redraws(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}
