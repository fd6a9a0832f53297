package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// manifests are the decoded objects of deploy/kubernetes.
type manifests struct {
	services     []*corev1.Service
	statefulSets []*appsv1.StatefulSet
	budgets      []*policyv1.PodDisruptionBudget
}

// decodeStrict decodes every YAML document of data into its API type,
// refusing unknown and duplicate fields, and unknown kinds.
func decodeStrict(name string, data []byte, into *manifests) error {
	for i, doc := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return fmt.Errorf("%s, document %d: %w", name, i+1, err)
		}
		var err error
		switch gvk := tm.APIVersion + " " + tm.Kind; gvk {
		case "v1 Service":
			s := &corev1.Service{}
			err = yaml.UnmarshalStrict(doc, s)
			into.services = append(into.services, s)
		case "apps/v1 StatefulSet":
			s := &appsv1.StatefulSet{}
			err = yaml.UnmarshalStrict(doc, s)
			into.statefulSets = append(into.statefulSets, s)
		case "policy/v1 PodDisruptionBudget":
			b := &policyv1.PodDisruptionBudget{}
			err = yaml.UnmarshalStrict(doc, b)
			into.budgets = append(into.budgets, b)
		default:
			return fmt.Errorf("%s, document %d: kind %q of %q is not one this test decodes; add it", name, i+1, tm.Kind, tm.APIVersion)
		}
		if err != nil {
			return fmt.Errorf("%s, document %d (%s): %w", name, i+1, tm.Kind, err)
		}
	}
	return nil
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in kubernetes/: %v", err)
	}
	var m manifests
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeStrict(f, b, &m); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.services) != 1 || len(m.statefulSets) != 1 || len(m.budgets) != 1 {
		t.Fatalf("want 1 Service, 1 StatefulSet and 1 PodDisruptionBudget, got %d, %d and %d", len(m.services), len(m.statefulSets), len(m.budgets))
	}
	return m
}

// Every manifest decodes strictly; a misspelt field, as a reviewer could
// miss, does not.
func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	loadManifests(t)
	b, err := os.ReadFile("kubernetes/service.yaml")
	if err != nil {
		t.Fatal(err)
	}
	typo := bytes.Replace(b, []byte("publishNotReadyAddresses"), []byte("publishNotReadyAdresses"), 1)
	err = decodeStrict("service.yaml with a typo", typo, &manifests{})
	if err == nil || !strings.Contains(err.Error(), "publishNotReadyAdresses") {
		t.Errorf("a misspelt field decoded: %v", err)
	}
}

