package proxy

import (
	"math"
	"math/rand"
	"strconv"
	"testing"
	"time"

	"github.com/sluicelog/sluice/sched"
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
			s := testShard(t, 3, randomOpsConfig)
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
					_, _, _ = s.srv.ctl.setDrained(s.view.Members[a].Name, drained[a])
					s.sync()
					s.flushDirty()
				default:
					s.tick()
				}
				reconnect(s, conns, nil)
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

// randomOpsConfig keeps the random-operation tests' queues and windows small, so
// they fill, spill and retry.
func randomOpsConfig(c *Config) {
	c.BatchLinger = 0
	c.UpstreamConns = 2
	c.PipelineDepth = 4
	c.SenderRetries = 2
	c.QueueSize = 20
	c.IngestBufferSize = 40
}

// reconnect brings every lost connection back at once, except those of the
// analyzers in skip.
func reconnect(s *shard, conns [][]*fakeConn, skip map[int]int) {
	for i, cs := range conns {
		if _, gone := skip[i]; gone {
			continue
		}
		for j, fc := range cs {
			if fc.closed {
				conns[i][j] = &fakeConn{u: fc.u}
				s.opened(fc.u, conns[i][j])
				s.flushDirty()
			}
		}
	}
}

// Random operations with analyzers added, removed and added back (the same URL
// takes its old id) at run time, on the fake-upstream harness: the shard grows, the
// accounting and the budget hold after every step, and a removed analyzer is never
// written to again while it stays removed.
func TestAccountingUnderMembershipChanges(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		t.Run("seed="+strconv.FormatInt(seed, 10), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			s := testShard(t, 2, randomOpsConfig)
			ctl := s.srv.ctl
			ctl.launch = func(int) {} // probes are answered below, not sent
			conns := open(s)
			written := func(id int) (n int) {
				for _, c := range conns[id] {
					n += c.wrote.Len()
				}
				return n
			}
			frozen := map[int]int{} // removed id -> bytes written to it when it was removed
			adds, removes := 0, 0
			for op := 0; op < 400; op++ {
				v := s.srv.View()
				a := rng.Intn(len(conns))
				c := conns[a][rng.Intn(2)]
				switch k := rng.Intn(12); {
				case k < 4:
					offer(s, "p-"+strconv.Itoa(op), 1+rng.Intn(5))
				case k < 6:
					answer(s, c, rng.Intn(c.u.flights.len()+1), 200)
				case k == 6:
					answer(s, c, min(1, c.u.flights.len()), []int{500, 404}[rng.Intn(2)])
				case k == 7:
					_ = s.loop.Close(c)
				case k == 8 || k == 9: // add one of six URLs, or add a removed one back
					spec, _ := analyzerURL("http://127.0.0.1:" + strconv.Itoa(9101+rng.Intn(6)))
					spec.Name, spec.Weight = "x"+strconv.Itoa(op), 0.5
					if _, err := ctl.add(spec, "test", false); err != nil {
						continue // that URL is a member already
					}
					adds++
					id := idOf(s.srv, spec.Name)
					ctl.probed(probeResult{id: id, ok: true, status: 200}, time.Now())
					s.sync()
					for len(conns) < len(s.dests) { // a new id: connect it
						d := s.dests[len(conns)]
						var cs []*fakeConn
						for _, u := range d.conns {
							u.redialAt = math.MaxInt64
							cs = append(cs, &fakeConn{u: u, closed: true})
						}
						conns = append(conns, cs)
					}
					delete(frozen, id)
					s.flushDirty()
				case k == 10: // remove a member, the last one included
					m := v.Members[a]
					if m.State == sched.StateRemoved {
						continue
					}
					if _, _, err := ctl.remove(m.Name, "test"); err != nil {
						t.Fatal(err)
					}
					removes++
					s.sync()
					s.flushDirty()
					frozen[a] = written(a)
					if n := s.dests[a].outbox.len(); n > 0 && anyEligible(s.srv.View()) {
						t.Fatalf("op %d: %d packets left queued at a removed analyzer while others take packets", op, n)
					}
				default:
					s.tick()
				}
				reconnect(s, conns, frozen) // not the removed ones: nothing dials them
				shardInvariant(t, s)
				for id, n := range frozen {
					if w := written(id); w != n {
						t.Fatalf("op %d: removed analyzer %d written to (%d bytes after its removal)", op, id, w-n)
					}
				}
			}
			if adds == 0 || removes == 0 || len(s.dests) <= 2 {
				t.Fatalf("the run exercised too little: %d adds, %d removes, %d ids", adds, removes, len(s.dests))
			}
			s.dropAll()
			shardInvariant(t, s)
		})
	}
}
