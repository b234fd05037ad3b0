// Package buildinfo says which build of sluice is running: its version, commit and
// Go version. `make build` and the Dockerfile set the version and commit with
//
//	-ldflags "-X github.com/sluicelog/sluice/buildinfo.version=... -X github.com/sluicelog/sluice/buildinfo.commit=..."
//
// from `git describe --tags --always --dirty` and `git rev-parse --short HEAD`. A
// plain `go build` falls back to the VCS stamp the Go toolchain embeds
// (runtime/debug.ReadBuildInfo), and to "dev" / "unknown" without one.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// Set by the linker (-X); empty in a plain `go build`.
var (
	version string
	commit  string
)

// Info is what `sluice version` prints and distributor_build_info carries.
type Info struct {
	Version   string // git describe, e.g. v1.2.0-3-gabc1234-dirty; "dev" when unknown
	Commit    string // short commit hash; "unknown" when unknown
	GoVersion string // runtime.Version() of the toolchain that built the binary
}

// String is the one line `sluice version` prints.
func (i Info) String() string {
	return "sluice " + i.Version + " (commit " + i.Commit + ", " + i.GoVersion + ")"
}

// Get returns the build's Info.
var Get = sync.OnceValue(func() Info {
	var vcsRev, modVersion string
	var dirty bool
	if bi, ok := debug.ReadBuildInfo(); ok {
		modVersion = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				vcsRev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	return resolve(version, commit, modVersion, vcsRev, dirty)
})

// resolve applies the fallbacks: linker values first, then the toolchain's VCS
// stamp, then "dev" / "unknown".
func resolve(ldVersion, ldCommit, modVersion, vcsRev string, dirty bool) Info {
	short := vcsRev
	if len(short) > 7 {
		short = short[:7]
	}
	i := Info{Version: ldVersion, Commit: ldCommit, GoVersion: runtime.Version()}
	if i.Commit == "" {
		i.Commit = short
	}
	if i.Version == "" {
		switch {
		case modVersion != "" && modVersion != "(devel)":
			i.Version = modVersion // the toolchain's own describe of a tagged tree
		case short != "" && dirty:
			i.Version = short + "-dirty"
		case short != "":
			i.Version = short
		}
	}
	if i.Version == "" {
		i.Version = "dev"
	}
	if i.Commit == "" {
		i.Commit = "unknown"
	}
	return i
}
