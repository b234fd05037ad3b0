package proxy

import (
	"bytes"
	"math"
	"strconv"
)

// latencyHist is a Prometheus histogram kept as plain integers by one event loop.
//
// VictoriaMetrics' PrometheusHistogram takes a mutex on every Update; even
// uncontended, that was the one lock left on the per-request path. A loop instead
// counts into its own latencyHist inside its Stats, so the histograms are copied
// with the other counters by Snapshot (one instant per loop, like them) and written
// into the exposition by writeHist at scrape time.
type latencyHist struct {
	counts [histSlots]int64 // observations per bucket, not cumulative; the last slot is +Inf
	sumNs  int64
}

// histSlots is the most buckets a histBounds may have, +Inf included.
const histSlots = 16

// histBounds are a histogram's upper bounds ("le"), ascending.
type histBounds struct {
	ns []int64  // in nanoseconds, for observe
	le []string // as Prometheus writes them, for the exposition
}

func newHistBounds(seconds []float64) *histBounds {
	if len(seconds) >= histSlots {
		panic("proxy: too many histogram buckets")
	}
	b := &histBounds{}
	for _, s := range seconds {
		b.ns = append(b.ns, int64(math.Round(s*1e9)))
		b.le = append(b.le, strconv.FormatFloat(s, 'g', -1, 64))
	}
	return b
}

// Histogram buckets: request handling is microseconds, analyzer round trips are
// up to the sender timeout.
var (
	requestBounds  = newHistBounds([]float64{5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3})
	upstreamBounds = newHistBounds([]float64{100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5})
)

// observe counts n observations of ns nanoseconds.
func (h *latencyHist) observe(b *histBounds, ns, n int64) {
	i := 0
	for i < len(b.ns) && ns > b.ns[i] {
		i++
	}
	h.counts[i] += n
	h.sumNs += ns * n
}

func (h *latencyHist) add(o *latencyHist) {
	for i := range h.counts {
		h.counts[i] += o.counts[i]
	}
	h.sumNs += o.sumNs
}

// writeHistHead starts a histogram family in the exposition.
func writeHistHead(w *bytes.Buffer, name string) {
	w.WriteString("# HELP " + name + " " + helpFor(name) + "\n# TYPE " + name + " histogram\n")
}

// writeHist writes one series of a family: cumulative buckets, sum and count.
// labels is `k="v",...` without braces.
func writeHist(w *bytes.Buffer, name, labels string, b *histBounds, h *latencyHist) {
	var cum int64
	line := func(le string, n int64) {
		w.WriteString(name + `_bucket{` + labels + `,le="` + le + `"} `)
		w.WriteString(strconv.FormatInt(n, 10))
		w.WriteByte('\n')
	}
	for i, le := range b.le {
		cum += h.counts[i]
		line(le, cum)
	}
	cum += h.counts[len(b.le)]
	line("+Inf", cum)
	w.WriteString(name + "_sum{" + labels + "} " + strconv.FormatFloat(float64(h.sumNs)/1e9, 'g', -1, 64) + "\n")
	w.WriteString(name + "_count{" + labels + "} " + strconv.FormatInt(cum, 10) + "\n")
}
