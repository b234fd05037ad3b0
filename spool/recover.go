package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// recover reads the directory at Open: every segment is scanned, its torn tail
// cut, its corrupt records counted, its ack file applied; segments with nothing
// left to send are deleted, the others returned oldest first. Runs before any
// writer exists, on Open's goroutine.
func (sp *Spool) recover() ([]*Recovered, error) {
	ents, err := os.ReadDir(sp.opt.Dir)
	if err != nil {
		return nil, fmt.Errorf("spool: read directory %s: %w", sp.opt.Dir, err)
	}
	var segs []uint64
	acks := map[uint64]bool{}
	var maxID uint64
	seen := false
	for _, e := range ents {
		id, ext, ok := parseName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if !seen || id > maxID {
			maxID, seen = id, true
		}
		if ext == ".seg" {
			segs = append(segs, id)
		} else {
			acks[id] = true
		}
	}
	if seen {
		sp.nextID.Store(maxID + 1)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })
	var out []*Recovered
	for _, id := range segs {
		delete(acks, id)
		r, err := sp.recoverSegment(id)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	for id := range acks { // ack files whose segment is gone: a delete cut short
		p := filepath.Join(sp.opt.Dir, segName(id)+".ack")
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			sp.logf(slog.LevelWarn, "spool: cannot remove an orphan ack file", "path", p, "err", err)
		}
	}
	return out, nil
}

// parseName reads "<16 hex>.seg" or "<16 hex>.ack".
func parseName(name string) (id uint64, ext string, ok bool) {
	if len(name) != 20 {
		return 0, "", false
	}
	ext = name[16:]
	if ext != ".seg" && ext != ".ack" {
		return 0, "", false
	}
	if strings.ToLower(name[:16]) != name[:16] {
		return 0, "", false
	}
	id, err := strconv.ParseUint(name[:16], 16, 64)
	if err != nil {
		return 0, "", false
	}
	return id, ext, true
}

// recoverSegment reads one segment and its acks. It returns nil when nothing in it
// is left to send (and deletes it). Only a read error of a file that exists is an
// error: the directory passed the write probe, so this is a broken disk.
func (sp *Spool) recoverSegment(id uint64) (*Recovered, error) {
	name := segName(id)
	s := &segment{
		id:      id,
		path:    filepath.Join(sp.opt.Dir, name+".seg"),
		ackPath: filepath.Join(sp.opt.Dir, name+".ack"),
		sealed:  true,
		created: true,
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return nil, fmt.Errorf("spool: read segment %s: %w", s.path, err)
	}
	res := scanSegment(b)
	if res.corrupt > 0 {
		sp.corrupt.Add(int64(res.corrupt))
		sp.logf(slog.LevelWarn, "spool: corrupt records skipped", "path", s.path, "regions", res.corrupt)
	}
	size := int64(len(b))
	if res.end < len(b) {
		sp.torn.Add(1)
		sp.logf(slog.LevelWarn, "spool: torn tail cut", "path", s.path, "at", res.end, "cut_bytes", len(b)-res.end)
		if err := os.Truncate(s.path, int64(res.end)); err != nil {
			// Not fatal: the scan stops at the same place next time.
			sp.diskErrors.Add(1)
			sp.logf(slog.LevelError, "spool: cannot cut a torn tail", "path", s.path, "err", err)
		} else {
			size = int64(res.end)
		}
	}
	// The index bound: one past the highest valid index.
	var bound uint32
	if n := len(res.recs); n > 0 {
		bound = res.recs[n-1].idx + 1
	}
	words := (int(bound) + 63) >> 6
	s.done = make([]uint64, words)
	for i := range s.done {
		s.done[i] = ^uint64(0) // absent indexes need no settling
	}
	for _, r := range res.recs {
		s.done[r.idx>>6] &^= 1 << (r.idx & 63)
	}
	s.open = len(res.recs)
	sp.applyAcks(s)
	if s.open == 0 {
		for _, p := range []string{s.path, s.ackPath} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				sp.logf(slog.LevelWarn, "spool: cannot remove a settled segment", "path", p, "err", err)
			}
		}
		return nil, nil
	}
	s.records, s.committed = bound, bound
	s.size = size
	sp.segments.Add(1)
	sp.bytes.Add(size)
	sp.pending.Add(int64(s.open))
	sp.recovered.Add(int64(s.open))
	want := make([]uint64, words)
	for i := range want {
		want[i] = ^s.done[i]
	}
	return &Recovered{seg: s, want: want, n: s.open}, nil
}

// applyAcks marks the records named in s's ack file as settled. A missing,
// unreadable or corrupt ack file, or a corrupt entry, settles less: those records
// are sent again, never lost. A torn last entry is cut off so that new entries
// appended after adoption stay aligned.
func (sp *Spool) applyAcks(s *segment) {
	b, err := os.ReadFile(s.ackPath)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			sp.logf(slog.LevelWarn, "spool: ack file unreadable; its records will be sent again", "path", s.ackPath, "err", err)
		}
		return
	}
	bad := 0
	for i := 0; i+ackSize <= len(b); i += ackSize {
		idx, ok := decodeAck(b[i:])
		if !ok {
			bad++
			continue
		}
		w := idx >> 6
		if int(w) >= len(s.done) {
			bad++
			continue
		}
		if m := uint64(1) << (idx & 63); s.done[w]&m == 0 {
			s.done[w] |= m
			s.open--
		}
	}
	if bad > 0 {
		sp.logf(slog.LevelWarn, "spool: corrupt ack entries ignored; their records will be sent again", "path", s.ackPath, "entries", bad)
	}
	if rem := len(b) % ackSize; rem != 0 {
		if err := os.Truncate(s.ackPath, int64(len(b)-rem)); err != nil {
			sp.logf(slog.LevelWarn, "spool: cannot cut a torn ack entry", "path", s.ackPath, "err", err)
		}
	}
}

func (sp *Spool) logf(level slog.Level, msg string, args ...any) {
	sp.opt.Log.Log(context.Background(), level, msg, args...)
}
