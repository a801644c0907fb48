package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
	"github.com/portreeve/portreeve/webhook/ports"
)

// portsConfig grants team-a a small nodePort range (five ports, so that
// the free ones are easy to name), team-b its own.
const portsConfig = `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - name: team-a
    namespaces: [team-a]
    hostPorts: ["8080", "9100"]
    nodePorts: ["30100-30104"]
    ingressDomains: ["*.example.com"]
    expires: "2099-12-31"
  - name: team-b
    namespaces: [team-b]
    hostPorts: ["9100"]
    nodePorts: ["31000-31009"]
    ingressDomains: ["*.team-b.example.com"]
`

// portsSeed creates, through the apiserver, what the test expects
// `portreeve ports` to find: a DaemonSet and its pod, a Deployment with its
// ReplicaSet and pod (as the controllers would make them), a bare pod of
// team-b on the DaemonSet's node (the existing conflict), NodePort Services
// and Ingresses in both namespaces.
func portsSeed(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	ctx := t.Context()
	yes := true
	owned := func(kind, apiVersion string, o metav1.Object) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: o.GetName(), UID: o.GetUID(), Controller: &yes}}
	}
	spec := func(port int32, node string, selector map[string]string) corev1.PodSpec {
		return corev1.PodSpec{NodeName: node, NodeSelector: selector, Containers: []corev1.Container{{
			Name: "app", Image: "registry.example/app:1", Ports: []corev1.ContainerPort{{ContainerPort: port, HostPort: port}},
		}}}
	}
	template := func(app string, s corev1.PodSpec) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}}, Spec: s}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	monitoring := map[string]string{"pool": "monitoring"}
	ds, err := cs.AppsV1().DaemonSets("team-a").Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "node-exporter"},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "node-exporter"}},
			Template: template("node-exporter", spec(9100, "", monitoring))},
	}, metav1.CreateOptions{})
	must(err)
	_, err = cs.CoreV1().Pods("team-a").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "node-exporter-7x2kq", Labels: map[string]string{"app": "node-exporter"}, OwnerReferences: owned("DaemonSet", "apps/v1", ds)},
		Spec:       spec(9100, "node-1", monitoring),
	}, metav1.CreateOptions{})
	must(err)
	replicas := int32(1)
	dep, err := cs.AppsV1().Deployments("team-a").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: template("web", spec(8080, "", nil))},
	}, metav1.CreateOptions{})
	must(err)
	rs, err := cs.AppsV1().ReplicaSets("team-a").Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-5d9c8", OwnerReferences: owned("Deployment", "apps/v1", dep)},
		Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: template("web", spec(8080, "", nil))},
	}, metav1.CreateOptions{})
	must(err)
	_, err = cs.CoreV1().Pods("team-a").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-5d9c8-abcde", Labels: map[string]string{"app": "web"}, OwnerReferences: owned("ReplicaSet", "apps/v1", rs)},
		Spec:       spec(8080, "node-2", nil),
	}, metav1.CreateOptions{})
	must(err)
	// The conflict: team-b's pod binds 9100 on node-1, where the DaemonSet runs.
	_, err = cs.CoreV1().Pods("team-b").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "scraper"}, Spec: spec(9100, "node-1", nil),
	}, metav1.CreateOptions{})
	must(err)
	for ns, np := range map[string]int32{"team-a": 30100, "team-b": 31000} {
		must(createNodePortService(ctx, cs, ns, "web", np))
		prefix := networkingv1.PathTypePrefix
		host := map[string]string{"team-a": "app.example.com", "team-b": "api.team-b.example.com"}[ns]
		_, err = cs.NetworkingV1().Ingresses(ns).Create(ctx, &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{
				HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &prefix,
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}},
			}}}},
		}, metav1.CreateOptions{})
		must(err)
	}
}

func createNodePortService(ctx context.Context, cs kubernetes.Interface, ns, name string, nodePort int32) error {
	_, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Port: 80, NodePort: nodePort}}},
	}, metav1.CreateOptions{})
	return err
}

