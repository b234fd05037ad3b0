package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Records over several segments, some settled: after Close and Open exactly the
// unsettled ones come back, and sealed segments with everything settled are gone.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	opt := testOptions(dir)
	opt.SegmentBytes = 2048
	sp, recs := mustOpen(t, opt)
	if len(recs) != 0 {
		t.Fatalf("fresh directory recovered %d segments", len(recs))
	}
	lp := newTestLoop(t, sp, 0)
	const n = 400
	refs := make([]Ref, n)
	for i := 0; i < n; i++ {
		refs[i] = lp.l.Append(body(i))
		if i%50 == 49 {
			lp.l.Flush() // several groups, some handed over while others fill
		}
	}
	if err := lp.drain(); err != nil {
		t.Fatal(err)
	}
	// Settle the first 150 (whole segments) and every third record after.
	settled := map[int]bool{}
	for i := 0; i < n; i++ {
		if i < 150 || i%3 == 0 {
			lp.l.Settle(refs[i])
			settled[i] = true
		}
	}
	lp.l.Settle(refs[0]) // twice: no effect
	if err := lp.drain(); err != nil {
		t.Fatal(err)
	}
	// Segments whose records are all settled and that are sealed must be gone now.
	segOf := map[uint64][]int{}
	for i, r := range refs {
		segOf[r.seg.id] = append(segOf[r.seg.id], i)
	}
	if len(segOf) < 5 {
		t.Fatalf("only %d segments: the test wants several", len(segOf))
	}
	last := refs[n-1].seg.id
	var gone, kept int
	for id, idxs := range segOf {
		all := true
		for _, i := range idxs {
			all = all && settled[i]
		}
		_, err := os.Stat(filepath.Join(dir, segName(id)+".seg"))
		switch {
		case all && id != last:
			gone++
			if !errors.Is(err, os.ErrNotExist) {
				t.Errorf("segment %d: every record settled, sealed, but still on disk (%v)", id, err)
			}
			if _, err := os.Stat(filepath.Join(dir, segName(id)+".ack")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("segment %d: ack file still on disk", id)
			}
		default:
			kept++
			if err != nil {
				t.Errorf("segment %d holds unsettled records but is gone: %v", id, err)
			}
		}
	}
	if gone == 0 || kept == 0 {
		t.Fatalf("gone=%d kept=%d: the test wants both", gone, kept)
	}
	var want []string
	for i := 0; i < n; i++ {
		if !settled[i] {
			want = append(want, string(body(i)))
		}
	}
	st := sp.Stats()
	if st.Pending != int64(len(want)) {
		t.Errorf("Stats.Pending=%d, want %d", st.Pending, len(want))
	}
	if st.Segments != int64(kept) {
		t.Errorf("Stats.Segments=%d, want %d", st.Segments, kept)
	}
	var onDisk int64
	for _, p := range segFiles(t, dir, ".seg") {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		onDisk += fi.Size()
	}
	if st.Bytes != onDisk {
		t.Errorf("Stats.Bytes=%d, the segment files hold %d", st.Bytes, onDisk)
	}
	mustClose(t, sp)

	sp2, recs2 := mustOpen(t, opt)
	defer mustClose(t, sp2)
	got := bodies(loadAll(t, recs2))
	sortStrings(want)
	if !equalStrings(got, want) {
		t.Fatalf("recovered records differ: %s", diffStrings(got, want))
	}
	if st2 := sp2.Stats(); st2.Recovered != int64(len(want)) || st2.Pending != int64(len(want)) || st2.CorruptRecords != 0 || st2.TornTails != 0 {
		t.Errorf("stats after reopen: %+v, want Recovered=Pending=%d and nothing corrupt", st2, len(want))
	}
	for i := 1; i < len(recs2); i++ {
		if recs2[i-1].seg.id >= recs2[i].seg.id {
			t.Errorf("recovered segments not oldest first: %d then %d", recs2[i-1].seg.id, recs2[i].seg.id)
		}
	}
}

