package e2e

import (
	"os"
	"strings"
	"testing"

	"github.com/sluicelog/sluice/proxy"
)

// The README's configuration table must list every variable the distributor reads,
// with its flag and default, so the documentation cannot drift from the code.
func TestREADMEListsEveryVariable(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, s := range proxy.Settings() {
		def := "`" + s.Default + "`"
		if s.Required {
			def = "(required)"
		} else if s.Default == "" {
			def = "(unset)" // optional, nothing by default
		}
		row := "| `" + s.Env + "` | `--" + s.Flag + "` | " + def + " |"
		if !strings.Contains(readme, row) {
			t.Errorf("README.md has no row starting %q", row)
		}
	}
	for _, cmd := range []string{"make run", "make test"} {
		if !strings.Contains(readme, cmd) {
			t.Errorf("README.md does not show %q", cmd)
		}
	}
}
