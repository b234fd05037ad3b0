package spool

import (
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

func wantBodies(idxs ...int) []string {
	out := make([]string, len(idxs))
	for i, x := range idxs {
		out[i] = string(body(x))
	}
	sortStrings(out)
	return out
}

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// A segment cut at every offset inside its last record (and garbage appended
// after whole records): the complete records before the cut come back, the tail
// is cut off the file and counted.
func TestTornTail(t *testing.T) {
	dir0 := t.TempDir()
	full := writeSegment(t, dir0, 0, 10)
	var lastStart int
	{
		r := scanSegment(full)
		if len(r.recs) != 10 || r.end != len(full) {
			t.Fatalf("scan of an intact segment: %d records, end %d of %d", len(r.recs), r.end, len(full))
		}
		lastStart = r.recs[9].off
	}
	cases := map[string][]byte{}
	for cut := lastStart + 1; cut < len(full); cut++ {
		cases["cut at "+itoa(cut)] = full[:cut]
	}
	rng := rand.New(rand.NewSource(15))
	for i := 0; i < 5; i++ {
		g := make([]byte, 1+rng.Intn(300))
		rng.Read(g)
		cases["garbage "+itoa(len(g))] = append(full[:lastStart:lastStart], g...)
	}
	// Garbage that starts with the magic and a plausible header.
	cases["fake header"] = append(full[:lastStart:lastStart], 0x53, 0x50, 0x4c, 0x31, 5, 0, 0, 0, 1, 2, 3, 4, 9, 0, 0, 0, 'a')
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, segName(0)+".seg")
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			sp, recs := mustOpen(t, testOptions(dir))
			defer mustClose(t, sp)
			got := bodies(loadAll(t, recs))
			if want := wantBodies(seq(0, 9)...); !equalStrings(got, want) {
				t.Fatalf("%s", diffStrings(got, want))
			}
			st := sp.Stats()
			if st.TornTails != 1 || st.CorruptRecords != 0 {
				t.Errorf("TornTails=%d CorruptRecords=%d, want 1 and 0", st.TornTails, st.CorruptRecords)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != int64(lastStart) {
				t.Errorf("file is %d bytes after recovery, want it cut to %d", fi.Size(), lastStart)
			}
			if st.Bytes != int64(lastStart) {
				t.Errorf("Stats.Bytes=%d, want %d", st.Bytes, lastStart)
			}
		})
	}
}

