package proxy

import (
	"testing"
)

// BenchmarkForwardBatch is the forwarding path for a batch-capable analyzer: 64
// packets queued, planned and framed into one batch request, written with one
// Writev (to a fake connection that keeps nothing), answered, settled.
func BenchmarkForwardBatch(b *testing.B) {
	s := testShard(b, 1, func(c *Config) {
		c.BatchLinger = 0
		c.UpstreamConns = 1
	})
	d := s.dests[0]
	d.batch = true
	c := open(s)[0][0]
	c.discard = true
	hold(d) // queue without writing; the benchmark writes
	body := seedRequest("x")
	body = body[len(body)-1100:] // any 1.1 KB body: accept copies it, nobody parses it
	ok := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	b.ReportAllocs()
	b.SetBytes(64 * int64(len(body)))
	for b.Loop() {
		for range 64 {
			s.accept(body, 1)
		}
		s.writeFlights(d.conns[0], 1)
		c.in = ok // Discard re-slices it; the bytes are only read
		s.onResponses(d.conns[0], c)
	}
	if s.stats.Dests[0].DeliveredPackets == 0 || s.stats.Dests[0].Batches == 0 {
		b.Fatal("nothing delivered")
	}
}

// BenchmarkPlanBatch is the framing alone: plan one batch of 64 queued packets
// (heads and Content-Length), nothing written.
func BenchmarkPlanBatch(b *testing.B) {
	s := testShard(b, 1, func(c *Config) { c.BatchLinger = 0 })
	d := s.dests[0]
	hold(d)
	body := seedRequest("x")
	for range 64 {
		s.accept(body[len(body)-1100:], 1)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, spans := s.plan(d, 1, 64); len(spans) != 1 || spans[0].n != 64 {
			b.Fatalf("spans %+v", spans)
		}
	}
}
