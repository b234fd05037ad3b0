package kubernetes

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/sluicelog/sluice/proxy"
)

// object is one YAML document of a manifest file.
type object struct {
	file       string
	apiVersion string
	kind       string
	name       string
	json       []byte
}

func (o object) String() string { return fmt.Sprintf("%s: %s %s", o.file, o.kind, o.name) }

// strict decodes JSON into v, refusing fields v does not have.
func strict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// splitDocs splits a YAML stream on "---" lines.
func splitDocs(src []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		if strings.TrimRight(sc.Text(), " ") == "---" {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.Write(sc.Bytes())
		cur.WriteByte('\n')
	}
	return append(docs, cur.Bytes())
}

// kustomization is what this directory's kustomization.yaml may hold.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// manifests holds every object of the files the kustomization lists, decoded.
type manifests struct {
	kust     kustomization
	objects  []object
	deploys  map[string]*appsv1.Deployment
	services map[string]*corev1.Service
	pdbs     []*policyv1.PodDisruptionBudget
	generic  map[string]*unstructured.Unstructured // kind/name: CRD objects
}

func load(t *testing.T) *manifests {
	t.Helper()
	src, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{deploys: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{}, generic: map[string]*unstructured.Unstructured{}}
	js, err := yaml.YAMLToJSONStrict(src)
	if err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if err := strict(js, &m.kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if m.kust.APIVersion != "kustomize.config.k8s.io/v1beta1" || m.kust.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml: %s %s", m.kust.APIVersion, m.kust.Kind)
	}
	for _, file := range m.kust.Resources {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("kustomization.yaml lists %s: %v", file, err)
		}
		for i, doc := range splitDocs(src) {
			js, err := yaml.YAMLToJSONStrict(doc)
			if err != nil {
				t.Fatalf("%s document %d: %v", file, i+1, err)
			}
			if string(js) == "null" {
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(js, &head); err != nil {
				t.Fatalf("%s document %d: %v", file, i+1, err)
			}
			o := object{file, head.APIVersion, head.Kind, head.Metadata.Name, js}
			if o.name == "" {
				t.Errorf("%s document %d: no metadata.name", file, i+1)
			}
			m.objects = append(m.objects, o)
			if err := m.decode(o); err != nil {
				t.Errorf("%v: %v", o, err)
			}
		}
	}
	return m
}

// decode decodes o strictly into its k8s.io/api type; CRD objects are kept
// generic (tested field by field below).
func (m *manifests) decode(o object) error {
	var err error
	switch o.apiVersion + " " + o.kind {
	case "apps/v1 Deployment":
		m.deploys[o.name], err = decodeAs[appsv1.Deployment](o.json)
	case "v1 Service":
		m.services[o.name], err = decodeAs[corev1.Service](o.json)
	case "policy/v1 PodDisruptionBudget":
		var p *policyv1.PodDisruptionBudget
		p, err = decodeAs[policyv1.PodDisruptionBudget](o.json)
		m.pdbs = append(m.pdbs, p)
	case "keda.sh/v1alpha1 ScaledObject", "monitoring.coreos.com/v1 ServiceMonitor", "monitoring.coreos.com/v1 PrometheusRule":
		var u unstructured.Unstructured
		if err := u.UnmarshalJSON(o.json); err != nil {
			return err
		}
		m.generic[o.kind+"/"+o.name] = &u
	default:
		return fmt.Errorf("no test knows %s %s: add it to decode", o.apiVersion, o.kind)
	}
	return err
}

func decodeAs[T any](js []byte) (*T, error) {
	var v T
	return &v, strict(js, &v)
}

func (m *manifests) deploy(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	d := m.deploys[name]
	if d == nil {
		t.Fatalf("no Deployment %s", name)
	}
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("Deployment %s: %d containers, want 1", name, len(d.Spec.Template.Spec.Containers))
	}
	return d
}

func (m *manifests) crd(t *testing.T, kindName string) *unstructured.Unstructured {
	t.Helper()
	u := m.generic[kindName]
	if u == nil {
		t.Fatalf("no %s", kindName)
	}
	return u
}

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("manifest checks skipped under -short")
	}
}

