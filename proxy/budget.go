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
	held atomic.Int64 // accepted, not yet delivered or dropped
	_    [56]byte     // held is touched on every accept and settle: its own cache line

	// The limits, read with one atomic load where they are checked and stored by
	// setLimits (New, and a reload: live.go). Lowering one below what is held
	// refuses new packets until enough drain; nothing held is dropped for it.
	ingestLimit atomic.Int64 // INGEST_BUFFER_SIZE
	queueLimit  atomic.Int64 // PER_ANALYZER_QUEUE_SIZE
	bytesLimit  atomic.Int64 // PER_ANALYZER_QUEUE_BYTES
	dests       []destBudget
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
// the distributor already holds that many packets.
func (b *budget) reserve() bool {
	if b.held.Add(1) > b.ingestLimit.Load() {
		b.held.Add(-1)
		return false
	}
	return true
}

// unreserve gives back one packet's place: it was refused, delivered or dropped.
func (b *budget) unreserve() { b.held.Add(-1) }

// full reports whether analyzer i holds its queue limit in packets or bytes.
func (b *budget) full(i int) bool {
	d := &b.dests[i]
	return d.n.Load() >= b.queueLimit.Load() || d.bytes.Load() >= b.bytesLimit.Load()
}

// nearFull reports whether one more packet of about size bytes would bring analyzer
// i to its queue limit.
func (b *budget) nearFull(i int, size int) bool {
	d := &b.dests[i]
	return d.n.Load()+1 >= b.queueLimit.Load() || d.bytes.Load()+int64(size) >= b.bytesLimit.Load()
}
