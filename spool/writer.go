package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// writer is a Log's I/O goroutine: every open, write, sync, truncate and delete of
// the log's files happens here, never on the event loop. Its fields are its own.
type writer struct {
	sp   *Spool
	idx  int
	ch   chan *group // from the loop; closed by Spool.Close
	done func(Completion)

	last     *segment   // segment the last records went to (its file is open)
	dirty    []*segment // written since the last fdatasync (SyncInterval)
	unsynced int        // records written since the last fdatasync (SyncInterval)
	ackOpen  []*segment // segments whose ack file is open, oldest first (bounded)
	touched  []*segment // scratch: segments written by the group at hand
	scratch  []byte     // scratch: ack entries

	closeErr error // the first error of the final syncs at Close

	// Rate limit of the disk error log line: at most one a second, with the
	// number of errors since the last line.
	lastLog    time.Time
	suppressed int
}

// maxAckFiles bounds the ack files a writer keeps open: with a backlog, acks go to
// many old segments, and one descriptor each would grow without bound.
const maxAckFiles = 16

func (w *writer) run() {
	defer w.sp.wg.Done()
	var tick <-chan time.Time
	if w.sp.opt.Sync == SyncInterval {
		t := time.NewTicker(w.sp.opt.SyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case g, ok := <-w.ch:
			if !ok {
				return // Close finishes (Spool.Close, writer.shutdown)
			}
			w.process(g)
		case <-tick:
			w.syncDirty()
		}
	}
}

// process writes one group and reports it.
func (w *writer) process(g *group) {
	err := w.write(g)
	w.done(Completion{Group: g.num, Err: err})
}

// write writes one group: its records (then, SyncAlways, one fdatasync per
// segment written, normally one), its acks, its deletions.
func (w *writer) write(g *group) error {
	start := time.Now()
	err := w.writeRecords(g)
	if len(g.chunks) > 0 {
		if err == nil {
			w.sp.failing.Store(false)
			w.sp.syncs.Add(1)
			w.sp.syncedRecords.Add(int64(g.records))
			if w.sp.opt.Sync == SyncAlways && w.sp.opt.ObserveSync != nil {
				w.sp.opt.ObserveSync(time.Since(start), g.records)
			}
		} else {
			// The first probe comes a second from now, not at once.
			w.sp.probeAt.Store(time.Now().UnixNano())
			w.sp.failing.Store(true)
			w.diskError("spool write failed; the group is refused and its segment sealed", err, g.records)
		}
	}
	for _, s := range g.deletes {
		s.dying = true
	}
	w.writeAcks(g.acks)
	for _, s := range g.deletes {
		w.remove(s)
	}
	return err
}