// TestKustomizationListsEveryManifest: every YAML file here is a resource of the
// kustomization (or the kustomization), and every resource exists (load).
func TestKustomizationListsEveryManifest(t *testing.T) {
	skipShort(t)
	m := load(t)
	files, _ := filepath.Glob("*.yaml")
	more, _ := filepath.Glob("*.yml")
	for _, f := range append(files, more...) {
		if f != "kustomization.yaml" && !slices.Contains(m.kust.Resources, f) {
			t.Errorf("%s is not listed in kustomization.yaml's resources", f)
		}
	}
	seen := map[string]bool{}
	for _, o := range m.objects {
		k := o.kind + "/" + o.name
		if seen[k] {
			t.Errorf("%v: defined twice", o)
		}
		seen[k] = true
	}
	for _, want := range []string{"Deployment/sluice-distributor", "Deployment/sluice-analyzer", "Service/sluice-distributor",
		"Service/sluice-analyzer", "PodDisruptionBudget/sluice-distributor", "ScaledObject/sluice-analyzer",
		"ServiceMonitor/sluice-distributor", "PrometheusRule/sluice"} {
		if !seen[want] {
			t.Errorf("no %s", want)
		}
	}
}

// TestSelectorsAndPorts: Services, the PDB and the Deployments' own selectors
// select the pods they are meant to; every port a Service or probe names is a
// container port.
func TestSelectorsAndPorts(t *testing.T) {
	skipShort(t)
	m := load(t)
	for name, d := range m.deploys {
		sel, err := labelSelector(d.Spec.Selector)
		if err != nil {
			t.Fatalf("Deployment %s: %v", name, err)
		}
		if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("Deployment %s: selector does not match its pod template's labels", name)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
				if p == nil {
					t.Errorf("Deployment %s: container %s lacks a readiness or liveness probe", name, c.Name)
					continue
				}
				if p.HTTPGet == nil {
					t.Errorf("Deployment %s: container %s: probe is not httpGet", name, c.Name)
					continue
				}
				if !hasPort(c, p.HTTPGet.Port) {
					t.Errorf("Deployment %s: probe %s port %s is no container port", name, p.HTTPGet.Path, p.HTTPGet.Port.String())
				}
			}
		}
	}
	for name, s := range m.services {
		d := m.deploys[name]
		if d == nil {
			t.Errorf("Service %s: no Deployment of the same name", name)
			continue
		}
		if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("Service %s: selector %v does not match Deployment %s's pods %v", name, s.Spec.Selector, name, d.Spec.Template.Labels)
		}
		for _, p := range s.Spec.Ports {
			if !hasPort(d.Spec.Template.Spec.Containers[0], p.TargetPort) {
				t.Errorf("Service %s: targetPort %s is no container port", name, p.TargetPort.String())
			}
		}
	}
	if len(m.pdbs) == 0 {
		t.Fatal("no PodDisruptionBudget")
	}
	for _, p := range m.pdbs {
		d := m.deploy(t, p.Name)
		sel, err := labelSelector(p.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("PodDisruptionBudget %s does not select Deployment %s's pods (%v)", p.Name, d.Name, err)
		}
		if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() < 1 || d.Spec.Replicas == nil ||
			int(*d.Spec.Replicas)-p.Spec.MaxUnavailable.IntValue() < 1 {
			t.Errorf("PodDisruptionBudget %s: maxUnavailable %v against %v replicas: want at least one pod up and one allowed to go", p.Name, p.Spec.MaxUnavailable, d.Spec.Replicas)
		}
	}
	if s := m.services["sluice-analyzer"]; s == nil || s.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Error("Service sluice-analyzer is not headless (clusterIP: None): ANALYZERS_DNS needs one A record per pod")
	}
}

func hasPort(c corev1.Container, p intstr.IntOrString) bool {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && p.StrVal == cp.Name) || (p.Type == intstr.Int && p.IntVal == cp.ContainerPort) {
			return true
		}
	}
	return false
}

