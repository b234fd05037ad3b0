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
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
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
	// each write+fdatasync and the number of records it covered (metrics). With
	// SyncAlways that is one group's write and sync; with SyncInterval one periodic
	// fdatasync (or the one at rotation or Close) and the records written since the
	// last. Concurrent calls come from different logs' writers.
	ObserveSync func(d time.Duration, records int)
}

// Zero values: SegmentBytes <= 0 is DefaultSegmentBytes, SyncInterval <= 0 is
// DefaultSyncInterval, MaxBytes <= 0 is no limit, a nil Log discards.

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

// Defaults for Options left zero.
const (
	DefaultSegmentBytes = 64 << 20
	DefaultSyncInterval = 100 * time.Millisecond
)

// Spool is the process's spool directory.
type Spool struct {
	opt  Options
	lock *os.File // holds the flock on Dir/LOCK until Close

	// nextID is the id of the next segment any Log starts (shared so ids stay
	// unique and ordered across logs).
	nextID atomic.Uint64

	// Counters (Stats). bytes and segments are kept by the writers (they create,
	// grow and delete files); pending by the loops (batched per Flush).
	bytes, segments, pending, syncs, syncedRecords atomic.Int64
	corrupt, torn, diskErrors, recovered           atomic.Int64

	// failing is set by a writer whose write or sync failed and cleared by any
	// successful write; probeAt (unix ns) is when Admit last let a probe through.
	failing atomic.Bool
	probeAt atomic.Int64

	mu     sync.Mutex // guards logs and closed (setup and Close only, never per record)
	logs   []*Log
	closed bool
	wg     sync.WaitGroup // the writers
}

// Open locks opt.Dir (creating it), checks that it can be written, reads every
// segment and returns the spool with the segments that still hold unsettled
// records, oldest first. A corrupt or torn segment is never fatal; a directory
// that cannot be created, locked or written is.
func Open(opt Options) (*Spool, []*Recovered, error) {
	if opt.Dir == "" {
		return nil, nil, errors.New("spool: no directory given")
	}
	if opt.SegmentBytes <= 0 {
		opt.SegmentBytes = DefaultSegmentBytes
	}
	if opt.SyncInterval <= 0 {
		opt.SyncInterval = DefaultSyncInterval
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opt.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("spool: cannot create directory %s: %w", opt.Dir, err)
	}
	sp := &Spool{opt: opt}
	lockPath := filepath.Join(opt.Dir, "LOCK")
	lf, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("spool: cannot open lock file %s: %w", lockPath, err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil, fmt.Errorf("spool: %s: %w", opt.Dir, ErrLocked)
		}
		return nil, nil, fmt.Errorf("spool: cannot lock %s: %w", lockPath, err)
	}
	sp.lock = lf
	if err := probeDir(opt.Dir); err != nil {
		sp.unlock()
		return nil, nil, err
	}
	recs, err := sp.recover()
	if err != nil {
		sp.unlock()
		return nil, nil, err
	}
	return sp, recs, nil
}

// probeDir proves that dir takes a file: write, fdatasync, remove.
func probeDir(dir string) error {
	p := filepath.Join(dir, "PROBE")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = f.Write([]byte("sluice spool probe\n"))
		if err == nil {
			err = unix.Fdatasync(int(f.Fd()))
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if rerr := os.Remove(p); err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("spool: directory %s is not writable: %w", dir, err)
	}
	return nil
}

func (sp *Spool) unlock() {
	if sp.lock != nil {
		_ = unix.Flock(int(sp.lock.Fd()), unix.LOCK_UN)
		sp.lock.Close()
		sp.lock = nil
	}
}

// Recovered is a segment from before this start that still holds unsettled
// records. Its records are read on Load, so a large backlog is read one segment
// at a time.
type Recovered struct {
	seg *segment
	// want is the set of unsettled indexes at Open (bit set: unsettled), frozen:
	// Load may run on any goroutine while the adopting loop settles records.
	want []uint64
	n    int
}

// Len is the number of unsettled records in the segment.
func (r *Recovered) Len() int { return r.n }

