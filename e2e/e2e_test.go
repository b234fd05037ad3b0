// Package e2e holds the system tests: the whole distributor against real clients
// (curl, python3, wrk, ab, vegeta), a real Prometheus, the Docker deployment's
// files, the README, and `make run` as a new user types it. They start processes
// and need the programs `make deps` installs, so `go test -short` skips them
// (each names -short in its skip message); the rest run in a few seconds.
package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestMain runs the tests from the repository's root, where the files they check
// refer to each other from (docker-compose.yml's mounts, the Dockerfile's build
// context, the README's commands) and where `make run` is typed.
func TestMain(m *testing.M) {
	if err := os.Chdir(".."); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	if mod, err := os.ReadFile("go.mod"); err != nil || !strings.HasPrefix(string(mod), "module github.com/sluicelog/sluice\n") {
		fmt.Fprintln(os.Stderr, "e2e: the parent directory is not sluice's root:", err)
		os.Exit(1)
	}
	code := m.Run()
	if dockerDir != "" {
		_ = os.RemoveAll(dockerDir)
	}
	os.Exit(code)
}

// systemTest skips t under -short: it starts processes or needs programs besides
// the Go toolchain.
func systemTest(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("system test: skipped under -short (go test without -short, or make test, runs it)")
	}
}