func envOf(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return env
}

// TestDistributor: the distributor's probes, shutdown budget, resources, spread,
// environment and secret, against sluice's settings.
func TestDistributor(t *testing.T) {
	skipShort(t)
	m := load(t)
	d := m.deploy(t, "sluice-distributor")
	checkDistributorPod(t, m, d.Spec.Replicas, d.Spec.Template)
}

// checkDistributorPod is TestDistributor's checks of a distributor's pods (the
// Deployment's, or the spool variant's StatefulSet's) against the base m.
func checkDistributorPod(t *testing.T, m *manifests, replicas *int32, tmpl corev1.PodTemplateSpec) {
	t.Helper()
	spec := tmpl.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	env := envOf(c)

	if replicas == nil || *replicas < 2 {
		t.Errorf("replicas %v, want >= 2", replicas)
	}
	ingestPort := ""
	for _, p := range c.Ports {
		if p.Name == "ingest" {
			ingestPort = strconv.Itoa(int(p.ContainerPort))
		}
	}
	if port := cmpOr(env["PORT"], "8080"); port != ingestPort {
		t.Errorf("PORT %s is not the ingest container port %s", port, ingestPort)
	}
	if _, port, err := net.SplitHostPort(cmpOr(env["METRICS_ADDR"], ":9100")); err != nil || !hasPort(c, intstr.Parse(port)) {
		t.Errorf("METRICS_ADDR %q: port is no container port (%v)", env["METRICS_ADDR"], err)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port != intstr.FromString("ingest") {
		t.Errorf("readiness probe: want GET /readyz on port ingest")
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/livez" || p.HTTPGet.Port != intstr.FromString("ingest") {
		t.Errorf("liveness probe: want GET /livez on port ingest")
	}

	// Shutdown: SIGKILL must not come before preStop + the drain + a readiness period.
	shutdown, err := strconv.Atoi(cmpOr(env["SHUTDOWN_TIMEOUT_SEC"], defaultOf(t, "SHUTDOWN_TIMEOUT_SEC")))
	if err != nil {
		t.Fatal(err)
	}
	preStop := 0
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds < 1 {
		t.Error("no preStop sleep: the pod would stop accepting before its endpoint removal propagated")
	} else {
		preStop = int(c.Lifecycle.PreStop.Sleep.Seconds)
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Exec != nil {
		t.Error("preStop exec: the distroless image has no shell or sleep")
	}
	need := preStop + shutdown
	if c.ReadinessProbe != nil {
		need += int(c.ReadinessProbe.PeriodSeconds) * int(max(c.ReadinessProbe.FailureThreshold, 1))
	}
	if c.LivenessProbe != nil {
		need += int(c.LivenessProbe.PeriodSeconds)
	}
	grace := int64(30) // Kubernetes' default
	if g := spec.TerminationGracePeriodSeconds; g != nil {
		grace = *g
	}
	if int(grace) <= need {
		t.Errorf("terminationGracePeriodSeconds %d, want > preStop %d + SHUTDOWN_TIMEOUT_SEC %d + probe periods = %d", grace, preStop, shutdown, need)
	}

	// Resources, and GOMEMLIMIT at about 90 % of the memory limit.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("no %s limit", r)
		}
	}
	limit := c.Resources.Limits[corev1.ResourceMemory]
	gml, err := parseGoMemLimit(env["GOMEMLIMIT"])
	if err != nil {
		t.Errorf("GOMEMLIMIT: %v", err)
	} else if ratio := float64(gml) / float64(limit.Value()); ratio < 0.8 || ratio > 0.95 {
		t.Errorf("GOMEMLIMIT %s is %.0f %% of the memory limit %s, want 80-95 %%", env["GOMEMLIMIT"], ratio*100, limit.String())
	}

	// The packet-memory bound (analyzers x PER_ANALYZER_QUEUE_BYTES) at the most
	// analyzers the autoscaler may run stays within 75 % of GOMEMLIMIT.
	perAnalyzer, err := strconv.ParseInt(cmpOr(env["PER_ANALYZER_QUEUE_BYTES"], defaultOf(t, "PER_ANALYZER_QUEUE_BYTES")), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	analyzers := int64(*m.deploy(t, "sluice-analyzer").Spec.Replicas)
	if so := m.generic["ScaledObject/sluice-analyzer"]; so != nil {
		if hi, ok, _ := unstructured.NestedInt64(so.Object, "spec", "maxReplicaCount"); ok {
			analyzers = max(analyzers, hi)
		}
	}
	if gml > 0 && analyzers*perAnalyzer > gml*3/4 {
		t.Errorf("%d analyzers x PER_ANALYZER_QUEUE_BYTES %d = %d MiB, more than 75 %% of GOMEMLIMIT (%d MiB)", analyzers, perAnalyzer, analyzers*perAnalyzer>>20, gml>>20)
	}

	// Spread over nodes.
	spread := false
	for _, tsc := range spec.TopologySpreadConstraints {
		sel, err := labelSelector(tsc.LabelSelector)
		if err == nil && tsc.TopologyKey == "kubernetes.io/hostname" && sel.Matches(labels.Set(tmpl.Labels)) {
			spread = true
		}
	}
	if !spread && (spec.Affinity == nil || spec.Affinity.PodAntiAffinity == nil) {
		t.Error("neither a topology spread over kubernetes.io/hostname selecting these pods nor pod anti-affinity")
	}

	// Every variable is a sluice setting (or GOMEMLIMIT), set by value.
	known := map[string]bool{"GOMEMLIMIT": true}
	for _, s := range proxy.Settings() {
		known[s.Env] = true
	}
	for _, e := range c.Env {
		if !known[e.Name] {
			t.Errorf("env %s is no sluice setting (proxy.Settings)", e.Name)
		}
	}
	if env["ADMIN_TOKEN"] != "" {
		t.Error("ADMIN_TOKEN set in the manifest: use ADMIN_TOKEN_FILE from the Secret")
	}

	// ADMIN_TOKEN_FILE lies in a read-only mount of a Secret volume.
	tokenFile := env["ADMIN_TOKEN_FILE"]
	found := false
	for _, vm := range c.VolumeMounts {
		if filepath.Dir(tokenFile) != filepath.Clean(vm.MountPath) {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == vm.Name && v.Secret != nil && v.Secret.SecretName != "" && vm.ReadOnly {
				found = true
				if key := filepath.Base(tokenFile); len(v.Secret.Items) > 0 && !slices.ContainsFunc(v.Secret.Items, func(k corev1.KeyToPath) bool { return k.Path == key }) {
					t.Errorf("Secret volume %s does not project %s", v.Name, key)
				}
			}
		}
	}
	if !found {
		t.Errorf("ADMIN_TOKEN_FILE %q is not in a read-only Secret volume mount", tokenFile)
	}

	// ANALYZERS_DNS names the analyzers' headless Service and their port.
	host, port, err := net.SplitHostPort(env["ANALYZERS_DNS"])
	if err != nil {
		t.Fatalf("ANALYZERS_DNS %q: %v", env["ANALYZERS_DNS"], err)
	}
	svcName, _, _ := strings.Cut(host, ".")
	svc := m.services[svcName]
	if svc == nil {
		t.Fatalf("ANALYZERS_DNS %s: no Service %s", env["ANALYZERS_DNS"], svcName)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("ANALYZERS_DNS names Service %s, which is not headless: its one address would be one analyzer", svcName)
	}
	a := m.deploy(t, svcName)
	if !hasPort(a.Spec.Template.Spec.Containers[0], intstr.Parse(port)) {
		t.Errorf("ANALYZERS_DNS port %s is no container port of Deployment %s (headless: the pods' ports are dialled)", port, svcName)
	}
}

func cmpOr(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

func defaultOf(t *testing.T, env string) string {
	for _, s := range proxy.Settings() {
		if s.Env == env {
			return s.Default
		}
	}
	t.Fatalf("no setting %s", env)
	return ""
}

// parseGoMemLimit reads GOMEMLIMIT's syntax: an integer with an optional
// B, KiB, MiB, GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, error) {
	mult := int64(1)
	for i, suf := range []string{"TiB", "GiB", "MiB", "KiB", "B"} {
		if strings.HasSuffix(s, suf) {
			s = strings.TrimSuffix(s, suf)
			mult = int64(1) << (10 * (4 - i))
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive size", s)
	}
	return n * mult, nil
}

// dockerfile returns the final stage's ENTRYPOINT and CMD (exec form) and USER.
func dockerfile(t *testing.T) (entrypoint, cmd []string, user string) {
	t.Helper()
	src, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(src), "\n") {
		op, args, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch strings.ToUpper(op) {
		case "FROM":
			entrypoint, cmd, user = nil, nil, ""
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(args), &entrypoint); err != nil {
				t.Fatalf("Dockerfile ENTRYPOINT %s: not exec form: %v", args, err)
			}
		case "CMD":
			if err := json.Unmarshal([]byte(args), &cmd); err != nil {
				t.Fatalf("Dockerfile CMD %s: not exec form: %v", args, err)
			}
		case "USER":
			user = args
		}
	}
	return entrypoint, cmd, user
}

