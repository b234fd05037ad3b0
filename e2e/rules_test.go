package e2e

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestRecordingRules checks deploy/prometheus/rules.yml with promtool (check rules)
// and runs its unit test (test rules: two replicas, three analyzers, the global
// share summed over replicas). deploy/kubernetes's test checks that the
// PrometheusRule carries the same group.
func TestRecordingRules(t *testing.T) {
	systemTest(t)
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found in PATH: it ships with Debian's prometheus package (make deps installs it)")
	}
	dir := filepath.Join("deploy", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", filepath.Join(dir, "rules.yml")},
		{"test", "rules", filepath.Join(dir, "rules_test.yml")},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
