package cli_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sluicelog/sluice/analyzer"
	"github.com/sluicelog/sluice/demo"
	"github.com/sluicelog/sluice/emitter"
	"github.com/sluicelog/sluice/proxy"
)

// The subcommands run as they do in the binary: this test binary re-runs itself
// with SLUICE_CLI_CHILD naming the command, and its stdout, stderr and exit status
// are the command's.
func TestMain(m *testing.M) {
	mains := map[string]func([]string) int{
		"distributor": proxy.Main, "analyzer": analyzer.Main, "emitter": emitter.Main, "demo": demo.Main,
	}
	if name := os.Getenv("SLUICE_CLI_CHILD"); name != "" {
		os.Exit(mains[name](os.Args[len(os.Args)-countArgs():]))
	}
	os.Exit(m.Run())
}

func countArgs() int {
	for i, a := range os.Args {
		if a == "--" {
			return len(os.Args) - i - 1
		}
	}
	return 0
}

func runCommand(t *testing.T, env []string, name string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(append(os.Environ(), "SLUICE_CLI_CHILD="+name), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// A bad flag value is one line naming the flag, the value and the problem, then
// a hint to -h; exit status 2. Not the usage.
func TestBadFlagIsOneLine(t *testing.T) {
	for _, tc := range []struct {
		command string
		args    []string
		want    string
	}{
		{"distributor", []string{"--port", "abc"}, `--port="abc": want a whole number`},
		{"distributor", []string{"--nope"}, "flag provided but not defined: -nope"},
		{"analyzer", []string{"-port", "x"}, `--port="x": `},
		{"analyzer", []string{"--dedup-window", "many"}, `--dedup-window="many": `},
		{"analyzer", []string{"--nope"}, "flag provided but not defined: -nope"},
		{"emitter", []string{"--rate", "fast"}, `--rate="fast": want a number`},
		{"emitter", []string{"--nope"}, "flag provided but not defined: -nope"},
		{"demo", []string{"--rate", "x"}, `--rate="x": want a number`},
		{"demo", []string{"--nope"}, "flag provided but not defined: -nope"},
	} {
		env := []string{"ANALYZERS=http://127.0.0.1:1=1"}
		code, out, errOut := runCommand(t, env, tc.command, tc.args...)
		prefix := "sluice " + tc.command + ": "
		hint := "; run 'sluice " + tc.command + " -h' for usage\n"
		if code != 2 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, prefix) ||
			!strings.Contains(errOut, tc.want) || !strings.HasSuffix(errOut, hint) {
			t.Errorf("%s %v: exit %d, stdout %q, stderr %q; want exit 2 and one line %q...%q", tc.command, tc.args, code, out, errOut, prefix+tc.want, hint)
		}
	}
}

// -h exits 0 and prints one help format naming each flag's environment variable.
func TestHelpNamesEveryVariable(t *testing.T) {
	for command, vars := range map[string][]string{
		"distributor": {"PORT", "ANALYZERS", "BATCH_LINGER_US", "LOG_FORMAT"},
		"analyzer":    {"PORT", "ANALYZER_ID", "METRICS_ADDR", "DEDUP_WINDOW", "ANALYZER_BATCH"},
		"emitter":     {"EMITTER_TARGET", "EMITTER_RATE", "EMITTER_TOKEN", "EMITTER_PROGRESS"},
		"demo":        {"SLUICE_DEMO_PORT", "SLUICE_DEMO_RATE", "SLUICE_DEMO_WEIGHTS", "SLUICE_DEMO_PLAIN"},
	} {
		code, out, errOut := runCommand(t, nil, command, "-h")
		if code != 0 || !strings.HasPrefix(out, "usage: sluice "+command+" [flags]\n") {
			t.Errorf("%s -h: exit %d, stdout %q, stderr %q; want 0 and the help on stdout", command, code, out, errOut)
			continue
		}
		flags := strings.Count(out, "\n  --")
		envs := strings.Count(out, "(env ") + strings.Count(out, "(command line only")
		if flags == 0 || flags != envs {
			t.Errorf("%s -h: %d flags, %d name a variable:\n%s", command, flags, envs, out)
		}
		for _, v := range vars {
			if !strings.Contains(out, "(env "+v) {
				t.Errorf("%s -h does not name %s:\n%s", command, v, out)
			}
		}
	}
}