// Adopted recovered records are settled through a new log; once all are, the
// segments go, and a third start finds nothing. New segments get new ids.
func TestAdoptSettleDeletes(t *testing.T) {
	dir := t.TempDir()
	opt := testOptions(dir)
	opt.SegmentBytes = 1024
	sp, _ := mustOpen(t, opt)
	lp := newTestLoop(t, sp, 0)
	for i := 0; i < 100; i++ {
		lp.l.Append(body(i))
	}
	if err := lp.drain(); err != nil {
		t.Fatal(err)
	}
	maxOld := lp.l.cur.id
	mustClose(t, sp)

	sp, recs := mustOpen(t, opt)
	lp = newTestLoop(t, sp, 0)
	all := loadAll(t, recs)
	if len(all) != 100 {
		t.Fatalf("recovered %d records, want 100", len(all))
	}
	for _, r := range recs {
		lp.l.Adopt(r)
	}
	ref := lp.l.Append([]byte("new"))
	if ref.seg.id <= maxOld {
		t.Fatalf("new segment id %d not above the old ones (max %d)", ref.seg.id, maxOld)
	}
	// Half now, with a restart in between: the acks of adopted segments persist.
	for _, r := range all[:50] {
		lp.l.Settle(r.Ref)
	}
	if err := lp.drain(); err != nil {
		t.Fatal(err)
	}
	lp.l.Settle(ref)
	if err := lp.drain(); err != nil {
		t.Fatal(err)
	}
	mustClose(t, sp)

	sp, recs = mustOpen(t, opt)
	lp = newTestLoop(t, sp, 0)
	rest := loadAll(t, recs)
	want := bodies(all[50:])
	if got := bodies(rest); !equalStrings(got, want) {
		t.Fatalf("after settling half: %s", diffStrings(got, want))
	}
	for _, r := range recs {
		lp.l.Adopt(r)
	}
	for _, r := range rest {
		lp.l.Settle(r.Ref)
	}
	if err := lp.drain(); err != nil {
		t.Fatal(err)
	}
	if st := sp.Stats(); st.Segments != 0 || st.Bytes != 0 || st.Pending != 0 {
		t.Errorf("every record settled, stats still %+v", st)
	}
	if m := segFiles(t, dir, ".seg"); len(m) != 0 {
		t.Errorf("segments left on disk: %v", m)
	}
	if m := segFiles(t, dir, ".ack"); len(m) != 0 {
		t.Errorf("ack files left on disk: %v", m)
	}
	mustClose(t, sp)
	sp, recs = mustOpen(t, opt)
	defer mustClose(t, sp)
	if len(recs) != 0 {
		t.Fatalf("third start recovered %d segments", len(recs))
	}
}

// Many Appends before one Flush: one group, one write+sync, Done once per group,
// groups numbered in order.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	opt := testOptions(dir)
	var observed []int
	opt.ObserveSync = func(_ time.Duration, records int) { observed = append(observed, records) }
	sp, _ := mustOpen(t, opt)
	defer mustClose(t, sp)
	lp := newTestLoop(t, sp, 0)
	if g := lp.l.Group(); g != 0 {
		t.Fatalf("first group %d, want 0", g)
	}
	for i := 0; i < 100; i++ {
		lp.l.Append(body(i))
	}
	lp.l.Flush()
	// While the writer has group 0, more records fill group 1 and Flush does nothing.
	if g := lp.l.Group(); g != 1 {
		t.Fatalf("group being filled %d, want 1", g)
	}
	for i := 100; i < 150; i++ {
		lp.l.Append(body(i))
	}
	lp.l.Flush()
	lp.l.Flush()
	c := lp.complete()
	if c.Group != 0 || c.Err != nil {
		t.Fatalf("first completion %+v, want group 0 without error", c)
	}
	lp.l.Flush()
	c = lp.complete()
	if c.Group != 1 || c.Err != nil {
		t.Fatalf("second completion %+v, want group 1 without error", c)
	}
	lp.l.Flush() // nothing left: no third group
	select {
	case c := <-lp.ch:
		t.Fatalf("unexpected completion %+v", c)
	default:
	}
	st := sp.Stats()
	if st.Syncs != 2 || st.SyncedRecords != 150 {
		t.Errorf("Syncs=%d SyncedRecords=%d, want 2 and 150", st.Syncs, st.SyncedRecords)
	}
	if len(observed) != 2 || observed[0] != 100 || observed[1] != 50 {
		t.Errorf("ObserveSync saw groups %v, want [100 50]", observed)
	}
	if st.Pending != 150 {
		t.Errorf("Pending=%d, want 150", st.Pending)
	}
}

