package proxy

import (
	"bytes"
	"strings"
	"testing"
)

// Bucket edges: a value equal to a bound is in that bucket (Prometheus' "le"), one
// nanosecond more is in the next, and anything past the last bound is +Inf.
func TestLatencyHistBuckets(t *testing.T) {
	b := newHistBounds([]float64{1e-6, 1e-3})
	var h latencyHist
	h.observe(b, 1000, 1)      // = 1 µs
	h.observe(b, 1001, 2)      // just over
	h.observe(b, 1_000_000, 1) // = 1 ms
	h.observe(b, 2_000_000, 4) // over the last bound
	if want := [3]int64{1, 3, 4}; [3]int64(h.counts[:3]) != want {
		t.Fatalf("counts %v, want %v", h.counts[:3], want)
	}
	if want := int64(1000 + 2*1001 + 1_000_000 + 4*2_000_000); h.sumNs != want {
		t.Fatalf("sum %d ns, want %d", h.sumNs, want)
	}
	var w bytes.Buffer
	writeHist(&w, "x_seconds", `loop="0"`, b, &h)
	want := `x_seconds_bucket{loop="0",le="1e-06"} 1
x_seconds_bucket{loop="0",le="0.001"} 4
x_seconds_bucket{loop="0",le="+Inf"} 8
x_seconds_sum{loop="0"} 0.009003002
x_seconds_count{loop="0"} 8
`
	if w.String() != want {
		t.Fatalf("exposition:\n%s\nwant:\n%s", w.String(), want)
	}
	var sum latencyHist
	sum.add(&h)
	sum.add(&h)
	if sum.counts[2] != 8 || sum.sumNs != 2*h.sumNs {
		t.Fatalf("add: %+v", sum)
	}
	if !strings.HasSuffix(requestBounds.le[0], "e-06") || len(upstreamBounds.ns) >= histSlots {
		t.Fatalf("bounds: %v %v", requestBounds.le, upstreamBounds.ns)
	}
}
