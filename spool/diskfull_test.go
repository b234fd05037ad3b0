package spool

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The disk fills up: the write fails and is reported (Completion.Err, DiskErrors,
// Admit false); once space is back a probe gets through and Admit is true again;
// nothing synced before is lost and nothing refused comes back.
func TestDiskFull(t *testing.T) {
	t.Run("tmpfs", func(t *testing.T) {
		mnt := filepath.Join(t.TempDir(), "mnt")
		must(t, os.Mkdir(mnt, 0o700))
		if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=256k"); err != nil {
			t.Skipf("cannot mount a tmpfs here (%v; needs root); the rlimit case covers a full disk", err)
		}
		t.Cleanup(func() {
			if err := syscall.Unmount(mnt, 0); err != nil {
				syscall.Unmount(mnt, syscall.MNT_DETACH)
			}
		})
		filler := filepath.Join(mnt, "filler")
		fill := func() error {
			f, err := os.Create(filler)
			if err != nil {
				return err
			}
			defer f.Close()
			chunk := make([]byte, 4096)
			for {
				if _, err := f.Write(chunk); err != nil {
					if errors.Is(err, syscall.ENOSPC) {
						return nil
					}
					return err
				}
			}
		}
		diskFullScenario(t, filepath.Join(mnt, "spool"), fill, func() error { return os.Remove(filler) })
	})
	t.Run("rlimit", func(t *testing.T) {
		out, code := runChild(t, "diskfull", t.TempDir())
		if code != 0 {
			t.Fatalf("child exit %d:\n%s", code, out)
		}
		if !strings.Contains(out, "diskfull scenario passed") {
			t.Fatalf("child did not run the scenario:\n%s", out)
		}
	})
}

// childDiskFull runs the scenario in a child process whose file size limit is
// lowered to 1 byte (with SIGXFSZ ignored, a write past it returns EFBIG) and
// raised back as the "free space" step.
func childDiskFull(dir string) {
	signal.Ignore(syscall.SIGXFSZ)
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &orig); err != nil {
		fmt.Println("getrlimit:", err)
		os.Exit(1)
	}
	fill := func() error {
		return syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: 1, Max: orig.Max})
	}
	free := func() error { return syscall.Setrlimit(syscall.RLIMIT_FSIZE, &orig) }
	t := &childT{}
	func() {
		defer func() {
			if r := recover(); r != nil && r != errChildFatal {
				panic(r)
			}
		}()
		diskFullScenario(t, dir, fill, free)
	}()
	if t.failed {
		os.Exit(1)
	}
	fmt.Println("diskfull scenario passed")
	os.Exit(0)
}

// childT is the testing.TB of a child process: it prints failures.
type childT struct {
	testing.TB
	failed bool
}

var errChildFatal = errors.New("fatal")

func (c *childT) Helper()                   {}
func (c *childT) Errorf(f string, a ...any) { c.failed = true; fmt.Printf(f+"\n", a...) }
func (c *childT) Fatalf(f string, a ...any) { c.Errorf(f, a...); panic(errChildFatal) }
func (c *childT) Fatal(a ...any)            { c.failed = true; fmt.Println(a...); panic(errChildFatal) }
func (c *childT) Logf(f string, a ...any)   { fmt.Printf(f+"\n", a...) }
func (c *childT) Failed() bool              { return c.failed }

