package buildinfo

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

func TestResolveFallbacks(t *testing.T) {
	cases := []struct {
		name                          string
		ldVersion, ldCommit, mod, rev string
		dirty                         bool
		wantVersion, wantCommit       string
	}{
		{"linker values win", "v1.2.0-3-gabc1234-dirty", "abc1234", "v0.0.0-x", "ffffffffffff", false, "v1.2.0-3-gabc1234-dirty", "abc1234"},
		{"vcs stamp", "", "", "(devel)", "0123456789abcdef", false, "0123456", "0123456"},
		{"vcs stamp, modified tree", "", "", "(devel)", "0123456789abcdef", true, "0123456-dirty", "0123456"},
		{"toolchain's module version", "", "", "v1.3.0", "0123456789abcdef", false, "v1.3.0", "0123456"},
		{"nothing known", "", "", "", "", false, "dev", "unknown"},
	}
	for _, c := range cases {
		got := resolve(c.ldVersion, c.ldCommit, c.mod, c.rev, c.dirty)
		if got.Version != c.wantVersion || got.Commit != c.wantCommit || got.GoVersion != runtime.Version() {
			t.Errorf("%s: got %+v, want version %q commit %q go %q", c.name, got, c.wantVersion, c.wantCommit, runtime.Version())
		}
	}
}

// `sluice version` and `sluice --version` print what -ldflags -X set, as make build
// and the Dockerfile set it, and the Go version.
func TestVersionCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sluice binary")
	}
	bin := filepath.Join(t.TempDir(), "sluice")
	const pkg = "github.com/sluicelog/sluice/buildinfo"
	build := exec.Command("go", "build", "-o", bin, "-ldflags", "-X "+pkg+".version=v9.8.7-1-gabcdef0-dirty -X "+pkg+".commit=abcdef0", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	want := "sluice v9.8.7-1-gabcdef0-dirty (commit abcdef0, " + runtime.Version() + ")\n"
	for _, arg := range []string{"version", "--version", "-version"} {
		out, err := exec.Command(bin, arg).CombinedOutput()
		if err != nil || string(out) != want {
			t.Errorf("sluice %s: %v %q, want %q", arg, err, out, want)
		}
	}
}
