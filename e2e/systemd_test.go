package e2e

// Tests of deploy/systemd: the units are parsed and checked key by key, the
// settings they set (directly or through the distributor's EnvironmentFile) are
// loaded through the distributor's own configuration code, and
// systemd-analyze verify checks them when it is installed. No systemd runs here.

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/proxy"
)

// unitFile is a systemd unit: section → key → values in order (keys may repeat).
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, file string) unitFile {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		case strings.HasSuffix(line, `\`):
			t.Fatalf("%s:%d: continuation lines are not used here", file, n)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q is no key=value in a section", file, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// get is the last value of a key ("" when unset), as systemd takes it.
func (u unitFile) get(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// readEnvFile reads VAR=value lines; commented "#VAR=value" lines are returned
// apart, as the settings the file documents.
func readEnvFile(t *testing.T, file string) (set map[string]string, documented []string) {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	set = map[string]string{}
	for n, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if c, ok := strings.CutPrefix(line, "#"); ok {
			if k, _, ok := strings.Cut(c, "="); ok && k == strings.ToUpper(k) && !strings.ContainsAny(k, " ,") {
				documented = append(documented, k)
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s:%d: %q is no VAR=value", file, n+1, line)
		}
		set[k] = v
	}
	return set, documented
}

func durationSec(t *testing.T, what, v string) float64 {
	t.Helper()
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		return n
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", what, v, err)
	}
	return d.Seconds()
}

func TestSystemdDistributorUnit(t *testing.T) {
	systemTest(t)
	dir := filepath.Join("deploy", "systemd")
	u := parseUnit(t, filepath.Join(dir, "sluice.service"))
	svc := u["Service"]
	if svc == nil {
		t.Fatal("no [Service] section")
	}
	exec := strings.Fields(u.get("Service", "ExecStart"))
	if len(exec) < 2 || filepath.Base(exec[0]) != "sluice" || exec[1] != "distributor" {
		t.Errorf("ExecStart %v: want sluice distributor", exec)
	}
	for key, want := range map[string]string{
		"ExecReload":      "/bin/kill -HUP $MAINPID",
		"KillSignal":      "SIGTERM",
		"DynamicUser":     "yes",
		"ProtectSystem":   "strict",
		"ProtectHome":     "yes",
		"NoNewPrivileges": "yes",
		"StateDirectory":  "sluice",
	} {
		if got := u.get("Service", key); got != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	if u.get("Service", "RuntimeDirectory") == "" {
		t.Error("no RuntimeDirectory")
	}
	if n, err := strconv.Atoi(u.get("Service", "LimitNOFILE")); err != nil || n < 65536 {
		t.Errorf("LimitNOFILE=%q: want a number of at least 65536 (MAX_CONNS and upstream connections)", u.get("Service", "LimitNOFILE"))
	}
	if u.get("Install", "WantedBy") == "" {
		t.Error("no [Install] WantedBy: systemctl enable would do nothing")
	}

	// The environment: Environment= lines, then the EnvironmentFile the repository
	// ships for it; every name a distributor setting, and the whole loads.
	env := map[string]string{}
	for _, e := range svc["Environment"] {
		for _, kv := range strings.Fields(e) {
			k, v, _ := strings.Cut(strings.Trim(kv, `"`), "=")
			env[k] = v
		}
	}
	ef := strings.TrimPrefix(u.get("Service", "EnvironmentFile"), "-")
	if ef != "/etc/sluice/distributor.env" {
		t.Fatalf("EnvironmentFile=%q, want /etc/sluice/distributor.env", ef)
	}
	set, documented := readEnvFile(t, filepath.Join(dir, filepath.Base(ef)))
	for k, v := range set {
		env[k] = v
	}
	known := map[string]bool{}
	for _, s := range proxy.Settings() {
		known[s.Env] = true
	}
	for k := range env {
		if !known[k] {
			t.Errorf("%s: %s is no distributor setting", ef, k)
		}
	}
	for _, k := range documented {
		if !known[k] {
			t.Errorf("%s: the commented %s is no distributor setting", ef, k)
		}
	}
	cfg, err := proxy.LoadConfigLookup(exec[2:], func(k string) (string, bool) { v, ok := env[k]; return v, ok && v != "" }, nil)
	if err != nil {
		t.Fatalf("the unit's settings do not load: %v", err)
	}
	// The spool lives in the unit's StateDirectory, which the dynamic user may write.
	if want := "/var/lib/" + u.get("Service", "StateDirectory") + "/"; !strings.HasPrefix(cfg.SpoolDir, want) {
		t.Errorf("SPOOL_DIR=%q: want a directory under %s (StateDirectory)", cfg.SpoolDir, want)
	}

	// systemd's SIGKILL must come after the drain.
	stop := durationSec(t, "TimeoutStopSec", u.get("Service", "TimeoutStopSec"))
	if drain := cfg.ShutdownTimeout.Seconds(); stop <= drain {
		t.Errorf("TimeoutStopSec %gs is not more than SHUTDOWN_TIMEOUT_SEC %gs", stop, drain)
	}
	systemdVerify(t, filepath.Join(dir, "sluice.service"), sluiceForSystemd(t))
}

func TestSystemdAnalyzerUnit(t *testing.T) {
	systemTest(t)
	dir := filepath.Join("deploy", "systemd")
	u := parseUnit(t, filepath.Join(dir, "sluice-analyzer.service"))
	exec := strings.Fields(u.get("Service", "ExecStart"))
	if len(exec) < 2 || filepath.Base(exec[0]) != "sluice" || exec[1] != "analyzer" {
		t.Errorf("ExecStart %v: want sluice analyzer", exec)
	}
	for key, want := range map[string]string{"KillSignal": "SIGTERM", "DynamicUser": "yes", "ProtectSystem": "strict", "NoNewPrivileges": "yes"} {
		if got := u.get("Service", key); got != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	bin := sluiceForSystemd(t)
	names := envNames(t, bin, "analyzer")
	for _, e := range u["Service"]["Environment"] {
		for _, kv := range strings.Fields(e) {
			k, _, _ := strings.Cut(strings.Trim(kv, `"`), "=")
			if !names[k] {
				t.Errorf("Environment %s is no analyzer setting", k)
			}
		}
	}
	systemdVerify(t, filepath.Join(dir, "sluice-analyzer.service"), bin)
}

// sluiceForSystemd builds sluice into the test's temporary directory (the tests
// run from the repository root: TestMain).
func sluiceForSystemd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// systemdVerify runs systemd-analyze verify on a copy of the unit whose ExecStart
// is a freshly built sluice (verify wants the program to exist). Any line it prints
// about the unit fails the test: verify warns and ignores what it cannot parse.
func systemdVerify(t *testing.T, unit, bin string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not installed: units parsed by this test only")
		return
	}
	src, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), filepath.Base(unit))
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(src), "/usr/local/bin/sluice", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", copyPath).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, filepath.Base(unit)) {
			t.Errorf("systemd-analyze verify %s: %s", unit, line)
		}
	}
}