// runPorts runs `portreeve ports` against the control plane.
func runPorts(t *testing.T, cp *controlplane.ControlPlane, args ...string) string {
	t.Helper()
	bin, err := harness.Binary("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"ports", "--kubeconfig", cp.KubeconfigPath}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("portreeve ports %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

func portsJSON(t *testing.T, cp *controlplane.ControlPlane, args ...string) *ports.Report {
	t.Helper()
	out := runPorts(t, cp, append(args, "-o", "json")...)
	var r ports.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	return &r
}

func grantOf(t *testing.T, r *ports.Report, name string) ports.Grant {
	t.Helper()
	for _, g := range r.Grants {
		if g.Config.Name == name {
			return g
		}
	}
	t.Fatalf("no grant %s in %+v", name, r.Grants)
	return ports.Grant{}
}

// TestPorts: `portreeve ports` against a real apiserver names every holder
// by its top owner, counts and lists the free nodePorts of a grant right
// after one is taken, and flags the conflict that exists.
func TestPorts(t *testing.T) {
	cp := controlplane.StartForTest(t, controlplane.Options{})
	ctx := t.Context()
	for _, ns := range []string{"default", "team-a", "team-b", harness.Namespace} {
		if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := cp.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	portsSeed(t, cs)
	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, []byte(portsConfig), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("text", func(t *testing.T) {
		out := runPorts(t, cp, "--config", config)
		t.Log("\n" + out)
		// Compared with runs of spaces as one: the columns' widths are the table's business.
		squeeze := func(s string) string {
			var lines []string
			for line := range strings.Lines(s) {
				lines = append(lines, strings.Join(strings.Fields(line), " "))
			}
			return strings.Join(lines, "\n") + "\n"
		}
		text := squeeze(out)
		for _, want := range []string{
			// Holders by top owner: the DaemonSet for its pod and template, the Deployment for its ReplicaSet and pod.
			"9100/TCP   *         nodes with pool=monitoring; pods on node-1  team-a/DaemonSet/node-exporter  2        CONFLICT",
			"9100/TCP   *         node-1                                      team-b/Pod/scraper              1        CONFLICT",
			"8080/TCP   *         every node; pods on node-2                  team-a/Deployment/web           3",
			"30100/TCP  team-a/Service/web",
			"31000/TCP  team-b/Service/web",
			"app.example.com         /     team-a     web",
			"api.team-b.example.com  /     team-b     web",
			"team-a (namespaces team-a; expires 2099-12-31)",
			"nodePorts      granted 5  used 1  free 4",
			"30100-30104  granted 5  used 1  free 4  next free 30101, 30102, 30103, 30104",
			"in use: nodePorts 30100: team-a/Service/web (nodePort 30100/TCP)",
			"host: app.example.com/ by team-a/Ingress/web",
			"CONFLICTS\n  host-port-conflicts: hostPort 9100/TCP on node node-1: team-a/DaemonSet/node-exporter (hostPort 9100/TCP) and team-b/Pod/scraper (hostPort 9100/TCP)\n\n",
		} {
			if !strings.Contains(text, squeeze(want)[:len(squeeze(want))-1]) {
				t.Errorf("the output lacks %q", want)
			}
		}
		for _, never := range []string{"ReplicaSet", "web-5d9c8", "node-exporter-7x2kq"} {
			if strings.Contains(out, never) {
				t.Errorf("the output names %q: holders go by their top owner", never)
			}
		}
	})

	t.Run("JSON", func(t *testing.T) {
		r := portsJSON(t, cp, "--config", config)
		var holders []string
		for _, h := range r.HostPorts {
			holders = append(holders, h.Holder.String())
		}
		if want := []string{"team-a/Deployment/web", "team-a/DaemonSet/node-exporter", "team-b/Pod/scraper"}; !slices.Equal(holders, want) {
			t.Errorf("hostPort holders %v, want %v", holders, want)
		}
		if h := r.HostPorts[1]; !h.Conflict || !h.AnyNode || !slices.Equal(h.Nodes, []string{"node-1"}) || !slices.Equal(h.NodeSelectors, []string{"pool=monitoring"}) {
			t.Errorf("the DaemonSet's row: %+v", h)
		}
		if len(r.Conflicts) != 1 || r.Conflicts[0].Rule != "host-port-conflicts" || r.Conflicts[0].Port != 9100 || r.Conflicts[0].Node != "node-1" ||
			r.Conflicts[0].Holders[0].String() != "team-a/DaemonSet/node-exporter" || r.Conflicts[0].Holders[1].String() != "team-b/Pod/scraper" {
			t.Errorf("conflicts %+v", r.Conflicts)
		}
		np := grantOf(t, r, "team-a").NodePorts
		if np == nil || np.Granted != 5 || np.Used != 1 || np.Free != 4 || !slices.Equal(np.Ranges[0].NextFree, []int{30101, 30102, 30103, 30104}) {
			t.Errorf("team-a's nodePorts %+v", np)
		}
	})

	t.Run("free nodePorts right after one is taken", func(t *testing.T) {
		if err := createNodePortService(ctx, cs, "team-a", "second", 30101); err != nil {
			t.Fatal(err)
		}
		r := portsJSON(t, cp, "--config", config, "--grant", "team-a")
		if len(r.Grants) != 1 {
			t.Fatalf("grants %+v", r.Grants)
		}
		np := r.Grants[0].NodePorts
		if np.Used != 2 || np.Free != 3 || !slices.Equal(np.Ranges[0].NextFree, []int{30102, 30103, 30104}) {
			t.Errorf("after team-a/second took 30101: %+v", np)
		}
		var services []string
		for _, n := range r.NodePorts {
			services = append(services, n.Holder.String())
		}
		// Only what lies in team-a's ranges: team-b's 31000 is not.
		if want := []string{"team-a/Service/web", "team-a/Service/second"}; !slices.Equal(services, want) {
			t.Errorf("nodePorts %v, want %v", services, want)
		}
	})

	t.Run("filters", func(t *testing.T) {
		r := portsJSON(t, cp, "--config", config, "-n", "team-b")
		if len(r.HostPorts) != 1 || r.HostPorts[0].Holder.Name != "scraper" || len(r.Grants) != 1 || r.Grants[0].Config.Name != "team-b" || len(r.Conflicts) != 1 {
			t.Errorf("-n team-b: %+v", r)
		}
		r = portsJSON(t, cp, "--config", config, "--port", "9100")
		if len(r.HostPorts) != 2 || len(r.NodePorts) != 0 || len(r.Hosts) != 0 || len(r.Grants) != 2 || len(r.Conflicts) != 1 {
			t.Errorf("--port 9100: %+v", r)
		}
		r = portsJSON(t, cp, "--config", config, "--host", "app.example.com")
		if len(r.HostPorts)+len(r.NodePorts) != 0 || len(r.Hosts) != 1 || r.Hosts[0].Holder.Namespace != "team-a" || len(r.Grants) != 1 {
			t.Errorf("--host app.example.com: %+v", r)
		}
	})

	t.Run("the configuration from the chart's ConfigMap", func(t *testing.T) {
		_, err := cs.CoreV1().ConfigMaps(harness.Namespace).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "portreeve-config"}, Data: map[string]string{"config.yaml": portsConfig},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := runPorts(t, cp, "--config-map", harness.Namespace+"/portreeve-config", "-o", "yaml", "--grant", "team-b")
		for _, want := range []string{"grant: team-b", "nextFree:", "- 31001"} {
			if !strings.Contains(out, want) {
				t.Errorf("YAML lacks %q:\n%s", want, out)
			}
		}
	})
}