// TestImageAndArgs: both Deployments run the kustomization's image through the
// Dockerfile's entrypoint with a sluice subcommand; the distributor's is the
// image's default command.
func TestImageAndArgs(t *testing.T) {
	skipShort(t)
	m := load(t)
	entrypoint, cmd, user := dockerfile(t)
	if len(entrypoint) == 0 || len(cmd) == 0 {
		t.Fatalf("Dockerfile: ENTRYPOINT %v CMD %v", entrypoint, cmd)
	}
	images := map[string]bool{}
	for _, im := range m.kust.Images {
		images[im.Name] = true
	}
	for name, want := range map[string]string{"sluice-distributor": "distributor", "sluice-analyzer": "analyzer"} {
		d := m.deploy(t, name)
		c := d.Spec.Template.Spec.Containers[0]
		if !images[c.Image] {
			t.Errorf("%s: image %q is not one the kustomization's images set", name, c.Image)
		}
		if len(c.Command) > 0 && !slices.Equal(c.Command, entrypoint) {
			t.Errorf("%s: command %v replaces the Dockerfile's ENTRYPOINT %v", name, c.Command, entrypoint)
		}
		if len(c.Args) == 0 || c.Args[0] != want {
			t.Errorf("%s: args %v, want %s first", name, c.Args, want)
		}
		sc := d.Spec.Template.Spec.SecurityContext
		if user == "nonroot:nonroot" && (sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
			t.Errorf("%s: the image runs as distroless nonroot (65532); runAsUser/runAsNonRoot say otherwise", name)
		}
	}
	if d := m.deploy(t, "sluice-distributor"); !slices.Equal(d.Spec.Template.Spec.Containers[0].Args, cmd) {
		t.Errorf("distributor args %v, Dockerfile CMD %v", d.Spec.Template.Spec.Containers[0].Args, cmd)
	}
	// The subcommands exist: the binary's own usage lists them.
	out, _ := exec.Command("go", "run", "../..", "-h").CombinedOutput()
	for _, sub := range []string{"distributor", "analyzer"} {
		if !regexp.MustCompile(`(?m)^\s+` + sub + `\s`).Match(out) {
			t.Errorf("sluice -h does not list %s:\n%s", sub, out)
		}
	}
}