// Load reads the segment's unsettled records, with their Refs. It does disk I/O:
// call it on a goroutine of its own, never on an event loop, then Adopt the
// segment on the loop that will send its records.
func (r *Recovered) Load() ([]Record, error) {
	b, err := os.ReadFile(r.seg.path)
	if err != nil {
		return nil, fmt.Errorf("spool: read segment %s: %w", r.seg.path, err)
	}
	out := make([]Record, 0, r.n)
	for _, s := range scanSegment(b).recs {
		if s.idx>>6 < uint32(len(r.want)) && r.want[s.idx>>6]&(1<<(s.idx&63)) != 0 {
			out = append(out, Record{Body: b[s.off+headerSize : s.off+s.n : s.off+s.n], Ref: Ref{seg: r.seg, idx: s.idx}})
		}
	}
	if len(out) != r.n {
		// The file changed since Open (only something outside the spool does that).
		return out, fmt.Errorf("spool: segment %s: %d of %d unsettled records found", r.seg.path, len(out), r.n)
	}
	return out, nil
}

// Admit reports whether a new record may be appended: false while the live
// segments hold MaxBytes or more, and while the disk is failing, except for one
// probe group now and then (so the spool notices when space comes back).
// Safe on any goroutine.
func (sp *Spool) Admit() bool {
	if sp.opt.MaxBytes > 0 && sp.bytes.Load() >= sp.opt.MaxBytes {
		return false
	}
	if !sp.failing.Load() {
		return true
	}
	// One probe a second: the first caller after the second has passed wins it.
	now := time.Now().UnixNano()
	last := sp.probeAt.Load()
	return now-last >= int64(probeEvery) && sp.probeAt.CompareAndSwap(last, now)
}

// probeEvery is how often Admit lets a record through while the disk fails.
const probeEvery = time.Second

// Bytes is Stats().Bytes alone (one atomic load): the bytes in live segment
// files, what SPOOL_MAX_BYTES bounds. Safe on any goroutine.
func (sp *Spool) Bytes() int64 { return sp.bytes.Load() }

// Stats returns the counters. Safe on any goroutine.
func (sp *Spool) Stats() Stats {
	return Stats{
		Bytes:          sp.bytes.Load(),
		Segments:       sp.segments.Load(),
		Pending:        sp.pending.Load(),
		Syncs:          sp.syncs.Load(),
		SyncedRecords:  sp.syncedRecords.Load(),
		CorruptRecords: sp.corrupt.Load(),
		TornTails:      sp.torn.Load(),
		DiskErrors:     sp.diskErrors.Load(),
		Recovered:      sp.recovered.Load(),
	}
}

// NewLog returns the log of event loop idx. done is called on the log's writer
// goroutine after each group; it must hand the Completion to the loop (which then
// calls Log.Completed) and must not block.
func (sp *Spool) NewLog(idx int, done func(Completion)) *Log {
	l := &Log{sp: sp}
	l.fill, l.spare = &group{}, &group{}
	w := &writer{sp: sp, idx: idx, ch: make(chan *group, 1), done: done}
	l.w = w
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closed {
		panic("spool: NewLog after Close")
	}
	sp.logs = append(sp.logs, l)
	sp.wg.Add(1)
	go w.run()
	return l
}

// Close stops the writers after they have written every group and ack handed to
// them, writes what each log gathered after its last hand-off (records and acks;
// no Completion is reported for it), and releases the lock. Records not settled
// stay for the next start. Call it after the event loops have stopped; the
// goroutine that stopped them may call each Log's Flush one last time first (it
// owns the logs from then on).
func (sp *Spool) Close() error {
	sp.mu.Lock()
	if sp.closed {
		sp.mu.Unlock()
		return nil
	}
	sp.closed = true
	logs := sp.logs
	sp.mu.Unlock()
	for _, l := range logs {
		close(l.w.ch)
	}
	sp.wg.Wait()
	// The writers have exited: their state is this goroutine's now (wg.Wait), as the
	// logs are (the loops have stopped). A group a log could not hand over, its
	// writer busy at the last Flush, is written here: with SyncInterval its records
	// were answered already, and its acks save re-sending at the next start.
	var err error
	for _, l := range logs {
		if l.pendingDelta != 0 {
			sp.pending.Add(l.pendingDelta)
			l.pendingDelta = 0
		}
		if !l.fill.empty() {
			l.fill.num = l.group
			l.group++
			if perr := l.w.write(l.fill); perr != nil && err == nil {
				err = perr
			}
		}
		l.w.shutdown()
		if l.w.closeErr != nil && err == nil {
			err = l.w.closeErr
		}
	}
	sp.unlock()
	return err
}
