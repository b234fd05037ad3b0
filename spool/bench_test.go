package spool

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The loop's side of a steady state (Append, Settle, Flush, Completed) does not
// allocate once its buffers have grown.
func TestAppendAllocs(t *testing.T) {
	if raceEnabled {
		t.Log("allocation counts are not meaningful under the race detector; checked in the non-race run")
		return
	}
	opt := testOptions(t.TempDir())
	opt.Sync = SyncInterval // the writer's fdatasync is not what this measures
	opt.SegmentBytes = 1 << 30
	sp, _ := mustOpen(t, opt)
	defer mustClose(t, sp)
	lp := newTestLoop(t, sp, 0)
	pkt := make([]byte, 512)
	var prev, cur [64]Ref
	pass := func() {
		for i := range cur {
			cur[i] = lp.l.Append(pkt)
		}
		for _, r := range prev {
			lp.l.Settle(r)
		}
		prev = cur
		lp.l.Flush()
		c := <-lp.ch
		lp.l.Completed(c)
	}
	for i := 0; i < 10; i++ {
		pass()
	}
	if n := testing.AllocsPerRun(200, pass); n != 0 {
		t.Fatalf("%v allocs per pass of 64 appends, 64 settles, a flush and a completion", n)
	}
	if n := testing.AllocsPerRun(10000, func() { lp.l.Append(pkt) }); n != 0 {
		t.Fatalf("Append: %v allocs", n)
	}
}

// BenchmarkAppend: the loop's cost per record (header and copy into the group
// buffer), 512 B bodies, no I/O: every 256 records the group buffer is emptied as
// the writer's completion would (the reset is in the timing, 1/256 of it per op).
func BenchmarkAppend(b *testing.B) {
	opt := testOptions(b.TempDir())
	opt.SegmentBytes = 1 << 30
	sp, _ := mustOpen(b, opt)
	defer sp.Close()
	lp := newTestLoop(b, sp, 0)
	pkt := make([]byte, 512)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		lp.l.Append(pkt)
		if i&255 == 255 {
			lp.l.fill.reset()
		}
	}
}

// BenchmarkGroupCommit: records/s through write+fdatasync (SyncAlways) with
// groups of 1, 16 and 256 records of 512 B, one log. This is the disk bound of an
// always-synced spool: one sync per group.
func BenchmarkGroupCommit(b *testing.B) {
	for _, size := range []int{1, 16, 256} {
		b.Run("group="+strconv.Itoa(size), func(b *testing.B) {
			opt := testOptions(b.TempDir())
			opt.SegmentBytes = 16 << 20
			sp, _ := mustOpen(b, opt)
			defer sp.Close()
			lp := newTestLoop(b, sp, 0)
			pkt := make([]byte, 512)
			refs := make([]Ref, 0, size)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, r := range refs {
					lp.l.Settle(r)
				}
				refs = refs[:0]
				for j := 0; j < size; j++ {
					refs = append(refs, lp.l.Append(pkt))
				}
				lp.l.Flush()
				if c := lp.complete(); c.Err != nil {
					b.Fatal(c.Err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkFdatasync: the disk's own cost: append 1 KiB and fdatasync, in a loop,
// with its p50 and p99.
func BenchmarkFdatasync(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "sync"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1024)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRecover: Open (scan every segment, apply acks) and Load of every
// recovered segment, over 64 MiB of 512 B records in 8 MiB segments with a third
// of the records acked: the start-up cost of a backlog, per byte.
func BenchmarkRecover(b *testing.B) {
	dir := b.TempDir()
	pkt := make([]byte, 512)
	const segBytes = 8 << 20
	var total int64
	for id := uint64(0); id < 8; id++ {
		var seg, ack []byte
		for i := uint32(0); len(seg) < segBytes-headerSize-len(pkt); i++ {
			seg = appendRecord(seg, i, pkt)
			if i%3 == 0 {
				ack = appendAck(ack, i)
			}
		}
		must(b, os.WriteFile(filepath.Join(dir, segName(id)+".seg"), seg, 0o600))
		must(b, os.WriteFile(filepath.Join(dir, segName(id)+".ack"), ack, 0o600))
		total += int64(len(seg))
	}
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sp, recs := mustOpen(b, testOptions(dir))
		if len(recs) != 8 {
			b.Fatalf("%d segments recovered", len(recs))
		}
		for _, r := range recs {
			if _, err := r.Load(); err != nil {
				b.Fatal(err)
			}
		}
		mustClose(b, sp)
	}
}
