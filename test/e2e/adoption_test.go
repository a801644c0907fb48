package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
)

// adoptionWorkloads are the host-exposed workloads of test/fixtures/adoption/cluster.yaml.
var adoptionWorkloads = []struct{ kind, namespace, name string }{
	{"daemonset", "calico-system", "calico-node"},
	{"daemonset", "monitoring", "node-exporter"},
	{"deployment", "ingress-nginx", "ingress-nginx-controller"},
}

// TestAdoption walks README's "Install on a running cluster" on a cluster
// that already runs host-exposed workloads (seeded before Portreeve, with
// kube-controller-manager making their pods): install with the chart's
// defaults (observe), the GitOps way and the Helm way, and nothing is
// refused; `portreeve suggest` writes the narrowest grants of what runs;
// `helm upgrade` to enforce with them, and the workloads still roll while a
// new hostNetwork pod is denied; a broken grant fails the upgrade before
// anything of Portreeve changes.
func TestAdoption(t *testing.T) {
	opts := controlplane.Options{ControllerManager: true}
	controlplane.RequireTools(t, opts, controlplane.BinHelm)
	cp := controlplane.StartForTest(t, opts)
	cs, err := cp.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(root, "test", "fixtures", "adoption", "cluster.yaml")
	bin, err := harness.Binary("")
	if err != nil {
		t.Fatal(err)
	}

	// The cluster before Portreeve: one node (no kubelet: pods are created, never run) and the workloads.
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: "node-1", Labels: map[string]string{"kubernetes.io/hostname": "node-1", "kubernetes.io/os": "linux"},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := cp.Kubectl(ctx, "apply", "-f", seed); err != nil {
		t.Fatalf("seed the cluster: %v\n%s", err, stderr)
	}
	if err := cp.EnsureNamespace(ctx, "default", nil); err != nil {
		t.Fatal(err)
	}
	for _, w := range adoptionWorkloads {
		if err := waitWorkloadPod(ctx, cs, w.namespace, w.kind, w.name, ""); err != nil {
			t.Fatalf("seeded %s %s/%s: %v", w.kind, w.namespace, w.name, err)
		}
	}

	r := &release{cp: cp, cs: cs, port: freeLoopbackPort()}
	// The chart's default values; only where Portreeve runs differs (on this host, no kubelet).
	r.values = []string{"--set", fmt.Sprintf("webhook.url=https://127.0.0.1:%d", r.port)}
	hooks := runHookPods(t, cs, bin)

	// serve runs as the Deployment's pods would, from the Deployment as it is now; it lives across
	// the steps (the test's, not a step's), and a new Deployment replaces it as a rollout would.
	var serve *hostServe
	outer := t
	t.Cleanup(func() {
		if serve != nil {
			serve.Stop()
			if outer.Failed() {
				outer.Log(serve.LogTail())
			}
		}
	})
	startServe := func(t *testing.T) {
		t.Helper()
		if serve != nil {
			serve.Stop()
		}
		var err error
		if serve, err = r.startServe(ctx, outer.TempDir(), r.serviceAccountKubeconfig(outer), "--cert-ip-addresses=127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		if err := serve.waitReady(ctx, 2*time.Minute, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := r.waitCertsInjected(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	observe := func(t *testing.T) {
		startServe(t)
		// The apiserver calls Portreeve: a hostNetwork pod in default is admitted with a warning...
		var stderr string
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, stderr, err = cp.KubectlStdin(ctx, strings.NewReader(chartHostNetworkPod), "create", "--dry-run=server", "-n", "default", "-f", "-")
			if err != nil {
				t.Fatalf("observe refused a hostNetwork pod: %v\n%s", err, stderr)
			}
			if strings.Contains(stderr, "Warning: portreeve would deny (enforcement: observe): host-network: ") || time.Now().After(deadline) {
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
		if !strings.Contains(stderr, "Warning: portreeve would deny (enforcement: observe): host-network: ") {
			t.Fatalf("no observe warning for a hostNetwork pod in default:\n%s", stderr)
		}
		// ...and counted.
		if n := metricValue(t, serve.metricsURL, `portreeve_admission_decisions_total{decision="would_deny",kind="Pod",operation="CREATE",rule="host-network",webhook="validating"}`); n < 1 {
			t.Errorf("would_deny of host-network counted %v times", n)
		}
		restartWorkloads(t, cp, cs)
	}

	var installed time.Time
	if !t.Run("gitops-render-observes", func(t *testing.T) {
		// As Argo CD or Flux render it: no --kube-version, no cluster access.
		out, stderr, err := cp.Helm(ctx, append([]string{"template", chartRelease, filepath.Join(root, "charts", "portreeve"),
			"--namespace", chartNamespace}, r.values...)...)
		if err != nil {
			t.Fatalf("helm template: %v\n%s", err, stderr)
		}
		if !strings.Contains(out, "matchConditions:") {
			t.Error("helm template without --kube-version rendered no matchConditions")
		}
		manifest := filepath.Join(t.TempDir(), "portreeve.yaml")
		if err := os.WriteFile(manifest, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := cp.EnsureNamespace(ctx, chartNamespace, nil); err != nil {
			t.Fatal(err)
		}
		if _, stderr, err := cp.Kubectl(ctx, "apply", "-n", chartNamespace, "-f", manifest); err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, stderr)
		}
		observe(t)
		serve.Stop()
		serve = nil
		if _, stderr, err := cp.Kubectl(ctx, "delete", "-n", chartNamespace, "-f", manifest, "--wait"); err != nil {
			t.Fatalf("kubectl delete: %v\n%s", err, stderr)
		}
	}) {
		return
	}

	if !t.Run("helm-install-observes", func(t *testing.T) {
		installed = time.Now()
		checks := hooks.ran()
		args := append([]string{"install", chartRelease, filepath.Join(root, "charts", "portreeve"), "--namespace", chartNamespace}, r.values...)
		if out, stderr, err := r.helm(t, args...); err != nil {
			t.Fatalf("helm install: %v\n%s\n%s\nconfiguration checks:\n%s", err, out, stderr, hooks)
		}
		if hooks.ran() == checks {
			t.Error("the configuration check did not run before the install")
		}
		observe(t)
	}) {
		return
	}

	suggested := filepath.Join(t.TempDir(), "suggested.yaml")
	if !t.Run("suggest-narrowest-grants", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, bin, "suggest", "--kubeconfig", cp.KubeconfigPath, "--output", suggested)
		report, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("portreeve suggest: %v\n%s", err, report)
		}
		b, err := os.ReadFile(suggested)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("portreeve suggest reported:\n%s\nand wrote:\n%s", report, b)
		cfg, err := policies.ParseConfig(b, nil)
		if err != nil {
			t.Fatalf("the suggested configuration does not load: %v", err)
		}
		checkSuggested(t, cfg)
		// eval with it allows every seeded object.
		if out, err := exec.CommandContext(ctx, bin, "eval", "--config", suggested, "-f", seed).CombinedOutput(); err != nil {
			t.Errorf("eval --config suggested -f cluster.yaml: %v\n%s", err, out)
		}
	}) {
		return
	}

	enforceArgs := append(slices.Clone(r.values), "--set", "enforcement=enforce", "--set-file", "configFile="+suggested)
	if !t.Run("enforce-with-suggested-grants", func(t *testing.T) {
		checks := hooks.ran()
		args := append([]string{"upgrade", chartRelease, filepath.Join(root, "charts", "portreeve"), "--namespace", chartNamespace}, enforceArgs...)
		if out, stderr, err := r.helm(t, args...); err != nil {
			t.Fatalf("helm upgrade: %v\n%s\n%s\nconfiguration checks:\n%s", err, out, stderr, hooks)
		}
		if hooks.ran() == checks {
			t.Error("the configuration check did not run before the upgrade")
		}
		// The Deployment changed (--enforcement=enforce): its pods roll.
		startServe(t)
		if err := r.waitDenied(ctx, "default", chartHostNetworkPod, "host-network: ", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("timing: from helm install to enforcing: %.1fs", time.Since(installed).Seconds())
		restartWorkloads(t, cp, cs)
	}) {
		return
	}

	t.Run("broken-grant-refused-before-it-lands", func(t *testing.T) {
		d, _, err := r.deployment(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cm, err := cs.CoreV1().ConfigMaps(chartNamespace).Get(ctx, chartRelease+"-config", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		good, err := os.ReadFile(suggested)
		if err != nil {
			t.Fatal(err)
		}
		broken := filepath.Join(t.TempDir(), "broken.yaml")
		bad := string(good) + "  - name: broken\n    namespaces: [team-c]\n    hostPorts: [\"80-70\"]\n"
		if err := os.WriteFile(broken, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"upgrade", chartRelease, filepath.Join(root, "charts", "portreeve"), "--namespace", chartNamespace},
			append(slices.Clone(enforceArgs), "--set-file", "configFile="+broken)...)
		out, stderr, err := r.helm(t, args...)
		if err == nil || !strings.Contains(stderr, "pre-upgrade hooks failed") {
			t.Fatalf("helm upgrade with a broken grant: err=%v\n%s\n%s", err, out, stderr)
		}
		// The check's own words (what `kubectl logs` of its pod shows) name the key.
		if msg := hooks.lastFailure(); !strings.Contains(msg, `"80-70"`) || !strings.Contains(msg, ".hostPorts[0]") {
			t.Errorf("the configuration check said %q", msg)
		}
		after, _, err := r.deployment(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after.Generation != d.Generation {
			t.Errorf("the Deployment changed: generation %d -> %d", d.Generation, after.Generation)
		}
		cmAfter, err := cs.CoreV1().ConfigMaps(chartNamespace).Get(ctx, chartRelease+"-config", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cmAfter.Data["config.yaml"] != cm.Data["config.yaml"] {
			t.Errorf("the configuration changed:\n%s", cmAfter.Data["config.yaml"])
		}
		if err := r.waitDenied(ctx, "default", chartHostNetworkPod, "host-network: ", 10*time.Second); err != nil {
			t.Error(err)
		}
	})
}

// checkSuggested: node-exporter is granted through its service account, not
// its namespace; the ingress controller gets hostPorts 80 and 443, not a range;
// every seeded exposure has its grant.
func checkSuggested(t *testing.T, cfg *policies.Config) {
	t.Helper()
	find := func(match func(policies.Grant) bool) *policies.Grant {
		for i := range cfg.Grants {
			if match(cfg.Grants[i]) {
				return &cfg.Grants[i]
			}
		}
		return nil
	}
	for _, g := range cfg.Grants {
		if slices.Contains(g.Namespaces, "monitoring") {
			t.Errorf("grant %s covers the whole monitoring namespace", g.Name)
		}
		if slices.Contains(g.Namespaces, "kube-system") && g.Name != "system" || slices.Contains(g.Namespaces, chartNamespace) {
			t.Errorf("grant %s covers a namespace Portreeve never reviews", g.Name)
		}
		for _, ns := range g.Namespaces {
			if strings.ContainsAny(ns, "*?[") {
				t.Errorf("grant %s names a glob %q", g.Name, ns)
			}
		}
	}
	ne := find(func(g policies.Grant) bool { return slices.Contains(g.ServiceAccounts, "monitoring/node-exporter") })
	if ne == nil || !ne.HostNetwork || !slices.Equal(ne.HostPorts, []string{"9100/TCP"}) || len(ne.Namespaces) != 0 {
		t.Errorf("node-exporter's grant: %+v", ne)
	}
	ing := find(func(g policies.Grant) bool { return slices.Contains(g.HostPorts, "80/TCP") })
	if ing == nil || len(ing.HostPorts) != 2 || !slices.Contains(ing.HostPorts, "443/TCP") || ing.HostNetwork {
		t.Errorf("the ingress controller's grant: %+v", ing)
	}
	if g := find(func(g policies.Grant) bool { return g.HostNetwork && slices.Contains(g.Namespaces, "calico-system") }); g == nil {
		t.Error("no hostNetwork grant for calico-system")
	}
	if g := find(func(g policies.Grant) bool { return slices.Contains(g.NodePorts, "30080") }); g == nil || !slices.Contains(g.Namespaces, "team-a") {
		t.Errorf("team-a's nodePort grant: %+v", g)
	}
	if g := find(func(g policies.Grant) bool { return slices.Contains(g.Namespaces, "team-b") }); g == nil || g.LoadBalancer == nil || !g.LoadBalancer.Allowed || len(g.NodePorts) != 1 {
		t.Errorf("team-b's loadBalancer grant (with its one allocated nodePort): %+v", g)
	}
	for _, host := range []string{"web.team-a.example.com", "api.team-b.example.com"} {
		if g := find(func(g policies.Grant) bool { return slices.Contains(g.IngressDomains, host) }); g == nil {
			t.Errorf("no ingressDomains grant for %s", host)
		}
	}
	for _, g := range cfg.Grants {
		if g.Name != "system" && !strings.Contains(g.Reason, "/") {
			t.Errorf("grant %s has no reason naming its objects: %q", g.Name, g.Reason)
		}
	}
}

// restartWorkloads runs `kubectl rollout restart` on every seeded workload
// and waits until its controller has created a pod of the new template:
// admitted by every webhook.
func restartWorkloads(t *testing.T, cp *controlplane.ControlPlane, cs kubernetes.Interface) {
	t.Helper()
	ctx := t.Context()
	for _, w := range adoptionWorkloads {
		if _, stderr, err := cp.Kubectl(ctx, "rollout", "restart", w.kind+"/"+w.name, "-n", w.namespace); err != nil {
			t.Errorf("rollout restart %s %s/%s: %v\n%s", w.kind, w.namespace, w.name, err, stderr)
			continue
		}
		restartedAt, err := templateAnnotation(ctx, cs, w.namespace, w.kind, w.name)
		if err != nil {
			t.Error(err)
			continue
		}
		if err := waitWorkloadPod(ctx, cs, w.namespace, w.kind, w.name, restartedAt); err != nil {
			t.Errorf("after rollout restart of %s %s/%s: %v", w.kind, w.namespace, w.name, err)
		}
	}
}

const restartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

func templateAnnotation(ctx context.Context, cs kubernetes.Interface, ns, kind, name string) (string, error) {
	switch kind {
	case "daemonset":
		ds, err := cs.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return ds.Spec.Template.Annotations[restartedAtAnnotation], nil
	case "deployment":
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return d.Spec.Template.Annotations[restartedAtAnnotation], nil
	}
	return "", fmt.Errorf("kind %s", kind)
}

// waitWorkloadPod waits until the workload's controller has created a pod
// (with the restartedAt annotation, when not empty), and says why not:
// the controller's events carry the webhook's denial.
func waitWorkloadPod(ctx context.Context, cs kubernetes.Interface, ns, kind, name, restartedAt string) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && strings.HasPrefix(p.Name, name+"-") && p.Annotations[restartedAtAnnotation] == restartedAt {
				return nil
			}
		}
		if time.Now().After(deadline) {
			var why []string
			if evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{}); err == nil {
				for _, e := range evs.Items {
					if e.Type == corev1.EventTypeWarning {
						why = append(why, e.InvolvedObject.Kind+"/"+e.InvolvedObject.Name+": "+e.Message)
					}
				}
			}
			return fmt.Errorf("no new pod of %s %s/%s within 90s; warnings: %s", kind, ns, name, strings.Join(why, " | "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// metricValue reads one series from a Prometheus text page (0 when absent).
func metricValue(t *testing.T, url, series string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return 0
}

// hookPods stands in for the kubelet for the chart's configuration check:
// there is no node here, so the check's pod runs on this host, as the
// kubelet would run it (its ConfigMap volume as files, its command and
// arguments), and its outcome becomes the pod's status, from which the Job
// controller and Helm take it.
type hookPods struct {
	mu      sync.Mutex
	runs    int
	failure string
	log     []string // what each check printed
}

// String is what the checks printed, for failure messages.
func (h *hookPods) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.log, "\n")
}

// ran returns how many checks ran.
func (h *hookPods) ran() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.runs
}

func (h *hookPods) lastFailure() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failure
}

