package spool

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// Random sequences of appends, settles (in any order, some while their group is
// being written, some twice), flushes and restarts against a model: after every
// drain Pending is the model's unsettled count and the segment files on disk are
// exactly the segments still holding an unsettled record (plus the one being
// appended to); after every restart exactly the unsettled records come back.
func TestModel(t *testing.T) {
	seeds := int64(12)
	if testing.Short() {
		seeds = 4 // each seed syncs a few hundred times; make test runs all 12
	}
	for seed := int64(1); seed <= seeds; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { runModel(t, seed) })
	}
}

func runModel(t *testing.T, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	dir := t.TempDir()
	opt := testOptions(dir)
	opt.SegmentBytes = int64(200 + rng.Intn(2000))
	if seed%2 == 0 {
		opt.Sync = SyncInterval
	}
	sp, _ := mustOpen(t, opt)
	lp := newTestLoop(t, sp, 0)
	live := map[string]Ref{} // the model: unsettled records by body
	next := 0
	restart := func() {
		if err := lp.drain(); err != nil {
			t.Fatal(err)
		}
		mustClose(t, sp)
		var recs []*Recovered
		sp, recs = mustOpen(t, opt)
		lp = newTestLoop(t, sp, 0)
		got := loadAll(t, recs)
		if len(got) != len(live) {
			t.Fatalf("restart: %d records back, model has %d unsettled", len(got), len(live))
		}
		for _, r := range got {
			if _, ok := live[string(r.Body)]; !ok {
				t.Fatalf("restart: %q came back but was settled (or never written)", r.Body)
			}
			live[string(r.Body)] = r.Ref
		}
		for _, r := range recs {
			lp.l.Adopt(r)
		}
	}
	check := func() {
		if err := lp.drain(); err != nil {
			t.Fatal(err)
		}
		st := sp.Stats()
		if st.Pending != int64(len(live)) {
			t.Fatalf("Pending=%d, model has %d unsettled", st.Pending, len(live))
		}
		want := map[uint64]bool{}
		for _, r := range live {
			want[r.seg.id] = true
		}
		if c := lp.l.cur; c != nil && c.created {
			want[c.id] = true
		}
		files := segFiles(t, dir, ".seg")
		if len(files) != len(want) || st.Segments != int64(len(want)) {
			t.Fatalf("%d segment files, Stats.Segments=%d, want %d (segments with unsettled records, and the current one)", len(files), st.Segments, len(want))
		}
		for id := range want {
			if _, err := os.Stat(filepath.Join(dir, segName(id)+".seg")); err != nil {
				t.Fatalf("segment %d holds unsettled records but: %v", id, err)
			}
		}
	}
	for step := 0; step < 300; step++ {
		switch op := rng.Intn(100); {
		case op < 45: // append a few
			for k := rng.Intn(8) + 1; k > 0; k-- {
				b := fmt.Sprintf("r%d-%s", next, string(make([]byte, rng.Intn(120))))
				next++
				live[b] = lp.l.Append([]byte(b))
			}
		case op < 75: // settle a few, at random, sometimes one twice
			for k := rng.Intn(6); k > 0 && len(live) > 0; k-- {
				for b, r := range live {
					lp.l.Settle(r)
					if rng.Intn(5) == 0 {
						lp.l.Settle(r)
					}
					delete(live, b)
					break
				}
			}
		case op < 90: // hand over, and maybe take a completion
			lp.l.Flush()
			if lp.l.busy && rng.Intn(2) == 0 {
				if c := lp.complete(); c.Err != nil {
					t.Fatal(c.Err)
				}
				lp.l.Flush()
			}
		case op < 97:
			check()
		default:
			restart()
		}
	}
	check()
	restart()
	mustClose(t, sp)
}
