package demo

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/sluicelog/sluice/proxy"
)

// demoKeyHelp is the view's last line.
const demoKeyHelp = "keys (type, then Enter): k N kill · r N revive · d N drain · u N undrain · f N toggle 500s · q quit (Ctrl-C too)"

// demoSample is one reading the view compares with the one before.
type demoSample struct {
	at      time.Time
	m       proxy.MetricsJSON
	killed  []bool
	failing []bool
}

type demoViewState struct {
	start time.Time // when the view began: frames are labelled by time since
	prev  demoSample
}

// demoRejected503 lists the /metrics-json rejection reasons answered 503; the others
// (invalid, too_large, protocol, rate_limited) are answered 4xx.
var demoRejected503 = map[string]bool{"full": true, "no_analyzer": true, "queue_full": true, "shutdown": true, "max_conns": true, "max_conns_per_ip": true, "shed": true, "spool_full": true, "spool_failed": true}

// demoColumns is the analyzer table's header. The plain output is meant to be read
// by programs too (the demo test does): one analyzer per line, fields separated
// by spaces, in this order.
var demoColumns = []string{"analyzer", "process", "state", "weight", "effective", "share", "share-all", "msg/s", "queue", "in-flight", "delivered"}

// buildDemoFrame renders the totals line, the table header and one line per analyzer.
// Rates and "share" are over the interval since prev; "share-all" since the start.
// Shares are of delivered messages, which is what the weights promise.
func buildDemoFrame(names []string, prev, cur *demoSample) []string {
	dt := cur.at.Sub(prev.at).Seconds()
	if dt <= 0 {
		dt = 1
	}
	per := func(now, before int64) int64 { return int64(float64(now-before)/dt + 0.5) }
	m, p := &cur.m, &prev.m
	var rej, rejPrev, retries, rerouted int64 // rej: 503 answers so far
	for k, v := range m.Rejected {
		if demoRejected503[k] {
			rej += v
			rejPrev += p.Rejected[k]
		}
	}
	for _, a := range m.Analyzers {
		retries += a.Retries
		rerouted += a.Rerouted
	}
	lines := []string{fmt.Sprintf("totals  accepted/s %d  msg/s %d  accepted %d  delivered %d  503/s %d  retries %d  rerouted %d  dropped %d  queued %d  in-flight %d",
		per(m.TotalPackets, p.TotalPackets), per(m.TotalMessages, p.TotalMessages), m.TotalPackets, m.DeliveredPackets,
		per(rej, rejPrev), retries, rerouted, m.Dropped, m.Queued, m.InFlight)}

	rows := [][]string{demoColumns}
	dTotal := m.DeliveredMessages - p.DeliveredMessages
	for i, name := range names {
		a, b := m.Analyzers[name], p.Analyzers[name]
		process := "up"
		switch {
		case cur.killed[i]:
			process = "killed"
		case cur.failing[i]:
			process = "failing"
		}
		share, shareAll := 0.0, 0.0
		if dTotal > 0 {
			share = float64(a.DeliveredMessages-b.DeliveredMessages) / float64(dTotal)
		}
		if m.DeliveredMessages > 0 {
			shareAll = float64(a.DeliveredMessages) / float64(m.DeliveredMessages)
		}
		rows = append(rows, []string{
			name, process, a.State,
			fmt.Sprintf("%.3f", a.Weight), fmt.Sprintf("%.3f", a.EffectiveWeight),
			fmt.Sprintf("%.3f", share), fmt.Sprintf("%.3f", shareAll),
			fmt.Sprint(per(a.DeliveredMessages, b.DeliveredMessages)),
			fmt.Sprint(a.Queued), fmt.Sprint(a.InFlight), fmt.Sprint(a.DeliveredMessages),
		})
	}
	return append(lines, alignDemoColumns(rows)...)
}

// alignDemoColumns pads every column to its widest cell (left-aligned names, right-
// aligned numbers), two spaces apart.
func alignDemoColumns(rows [][]string) []string {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	out := make([]string, len(rows))
	for j, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-len(c))
			if i < 3 { // names and states
				b.WriteString(c)
				if i < len(r)-1 {
					b.WriteString(pad)
				}
			} else {
				b.WriteString(pad)
				b.WriteString(c)
			}
		}
		out[j] = b.String()
	}
	return out
}

// demoScreen owns stdout. On a terminal it redraws one frame in place (on the
// alternate screen, so the terminal's scrollback is left as it was) with the
// latest events and the command being typed; otherwise it prints each frame as a
// block and each event as a line, which is what a pipe or a log file wants.
type demoScreen struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	active  bool     // on the alternate screen, redrawing
	events  []string // latest events, oldest first (tty)
	title   []string
	body    []string
	input   []byte // command being typed (tty in termCbreak mode)
	restore func() // gives the terminal its modes back
}