// metricNames are the metric families docs/observability.md documents.
func metricNames(t *testing.T) map[string]bool {
	src, err := os.ReadFile("../../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(distributor_[a-z_]+)`").FindAllStringSubmatch(string(src), -1) {
		names[m[1]] = true
		// histograms' series
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			names[m[1]+s] = true
		}
	}
	if len(names) < 20 {
		t.Fatalf("found only %d metric names in docs/observability.md", len(names))
	}
	return names
}

var metricRef = regexp.MustCompile(`\bdistributor_[a-z_]+\b`)

func checkMetrics(t *testing.T, where, expr string, known map[string]bool) {
	refs := metricRef.FindAllString(expr, -1)
	if len(refs) == 0 {
		t.Errorf("%s: %q uses no distributor metric", where, expr)
	}
	for _, r := range refs {
		if !known[r] {
			t.Errorf("%s: %s is not in docs/observability.md", where, r)
		}
	}
}

// promtoolCheck writes groups to a plain rules file and runs promtool check rules.
func promtoolCheck(t *testing.T, groups any) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not on PATH (make deps installs it): expressions not parsed")
		return
	}
	js, err := json.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(f, y, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s\n%s", err, out, y)
	}
}

// TestPrometheusRule: the alerts the issue asks for exist, use documented metrics
// and parse (promtool).
func TestPrometheusRule(t *testing.T) {
	skipShort(t)
	m := load(t)
	known := metricNames(t)
	u := m.crd(t, "PrometheusRule/sluice")
	groups, ok, err := unstructured.NestedSlice(u.Object, "spec", "groups")
	if !ok || err != nil || len(groups) == 0 {
		t.Fatalf("PrometheusRule: spec.groups: %v", err)
	}
	exprs := map[string]string{}
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			r := r.(map[string]any)
			for k := range r {
				if !slices.Contains([]string{"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}, k) {
					t.Errorf("PrometheusRule: rule field %q unknown", k)
				}
			}
			name, _ := r["alert"].(string)
			if rec, _ := r["record"].(string); name == "" && rec != "" {
				name = rec
			}
			expr, _ := r["expr"].(string)
			if name == "" || expr == "" {
				t.Errorf("PrometheusRule: rule without alert or record, or without expr: %v", r)
				continue
			}
			exprs[name] = expr
			if !strings.HasPrefix(expr, "sluice:") {
				checkMetrics(t, "rule "+name, expr, known)
			}
		}
	}
	for _, want := range []string{"distributor_healthy_analyzers", "distributor_dropped_packets_total", `distributor_responses_total{code="503"}`, "distributor_breaker_state", "distributor_spool_bytes"} {
		if !slices.ContainsFunc(slices.Collect(maps.Values(exprs)), func(e string) bool { return strings.Contains(e, want) }) {
			t.Errorf("no alert uses %s", want)
		}
	}
	promtoolCheck(t, groups)
	checkRecordingRules(t, groups)
}

