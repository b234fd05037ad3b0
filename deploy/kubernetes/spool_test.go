package kubernetes

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// spoolDir is the StatefulSet variant with a spool (SPOOL_DIR) per replica: a
// kustomization of its own beside this one (kustomize refuses an overlay inside
// its base's directory), which takes this directory whole, deletes the
// distributor's Deployment and adds a StatefulSet of the same name.
const spoolDir = "../kubernetes-spool"

// TestSpoolStatefulSet decodes the variant strictly and checks it against the
// base: the overlay's resources and patch, the StatefulSet's pods (every check of
// TestDistributor, and equal to the Deployment's but for the spool), the base's
// Service and PodDisruptionBudget selecting them, the headless Service of its
// serviceName, and SPOOL_DIR on a claim that holds SPOOL_MAX_BYTES.
func TestSpoolStatefulSet(t *testing.T) {
	skipShort(t)
	base := load(t)

	var k struct {
		kustomization
		Patches []struct {
			Path string `json:"path"`
		} `json:"patches"`
	}
	readStrict(t, filepath.Join(spoolDir, "kustomization.yaml"), &k)
	if k.APIVersion != base.kust.APIVersion || k.Kind != "Kustomization" {
		t.Fatalf("kustomization: %s %s", k.APIVersion, k.Kind)
	}
	if !slices.Equal(k.Resources, []string{"../kubernetes", "statefulset.yaml"}) {
		t.Errorf("resources %v, want the base directory and statefulset.yaml", k.Resources)
	}
	if !reflect.DeepEqual(k.Labels, base.kust.Labels) || !reflect.DeepEqual(k.Images, base.kust.Images) {
		t.Errorf("labels %v and images %v differ from the base's %v, %v", k.Labels, k.Images, base.kust.Labels, base.kust.Images)
	}
	if len(k.Patches) != 1 {
		t.Fatalf("patches %v, want the one that deletes the Deployment", k.Patches)
	}
	var del struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Patch string `json:"$patch"`
	}
	readStrict(t, filepath.Join(spoolDir, k.Patches[0].Path), &del)
	if del.APIVersion != "apps/v1" || del.Kind != "Deployment" || del.Patch != "delete" || base.deploys[del.Metadata.Name] == nil {
		t.Fatalf("patch %s: %+v, want $patch: delete of a base Deployment", k.Patches[0].Path, del)
	}
	dep := base.deploy(t, del.Metadata.Name)

	src, err := os.ReadFile(filepath.Join(spoolDir, "statefulset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var sts *appsv1.StatefulSet
	services := map[string]*corev1.Service{}
	for i, doc := range splitDocs(src) {
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			t.Fatalf("statefulset.yaml document %d: %v", i+1, err)
		}
		var head struct {
			APIVersion, Kind string
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatal(err)
		}
		switch head.APIVersion + " " + head.Kind {
		case "apps/v1 StatefulSet":
			if sts, err = decodeAs[appsv1.StatefulSet](js); err != nil {
				t.Fatalf("StatefulSet: %v", err)
			}
		case "v1 Service":
			svc, err := decodeAs[corev1.Service](js)
			if err != nil {
				t.Fatalf("Service: %v", err)
			}
			services[svc.Name] = svc
		default:
			t.Fatalf("statefulset.yaml document %d: no test knows %s %s", i+1, head.APIVersion, head.Kind)
		}
	}
	if sts == nil || sts.Name != dep.Name {
		t.Fatalf("no StatefulSet %s in statefulset.yaml", dep.Name)
	}
	pods := labels.Set(sts.Spec.Template.Labels)
	if sel, err := labelSelector(sts.Spec.Selector); err != nil || !sel.Matches(pods) {
		t.Errorf("StatefulSet: selector does not match its pod template's labels (%v)", err)
	}
	checkDistributorPod(t, base, sts.Spec.Replicas, sts.Spec.Template)

	// The base's Service and PodDisruptionBudget take the StatefulSet's pods.
	if s := base.services[sts.Name]; s == nil || !labels.SelectorFromSet(s.Spec.Selector).Matches(pods) {
		t.Errorf("the base's Service %s does not select the StatefulSet's pods", sts.Name)
	} else {
		for _, p := range s.Spec.Ports {
			if !hasPort(sts.Spec.Template.Spec.Containers[0], p.TargetPort) {
				t.Errorf("Service %s: targetPort %s is no container port of the StatefulSet", s.Name, p.TargetPort.String())
			}
		}
	}
	for _, p := range base.pdbs {
		if p.Name == sts.Name {
			if sel, err := labelSelector(p.Spec.Selector); err != nil || !sel.Matches(pods) {
				t.Errorf("PodDisruptionBudget %s does not select the StatefulSet's pods", p.Name)
			}
		}
	}
	// serviceName: a headless Service of this file, selecting the pods.
	if s := services[sts.Spec.ServiceName]; s == nil || s.Spec.ClusterIP != corev1.ClusterIPNone || !labels.SelectorFromSet(s.Spec.Selector).Matches(pods) {
		t.Errorf("serviceName %q: want a headless Service in statefulset.yaml selecting the pods", sts.Spec.ServiceName)
	}

	// The spool: SPOOL_DIR under a writable mount of a claim template, owned by the
	// pod's group, and the claim holds SPOOL_MAX_BYTES and a segment per loop.
	c := sts.Spec.Template.Spec.Containers[0]
	env := envOf(c)
	dir := env["SPOOL_DIR"]
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if m := &c.VolumeMounts[i]; dir != "" && strings.HasPrefix(filepath.Clean(dir)+"/", filepath.Clean(m.MountPath)+"/") {
			mount = m
		}
	}
	if mount == nil || mount.ReadOnly {
		t.Fatalf("SPOOL_DIR %q is not under a writable volume mount", dir)
	}
	i := slices.IndexFunc(sts.Spec.VolumeClaimTemplates, func(p corev1.PersistentVolumeClaim) bool { return p.Name == mount.Name })
	if i < 0 {
		t.Fatalf("SPOOL_DIR's mount %s is no volumeClaimTemplate: the spool would not outlive the pod", mount.Name)
	}
	claim := sts.Spec.VolumeClaimTemplates[i].Spec.Resources.Requests[corev1.ResourceStorage]
	maxBytes, err1 := strconv.ParseInt(cmpOr(env["SPOOL_MAX_BYTES"], defaultOf(t, "SPOOL_MAX_BYTES")), 10, 64)
	segment, err2 := strconv.ParseInt(cmpOr(env["SPOOL_SEGMENT_BYTES"], defaultOf(t, "SPOOL_SEGMENT_BYTES")), 10, 64)
	cpu := c.Resources.Limits[corev1.ResourceCPU]
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if need := maxBytes + segment*cpu.Value(); claim.Value() < need {
		t.Errorf("claim %s < SPOOL_MAX_BYTES %d + SPOOL_SEGMENT_BYTES %d x %d loops", claim.String(), maxBytes, segment, cpu.Value())
	}
	sc := sts.Spec.Template.Spec.SecurityContext
	if sc == nil || sc.FSGroup == nil || sc.RunAsGroup == nil || *sc.FSGroup != *sc.RunAsGroup {
		t.Error("securityContext.fsGroup is not the pod's runAsGroup: the nonroot user could not write the claim")
	}

	// Apart from the spool, its pod is the Deployment's: one source for both.
	pod := sts.Spec.Template.DeepCopy()
	pc := &pod.Spec.Containers[0]
	pc.Env = slices.DeleteFunc(pc.Env, func(e corev1.EnvVar) bool { return strings.HasPrefix(e.Name, "SPOOL_") })
	pc.VolumeMounts = slices.DeleteFunc(pc.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == mount.Name })
	pod.Spec.SecurityContext.FSGroup, pod.Spec.SecurityContext.FSGroupChangePolicy = nil, nil
	if !reflect.DeepEqual(pod, &dep.Spec.Template) {
		t.Errorf("the StatefulSet's pod differs from Deployment %s's by more than the spool (SPOOL_* env, the claim's mount, fsGroup)", dep.Name)
	}

	// kubectl renders the variant (no cluster needed): the StatefulSet replaces
	// the Deployment.
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Log("kubectl not on PATH: the overlay was checked by this test only")
		return
	}
	out, err := exec.Command(kubectl, "kustomize", spoolDir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", spoolDir, err, out)
	}
	kinds := map[string]bool{}
	for _, doc := range splitDocs(out) {
		var head struct {
			Kind     string
			Metadata struct{ Name string }
		}
		if err := yaml.Unmarshal(doc, &head); err == nil && head.Kind != "" {
			kinds[head.Kind+"/"+head.Metadata.Name] = true
		}
	}
	if !kinds["StatefulSet/"+sts.Name] || kinds["Deployment/"+dep.Name] || !kinds["Service/"+sts.Spec.ServiceName] || !kinds["Deployment/sluice-analyzer"] {
		t.Errorf("kubectl kustomize %s: %v; want the StatefulSet instead of the Deployment, and the rest of the base", spoolDir, kinds)
	}
}

// readStrict decodes a YAML file into v, refusing unknown fields.
func readStrict(t *testing.T, path string, v any) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSONStrict(src)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := strict(js, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
