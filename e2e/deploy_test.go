package e2e

// Tests of the Docker deployment that need no Docker engine: the Dockerfile's build
// is run as written and its result checked, and docker-compose.yml is checked
// against the code it configures and the files it mounts.

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluicelog/sluice/proxy"
)

// dockerInstr is one Dockerfile instruction with its continuation lines joined.
type dockerInstr struct {
	line int
	op   string // upper case: FROM, RUN, COPY, ...
	args string
}

// dockerStage is one FROM and what follows it.
type dockerStage struct {
	image, name string
	instrs      []dockerInstr
}

func (s *dockerStage) all(op string) []dockerInstr {
	var out []dockerInstr
	for _, in := range s.instrs {
		if in.op == op {
			out = append(out, in)
		}
	}
	return out
}

func (s *dockerStage) last(op string) (dockerInstr, bool) {
	all := s.all(op)
	if len(all) == 0 {
		return dockerInstr{}, false
	}
	return all[len(all)-1], true
}

// parseDockerfile splits a Dockerfile into stages. It understands what a
// Dockerfile of this kind uses: comments, parser directives, backslash
// continuations and "FROM image [AS name]".
func parseDockerfile(src string) ([]dockerStage, error) {
	var stages []dockerStage
	var cur strings.Builder
	start := 0
	flush := func() error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return nil
		}
		op, args, _ := strings.Cut(text, " ")
		in := dockerInstr{line: start, op: strings.ToUpper(op), args: strings.TrimSpace(args)}
		if in.op == "FROM" {
			f := strings.Fields(in.args)
			st := dockerStage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				return fmt.Errorf("line %d: FROM %q: want FROM image [AS name]", in.line, in.args)
			}
			stages = append(stages, st)
			return nil
		}
		if len(stages) == 0 {
			return fmt.Errorf("line %d: %s before FROM", in.line, in.op)
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // comments and parser directives
		}
		if cur.Len() == 0 {
			if trimmed == "" {
				continue
			}
			start = n
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSpace(strings.TrimSuffix(trimmed, `\`)) + " ")
			continue
		}
		cur.WriteString(trimmed)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("line %d: continuation at end of file", start)
	}
	return stages, nil
}

// dockerImage is what the Dockerfile's final stage holds, built by running the
// Dockerfile's own build line.
type dockerImage struct {
	binary     string   // the built file, on this machine
	entrypoint []string // ENTRYPOINT, exec form
	cmd        []string // CMD, exec form
	user       string
	runLine    string // the RUN line as written
	err        error
}

var (
	dockerOnce  sync.Once
	dockerBuilt dockerImage
)

// buildDockerImage parses the Dockerfile, checks its shape and runs the build
// stage's `go build` line in a copy of the build context (this directory filtered
// by .dockerignore), as `docker build` would. Every test that needs the image's
// binary shares one build.
func buildDockerImage(t *testing.T) dockerImage {
	t.Helper()
	dockerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-docker-")
		if err != nil {
			dockerBuilt.err = err
			return
		}
		dockerDir = dir // removed by TestMain once every test is done with it
		dockerBuilt = buildDockerfile(t, dir)
	})
	if dockerBuilt.err != nil {
		t.Fatal(dockerBuilt.err)
	}
	return dockerBuilt
}

func buildDockerfile(t *testing.T, tmp string) dockerImage {
	fail := func(format string, a ...any) dockerImage { return dockerImage{err: fmt.Errorf(format, a...)} }
	src, err := os.ReadFile("Dockerfile")
	if err != nil {
		return fail("%v", err)
	}
	stages, err := parseDockerfile(string(src))
	if err != nil {
		return fail("Dockerfile: %v", err)
	}
	if len(stages) < 2 {
		return fail("Dockerfile has %d stage(s), want a multi-stage build (a Go builder, then a small runtime image)", len(stages))
	}
	final := &stages[len(stages)-1]

	// The runtime stage copies one file out of a builder stage.
	copies := final.all("COPY")
	if len(copies) != 1 {
		return fail("final stage has %d COPY instructions, want exactly one (the binary from the builder)", len(copies))
	}
	f := strings.Fields(copies[0].args)
	if len(f) != 3 || !strings.HasPrefix(f[0], "--from=") {
		return fail("Dockerfile line %d: COPY %s: want COPY --from=<builder> <binary> <destination>", copies[0].line, copies[0].args)
	}
	from, binPath, dest := strings.TrimPrefix(f[0], "--from="), f[1], f[2]
	var build *dockerStage
	for i := range stages[:len(stages)-1] {
		if stages[i].name == from {
			build = &stages[i]
		}
	}
	if build == nil {
		return fail("COPY --from=%s: no stage named %s", from, from)
	}

	// The builder's Go is the one go.mod asks for.
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		return fail("%v", err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if goVer == nil {
		return fail("go.mod has no go directive")
	}
	if !regexp.MustCompile(`^golang:` + regexp.QuoteMeta(string(goVer[1])) + `([.-]|$)`).MatchString(build.image) {
		return fail("builder image %s: want golang:%s, the go directive of go.mod", build.image, goVer[1])
	}

	// The build runs over the whole context in WORKDIR, with the environment the
	// stage sets, and writes the file the runtime stage copies.
	workdir, ok := build.last("WORKDIR")
	if !ok {
		return fail("builder stage has no WORKDIR")
	}
	copiesAll := false
	for _, c := range build.all("COPY") {
		if f := strings.Fields(c.args); len(f) == 2 && f[0] == "." && (f[1] == "." || path.Clean(f[1]) == path.Clean(workdir.args)) {
			copiesAll = true
		}
	}
	if !copiesAll {
		return fail("builder stage does not COPY . . (the whole context into WORKDIR)")
	}
	var runLine string
	for _, r := range build.all("RUN") {
		if strings.Contains(r.args, "go build") {
			if runLine != "" {
				return fail("builder stage has two RUN lines with go build")
			}
			runLine = r.args
		}
	}
	if runLine == "" {
		return fail("builder stage has no RUN ... go build")
	}
	if !strings.Contains(runLine, binPath) {
		return fail("RUN %s does not write %s, the file the runtime stage copies", runLine, binPath)
	}
	env := []string{}
	for _, kv := range os.Environ() {
		// The golang image sets no GOFLAGS; this machine's must not change the build.
		if !strings.HasPrefix(kv, "GOFLAGS=") {
			env = append(env, kv)
		}
	}
	for _, e := range build.all("ENV") {
		k, v, ok := strings.Cut(e.args, "=")
		if !ok || strings.ContainsAny(v, " \"'$") {
			return fail("Dockerfile line %d: ENV %s: the test understands ENV KEY=value only", e.line, e.args)
		}
		env = append(env, k+"="+v)
	}

	ctxDir := filepath.Join(tmp, "context")
	if err := copyBuildContext(".", ctxDir); err != nil {
		return fail("build context: %v", err)
	}
	out := filepath.Join(tmp, "out", "sluice")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fail("%v", err)
	}
	cmdLine := strings.ReplaceAll(runLine, binPath, out)
	// RUN's shell form is /bin/sh -c.
	cmd := exec.Command("/bin/sh", "-c", cmdLine)
	cmd.Dir = ctxDir
	cmd.Env = env
	started := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fail("RUN %s: %v\n%s", runLine, err, b)
	}
	t.Logf("ran the Dockerfile's build (%s) in %s", runLine, time.Since(started).Round(time.Millisecond))

	img := dockerImage{binary: out, runLine: runLine}
	if u, ok := final.last("USER"); ok {
		img.user = u.args
	}
	e, ok := final.last("ENTRYPOINT")
	if !ok {
		return fail("final stage has no ENTRYPOINT")
	}
	if err := json.Unmarshal([]byte(e.args), &img.entrypoint); err != nil || len(img.entrypoint) != 1 || img.entrypoint[0] != dest {
		return fail("ENTRYPOINT %s: want [%q], the copied binary", e.args, dest)
	}
	if c, ok := final.last("CMD"); ok {
		if err := json.Unmarshal([]byte(c.args), &img.cmd); err != nil {
			return fail("CMD %s: want the exec form: %v", c.args, err)
		}
	}
	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") && final.image != "scratch" {
		return fail("runtime image %s: want gcr.io/distroless/static* or scratch (a static binary needs nothing else)", final.image)
	}
	return img
}

// dockerignore is a .dockerignore's patterns, matched as Docker does for the
// forms used here: paths relative to the context root, filepath.Match globs, a
// leading "**/" for any depth, and a match on a directory covering what is in it.
type dockerignore []string

func readDockerignore(file string) (dockerignore, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var ig dockerignore
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			return nil, fmt.Errorf("%s: exceptions (%s) are not understood by this test", file, l)
		}
		ig = append(ig, path.Clean(strings.TrimPrefix(l, "/")))
	}
	return ig, nil
}

func (ig dockerignore) excluded(rel string) bool {
	for _, p := range ig {
		if rest, ok := strings.CutPrefix(p, "**/"); ok {
			if m, _ := path.Match(rest, path.Base(rel)); m {
				return true
			}
			continue
		}
		if m, _ := path.Match(p, rel); m {
			return true
		}
	}
	return false
}

func copyBuildContext(root, dst string) error {
	ig, err := readDockerignore(filepath.Join(root, ".dockerignore"))
	if err != nil {
		return err
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return os.MkdirAll(dst, 0o755)
		}
		if ig.excluded(filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			return copyFile(p, target)
		}
		return nil // sockets, symlinks: docker would copy links, the build needs none
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func TestDockerignore(t *testing.T) {
	ig, err := readDockerignore(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]bool{
		".git": true, "bin": true, "bench/out": true, "emitter.test": true, "proxy/proxy.test": true, "cpu.prof": true,
		"go.mod": false, "go.sum": false, "main.go": false, "proxy/server.go": false, "bench": false, "deploy/prometheus/prometheus.yml": false,
	} {
		if got := ig.excluded(rel); got != want {
			t.Errorf(".dockerignore excludes %s: %v, want %v", rel, got, want)
		}
	}
}

// TestDockerfileBuildsStaticBinary runs the Dockerfile's build line as written and
// checks that the image's one file is a static, stripped Linux binary built with
// CGO off, that runs and has the default command the Dockerfile gives it.
func TestDockerfileBuildsStaticBinary(t *testing.T) {
	systemTest(t)
	img := buildDockerImage(t)
	f, err := elf.Open(img.binary)
	if err != nil {
		t.Fatalf("built file is not ELF: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary has a PT_INTERP header: it needs a dynamic loader, which distroless/static and scratch lack")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("binary links shared libraries %v (%v)", libs, err)
	}
	if f.Section(".symtab") != nil || f.Section(".debug_info") != nil {
		t.Error("binary has a symbol table or DWARF: -ldflags=\"-s -w\" should strip them")
	}
	bi, err := buildinfo.ReadFile(img.binary)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" || settings["GOOS"] != "linux" {
		t.Errorf("build settings %v: want CGO_ENABLED=0, -trimpath=true, GOOS=linux", settings)
	}
	if bi.Path != "github.com/sluicelog/sluice" {
		t.Errorf("built %s, want the sluice command", bi.Path)
	}
	if st, err := os.Stat(img.binary); err == nil {
		t.Logf("image binary: %.1f MB", float64(st.Size())/(1<<20))
	}

	// Not root: distroless's nonroot user or a numeric id other than 0.
	user, _, _ := strings.Cut(img.user, ":")
	if user == "" || user == "root" || user == "0" {
		t.Errorf("final stage USER %q: want a non-root user", img.user)
	}

	// The image's default command, and its help, run.
	if len(img.cmd) == 0 || img.cmd[0] != "distributor" {
		t.Errorf("CMD %q: want [\"distributor\"]", img.cmd)
	}
	if out, err := exec.Command(img.binary, append(slices.Clone(img.cmd), "-h")...).CombinedOutput(); err != nil || !strings.Contains(string(out), "ANALYZERS") {
		t.Errorf("%s %s -h: %v\n%s", img.entrypoint[0], strings.Join(img.cmd, " "), err, out)
	}
}

// composeFile is the part of docker-compose.yml the stack depends on, in the forms
// this repository's file uses (environment as a map, lists elsewhere).
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image           string            `yaml:"image"`
	Build           composeBuild      `yaml:"build"`
	Command         []string          `yaml:"command"`
	Environment     map[string]string `yaml:"environment"`
	Ports           []string          `yaml:"ports"`
	Volumes         []string          `yaml:"volumes"`
	DependsOn       []string          `yaml:"depends_on"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// published returns the container ports a service publishes on the same host port.
func (s composeService) published(t *testing.T, name string) []int {
	t.Helper()
	var out []int
	for _, p := range s.Ports {
		host, ctr, ok := strings.Cut(p, ":")
		if !ok || host != ctr {
			t.Errorf("%s: port %q: want \"N:N\" (the seed's ports on the host)", name, p)
			continue
		}
		n, err := strconv.Atoi(ctr)
		if err != nil {
			t.Errorf("%s: port %q", name, p)
			continue
		}
		out = append(out, n)
	}
	return out
}

// mounts maps each container path a service mounts to its host path.
func (s composeService) mounts(t *testing.T, name string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || !strings.HasPrefix(parts[0], "./") {
			t.Errorf("%s: volume %q: want ./host/path:/container/path[:ro]", name, v)
			continue
		}
		m[parts[1]] = parts[0]
	}
	return m
}

// envNames lists the environment variables a sluice subcommand reads, from its
// own -h output: "(env NAME, ...)" for the distributor, "[$NAME, ...]" for the
// analyzer.
func envNames(t *testing.T, bin string, sub string) map[string]bool {
	t.Helper()
	out, _ := exec.Command(bin, sub, "-h").CombinedOutput() // the analyzer's -h exits 2
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?:\(env |\[\$)([A-Z][A-Z0-9_]*)`).FindAllStringSubmatch(string(out), -1) {
		names[m[1]] = true
	}
	if len(names) == 0 {
		t.Fatalf("sluice %s -h names no environment variables:\n%s", sub, out)
	}
	return names
}

// TestComposeStack checks docker-compose.yml: the seed's services and ports, the
// weights, every setting against the program that reads it (with the binary the
// Dockerfile builds), start order, and every file it mounts against the file that
// refers to the mount.
func TestComposeStack(t *testing.T) {
	systemTest(t)
	c := loadCompose(t)
	img := buildDockerImage(t)

	want := []string{"distributor", "analyzer-1", "analyzer-2", "analyzer-3", "emitter", "prometheus", "grafana"}
	var got []string
	for name := range c.Services {
		got = append(got, name)
	}
	slices.Sort(got)
	sortedWant := slices.Sorted(slices.Values(want))
	if !slices.Equal(got, sortedWant) {
		t.Fatalf("services %v, want %v", got, sortedWant)
	}
	for name, s := range c.Services {
		for _, dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			}
		}
	}

	// The sluice services are built from the Dockerfile and name a subcommand.
	for _, name := range want[:5] {
		s := c.Services[name]
		if s.Build.Context != "." || (s.Build.Dockerfile != "" && s.Build.Dockerfile != "Dockerfile") {
			t.Errorf("%s: build %+v, want the Dockerfile at the root", name, s.Build)
		}
		if len(s.Command) == 0 {
			t.Errorf("%s: no command", name)
		}
	}

	// The distributor: the seed's ports, analyzers by service name with the seed's
	// weights, every variable one it reads and accepted by its configuration loader.
	dist := c.Services["distributor"]
	if !slices.Equal(dist.Command, []string{"distributor"}) {
		t.Errorf("distributor command %q", dist.Command)
	}
	distVars := envNames(t, img.binary, "distributor")
	for k := range dist.Environment {
		if !distVars[k] {
			t.Errorf("distributor: %s is not a variable the distributor reads", k)
		}
	}
	cfg, err := proxy.LoadConfig(nil, func(k string) string { return dist.Environment[k] }, io.Discard)
	if err != nil {
		t.Fatalf("distributor environment: %v", err)
	}
	// The image's binary agrees: it loads this environment (and stops at -h).
	run := exec.Command(img.binary, "distributor", "-h")
	run.Env = nil
	for k, v := range dist.Environment {
		run.Env = append(run.Env, k+"="+v)
	}
	if out, err := run.CombinedOutput(); err != nil {
		t.Errorf("image binary rejects the distributor's environment: %v\n%s", err, out)
	}
	_, metricsPort, _ := net.SplitHostPort(cfg.MetricsAddr)
	if cfg.Port != 8080 || metricsPort != "9100" {
		t.Errorf("distributor PORT %d, METRICS_ADDR %s: want the seed's 8080 and :9100", cfg.Port, cfg.MetricsAddr)
	}
	if ports := dist.published(t, "distributor"); !slices.Contains(ports, 8080) || !slices.Contains(ports, 9100) {
		t.Errorf("distributor publishes %v, want 8080 and 9100", ports)
	}
	weights := map[string]float64{"analyzer-1": 0.5, "analyzer-2": 0.3, "analyzer-3": 0.2}
	if len(cfg.Analyzers) != len(weights) {
		t.Fatalf("ANALYZERS has %d analyzers, want 3", len(cfg.Analyzers))
	}
	analyzerVars := envNames(t, img.binary, "analyzer")
	for _, a := range cfg.Analyzers {
		w, ok := weights[a.Name]
		if !ok || abs(a.Weight-w) > 1e-9 {
			t.Errorf("ANALYZERS: %s weight %v, want one of %v by name", a.Name, a.Weight, weights)
		}
		u, _ := url.Parse(a.URL)
		svc, ok := c.Services[u.Hostname()]
		if !ok {
			t.Errorf("ANALYZERS: %s is not a service", u.Hostname())
			continue
		}
		if !slices.Equal(svc.Command, []string{"analyzer"}) || svc.Environment["PORT"] != u.Port() || svc.Environment["ANALYZER_ID"] != u.Hostname() {
			t.Errorf("service %s: command %q, PORT %q, ANALYZER_ID %q: want [analyzer], %s, %s",
				u.Hostname(), svc.Command, svc.Environment["PORT"], svc.Environment["ANALYZER_ID"], u.Port(), u.Hostname())
		}
		for k := range svc.Environment {
			if !analyzerVars[k] {
				t.Errorf("%s: %s is not a variable the analyzer reads", u.Hostname(), k)
			}
		}
		if !slices.Contains(dist.DependsOn, u.Hostname()) {
			t.Errorf("distributor does not depend on %s", u.Hostname())
		}
	}
	if grace, err := time.ParseDuration(dist.StopGracePeriod); err != nil || grace <= cfg.ShutdownTimeout {
		t.Errorf("distributor stop_grace_period %q: want longer than SHUTDOWN_TIMEOUT_SEC (%s), or docker kills it mid-drain", dist.StopGracePeriod, cfg.ShutdownTimeout)
	}

	// The emitter: the seed's load against the distributor service, flags the
	// image's binary accepts (it parses them all, then stops at -h).
	em := c.Services["emitter"]
	if len(em.Command) == 0 || em.Command[0] != "emitter" {
		t.Fatalf("emitter command %q", em.Command)
	}
	flags := map[string]string{}
	for i := 1; i+1 < len(em.Command); i += 2 {
		flags[em.Command[i]] = em.Command[i+1]
	}
	if flags["--target"] != "http://distributor:"+strconv.Itoa(cfg.Port) || flags["--rate"] != "5000" || flags["--packet-size"] != "5" {
		t.Errorf("emitter command %q: want --target http://distributor:%d --rate 5000 --packet-size 5", em.Command, cfg.Port)
	}
	if out, err := exec.Command(img.binary, append(slices.Clone(em.Command), "-h")...).CombinedOutput(); err != nil {
		t.Errorf("image binary rejects the emitter's command %q: %v\n%s", em.Command, err, out)
	}
	if !slices.Contains(em.DependsOn, "distributor") {
		t.Error("emitter does not depend on distributor")
	}

	// Prometheus: the seed's port, its config mounted where the image reads it,
	// scraping services on the ports they serve metrics on.
	prom := c.Services["prometheus"]
	if ports := prom.published(t, "prometheus"); !slices.Equal(ports, []int{9090}) {
		t.Errorf("prometheus publishes %v, want 9090", ports)
	}
	pm := prom.mounts(t, "prometheus")
	promConfig := pm["/etc/prometheus/prometheus.yml"]
	if promConfig == "" {
		t.Fatalf("prometheus mounts %v, want a config at /etc/prometheus/prometheus.yml", pm)
	}
	servesMetrics := map[string]string{"distributor:" + metricsPort: "distributor"}
	for _, a := range cfg.Analyzers {
		servesMetrics[a.Addr] = a.Name // the analyzer serves /metrics on its ingest port
	}
	for _, target := range promTargets(t, promConfig) {
		if servesMetrics[target] == "" {
			t.Errorf("%s scrapes %s, which is no service's metrics address (%v)", promConfig, target, servesMetrics)
		}
	}
	if !slices.Contains(prom.DependsOn, "distributor") {
		t.Error("prometheus does not depend on distributor")
	}

	// Grafana: the seed's port and login, its provisioning mounted where Grafana
	// reads it, and the dashboards where the provider looks.
	gr := c.Services["grafana"]
	if ports := gr.published(t, "grafana"); !slices.Equal(ports, []int{3000}) {
		t.Errorf("grafana publishes %v, want 3000", ports)
	}
	if gr.Environment["GF_SECURITY_ADMIN_USER"] != "admin" || gr.Environment["GF_SECURITY_ADMIN_PASSWORD"] != "admin" {
		t.Errorf("grafana login %q/%q, want admin/admin", gr.Environment["GF_SECURITY_ADMIN_USER"], gr.Environment["GF_SECURITY_ADMIN_PASSWORD"])
	}
	gm := gr.mounts(t, "grafana")
	prov := gm["/etc/grafana/provisioning"]
	if prov == "" {
		t.Fatalf("grafana mounts %v, want provisioning at /etc/grafana/provisioning", gm)
	}
	for _, p := range grafanaProviderPaths(t, prov) {
		host := gm[p]
		if host == "" {
			t.Errorf("a dashboard provider under %s reads %s, which grafana does not mount", prov, p)
			continue
		}
		if js, _ := filepath.Glob(filepath.Join(host, "*.json")); len(js) == 0 {
			t.Errorf("%s (mounted at %s) holds no dashboard", host, p)
		}
	}
	for _, u := range grafanaDatasourceURLs(t, prov) {
		pu, err := url.Parse(u)
		if err != nil || pu.Hostname() != "prometheus" || !slices.Contains(prom.published(t, "prometheus"), atoi(pu.Port())) {
			t.Errorf("grafana datasource %s: want the prometheus service on its port", u)
		}
	}
	if !slices.Contains(gr.DependsOn, "prometheus") {
		t.Error("grafana does not depend on prometheus")
	}

	// Every mounted path exists.
	for name, s := range c.Services {
		for _, host := range s.mounts(t, name) {
			if _, err := os.Stat(host); err != nil {
				t.Errorf("%s mounts %s: %v", name, host, err)
			}
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// promTargets lists the static targets of a Prometheus configuration.
func promTargets(t *testing.T, file string) []string {
	t.Helper()
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, file, &cfg)
	var out []string
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			out = append(out, st.Targets...)
		}
	}
	if len(out) == 0 {
		t.Errorf("%s has no static scrape targets", file)
	}
	return out
}

// grafanaProviderPaths lists the container paths the dashboard providers read.
func grafanaProviderPaths(t *testing.T, prov string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(prov, "dashboards", "*.y*ml"))
	var out []string
	for _, f := range files {
		var cfg struct {
			Providers []struct {
				Options struct {
					Path string `yaml:"path"`
				} `yaml:"options"`
			} `yaml:"providers"`
		}
		readYAML(t, f, &cfg)
		for _, p := range cfg.Providers {
			out = append(out, p.Options.Path)
		}
	}
	if len(out) == 0 {
		t.Errorf("no dashboard provider under %s/dashboards", prov)
	}
	return out
}

// grafanaDatasourceURLs lists the provisioned datasources' URLs.
func grafanaDatasourceURLs(t *testing.T, prov string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(prov, "datasources", "*.y*ml"))
	var out []string
	for _, f := range files {
		var cfg struct {
			Datasources []struct {
				URL string `yaml:"url"`
			} `yaml:"datasources"`
		}
		readYAML(t, f, &cfg)
		for _, d := range cfg.Datasources {
			out = append(out, d.URL)
		}
	}
	if len(out) == 0 {
		t.Errorf("no datasource under %s/datasources", prov)
	}
	return out
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func TestParseDockerfile(t *testing.T) {
	stages, err := parseDockerfile("# syntax=docker/dockerfile:1\nFROM golang:1.26 AS build\nWORKDIR /src\nRUN a \\\n  b\n\nFROM scratch\nCOPY --from=build /x /x\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) != 2 || stages[0].name != "build" || stages[1].image != "scratch" {
		t.Fatalf("stages %+v", stages)
	}
	if r, _ := stages[0].last("RUN"); r.args != "a b" || r.line != 4 {
		t.Errorf("continued RUN = %+v, want args \"a b\" from line 4", r)
	}
	if _, err := parseDockerfile("RUN x\n"); err == nil {
		t.Error("instruction before FROM accepted")
	}
}

// dockerDir holds the copied build context and the built binary, shared by the
// tests of this package; TestMain removes it.
var dockerDir string
