package buildinfo

import (
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
