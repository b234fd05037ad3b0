package proxy

import (
	"bytes"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/sluicelog/sluice/codec"
)

// benchShard is a shard with no event loop behind it (the fake-upstream harness,
// harness_test.go): handle() can be driven directly, and drain() plays the
// analyzers' part by settling what was queued.
func benchShard(tb testing.TB, analyzers int) *shard { return testShard(tb, analyzers, nil) }

// drain settles everything queued, as if every analyzer answered 2xx at once.
func (s *shard) drain() {
	for _, d := range s.dests {
		u := d.conns[0]
		for d.outbox.len() > 0 {
			s.send(d, u)
			s.settle(u.parcels.pop(), d)
		}
		d.dirty = false
	}
	s.dirty = s.dirty[:0]
}

// seedRequest is a typical emitter request: six headers and the seed's packet of
// five messages, about 1.1 KB of body.
func seedRequest(id string) []byte {
	body := `{"emitter_id":"emitter-7","packet_id":"` + id + `","messages":[`
	for i := 0; i < 5; i++ {
		if i > 0 {
			body += ","
		}
		body += `{"timestamp":1640995200` + strconv.Itoa(100+i) + `,"level":"INFO","message":"GET /api/v1/orders/` + strconv.Itoa(48213+i) +
			` completed in 23ms with status 200 for user 7781","metadata":{"service":"orders","host":"web-3","region":"eu-west-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}}`
	}
	body += `]}`
	return []byte("POST /ingest HTTP/1.1\r\nHost: sluice:8080\r\nUser-Agent: sluice-emitter/1\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\nConnection: keep-alive\r\n\r\n" + body)
}

// BenchmarkIngestPath is the per-request hot path: parse, validate, route, copy
// into the outbox, answer 202. It must not allocate.
func BenchmarkIngestPath(b *testing.B) {
	benchIngest(b, benchShard(b, 3), seedRequest("packet-000042"))
}

// BenchmarkIngestPathMaxBufferBytes is the same with MAX_BUFFER_BYTES set: one
// more atomic add at accept and at settle.
func BenchmarkIngestPathMaxBufferBytes(b *testing.B) {
	s := testShard(b, 3, func(c *Config) { c.MaxBufferBytes = 1 << 30 })
	benchIngest(b, s, seedRequest("packet-000042"))
}

// BenchmarkIngestPathTokens is the same with INGEST_TOKENS set and the request
// carrying a valid bearer token.
func BenchmarkIngestPathTokens(b *testing.B) {
	s, req := tokenShard(b)
	benchIngest(b, s, req)
}

func benchIngest(b *testing.B, s *shard, req []byte) {
	in := &ingress{sh: s}
	in.parser.Init(s.srv.cfg.Limits())
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	out := make([]byte, 0, 4096)
	s.now = nanotime()
	for i := 0; b.Loop(); i++ {
		r := s.handle(in, req, out[:0])
		if r.consumed != len(req) || r.answered != 1 || s.stats.AcceptedPackets == 0 {
			b.Fatalf("handled %+v", r)
		}
		if i%512 == 511 {
			s.drain()
		}
	}
}

// BenchmarkIngestPathShed is the hot path with SHED_BELOW=WARN and the backlog
// under SHED_AT: the validator tallies levels in its pass and the packet (INFO,
// below WARN) is checked against the backlog, then accepted.
func BenchmarkIngestPathShed(b *testing.B) {
	benchIngest(b, shedShard(b), seedRequest("packet-000042"))
}

// BenchmarkIngestPathShedRefused is a packet shed: SHED_BELOW=WARN, the backlog
// past SHED_AT, the INFO packet answered 503.
func BenchmarkIngestPathShedRefused(b *testing.B) {
	s := shedShard(b)
	s.srv.budget.held.Store(1 << 40) // as if the buffer held that much: past SHED_AT
	in := &ingress{sh: s}
	in.parser.Init(s.srv.cfg.Limits())
	req := seedRequest("packet-000042")
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	out := make([]byte, 0, 4096)
	for b.Loop() {
		if r := s.handle(in, req, out[:0]); r.answered != 1 {
			b.Fatalf("handled %+v", r)
		}
	}
	if s.stats.AcceptedPackets != 0 || s.stats.Shed[codec.LevelInfo] == 0 {
		b.Fatalf("accepted %d, shed %v: want every packet shed", s.stats.AcceptedPackets, s.stats.Shed)
	}
}

// BenchmarkIngestPathAffinity is the hot path with AFFINITY=emitter_id: the
// emitter_id hashed and its remembered analyzer checked against the bound.
func BenchmarkIngestPathAffinity(b *testing.B) {
	benchIngest(b, affinityShard(b), seedRequest("packet-000042"))
}

// affinityShard is benchShard with AFFINITY=emitter_id.
func affinityShard(tb testing.TB) *shard {
	return testShard(tb, 3, func(c *Config) { c.Affinity = AffinityEmitterID })
}

// shedShard is benchShard with SHED_BELOW=WARN.
func shedShard(tb testing.TB) *shard {
	return testShard(tb, 3, func(c *Config) { c.ShedBelow = shedLevelOf(codec.LevelWarn) })
}

