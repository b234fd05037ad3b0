package emitter

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// BenchmarkEmitterThroughput measures how many packets per second the emitter
// drives, flat out (--rate 0), against a raw TCP server that answers every request
// with "202 Accepted" at once. Each op is one packet finally accepted; pps is
// packets per second of wall time, connection setup included. The server shares
// the machine's cores with the emitter.
func BenchmarkEmitterThroughput(b *testing.B) {
	for _, c := range []struct{ conns, pipeline int }{{1, 1}, {4, 1}, {16, 1}, {4, 16}, {16, 16}} {
		name := "conns=" + strconv.Itoa(c.conns) + "/pipeline=" + strconv.Itoa(c.pipeline)
		b.Run(name, func(b *testing.B) {
			srv := newRawServer(b, func(pending int) int { return pending })
			cfg := Config{Target: srv.addr, Count: b.N, Concurrency: c.conns, Pipeline: c.pipeline}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			rep, err := Run(context.Background(), cfg, nil)
			elapsed := time.Since(start)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if rep.Accepted != uint64(b.N) {
				b.Fatalf("accepted %d of %d: %+v", rep.Accepted, b.N, rep)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pps")
			b.ReportMetric(rep.P50Ms, "p50-ms")
		})
	}
}