func diskFullScenario(t testing.TB, dir string, fill, free func() error) {
	opt := testOptions(dir)
	opt.SegmentBytes = 16 << 10
	sp, _ := mustOpen(t, opt)
	lp := newTestLoop(t, sp, 0)
	var want []string
	for i := 0; i < 20; i++ {
		lp.l.Append(body(i))
		want = append(want, string(body(i)))
	}
	if err := lp.drain(); err != nil {
		t.Fatalf("before the disk fills: %v", err)
	}
	before := sp.Stats()
	if err := fill(); err != nil {
		t.Fatalf("fill: %v", err)
	}
	big := make([]byte, 1024)
	for i := 0; i < 100; i++ {
		copy(big, fmt.Sprintf("refused-%03d", i))
		lp.l.Append(big)
	}
	err := lp.drain()
	if err == nil {
		t.Fatalf("100 KiB written to a full disk without an error")
	}
	t.Logf("the write failed as it should: %v", err)
	st := sp.Stats()
	if st.DiskErrors < 1 {
		t.Errorf("DiskErrors=%d after a failed write", st.DiskErrors)
	}
	if st.Bytes != before.Bytes || st.Pending != before.Pending {
		t.Errorf("a refused group changed Bytes %d→%d or Pending %d→%d", before.Bytes, st.Bytes, before.Pending, st.Pending)
	}
	if sp.Admit() {
		t.Errorf("Admit true right after a failed write")
	}
	// While still full a probe gets through about once a second, and fails.
	probe := func() bool {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if sp.Admit() {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	}
	if !probe() {
		t.Fatalf("no probe admitted within 5s while failing")
	}
	lp.l.Append([]byte("probe-while-full"))
	if err := lp.drain(); err == nil {
		t.Fatalf("the probe succeeded on a full disk")
	}
	if sp.Admit() {
		t.Errorf("Admit true right after a failed probe")
	}
	if err := free(); err != nil {
		t.Fatalf("free: %v", err)
	}
	if !probe() {
		t.Fatalf("no probe admitted within 5s after space came back")
	}
	for i := 100; i < 105; i++ {
		lp.l.Append(body(i))
		want = append(want, string(body(i)))
	}
	if err := lp.drain(); err != nil {
		t.Fatalf("after space came back: %v", err)
	}
	for i := 0; i < 3; i++ {
		if !sp.Admit() {
			t.Fatalf("Admit false after a successful write")
		}
	}
	if err := sp.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	sp, recs := mustOpen(t, opt)
	defer sp.Close()
	got := bodies(loadAll(t, recs))
	sortStrings(want)
	if !equalStrings(got, want) {
		t.Fatalf("after the full disk: %s", diffStrings(got, want))
	}
	if st := sp.Stats(); st.CorruptRecords != 0 || st.TornTails != 0 {
		t.Errorf("refused writes left damage: %+v", st)
	}
}

// An ack append cut short by the file size limit (4 of 8 bytes written) is cut
// back, so the acks after it stay readable: only the failed ack's record comes
// back at the next start.
func TestAckWriteCutShort(t *testing.T) {
	dir := t.TempDir()
	out, code := runChild(t, "acktorn", dir)
	if code != 0 || !strings.Contains(out, "acktorn done") {
		t.Fatalf("child exit %d:\n%s", code, out)
	}
	sp, recs := mustOpen(t, testOptions(dir))
	defer mustClose(t, sp)
	// Settled: 0 (before the limit), 1 (its ack cut short: comes back), 2 (after).
	if got, want := bodies(loadAll(t, recs)), wantBodies(append([]int{1}, seq(3, 10)...)...); !equalStrings(got, want) {
		t.Fatalf("%s", diffStrings(got, want))
	}
}

func childAckTorn(dir string) {
	signal.Ignore(syscall.SIGXFSZ)
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &orig); err != nil {
		fmt.Println("getrlimit:", err)
		os.Exit(1)
	}
	t := &childT{}
	sp, _ := mustOpen(t, testOptions(dir))
	lp := newTestLoop(t, sp, 0)
	var refs []Ref
	for i := 0; i < 10; i++ {
		refs = append(refs, lp.l.Append(body(i)))
	}
	step := func(i int) {
		lp.l.Settle(refs[i])
		if err := lp.drain(); err != nil {
			fmt.Println("drain:", err)
			os.Exit(1)
		}
	}
	step(0) // record 0: the ack file holds one entry, 8 bytes
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: ackSize + 4, Max: orig.Max}); err != nil {
		fmt.Println("setrlimit:", err)
		os.Exit(1)
	}
	step(1)
	if sp.Stats().DiskErrors == 0 {
		fmt.Println("the ack write past the limit did not fail")
		os.Exit(1)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &orig); err != nil {
		fmt.Println("setrlimit:", err)
		os.Exit(1)
	}
	step(2)
	if err := sp.Close(); err != nil {
		fmt.Println("close:", err)
		os.Exit(1)
	}
	fmt.Println("acktorn done")
	os.Exit(0)
}