// checkRecordingRules: the PrometheusRule carries deploy/prometheus/rules.yml's
// groups (the recording rules over replicas) unchanged.
func checkRecordingRules(t *testing.T, groups []any) {
	b, err := os.ReadFile(filepath.Join("..", "prometheus", "rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []any `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(b, &file); err != nil {
		t.Fatalf("deploy/prometheus/rules.yml: %v", err)
	}
	if len(file.Groups) == 0 {
		t.Fatal("deploy/prometheus/rules.yml: no groups")
	}
	for _, want := range file.Groups {
		name, _ := want.(map[string]any)["name"].(string)
		i := slices.IndexFunc(groups, func(g any) bool { return g.(map[string]any)["name"] == name })
		if i < 0 {
			t.Errorf("PrometheusRule has no group %q of deploy/prometheus/rules.yml", name)
			continue
		}
		if !reflect.DeepEqual(groups[i], want) {
			t.Errorf("PrometheusRule group %q differs from deploy/prometheus/rules.yml's:\n%v\n%v", name, groups[i], want)
		}
	}
}

// TestServiceMonitor: it selects the distributor Service and scrapes a port the
// Service has, whose container port is METRICS_ADDR's.
func TestServiceMonitor(t *testing.T) {
	skipShort(t)
	m := load(t)
	u := m.crd(t, "ServiceMonitor/sluice-distributor")
	match, _, _ := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
	svc := m.services["sluice-distributor"]
	if svc == nil || len(match) == 0 || !labels.SelectorFromSet(match).Matches(labels.Set(svc.Labels)) {
		t.Fatalf("ServiceMonitor selector %v does not select Service sluice-distributor", match)
	}
	for name, s := range m.services {
		if name != "sluice-distributor" && labels.SelectorFromSet(match).Matches(labels.Set(s.Labels)) {
			t.Errorf("ServiceMonitor selects Service %s too", name)
		}
	}
	eps, _, _ := unstructured.NestedSlice(u.Object, "spec", "endpoints")
	if len(eps) == 0 {
		t.Fatal("ServiceMonitor: no endpoints")
	}
	for _, ep := range eps {
		port, _, _ := unstructured.NestedString(ep.(map[string]any), "port")
		path, _, _ := unstructured.NestedString(ep.(map[string]any), "path")
		if path != "" && path != "/metrics" {
			t.Errorf("ServiceMonitor path %s, sluice serves /metrics", path)
		}
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == port && p.Name != "" }) {
			t.Errorf("ServiceMonitor port %q is no named port of Service sluice-distributor", port)
		}
	}
}