func sortStrings(s []string) { sort.Strings(s) }

// SyncInterval: a group is reported at once; the writer fdatasyncs on its ticker
// (ObserveSync sees the records it covered); Close syncs the rest.
func TestSyncInterval(t *testing.T) {
	dir := t.TempDir()
	opt := testOptions(dir)
	opt.Sync = SyncInterval
	opt.SyncInterval = 20 * time.Millisecond
	synced := make(chan int, 16)
	opt.ObserveSync = func(_ time.Duration, records int) { synced <- records }
	sp, _ := mustOpen(t, opt)
	lp := newTestLoop(t, sp, 0)
	for i := 0; i < 10; i++ {
		lp.l.Append(body(i))
	}
	if err := lp.drain(); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-synced:
		if n != 10 {
			t.Errorf("the periodic sync covered %d records, want 10", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no periodic sync within 5s")
	}
	select {
	case n := <-synced:
		t.Fatalf("a second sync (%d records) with nothing written since", n)
	case <-time.After(100 * time.Millisecond):
	}
	lp.l.Append(body(10))
	if err := lp.drain(); err != nil {
		t.Fatal(err)
	}
	mustClose(t, sp)
	sp, recs := mustOpen(t, opt)
	defer mustClose(t, sp)
	if got, want := bodies(loadAll(t, recs)), wantBodies(seq(0, 11)...); !equalStrings(got, want) {
		t.Fatalf("%s", diffStrings(got, want))
	}
}

// Admit refuses while the live segments hold MaxBytes, and admits again once
// settled segments are deleted.
func TestAdmitMaxBytes(t *testing.T) {
	opt := testOptions(t.TempDir())
	opt.SegmentBytes = 1024
	opt.MaxBytes = 4096
	sp, _ := mustOpen(t, opt)
	defer mustClose(t, sp)
	lp := newTestLoop(t, sp, 0)
	var refs []Ref
	for i := 0; sp.Admit(); i++ {
		if i > 1000 {
			t.Fatalf("Admit still true with %d bytes spooled", sp.Stats().Bytes)
		}
		refs = append(refs, lp.l.Append(body(i)))
		if err := lp.drain(); err != nil {
			t.Fatal(err)
		}
	}
	if b := sp.Stats().Bytes; b < opt.MaxBytes {
		t.Fatalf("Admit false at %d bytes, under MaxBytes %d", b, opt.MaxBytes)
	}
	for _, r := range refs {
		lp.l.Settle(r)
	}
	if err := lp.drain(); err != nil {
		t.Fatal(err)
	}
	if !sp.Admit() {
		t.Fatalf("Admit false after settling everything (%d bytes)", sp.Stats().Bytes)
	}
}

// Records settled while their group is being written are not counted pending;
// settling the same record twice counts once.
func TestSettleInFlight(t *testing.T) {
	sp, _ := mustOpen(t, testOptions(t.TempDir()))
	defer mustClose(t, sp)
	lp := newTestLoop(t, sp, 0)
	var refs []Ref
	for i := 0; i < 10; i++ {
		refs = append(refs, lp.l.Append(body(i)))
	}
	lp.l.Flush()
	for _, r := range refs[:4] {
		lp.l.Settle(r)
		lp.l.Settle(r)
	}
	if err := lp.drain(); err != nil {
		t.Fatal(err)
	}
	if p := sp.Stats().Pending; p != 6 {
		t.Fatalf("Pending=%d, want 6", p)
	}
	lp.l.Settle(refs[9])
	lp.l.Settle(Ref{}) // no spool: nothing
	lp.l.Flush()
	if p := sp.Stats().Pending; p != 5 {
		t.Fatalf("Pending=%d, want 5", p)
	}
}

// A failed group (its segment's file cannot be created): Completion.Err, the
// segment is sealed and its refused records need no settling; the next records
// go to a new segment once a probe is admitted.
func TestFailedGroupRollsBack(t *testing.T) {
	dir := t.TempDir()
	opt := testOptions(dir)
	sp, _ := mustOpen(t, opt)
	defer mustClose(t, sp)
	lp := newTestLoop(t, sp, 0)
	// A directory where the first segment's file should go: its open fails.
	blocker := filepath.Join(dir, segName(sp.nextID.Load())+".seg")
	must(t, os.Mkdir(blocker, 0o700))
	must(t, os.WriteFile(filepath.Join(blocker, "keep"), nil, 0o600))
	var refused []Ref
	for i := 0; i < 5; i++ {
		refused = append(refused, lp.l.Append(body(i)))
	}
	err := lp.drain()
	if err == nil || !strings.Contains(err.Error(), blocker) {
		t.Fatalf("group error %v, want one naming %s", err, blocker)
	}
	st := sp.Stats()
	if st.DiskErrors != 1 || st.Pending != 0 || st.Syncs != 0 || st.Segments != 0 {
		t.Errorf("after the failed group: %+v", st)
	}
	if sp.Admit() {
		t.Errorf("Admit true right after the failure")
	}
	for _, r := range refused {
		lp.l.Settle(r) // the proxy may settle them: nothing happens
	}
	lp.l.Flush()
	if p := sp.Stats().Pending; p != 0 {
		t.Errorf("settling refused records moved Pending to %d", p)
	}
	r := lp.l.Append(body(9))
	if r.seg == refused[0].seg {
		t.Fatalf("the next record went to the failed segment")
	}
	if err := lp.drain(); err != nil {
		t.Fatal(err)
	}
	if !sp.Admit() {
		t.Errorf("Admit false after a successful write")
	}
	if p := sp.Stats().Pending; p != 1 {
		t.Errorf("Pending=%d, want 1", p)
	}
}

// A failed group that spans a rotation: the segment sealed earlier, whose records
// were all in that group, is emptied by the rollback and deleted.
func TestFailedGroupAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	opt := testOptions(dir)
	opt.SegmentBytes = 100
	sp, _ := mustOpen(t, opt)
	defer mustClose(t, sp)
	lp := newTestLoop(t, sp, 0)
	first := sp.nextID.Load()
	must(t, os.Mkdir(filepath.Join(dir, segName(first+1)+".seg"), 0o700)) // the second segment cannot be created
	var refs []Ref
	for i := 0; i < 6; i++ {
		refs = append(refs, lp.l.Append(body(i)))
	}
	if refs[0].seg.id != first || refs[5].seg.id < first+1 {
		t.Fatalf("records did not span a rotation: segments %d..%d", refs[0].seg.id, refs[5].seg.id)
	}
	if err := lp.drain(); err == nil {
		t.Fatal("no error from a group whose second segment cannot be created")
	}
	if _, err := os.Stat(filepath.Join(dir, segName(first)+".seg")); !os.IsNotExist(err) {
		t.Errorf("the first segment, emptied by the rollback, is still on disk (%v)", err)
	}
	if st := sp.Stats(); st.Segments != 0 || st.Bytes != 0 || st.Pending != 0 {
		t.Errorf("after the rollback: %+v", st)
	}
}

