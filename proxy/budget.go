package proxy

import "sync/atomic"

// budget is what the whole distributor holds against its buffer limits:
// INGEST_BUFFER_SIZE (accepted packets not yet delivered or dropped),
// MAX_BUFFER_BYTES (their bytes, when set) and, per
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
	held      atomic.Int64 // accepted, not yet delivered or dropped
	heldBytes atomic.Int64 // their bytes; counted only with MAX_BUFFER_BYTES set (bytesOn)
	_         [48]byte     // held is touched on every accept and settle: its own cache line

	// bufferBytes is MAX_BUFFER_BYTES and bytesOn whether it is set. Both are fixed
	// at New (the setting needs a restart): with it unset, accept and settle pay
	// nothing for it, and a reload cannot switch counting on while bytes it never
	// counted are held.
	bufferBytes int64
	bytesOn     bool

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

// reserve takes one packet of size bytes out of INGEST_BUFFER_SIZE and, when set,
// MAX_BUFFER_BYTES; false (and nothing taken) when the distributor already holds
// that many packets, or the packet's bytes would pass MAX_BUFFER_BYTES.
func (b *budget) reserve(size int) bool {
	if b.held.Add(1) > b.ingestLimit.Load() {
		b.held.Add(-1)
		return false
	}
	if b.bytesOn && b.heldBytes.Add(int64(size)) > b.bufferBytes {
		b.heldBytes.Add(-int64(size))
		b.held.Add(-1)
		return false
	}
	return true
}

// grew adds n bytes to a reserved packet's count: the pooled buffer it was copied
// into is larger than the packet, and MAX_BUFFER_BYTES bounds memory, so it counts
// capacity. It may pass the limit by that much; the next reserve then refuses.
func (b *budget) grew(n int) {
	if b.bytesOn && n != 0 {
		b.heldBytes.Add(int64(n))
	}
}

// unreserve gives back one packet's place and its size bytes (what reserve and
// grew took: its length if refused before the copy, else its buffer's capacity): it
// was refused, delivered or dropped.
func (b *budget) unreserve(size int) {
	b.held.Add(-1)
	if b.bytesOn {
		b.heldBytes.Add(-int64(size))
	}
}

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