// writeRecords appends each chunk to its segment file. On any failure every
// segment the group touched is cut back to its size before the group, so a
// refused record is never read back. If the cut fails too, recovery finds a torn
// tail (cut) or, if whole records of the refused group made it to disk, sends
// them: a packet that was answered 503 may then arrive once, never one lost.
func (w *writer) writeRecords(g *group) error {
	w.touched = w.touched[:0]
	var err error
	newSeg := false
	for i := range g.chunks {
		c := &g.chunks[i]
		s := c.seg
		if s != w.last {
			// A log writes its segments in order: the previous one is done with
			// (closed at once, or after this group's sync if this group wrote it).
			if w.last != nil && !containsSeg(w.touched, w.last) {
				w.leave(w.last)
			}
			w.last = s
		}
		if s.f == nil {
			f, oerr := os.OpenFile(s.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
			if oerr != nil {
				err = fmt.Errorf("spool: create segment %s: %w", s.path, oerr)
				break
			}
			s.f = f
			if !s.created {
				s.created = true
				w.sp.segments.Add(1)
				newSeg = true
			}
		}
		if !containsSeg(w.touched, s) {
			s.pre = s.size
			w.touched = append(w.touched, s)
		}
		b := g.data[c.off:c.end]
		sealRecords(b)
		n, werr := s.f.Write(b)
		s.size += int64(n)
		if werr != nil {
			err = fmt.Errorf("spool: write segment %s: %w", s.path, werr)
			break
		}
	}
	if err == nil && newSeg {
		err = syncDir(w.sp.opt.Dir)
	}
	if err == nil && w.sp.opt.Sync == SyncAlways {
		for _, s := range w.touched {
			if serr := unix.Fdatasync(int(s.f.Fd())); serr != nil {
				err = fmt.Errorf("spool: fdatasync segment %s: %w", s.path, serr)
				break
			}
		}
	}
	if err != nil {
		for _, s := range w.touched {
			w.cut(s)
		}
	} else {
		var added int64
		for _, s := range w.touched {
			added += s.size - s.pre
			if w.sp.opt.Sync == SyncInterval && !s.dirty {
				s.dirty = true
				w.dirty = append(w.dirty, s)
			}
		}
		w.sp.bytes.Add(added)
		w.unsynced += g.records
	}
	for _, s := range w.touched {
		if s != w.last {
			w.leave(s)
		}
	}
	return err
}

func containsSeg(list []*segment, s *segment) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// cut truncates s back to its size before the failed group.
func (w *writer) cut(s *segment) {
	if s.size == s.pre {
		return
	}
	if s.f != nil {
		if err := s.f.Truncate(s.pre); err != nil {
			w.diskError("spool truncate after a failed write failed; recovery will cut the tail", fmt.Errorf("spool: truncate %s: %w", s.path, err), 0)
			return
		}
	}
	s.size = s.pre
}

// leave is called when the log's records move on from s (rotation): s is never
// appended to again, so its file is synced (SyncInterval) and closed.
func (w *writer) leave(s *segment) {
	if s == nil || s.f == nil {
		return
	}
	if s.dirty {
		w.syncDirty()
	}
	if err := s.f.Close(); err != nil {
		w.diskError("spool close segment failed", fmt.Errorf("spool: close %s: %w", s.path, err), 0)
	}
	s.f = nil
}

// syncDirty fdatasyncs every segment written since the last sync (SyncInterval).
func (w *writer) syncDirty() {
	if len(w.dirty) == 0 {
		return
	}
	start := time.Now()
	var err error
	for _, s := range w.dirty {
		s.dirty = false
		if s.f == nil {
			continue
		}
		if serr := unix.Fdatasync(int(s.f.Fd())); serr != nil && err == nil {
			err = fmt.Errorf("spool: fdatasync segment %s: %w", s.path, serr)
		}
	}
	clear(w.dirty)
	w.dirty = w.dirty[:0]
	if err != nil {
		w.sp.failing.Store(true)
		w.diskError("spool periodic sync failed; records written since the last sync may be lost on power loss", err, w.unsynced)
	} else if w.sp.opt.ObserveSync != nil {
		w.sp.opt.ObserveSync(time.Since(start), w.unsynced)
	}
	w.unsynced = 0
}

// writeAcks appends the acks to their segments' ack files, one write per run of
// one segment, without a sync: a page cache write survives kill -9, and an ack
// lost to a power cut means sending a packet again, not losing one.
func (w *writer) writeAcks(acks []ackRef) {
	for i := 0; i < len(acks); {
		s := acks[i].seg
		w.scratch = w.scratch[:0]
		for ; i < len(acks) && acks[i].seg == s; i++ {
			w.scratch = appendAck(w.scratch, acks[i].idx)
		}
		if s.dying {
			continue
		}
		if s.af == nil {
			f, err := os.OpenFile(s.ackPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
			if err != nil {
				w.diskError("spool ack write failed; those packets will be sent again after a restart", fmt.Errorf("spool: open ack file %s: %w", s.ackPath, err), 0)
				continue
			}
			end, err := f.Seek(0, io.SeekEnd) // an adopted segment's ack file has entries
			if err != nil {
				f.Close()
				w.diskError("spool ack write failed; those packets will be sent again after a restart", fmt.Errorf("spool: seek ack file %s: %w", s.ackPath, err), 0)
				continue
			}
			s.af, s.ackSize = f, end
			w.ackOpen = append(w.ackOpen, s)
			if len(w.ackOpen) > maxAckFiles {
				old := w.ackOpen[0]
				copy(w.ackOpen, w.ackOpen[1:])
				w.ackOpen[len(w.ackOpen)-1] = nil
				w.ackOpen = w.ackOpen[:len(w.ackOpen)-1]
				old.af.Close()
				old.af = nil
			}
		}
		n, err := s.af.Write(w.scratch)
		if err == nil {
			s.ackSize += int64(n)
			continue
		}
		w.diskError("spool ack write failed; those packets will be sent again after a restart", fmt.Errorf("spool: write ack file %s: %w", s.ackPath, err), 0)
		// A part of an entry would shift every later entry off the 8-byte grid, and
		// all of them would read as corrupt: cut the partial write off.
		if n > 0 {
			if terr := s.af.Truncate(s.ackSize); terr != nil {
				w.diskError("spool ack file truncate failed; later acks of this segment may be lost (re-sent, not lost packets)", fmt.Errorf("spool: truncate ack file %s: %w", s.ackPath, terr), 0)
			}
		}
	}
}

// remove deletes a segment whose records are all settled, and its ack file.
func (w *writer) remove(s *segment) {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	if w.last == s {
		w.last = nil
	}
	if s.af != nil {
		s.af.Close()
		s.af = nil
		for i, x := range w.ackOpen {
			if x == s {
				w.ackOpen = append(w.ackOpen[:i], w.ackOpen[i+1:]...)
				break
			}
		}
	}
	if s.dirty {
		s.dirty = false
		for i, x := range w.dirty {
			if x == s {
				w.dirty = append(w.dirty[:i], w.dirty[i+1:]...)
				break
			}
		}
	}
	if !s.created {
		return // its file was never created (the group that would have failed)
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.diskError("spool delete of a settled segment failed", fmt.Errorf("spool: remove %s: %w", s.path, err), 0)
		return
	}
	if err := os.Remove(s.ackPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.diskError("spool delete of a settled ack file failed", fmt.Errorf("spool: remove %s: %w", s.ackPath, err), 0)
	}
	s.created = false
	w.sp.segments.Add(-1)
	w.sp.bytes.Add(-s.size)
}

// shutdown runs at Close, after the writer goroutine has exited and the log's
// last group is written: what was written is synced (SyncInterval) and the ack
// files get their one fsync, then every file is closed.
func (w *writer) shutdown() {
	if w.sp.opt.Sync == SyncInterval {
		w.syncDirty()
	}
	for _, s := range w.ackOpen {
		if err := unix.Fdatasync(int(s.af.Fd())); err != nil && w.closeErr == nil {
			w.closeErr = fmt.Errorf("spool: fdatasync ack file %s: %w", s.ackPath, err)
		}
		s.af.Close()
		s.af = nil
	}
	w.ackOpen = nil
	if w.last != nil && w.last.f != nil {
		w.last.f.Close()
		w.last.f = nil
	}
}

// syncDir makes the names in dir durable (a new segment's file name).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: open directory %s: %w", dir, err)
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return fmt.Errorf("spool: fsync directory %s: %w", dir, err)
	}
	return nil
}

// diskError counts a disk error and logs it, at most once a second per log.
func (w *writer) diskError(msg string, err error, records int) {
	w.sp.diskErrors.Add(1)
	now := time.Now()
	if now.Sub(w.lastLog) < time.Second {
		w.suppressed++
		return
	}
	w.sp.opt.Log.LogAttrs(context.Background(), slog.LevelError, msg,
		slog.Int("log", w.idx), slog.Any("err", err), slog.Int("records", records),
		slog.Int("errors_since_last_line", w.suppressed))
	w.lastLog = now
	w.suppressed = 0
}