// Two logs on their own goroutines (two event loops) share one spool: ids stay
// unique, the counters add up, and recovery returns both logs' records.
func TestTwoLogs(t *testing.T) {
	dir := t.TempDir()
	opt := testOptions(dir)
	opt.SegmentBytes = 512
	sp, _ := mustOpen(t, opt)
	const n = 300
	done := make(chan []Ref, 2)
	for k := 0; k < 2; k++ {
		lp := newTestLoop(t, sp, k)
		go func() {
			var refs []Ref
			for i := 0; i < n; i++ {
				refs = append(refs, lp.l.Append([]byte(fmt.Sprintf("log%d-%d", k, i))))
				if i%7 == 0 {
					lp.l.Flush()
				}
				if i%2 == 0 && i > 0 {
					lp.l.Settle(refs[i-1])
				}
				select {
				case c := <-lp.ch:
					lp.l.Completed(c)
				default:
				}
			}
			for lp.l.busy {
				lp.l.Completed(<-lp.ch)
				lp.l.Flush()
			}
			lp.l.Flush()
			for lp.l.busy {
				lp.l.Completed(<-lp.ch)
				lp.l.Flush()
			}
			done <- refs
		}()
	}
	ids := map[uint64]bool{}
	var want []string
	for k := 0; k < 2; k++ {
		for _, r := range <-done {
			ids[r.seg.id] = true
		}
	}
	for k := 0; k < 2; k++ {
		for i := 0; i < n; i++ {
			if !(i%2 == 1 && i < n-1) {
				want = append(want, fmt.Sprintf("log%d-%d", k, i))
			}
		}
	}
	if st := sp.Stats(); st.Pending != int64(len(want)) || st.SyncedRecords != 2*n {
		t.Errorf("stats %+v, want Pending=%d SyncedRecords=%d", st, len(want), 2*n)
	}
	mustClose(t, sp)
	sp, recs := mustOpen(t, opt)
	defer mustClose(t, sp)
	got := bodies(loadAll(t, recs))
	sortStrings(want)
	if !equalStrings(got, want) {
		t.Fatalf("%s", diffStrings(got, want))
	}
	if len(ids) < 4 {
		t.Errorf("only %d segments for two logs: the test wants rotation in both", len(ids))
	}
}