// TestScaledObject: KEDA scales the analyzer Deployment on documented
// distributor metrics with numeric thresholds; its HPA behavior decodes into the
// autoscaling/v2 type; its queries parse (promtool).
func TestScaledObject(t *testing.T) {
	skipShort(t)
	m := load(t)
	known := metricNames(t)
	u := m.crd(t, "ScaledObject/sluice-analyzer")
	kind, _, _ := unstructured.NestedString(u.Object, "spec", "scaleTargetRef", "kind")
	target, _, _ := unstructured.NestedString(u.Object, "spec", "scaleTargetRef", "name")
	if kind != "Deployment" || m.deploys[target] == nil || target != "sluice-analyzer" {
		t.Errorf("scaleTargetRef %s/%s, want the analyzer Deployment", kind, target)
	}
	lo, _, _ := unstructured.NestedInt64(u.Object, "spec", "minReplicaCount")
	hi, _, _ := unstructured.NestedInt64(u.Object, "spec", "maxReplicaCount")
	if lo < 1 || hi <= lo {
		t.Errorf("minReplicaCount %d maxReplicaCount %d", lo, hi)
	}
	if b, ok, _ := unstructured.NestedMap(u.Object, "spec", "advanced", "horizontalPodAutoscalerConfig", "behavior"); ok {
		js, _ := json.Marshal(b)
		var hb autoscalingv2.HorizontalPodAutoscalerBehavior
		if err := strict(js, &hb); err != nil {
			t.Errorf("horizontalPodAutoscalerConfig.behavior: %v", err)
		}
	}
	triggers, _, _ := unstructured.NestedSlice(u.Object, "spec", "triggers")
	var rules []any
	for i, tr := range triggers {
		tr := tr.(map[string]any)
		if tr["type"] != "prometheus" {
			t.Errorf("trigger %d: type %v", i, tr["type"])
			continue
		}
		md, _, _ := unstructured.NestedStringMap(tr, "metadata")
		if _, err := strconv.ParseFloat(md["threshold"], 64); err != nil {
			t.Errorf("trigger %d: threshold %q: %v", i, md["threshold"], err)
		}
		if !strings.HasPrefix(md["serverAddress"], "http") {
			t.Errorf("trigger %d: serverAddress %q", i, md["serverAddress"])
		}
		checkMetrics(t, fmt.Sprintf("trigger %d", i), md["query"], known)
		rules = append(rules, map[string]any{"record": fmt.Sprintf("keda:trigger_%d", i), "expr": md["query"]})
	}
	all := strings.Join(func() []string {
		var q []string
		for _, r := range rules {
			q = append(q, r.(map[string]any)["expr"].(string))
		}
		return q
	}(), " ")
	for _, want := range []string{"distributor_queued", "distributor_delivered"} {
		if !strings.Contains(all, want) {
			t.Errorf("no trigger on %s (queue depth and delivered rate)", want)
		}
	}
	promtoolCheck(t, []any{map[string]any{"name": "keda", "rules": rules}})
}

func labelSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return nil, fmt.Errorf("no selector")
	}
	return metav1.LabelSelectorAsSelector(s)
}
