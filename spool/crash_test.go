package spool

import (
	"bufio"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kill -9 at random moments of a process that appends, syncs and settles: after
// each kill the next process recovers on the same directory and keeps appending;
// at the end every record reported written and not settled is there. In both
// sync modes (kill -9 leaves the page cache, so interval loses nothing either).
func TestKillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes for a few seconds")
	}
	for _, mode := range []SyncMode{SyncAlways, SyncInterval} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			rng := rand.New(rand.NewSource(9))
			must := map[string]bool{} // written, not settled: must come back
			written := map[string]bool{}
			for run := 0; run < 6; run++ {
				cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.count=1")
				cmd.Env = append(os.Environ(), "SPOOL_TEST_CHILD=crash", "SPOOL_TEST_DIR="+dir,
					"SPOOL_TEST_RUN="+strconv.Itoa(run), "SPOOL_TEST_SYNC="+mode.String())
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				lines := make(chan string, 1024)
				go func() {
					sc := bufio.NewScanner(out)
					for sc.Scan() {
						lines <- sc.Text()
					}
					close(lines)
				}()
				kill := time.After(time.Duration(50+rng.Intn(400)) * time.Millisecond)
				killed := false
			read:
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							break read
						}
						if rec, ok := strings.CutPrefix(l, "written "); ok {
							written[rec] = true
							if !settledByChild(rec) {
								must[rec] = true
							}
						}
					case <-kill:
						if !killed {
							cmd.Process.Signal(syscall.SIGKILL)
							killed = true
						}
					case <-time.After(20 * time.Second):
						cmd.Process.Signal(syscall.SIGKILL)
						t.Fatal("child neither wrote nor died within 20s")
					}
				}
				cmd.Wait()
				if !killed {
					t.Fatalf("run %d: the child exited before the kill", run)
				}
			}
			if len(must) < 50 {
				t.Fatalf("only %d records written and unsettled over 6 runs: the test wants more", len(must))
			}
			sp, recs := mustOpen(t, testOptions(dir))
			defer mustClose(t, sp)
			got := map[string]bool{}
			for _, r := range loadAll(t, recs) {
				got[string(r.Body)] = true
				if !strings.HasPrefix(string(r.Body), "run") {
					t.Errorf("recovered a record nobody wrote: %q", r.Body)
				}
			}
			lost := 0
			for rec := range must {
				if !got[rec] {
					lost++
					if lost < 5 {
						t.Errorf("written and unsettled, lost after kill -9: %s", rec)
					}
				}
			}
			st := sp.Stats()
			t.Logf("%d written, %d unsettled and all back, %d recovered (%d settled ones again: the duplicate window), torn tails %d, corrupt %d",
				len(written), len(must), len(got), len(got)-len(must), st.TornTails, st.CorruptRecords)
			if lost > 0 {
				t.Fatalf("%d of %d records lost", lost, len(must))
			}
			if st.CorruptRecords != 0 {
				t.Errorf("kill -9 left corrupt records in the middle: %d", st.CorruptRecords)
			}
		})
	}
}

// settledByChild: the child settles every third record once it is written.
func settledByChild(rec string) bool {
	i := strings.LastIndexByte(rec, '-')
	n, _ := strconv.Atoi(rec[i+1:])
	return n%3 == 0
}

// childCrash appends groups of 8 records until killed, printing each record once
// its group is reported written, then settling every third.
func childCrash(dir string) {
	opt := testOptions(dir)
	opt.SegmentBytes = 4096
	if os.Getenv("SPOOL_TEST_SYNC") == "interval" {
		opt.Sync = SyncInterval
		opt.SyncInterval = 5 * time.Millisecond
	}
	t := &childT{}
	sp, recs := mustOpen(t, opt)
	lp := newTestLoop(t, sp, 0)
	for _, r := range recs {
		if _, err := r.Load(); err != nil {
			fmt.Println("load:", err)
			os.Exit(1)
		}
		lp.l.Adopt(r) // kept unsettled: they must survive every following run too
	}
	run := os.Getenv("SPOOL_TEST_RUN")
	var line []byte
	for i := 0; ; {
		var refs [8]Ref
		var names [8]string
		for j := range refs {
			names[j] = "run" + run + "-" + strconv.Itoa(i)
			refs[j] = lp.l.Append([]byte(names[j]))
			i++
		}
		if err := lp.drain(); err != nil {
			fmt.Println("drain:", err)
			os.Exit(1)
		}
		line = line[:0]
		for _, n := range names {
			line = append(line, "written "+n+"\n"...)
		}
		os.Stdout.Write(line) // unbuffered: what the parent reads is written
		for j, n := range names {
			if settledByChild(n) {
				lp.l.Settle(refs[j])
			}
		}
	}
}