// Close writes what a log gathered while its writer was busy: the records (with
// SyncInterval they were answered already) and the acks.
func TestCloseWritesLastGroup(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncInterval} {
		t.Run(mode.String(), func(t *testing.T) {
			opt := testOptions(t.TempDir())
			opt.Sync = mode
			sp, _ := mustOpen(t, opt)
			lp := newTestLoop(t, sp, 0)
			var refs []Ref
			for i := 0; i < 10; i++ {
				refs = append(refs, lp.l.Append(body(i)))
			}
			lp.l.Flush() // group 0 to the writer; its completion is never taken
			for i := 10; i < 20; i++ {
				refs = append(refs, lp.l.Append(body(i)))
			}
			lp.l.Settle(refs[2])  // written: its ack is left in the last group
			lp.l.Settle(refs[15]) // record and ack both in the last group
			lp.l.Flush()          // the writer is busy (no Completed): nothing handed
			if !lp.l.busy || lp.l.fill.empty() {
				t.Fatal("the test wants a group left behind")
			}
			mustClose(t, sp)
			sp, recs := mustOpen(t, opt)
			defer mustClose(t, sp)
			want := wantBodies(append(append(seq(0, 2), seq(3, 15)...), seq(16, 20)...)...)
			if got := bodies(loadAll(t, recs)); !equalStrings(got, want) {
				t.Fatalf("%s", diffStrings(got, want))
			}
		})
	}
}

// Acks spread over more segments than a writer keeps ack files open: files are
// closed and opened again as needed, and every ack is there at the next start.
func TestAcksOverManySegments(t *testing.T) {
	opt := testOptions(t.TempDir())
	opt.SegmentBytes = 64 // two records a segment at most
	sp, _ := mustOpen(t, opt)
	lp := newTestLoop(t, sp, 0)
	const n = 3 * maxAckFiles * 2
	var refs []Ref
	for i := 0; i < n; i++ {
		refs = append(refs, lp.l.Append([]byte(fmt.Sprintf("r%03d", i))))
	}
	if err := lp.drain(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for round := 0; round < 2; round++ { // first every 4th record, then every 4th+1
		for i := round; i < n; i += 4 {
			lp.l.Settle(refs[i])
		}
		if err := lp.drain(); err != nil {
			t.Fatal(err)
		}
		if len(lp.l.w.ackOpen) > maxAckFiles {
			t.Fatalf("%d ack files open, bound %d", len(lp.l.w.ackOpen), maxAckFiles)
		}
	}
	for i := 0; i < n; i++ {
		if i%4 >= 2 {
			want = append(want, fmt.Sprintf("r%03d", i))
		}
	}
	if segs := len(segFiles(t, opt.Dir, ".seg")); segs < 2*maxAckFiles {
		t.Fatalf("only %d segments: the test wants more than the ack file bound", segs)
	}
	mustClose(t, sp)
	sp, recs := mustOpen(t, opt)
	defer mustClose(t, sp)
	sortStrings(want)
	if got := bodies(loadAll(t, recs)); !equalStrings(got, want) {
		t.Fatalf("%s", diffStrings(got, want))
	}
}