const (
	demoMaxEvents     = 6
	demoMaxEventWidth = 160
)

func newDemoScreen(w io.Writer, tty bool) *demoScreen { return &demoScreen{w: w, tty: tty} }

// print writes text as it is, before the view starts or after it ends.
func (s *demoScreen) print(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = io.WriteString(s.w, text)
}

// enter starts the view.
func (s *demoScreen) enter() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tty {
		_, _ = io.WriteString(s.w, "\x1b[?1049h\x1b[H\x1b[2J")
		s.active = true
		s.drawLocked()
	}
}

// leave ends the view and gives the terminal back.
func (s *demoScreen) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active {
		_, _ = io.WriteString(s.w, "\x1b[?1049l")
		s.active = false
	}
	if s.restore != nil {
		s.restore()
		s.restore = nil
	}
}

// event records one line of news: a log line or a command's outcome.
func (s *demoScreen) event(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.active {
		_, _ = io.WriteString(s.w, "event "+line+"\n")
		return
	}
	if len(line) > demoMaxEventWidth {
		line = line[:demoMaxEventWidth-1] + "…"
	}
	s.events = append(s.events, line)
	if len(s.events) > demoMaxEvents {
		s.events = s.events[len(s.events)-demoMaxEvents:]
	}
	s.drawLocked()
}

// frame shows a new reading.
func (s *demoScreen) frame(elapsed time.Duration, title, body []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.title, s.body = title, body
	if s.active {
		s.drawLocked()
		return
	}
	var b strings.Builder
	// Plain blocks start with the elapsed time alone on a line, so a reader can
	// find them.
	fmt.Fprintf(&b, "--- %s ---\n", elapsed.Round(time.Second))
	for _, l := range body {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteString(demoKeyHelp)
	b.WriteByte('\n')
	_, _ = io.WriteString(s.w, b.String())
}

// drawLocked redraws the whole frame from the top left, clearing what each line
// and the previous frame left behind.
func (s *demoScreen) drawLocked() {
	var b strings.Builder
	b.WriteString("\x1b[H")
	line := func(l string) {
		b.WriteString(l)
		b.WriteString("\x1b[K\n")
	}
	for _, l := range s.title {
		line(l)
	}
	line("")
	for i, l := range s.body {
		if i == 1 {
			line("")
		}
		line(colourDemoState(l))
	}
	line("")
	line("events:")
	for _, e := range s.events {
		line("  " + e)
	}
	line("")
	line(demoKeyHelp)
	b.WriteString("\x1b[J> ")
	b.Write(s.input)
	_, _ = io.WriteString(s.w, b.String())
}

// colourDemoState colours a table row's state word: green when taking its full
// share, yellow while ramping or on trial, red when out.
func colourDemoState(l string) string {
	for state, colour := range map[string]string{
		" " + proxy.StateHealthy.String() + " ":   "32",
		" " + proxy.StateSlowStart.String() + " ": "33",
		" " + proxy.StateHalfOpen.String() + " ":  "33",
		" " + proxy.StateOpen.String() + " ":      "31",
		" " + proxy.StateDrained.String() + " ":   "31",
		" " + proxy.StateUnknown.String() + " ":   "31",
		" killed ":                                "31",
		" failing ":                               "31",
	} {
		if i := strings.Index(l, state); i >= 0 {
			word := state[1 : len(state)-1]
			l = l[:i+1] + "\x1b[" + colour + "m" + word + "\x1b[0m" + l[i+1+len(word):]
		}
	}
	return l
}

// readKeys edits a command line from a terminal in termCbreak mode, echoing it in the
// frame's prompt, and sends each line on Enter.
func (s *demoScreen) readKeys(r io.Reader, out chan<- string) {
	buf := make([]byte, 64)
	for {
		n, err := r.Read(buf)
		for _, c := range buf[:n] {
			var line string
			send := false
			s.mu.Lock()
			switch {
			case c == '\r' || c == '\n':
				line, send = string(s.input), true
				s.input = s.input[:0]
			case c == 0x7f || c == 0x08: // backspace
				if len(s.input) > 0 {
					s.input = s.input[:len(s.input)-1]
				}
			case c == 0x15: // Ctrl-U
				s.input = s.input[:0]
			case c >= 0x20 && c < 0x7f && len(s.input) < 64:
				s.input = append(s.input, c)
			}
			if s.active {
				_, _ = io.WriteString(s.w, "\r\x1b[K> "+string(s.input))
			}
			s.mu.Unlock()
			if send {
				out <- line
			}
		}
		if err != nil {
			return
		}
	}
}
