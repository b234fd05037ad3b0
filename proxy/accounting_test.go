package proxy

import (
	"math/rand"
	"strconv"
	"testing"
)

// Random operations on a shard with fake upstreams: accept, answers 2xx, 4xx and
// 5xx, lost connections, analyzers drained and back (evacuation), then the
// shutdown's dropAll. After every one the accounting holds, in the shard's counters
// and in the distributor's budget:
//
//	accepted = delivered + queued + in_flight + dropped
func TestAccountingUnderRandomOperations(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		t.Run("seed="+strconv.FormatInt(seed, 10), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			s := testShard(t, 3, func(c *Config) {
				c.BatchLinger = 0
				c.UpstreamConns = 2
				c.PipelineDepth = 4
				c.SenderRetries = 2
				c.QueueSize = 20
				c.IngestBufferSize = 40
			})
			conns := open(s)
			drained := make([]bool, 3)
			for op := 0; op < 400; op++ {
				a := rng.Intn(3)
				c := conns[a][rng.Intn(2)]
				switch k := rng.Intn(10); {
				case k < 4:
					offer(s, "p-"+strconv.Itoa(op), 1+rng.Intn(5))
				case k < 6:
					answer(s, c, rng.Intn(c.u.flights.len()+1), 200)
				case k == 6:
					answer(s, c, min(1, c.u.flights.len()), []int{500, 404, 429}[rng.Intn(3)])
				case k == 7:
					_ = s.loop.Close(c) // the connection is lost, in flight or not
				case k == 8:
					drained[a] = !drained[a]
					s.srv.ctl.setDrained(a, drained[a])
					s.sync()
					s.flushDirty()
				default:
					s.tick()
				}
				for i, cs := range conns { // a lost connection comes back at once
					for j, fc := range cs {
						if fc.closed {
							conns[i][j] = &fakeConn{u: fc.u}
							s.opened(fc.u, conns[i][j])
							s.flushDirty()
						}
					}
				}
				shardInvariant(t, s)
			}
			s.dropAll()
			shardInvariant(t, s)
			if tot := s.stats.Total(); tot.Queued+tot.InFlight != 0 || s.srv.budget.held.Load() != 0 {
				t.Fatalf("after dropAll: queued %d, in flight %d, budget %d", tot.Queued, tot.InFlight, s.srv.budget.held.Load())
			}
			if s.stats.AcceptedPackets == 0 || s.stats.Total().DeliveredPackets == 0 {
				t.Fatalf("the run exercised nothing: %+v", s.stats.Total())
			}
		})
	}
}
