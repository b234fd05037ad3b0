package proxy

import "sync/atomic"

// budget is what the whole distributor holds against its buffer limits:
// INGEST_BUFFER_SIZE (accepted packets not yet delivered or dropped) and, per
// analyzer, PER_ANALYZER_QUEUE_SIZE and PER_ANALYZER_QUEUE_BYTES (packets and bytes
// queued or in flight). Every loop adds and subtracts here, so one busy connection
// may use the whole of each limit however many loops there are. These are plain
// atomic adds, no lock: a shard reserves with Add and gives back on settle or drop.
//
// The shards' Stats stay the source of truth for accounting (exact per shard, read
// in snapshots); the budget is the limits' view of the same holdings, changed only
// where those Stats change: per analyzer by shard.enqueue and shard.release, held
// by accept (reserve) and settle and drop (unreserve).
type budget struct {
	held  atomic.Int64 // accepted, not yet delivered or dropped
	_     [56]byte     // held is touched on every accept and settle: its own cache line
	dests []destBudget
}

// destBudget is one analyzer's packets and bytes queued or in flight, all loops.
type destBudget struct {
	n     atomic.Int64
	bytes atomic.Int64
	_     [48]byte // one cache line per analyzer: loops settling for different analyzers do not collide
}

func newBudget(analyzers int) *budget {
	return &budget{dests: make([]destBudget, analyzers)}
}

// reserve takes one packet of INGEST_BUFFER_SIZE; false (and nothing taken) when
// the distributor already holds limit packets.
func (b *budget) reserve(limit int) bool {
	if b.held.Add(1) > int64(limit) {
		b.held.Add(-1)
		return false
	}
	return true
}

// unreserve gives back one packet's place: it was refused, delivered or dropped.
func (b *budget) unreserve() { b.held.Add(-1) }

// full reports whether analyzer i holds its queue limit in packets or bytes.
func (b *budget) full(i int, cfg *Config) bool {
	d := &b.dests[i]
	return d.n.Load() >= int64(cfg.QueueSize) || d.bytes.Load() >= cfg.QueueBytes
}

// nearFull reports whether one more packet of about size bytes would bring analyzer
// i to its queue limit.
func (b *budget) nearFull(i int, cfg *Config, size int) bool {
	d := &b.dests[i]
	return d.n.Load()+1 >= int64(cfg.QueueSize) || d.bytes.Load()+int64(size) >= cfg.QueueBytes
}
