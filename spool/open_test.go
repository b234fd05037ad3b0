package spool

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A second Open on one directory, in this process or another, is refused with
// ErrLocked naming the directory; after Close it succeeds.
func TestLock(t *testing.T) {
	dir := t.TempDir()
	sp, _ := mustOpen(t, testOptions(dir))
	_, _, err := Open(testOptions(dir))
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second Open in-process: %v, want ErrLocked naming %s", err, dir)
	}
	out, code := runChild(t, "lock", dir)
	if code != 3 || !strings.Contains(out, "locked") {
		t.Fatalf("second process: exit %d, output %q; want exit 3 (ErrLocked)", code, out)
	}
	mustClose(t, sp)
	out, code = runChild(t, "lock", dir)
	if code != 0 {
		t.Fatalf("after Close, another process: exit %d, output %q; want 0", code, out)
	}
	sp, _ = mustOpen(t, testOptions(dir))
	mustClose(t, sp)
}

// runChild re-executes the test binary to run TestChildProcess with a mode.
func runChild(t *testing.T, mode, dir string, env ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), append(env, "SPOOL_TEST_CHILD="+mode, "SPOOL_TEST_DIR="+dir)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("run child: %v", err)
	}
	return string(out), 0
}

// TestChildProcess is the body of runChild's processes; it does nothing in a
// normal run.
func TestChildProcess(t *testing.T) {
	mode := os.Getenv("SPOOL_TEST_CHILD")
	if mode == "" {
		return
	}
	dir := os.Getenv("SPOOL_TEST_DIR")
	switch mode {
	case "lock":
		sp, _, err := Open(testOptions(dir))
		if errors.Is(err, ErrLocked) {
			os.Stdout.WriteString("locked: " + err.Error() + "\n")
			os.Exit(3)
		}
		if err != nil {
			os.Stdout.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		sp.Close()
		os.Exit(0)
	case "diskfull":
		childDiskFull(dir)
	case "crash":
		childCrash(dir)
	case "acktorn":
		childAckTorn(dir)
	}
	os.Exit(9)
}

// A Dir that is a file, or under a file, and a read-only directory: Open fails
// with an error naming the path.
func TestOpenBadDir(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	must(t, os.WriteFile(file, []byte("x"), 0o600))
	for _, dir := range []string{file, filepath.Join(file, "sub")} {
		_, _, err := Open(testOptions(dir))
		if err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("Open(%s): %v, want an error naming it", dir, err)
		}
	}
	if _, _, err := Open(Options{}); err == nil {
		t.Errorf("Open without a Dir succeeded")
	}
	t.Run("read-only", func(t *testing.T) {
		ro := filepath.Join(base, "ro")
		must(t, os.Mkdir(ro, 0o700))
		if os.Geteuid() == 0 {
			// Permission bits do not stop root: a read-only bind mount does.
			if err := syscall.Mount(ro, ro, "", syscall.MS_BIND, ""); err != nil {
				t.Skipf("bind mount not permitted here (%v); the non-root case below covers read-only by mode", err)
			}
			t.Cleanup(func() { syscall.Unmount(ro, syscall.MNT_DETACH) })
			if err := syscall.Mount("", ro, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
				t.Skipf("read-only remount not permitted here: %v", err)
			}
		} else {
			must(t, os.Chmod(ro, 0o500))
			t.Cleanup(func() { os.Chmod(ro, 0o700) })
		}
		_, _, err := Open(testOptions(ro))
		if err == nil || !strings.Contains(err.Error(), ro) {
			t.Fatalf("Open(read-only %s): %v, want an error naming it", ro, err)
		}
		// With a LOCK file already there (a directory used before and made
		// read-only since), the write probe is what refuses it.
		t.Logf("read-only: %v", err)
	})
}