// Random cuts of a segment of many records, fixed seed: every record wholly
// before the cut comes back.
func TestTornTailRandomCuts(t *testing.T) {
	dir0 := t.TempDir()
	full := writeSegment(t, dir0, 0, 200)
	r := scanSegment(full)
	rng := rand.New(rand.NewSource(42))
	for i := 0; i < 30; i++ {
		cut := rng.Intn(len(full))
		whole := 0
		for _, s := range r.recs {
			if s.off+s.n <= cut {
				whole++
			}
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(7)+".seg"), full[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		sp, recs := mustOpen(t, testOptions(dir))
		got := bodies(loadAll(t, recs))
		if want := wantBodies(seq(0, whole)...); !equalStrings(got, want) {
			t.Fatalf("cut at %d: %s", cut, diffStrings(got, want))
		}
		mustClose(t, sp)
	}
}

// A corrupt byte in a record in the middle: that record is skipped and counted,
// every record after it comes back.
func TestCorruptMiddle(t *testing.T) {
	for _, where := range []string{"body", "length", "magic", "index", "crc"} {
		t.Run(where, func(t *testing.T) {
			dir := t.TempDir()
			b := writeSegment(t, dir, 3, 20)
			r := scanSegment(b)
			rec := r.recs[7]
			off := map[string]int{"magic": 1, "length": 5, "crc": 9, "index": 13, "body": headerSize + 3}[where]
			b[rec.off+off] ^= 0x40
			if err := os.WriteFile(filepath.Join(dir, segName(3)+".seg"), b, 0o600); err != nil {
				t.Fatal(err)
			}
			sp, recs := mustOpen(t, testOptions(dir))
			defer mustClose(t, sp)
			got := bodies(loadAll(t, recs))
			want := wantBodies(append(seq(0, 7), seq(8, 20)...)...)
			if !equalStrings(got, want) {
				t.Fatalf("%s", diffStrings(got, want))
			}
			if st := sp.Stats(); st.CorruptRecords != 1 || st.TornTails != 0 || st.Recovered != 19 {
				t.Errorf("stats %+v, want CorruptRecords=1 TornTails=0 Recovered=19", st)
			}
		})
	}
}

// A record copied over a later one (valid checksum, stale index) is not sent twice
// under another record's name: indexes must grow.
func TestDuplicatedRecordIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	var b []byte
	for i := 0; i < 5; i++ {
		b = appendRecord(b, uint32(i), body(i))
	}
	b = appendRecord(b, 1, body(1)) // a stale copy
	for i := 5; i < 8; i++ {
		b = appendRecord(b, uint32(i), body(i))
	}
	if err := os.WriteFile(filepath.Join(dir, segName(0)+".seg"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	sp, recs := mustOpen(t, testOptions(dir))
	defer mustClose(t, sp)
	if got, want := bodies(loadAll(t, recs)), wantBodies(seq(0, 8)...); !equalStrings(got, want) {
		t.Fatalf("%s", diffStrings(got, want))
	}
	if st := sp.Stats(); st.CorruptRecords != 1 {
		t.Errorf("CorruptRecords=%d, want 1", st.CorruptRecords)
	}
}

// A corrupt, missing or truncated ack file settles less, never more.
func TestAckFileDamage(t *testing.T) {
	const n = 40
	settled := seq(0, 30) // acked: 0..29
	build := func(t *testing.T) (dir string, ack []byte) {
		dir = t.TempDir()
		writeSegment(t, dir, 1, n)
		for _, i := range settled {
			ack = appendAck(ack, uint32(i))
		}
		return dir, ack
	}
	ackPath := func(dir string) string { return filepath.Join(dir, segName(1)+".ack") }
	cases := []struct {
		name   string
		damage func(dir string, ack []byte) error
		want   []int // records that must come back (at least)
		exact  bool
	}{
		{"intact", func(dir string, ack []byte) error { return os.WriteFile(ackPath(dir), ack, 0o600) }, seq(30, n), true},
		{"missing", func(string, []byte) error { return nil }, seq(0, n), true},
		{"truncated mid-entry", func(dir string, ack []byte) error {
			return os.WriteFile(ackPath(dir), ack[:len(ack)-3], 0o600)
		}, append([]int{29}, seq(30, n)...), true},
		{"corrupt entry", func(dir string, ack []byte) error {
			ack[5*ackSize+1] ^= 0xff // entry for record 5
			return os.WriteFile(ackPath(dir), ack, 0o600)
		}, append([]int{5}, seq(30, n)...), true},
		{"garbage", func(dir string, ack []byte) error {
			g := make([]byte, len(ack))
			rand.New(rand.NewSource(1)).Read(g)
			return os.WriteFile(ackPath(dir), g, 0o600)
		}, seq(0, n), true},
		{"index out of range", func(dir string, ack []byte) error {
			return os.WriteFile(ackPath(dir), appendAck(ack[:0], 1_000_000), 0o600)
		}, seq(0, n), true},
		{"unreadable (a directory)", func(dir string, ack []byte) error { return os.Mkdir(ackPath(dir), 0o700) }, seq(0, n), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, ack := build(t)
			if err := tc.damage(dir, ack); err != nil {
				t.Fatal(err)
			}
			sp, recs := mustOpen(t, testOptions(dir))
			defer mustClose(t, sp)
			got := bodies(loadAll(t, recs))
			if want := wantBodies(tc.want...); !equalStrings(got, want) {
				t.Fatalf("%s", diffStrings(got, want))
			}
		})
	}
}

// After a torn ack entry is cut, new acks appended by the adopting log stay
// readable at the next start.
func TestAckAppendAfterTornEntry(t *testing.T) {
	dir := t.TempDir()
	writeSegment(t, dir, 1, 10)
	ack := appendAck(nil, 0)
	ack = append(ack, 0xde, 0xad, 0xbe) // torn second entry
	if err := os.WriteFile(filepath.Join(dir, segName(1)+".ack"), ack, 0o600); err != nil {
		t.Fatal(err)
	}
	opt := testOptions(dir)
	sp, recs := mustOpen(t, opt)
	lp := newTestLoop(t, sp, 0)
	all := loadAll(t, recs)
	for _, r := range recs {
		lp.l.Adopt(r)
	}
	for _, r := range all {
		if string(r.Body) == string(body(4)) {
			lp.l.Settle(r.Ref)
		}
	}
	if err := lp.drain(); err != nil {
		t.Fatal(err)
	}
	mustClose(t, sp)
	sp, recs = mustOpen(t, opt)
	defer mustClose(t, sp)
	if got, want := bodies(loadAll(t, recs)), wantBodies(1, 2, 3, 5, 6, 7, 8, 9); !equalStrings(got, want) {
		t.Fatalf("%s", diffStrings(got, want))
	}
}

// Unknown files are left alone; an orphan ack file is removed; a segment whose
// records are all acked is deleted at Open.
func TestOpenCleansSettled(t *testing.T) {
	dir := t.TempDir()
	writeSegment(t, dir, 2, 3)
	var ack []byte
	for i := 0; i < 3; i++ {
		ack = appendAck(ack, uint32(i))
	}
	must(t, os.WriteFile(filepath.Join(dir, segName(2)+".ack"), ack, 0o600))
	must(t, os.WriteFile(filepath.Join(dir, segName(9)+".ack"), ack, 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600))
	sp, recs := mustOpen(t, testOptions(dir))
	if len(recs) != 0 {
		t.Fatalf("recovered %d segments, want none", len(recs))
	}
	for _, name := range []string{segName(2) + ".seg", segName(2) + ".ack", segName(9) + ".ack"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s still there (%v)", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Errorf("unknown file removed: %v", err)
	}
	// Ids continue above every id seen, the orphan ack's too.
	lp := newTestLoop(t, sp, 0)
	if r := lp.l.Append([]byte("x")); r.seg.id != 10 {
		t.Errorf("first new segment id %d, want 10", r.seg.id)
	}
	mustClose(t, sp)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

// Random byte flips in a segment, fixed seed: the scan returns every record no
// flip touched, and nothing that was not written (content and index as written).
func TestScanRandomCorruption(t *testing.T) {
	var full []byte
	var spans [][2]int
	for i := 0; i < 50; i++ {
		start := len(full)
		full = appendRecord(full, uint32(i), body(i))
		spans = append(spans, [2]int{start, len(full)})
	}
	rng := rand.New(rand.NewSource(77))
	for iter := 0; iter < 500; iter++ {
		b := append([]byte(nil), full...)
		touched := map[int]bool{}
		for k := rng.Intn(5) + 1; k > 0; k-- {
			at := rng.Intn(len(b))
			b[at] ^= byte(1 + rng.Intn(255))
			for i, s := range spans {
				if at >= s[0] && at < s[1] {
					touched[i] = true
				}
			}
		}
		res := scanSegment(b)
		got := map[uint32]bool{}
		for _, r := range res.recs {
			rb, idx, _, err := decodeRecord(b[r.off:])
			if err != nil || string(rb) != string(body(int(idx))) {
				t.Fatalf("iter %d: returned record %d is not what was written (%v)", iter, idx, err)
			}
			got[idx] = true
		}
		for i := range spans {
			if !touched[i] && !got[uint32(i)] {
				t.Fatalf("iter %d: untouched record %d lost (touched %v)", iter, i, touched)
			}
		}
	}
}