// tokenShard is benchShard with INGEST_TOKENS set, and a seed request that carries
// one of the tokens.
func tokenShard(tb testing.TB) (*shard, []byte) {
	s := testShard(tb, 3, func(c *Config) {
		var err error
		if c.IngestTokens, err = parseTokens("other-token-1,3b9a4f2c7d1e8a6b5c0f9e2d4a7b1c3e,other-token-2"); err != nil {
			tb.Fatal(err)
		}
	})
	req := seedRequest("packet-000042")
	at := bytes.Index(req, []byte("Accept:"))
	req = append(append(append([]byte(nil), req[:at]...), "Authorization: Bearer 3b9a4f2c7d1e8a6b5c0f9e2d4a7b1c3e\r\n"...), req[at:]...)
	return s, req
}

// TestIngestPathAllocs pins the benchmark's claim as a test: the hot path does
// not allocate once warm, with and without INGEST_TOKENS.
func TestIngestPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Log("allocation counts are not meaningful under the race detector; checked in the non-race run")
		return
	}
	plain := benchShard(t, 3)
	withTokens, tokenReq := tokenShard(t)
	for _, tc := range []struct {
		name string
		s    *shard
		req  []byte
	}{
		{"open", plain, seedRequest("packet-000042")},
		{"tokens", withTokens, tokenReq},
		{"max_buffer_bytes", testShard(t, 3, func(c *Config) { c.MaxBufferBytes = 1 << 30 }), seedRequest("packet-000042")},
		{"shed_below", shedShard(t), seedRequest("packet-000042")},
		{"affinity", affinityShard(t), seedRequest("packet-000042")},
	} {
		t.Run(tc.name, func(t *testing.T) { checkNoAllocs(t, tc.s, tc.req) })
	}
	t.Run("shed_refused", func(t *testing.T) {
		s := shedShard(t)
		s.srv.budget.held.Store(1 << 40) // past SHED_AT: every INFO packet is shed
		in := &ingress{sh: s}
		in.parser.Init(s.srv.cfg.Limits())
		req, out := seedRequest("packet-000042"), make([]byte, 0, 4096)
		s.handle(in, req, out[:0]) // the first refusal writes the rate-limited log line
		defer debug.SetGCPercent(debug.SetGCPercent(-1))
		if allocs := testing.AllocsPerRun(300, func() { s.handle(in, req, out[:0]) }); allocs != 0 {
			t.Fatalf("a shed packet allocates %.1f times, want 0", allocs)
		}
		if s.stats.AcceptedPackets != 0 || s.stats.Shed[codec.LevelInfo] < 300 {
			t.Fatalf("accepted %d, shed %v: want every packet shed", s.stats.AcceptedPackets, s.stats.Shed)
		}
	})
}

func checkNoAllocs(t *testing.T, s *shard, req []byte) {
	in := &ingress{sh: s}
	in.parser.Init(s.srv.cfg.Limits())
	out := make([]byte, 0, 4096)
	for i := 0; i < 2000; i++ { // warm the rings, free list and buffer pool
		s.handle(in, req, out[:0])
		if i%100 == 99 {
			s.drain()
		}
	}
	s.drain()
	// AllocsPerRun counts every goroutine's mallocs, and goroutines of earlier tests
	// may still be winding down; a GC also empties the buffer pool. So: no GC while
	// measuring, and the least of a few runs. A path that allocates shows in all.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	allocs := 1e9
	for try := 0; try < 5 && allocs > 0; try++ {
		allocs = min(allocs, testing.AllocsPerRun(300, func() {
			s.handle(in, req, out[:0])
			s.drain()
		}))
	}
	if allocs != 0 {
		t.Fatalf("ingest path allocates %.1f times per request, want 0", allocs)
	}
	if got := s.stats.Dests[0].DeliveredPackets + s.stats.Dests[1].DeliveredPackets + s.stats.Dests[2].DeliveredPackets; got != s.stats.AcceptedPackets || got == 0 {
		t.Fatalf("accepted %d, settled %d", s.stats.AcceptedPackets, got)
	}
}

// A Writev may carry at most IOV_MAX (1024) iovecs; the kernel refuses more with
// EINVAL, which once closed connections and burnt packets' retries under load.
func TestPlanStaysUnderIOVMax(t *testing.T) {
	s := benchShard(t, 1)
	in := &ingress{sh: s}
	in.parser.Init(s.srv.cfg.Limits())
	req := seedRequest("tiny")
	for i := 0; i < 3000; i++ {
		s.handle(in, req, nil)
	}
	d := s.dests[0]
	for _, batchMax := range []int{1, 7, 64, 512, 4096} {
		for _, room := range []int{1, 32, 1024} {
			_, spans := s.plan(d, room, batchMax)
			iovs, packets := 0, 0
			for _, sp := range spans {
				iovs++ // head
				if batchMax > 1 {
					iovs += 2*sp.n + 1 // [ bodies , ]
				} else {
					iovs += sp.n
				}
				packets += sp.n
				if sp.n < 1 || sp.n > batchMax {
					t.Fatalf("batchMax %d: a flight of %d packets", batchMax, sp.n)
				}
			}
			if iovs > maxIov {
				t.Fatalf("batchMax %d, room %d: %d iovecs in one write, limit %d", batchMax, room, iovs, maxIov)
			}
			if len(spans) > room || packets == 0 {
				t.Fatalf("batchMax %d, room %d: %d flights carrying %d packets", batchMax, room, len(spans), packets)
			}
		}
	}
}
