// Package spool is the distributor's write-ahead log of accepted packets: with
// SPOOL_DIR set, a packet is answered 202 only once its record is written and
// fdatasynced, so an accepted packet survives kill -9, an OOM kill or a reboot.
//
// Shape (see docs/design.md, "The spool"):
//
//   - One Spool per process: the directory, its lock, the byte and segment
//     counters shared by all loops, and the records found at start (Open).
//   - One Log per event loop. The loop appends records and settles them; a
//     writer goroutine of its own does the I/O. Group commit: everything the
//     loop appended since it last handed a group over goes out in one write and
//     one fdatasync. While the writer syncs, the loop keeps filling the next
//     group; when the writer is done it calls Options.Done (the proxy passes that
//     to its loop with gnet's Execute) and the loop hands over the next group.
//     So the loop never blocks on the disk and there is one hand-off per group,
//     not per packet.
//   - Segment files rotate at SegmentBytes. A record carries its length, a
//     CRC-32C and its index in the segment. Delivery progress is an ack file per
//     segment: the indexes of settled records, appended without a sync (a page
//     cache write survives kill -9; only a power loss can lose acks, which means
//     sending again, never losing). A segment and its ack file are deleted once
//     the segment is sealed and every record in it is settled.
//   - At start, Open reads every segment: a torn or garbage tail is cut at the
//     last valid record, a corrupt record in the middle is skipped and counted,
//     an unreadable ack file counts as "nothing settled". Records not acked come
//     back as Recovered segments for the loops to adopt and re-queue.
//
// Ownership: a Log's fields are the loop goroutine's, except those marked as the
// writer's; the two meet only at the hand-off (a channel send of a whole group)
// and at Done. Spool's counters are atomics.
package spool

import (
	"errors"
	"log/slog"
	"strconv"
	"time"
)

// SyncMode is when a written group is made durable.
type SyncMode uint8

const (
	// SyncAlways: every group is fdatasynced before Done reports it; the proxy
	// answers its 202s only then. A 202 means "on disk".
	SyncAlways SyncMode = iota
	// SyncInterval: a group is written (page cache) and reported at once; the
	// writer fdatasyncs every Options.SyncInterval. A power loss or kernel crash
	// can lose what was accepted in the last interval (kill -9 cannot: the page
	// cache survives the process).
	SyncInterval
)

func (m SyncMode) String() string {
	switch m {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	}
	return "SyncMode(" + strconv.Itoa(int(m)) + ")"
}

// ParseSyncMode reads SPOOL_SYNC.
func ParseSyncMode(s string) (SyncMode, error) {
	switch s {
	case "always", "":
		return SyncAlways, nil
	case "interval":
		return SyncInterval, nil
	}
	return 0, errors.New("must be always or interval")
}

// Options configure a Spool.
type Options struct {
	Dir          string        // SPOOL_DIR; created if missing
	SegmentBytes int64         // SPOOL_SEGMENT_BYTES: a segment is sealed once it holds this much
	MaxBytes     int64         // SPOOL_MAX_BYTES: Admit refuses while the live segments hold this much
	Sync         SyncMode      // SPOOL_SYNC
	SyncInterval time.Duration // SPOOL_SYNC_INTERVAL_MS, for SyncInterval
	Log          *slog.Logger  // disk errors (rate-limited), cut tails, corrupt records
	// ObserveSync, if set, is called by a writer goroutine with the duration of
	// each write+fdatasync and the number of records it covered (metrics).
	ObserveSync func(d time.Duration, records int)
}

// Completion is what a Log's writer reports, through the done function given to
// NewLog, for one group.
type Completion struct {
	Group uint64 // the group (Log.Group at the time it was filled) now written
	Err   error  // nil: every record of the group is written (and synced, SyncAlways)
}

// Ref names one record: its segment and its index there. The proxy keeps it with
// the packet and hands it back to Log.Settle when the packet leaves.
type Ref struct {
	seg *segment
	idx uint32
}

// Valid reports whether r names a record (the zero Ref does not: no spool).
func (r Ref) Valid() bool { return r.seg != nil }

// Record is one packet read back at start.
type Record struct {
	Body []byte
	Ref  Ref // for Log.Settle, once a Log has adopted the segment
}