// The manifests agree with each other and with the agent: the Service is
// headless and publishes not-ready pods, the disruption budget covers the
// pods one at a time, the agent joins it by name with a
// cluster name, probes use grpc.health.v1 on the gossip port, and preStop
// leaves through the agent's admin socket, which is on a volume.
func TestKubernetesManifestsAgree(t *testing.T) {
	m := loadManifests(t)
	svc, sts := m.services[0], m.statefulSets[0]
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("Service: clusterIP %q, publishNotReadyAddresses %v; want None, true", svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
	}
	if sts.Spec.ServiceName != svc.Name {
		t.Errorf("StatefulSet serviceName %q, want the Service %q", sts.Spec.ServiceName, svc.Name)
	}
	for k, v := range svc.Spec.Selector {
		if sts.Spec.Template.Labels[k] != v {
			t.Errorf("Service selects %s=%s; the pods are labelled %v", k, v, sts.Spec.Template.Labels)
		}
	}
	if pdb := m.budgets[0]; pdb.Spec.Selector == nil || !maps.Equal(pdb.Spec.Selector.MatchLabels, sts.Spec.Selector.MatchLabels) ||
		pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget %+v; want maxUnavailable 1 over the StatefulSet's pods %v", pdb.Spec, sts.Spec.Selector.MatchLabels)
	}
	if len(sts.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(sts.Spec.Template.Spec.Containers))
	}
	c := sts.Spec.Template.Spec.Containers[0]
	argv := append(slices.Clone(c.Command), c.Args...)
	if len(argv) < 2 || argv[1] != "agent" {
		t.Fatalf("container runs %q, want mesh agent", argv)
	}
	var gossip int32
	for _, p := range c.Ports {
		if p.Name == "gossip" {
			gossip = p.ContainerPort
		}
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.StrVal != "gossip" || svc.Spec.Ports[0].Port != gossip {
		t.Errorf("Service ports %+v; want the container's gossip port %d", svc.Spec.Ports, gossip)
	}
	join, _ := flagValue(argv, "join")
	if want := fmt.Sprintf("%s.$(POD_NAMESPACE).svc.cluster.local:%d", svc.Name, gossip); join != want {
		t.Errorf("--join %q, want the headless Service %q", join, want)
	}
	if cl, ok := flagValue(argv, "cluster"); !ok || cl == "" {
		t.Errorf("no --cluster: a reused pod IP could merge this cluster with another")
	}
	for _, f := range []string{"bind", "advertise"} {
		if v, _ := flagValue(argv, f); !strings.HasSuffix(v, fmt.Sprintf(":%d", gossip)) {
			t.Errorf("--%s %q, want port %d", f, v, gossip)
		}
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.GRPC == nil || p.GRPC.Port != gossip || (p.GRPC.Service != nil && *p.GRPC.Service != "") {
			t.Errorf("%s probe %+v; want grpc.health.v1 on port %d, service \"\"", name, p, gossip)
		}
	}
	admin, _ := flagValue(argv, "admin")
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil {
		t.Fatalf("no preStop exec")
	}
	pre := c.Lifecycle.PreStop.Exec.Command
	if len(pre) < 2 || pre[0] != argv[0] || pre[1] != "leave" {
		t.Errorf("preStop %q; want %s leave", pre, argv[0])
	}
	if v, _ := flagValue(pre, "admin"); v != admin || !strings.HasPrefix(admin, "unix:") {
		t.Errorf("preStop --admin %q, agent --admin %q; want the same unix socket", v, admin)
	}
	mounted := false
	for _, vm := range c.VolumeMounts {
		if strings.HasPrefix(strings.TrimPrefix(admin, "unix:"), vm.MountPath+"/") {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("admin socket %s is on no volume mount %+v (the root filesystem is read-only)", admin, c.VolumeMounts)
	}
	var env []string
	for _, e := range c.Env {
		if e.Name == "MESH_ADMIN" {
			env = append(env, e.Value)
		}
	}
	if !slices.Equal(env, []string{admin}) {
		t.Errorf("MESH_ADMIN %q, want %q so that kubectl exec ... members needs no flag", env, admin)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext %+v; want a read-only root and no privilege escalation", sc)
	}
}

// The StatefulSet's command line runs: the agent starts with the pod's
// environment substituted (on loopback, with the volume a directory of
// mode 0777 as an emptyDir is), `mesh members` with the container's
// environment and no flag reaches it, and the preStop command makes it
// leave and exit 0.
func TestKubernetesCommandsRun(t *testing.T) {
	m := loadManifests(t)
	c := m.statefulSets[0].Spec.Template.Spec.Containers[0]
	emptyDir := t.TempDir()
	if err := os.Chmod(emptyDir, 0o777); err != nil {
		t.Fatal(err)
	}
	mount := c.VolumeMounts[0].MountPath
	vars := map[string]string{"POD_IP": "127.0.0.1", "POD_NAME": "mesh-0", "POD_NAMESPACE": "test"}
	local := func(argv []string) []string {
		out := make([]string, len(argv))
		for i, a := range argv {
			out[i] = strings.ReplaceAll(expand(a, vars), mount+"/", emptyDir+"/")
		}
		return out
	}
	var env []string
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env = append(env, e.Name+"="+local([]string{e.Value})[0])
		}
	}
	argv := local(append(slices.Clone(c.Command), c.Args...))
	// Loopback only, and a join name that resolves without a DNS server.
	argv = setFlag(argv, "bind", "127.0.0.1:0")
	argv = setFlag(argv, "advertise", "127.0.0.1:0")
	join, _ := flagValue(argv, "join")
	argv = setFlag(argv, "join", "localhost:"+join[strings.LastIndexByte(join, ':')+1:])
	a := startAgent(t, argv, env)
	admin, _ := flagValue(argv, "admin")
	if a.admin != admin {
		t.Errorf("agent serves its admin API at %q, want %q", a.admin, admin)
	}

	out, _, err := run(t, []string{"mesh", "members", "--json"}, env)
	mustOK(t, "mesh members in the container's environment", err)
	var members struct{ Self, Cluster string }
	if err := json.Unmarshal([]byte(out), &members); err != nil || members.Self != a.addr || members.Cluster != "test.mesh" {
		t.Errorf("members: %q (%v); want self %s, cluster test.mesh", out, err, a.addr)
	}

	out, _, err = run(t, local(c.Lifecycle.PreStop.Exec.Command), nil)
	mustOK(t, "preStop", err)
	if !strings.Contains(out, a.addr+" left") {
		t.Errorf("preStop printed %q", out)
	}
	if err := a.exited(t); err != nil {
		t.Errorf("agent after preStop: %v, want exit 0", err)
	}
}