func runHookPods(t *testing.T, cs kubernetes.Interface, bin string) *hookPods {
	h := &hookPods{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	seen := map[types.UID]bool{}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			pods, err := cs.CoreV1().Pods(chartNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=config-check"})
			if err == nil {
				for i := range pods.Items {
					p := &pods.Items[i]
					if seen[p.UID] || p.Status.Phase != corev1.PodPending {
						continue
					}
					seen[p.UID] = true
					if err := h.run(ctx, cs, bin, p, t.TempDir()); err != nil && ctx.Err() == nil {
						t.Errorf("configuration check pod %s: %v", p.Name, err)
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	return h
}

func (h *hookPods) run(ctx context.Context, cs kubernetes.Interface, bin string, p *corev1.Pod, dir string) error {
	if len(p.Spec.Containers) != 1 || len(p.Spec.Containers[0].VolumeMounts) != 1 || len(p.Spec.Volumes) != 1 || p.Spec.Volumes[0].ConfigMap == nil {
		return errors.New("not the shape of the chart's check: one container, one ConfigMap volume")
	}
	c, vol, mount := p.Spec.Containers[0], p.Spec.Volumes[0].ConfigMap, p.Spec.Containers[0].VolumeMounts[0]
	cm, err := cs.CoreV1().ConfigMaps(p.Namespace).Get(ctx, vol.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, item := range vol.Items {
		path := filepath.Join(dir, item.Path)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(cm.Data[item.Key]), 0o600); err != nil {
			return err
		}
	}
	if !slices.Equal(c.Command, []string{"/portreeve"}) {
		return fmt.Errorf("command %q", c.Command)
	}
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		flag, value, ok := strings.Cut(a, "=")
		if !ok {
			flag, value = "", a
		}
		if value == mount.MountPath || strings.HasPrefix(value, mount.MountPath+"/") {
			value = dir + strings.TrimPrefix(value, mount.MountPath)
		}
		args[i] = value
		if ok {
			args[i] = flag + "=" + value
		}
	}
	out, runErr := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	state := corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", Message: string(out)}
	phase := corev1.PodSucceeded
	if runErr != nil {
		var ee *exec.ExitError
		if !errors.As(runErr, &ee) {
			return runErr
		}
		state.ExitCode, state.Reason, phase = int32(ee.ExitCode()), "Error", corev1.PodFailed
	}
	now := metav1.Now()
	state.StartedAt, state.FinishedAt = now, now
	p.Status.Phase = phase
	p.Status.StartTime = &now
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: c.Name, Image: c.Image, State: corev1.ContainerState{Terminated: &state}}}
	if _, err := cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.runs++
	h.log = append(h.log, fmt.Sprintf("%s %s: %s", p.Name, phase, out))
	if phase == corev1.PodFailed {
		h.failure = string(out)
	}
	return nil
}