// Stats are the spool's counters, summed over its logs.
type Stats struct {
	Bytes          int64 // bytes in live segment files
	Segments       int64 // live segment files
	Pending        int64 // records written and not yet settled
	Syncs          int64 // write+sync rounds (groups handed to writers)
	SyncedRecords  int64 // records those rounds covered (mean group size = SyncedRecords/Syncs)
	CorruptRecords int64 // records skipped at start: bad checksum or framing in the middle of a segment
	TornTails      int64 // segments whose tail was cut at start
	DiskErrors     int64 // failed writes, syncs, truncates, deletes
	Recovered      int64 // records found at start that were not acked
}

// ErrLocked is returned by Open when another process holds the directory.
var ErrLocked = errors.New("spool directory is in use by another process")

// Spool is the process's spool directory.
type Spool struct {
	opt Options
}

// Open locks opt.Dir (creating it), checks that it can be written, reads every
// segment and returns the spool with the segments that still hold unsettled
// records, oldest first. A corrupt or torn segment is never fatal; a directory
// that cannot be created, locked or written is.
func Open(opt Options) (*Spool, []*Recovered, error) {
	panic("spool: not implemented")
}

// Recovered is a segment from before this start that still holds unsettled
// records. Its records are read on Load, so a large backlog is read one segment
// at a time.
type Recovered struct {
	seg *segment
}

// Len is the number of unsettled records in the segment.
func (r *Recovered) Len() int { panic("spool: not implemented") }

// Load reads the segment's unsettled records, with their Refs. It does disk I/O:
// call it on a goroutine of its own, never on an event loop, then Adopt the
// segment on the loop that will send its records.
func (r *Recovered) Load() ([]Record, error) { panic("spool: not implemented") }

// Admit reports whether a new record may be appended: false while the live
// segments hold MaxBytes or more, and while the disk is failing, except for one
// probe group now and then (so the spool notices when space comes back).
// Safe on any goroutine.
func (sp *Spool) Admit() bool { panic("spool: not implemented") }

// Stats returns the counters. Safe on any goroutine.
func (sp *Spool) Stats() Stats { panic("spool: not implemented") }

// NewLog returns the log of event loop idx. done is called on the log's writer
// goroutine after each group; it must hand the Completion to the loop (which then
// calls Log.Completed) and must not block.
func (sp *Spool) NewLog(idx int, done func(Completion)) *Log {
	panic("spool: not implemented")
}

// Close stops the writers after they have written every group and ack handed to
// them, and releases the lock. Records not settled stay for the next start. Call
// it after the event loops have stopped; the goroutine that stopped them may call
// each Log's Flush one last time first (it owns the logs from then on).
func (sp *Spool) Close() error { panic("spool: not implemented") }

// Log is one event loop's part of the spool. Every method is for the loop
// goroutine only.
type Log struct {
}

// Append copies body into the group being filled and returns its Ref. It does not
// allocate once buffers have grown; no I/O.
func (l *Log) Append(body []byte) Ref { panic("spool: not implemented") }

// Group is the number of the group being filled: Append's records go out with it.
func (l *Log) Group() uint64 { panic("spool: not implemented") }

// Flush hands the group being filled (and the acks gathered) to the writer if the
// writer is idle and there is anything to hand. Call it at the end of every loop
// event and after Completed; it costs a branch when there is nothing to do.
func (l *Log) Flush() { panic("spool: not implemented") }

// Completed takes a Completion back on the loop: the writer is idle again. On an
// error the segment being written is sealed and the next Append starts a new one.
func (l *Log) Completed(c Completion) { panic("spool: not implemented") }

// Settle records that r's packet has left the distributor (delivered, or given up
// and counted as dropped). The ack is written with a later group; the segment is
// deleted once it is sealed and every record in it is settled.
func (l *Log) Settle(r Ref) { panic("spool: not implemented") }

// Adopt makes rec's segment this log's: the acks of its records go out with this
// log's groups, and this log deletes it once every record is settled. No I/O.
func (l *Log) Adopt(rec *Recovered) { panic("spool: not implemented") }

type segment struct{}
