package incluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portreeve/portreeve/test/proc"
)

// TestChartSelfSigned installs the chart with the built-in certificate
// rotator: both replicas run the image, Ready, non-root, read-only root
// filesystem, and the apiserver calls them through the Service.
func TestChartSelfSigned(t *testing.T) {
	requireCluster(t)
	took := install(t)
	t.Logf("timing: helm install --wait (self-signed) took %.1fs", took.Seconds())
	checkReplicas(t)
	checkWebhookConfigs(t)
	checkSeedCases(t)
	checkHelmTest(t)
}

// checkHelmTest runs `helm test`: the chart's probe Pod, on the node, calls
// both webhooks through the Service's IP with the CA the webhook
// configurations trust, and passes only when each answers as a webhook.
func checkHelmTest(t *testing.T) {
	t.Helper()
	start := time.Now()
	r := helm(t, "test", release, "--namespace", namespace, "--timeout", "3m")
	if r.err != nil {
		t.Fatalf("helm test: %v\n%s\n%s", r.err, r, diagnose(t))
	}
	if !regexp.MustCompile(`Phase:\s+Succeeded`).MatchString(r.stdout) {
		t.Fatalf("helm test did not report the probe passing:\n%s", r)
	}
	t.Logf("timing: helm test took %.1fs\n%s", time.Since(start).Seconds(), r)
}

// TestChartCertManager installs the chart in cert-manager mode, with
// cert-manager's controllers (the project's programs in the tools bin
// folder) running against the apiserver.
func TestChartCertManager(t *testing.T) {
	requireCluster(t)
	startCertManager(t)
	t.Cleanup(func() {
		// cert-manager leaves the Secrets it wrote; a later self-signed
		// install ships a Secret of the same name.
		for _, s := range []string{release + "-cert", release + "-ca"} {
			_ = cluster.cs.CoreV1().Secrets(namespace).Delete(context.Background(), s, metav1.DeleteOptions{})
		}
	})
	took := install(t, "--set", "certs.mode=cert-manager")
	t.Logf("timing: helm install --wait (cert-manager) took %.1fs", took.Seconds())
	if r := kubectl(t, "wait", "-n", namespace, "--for=condition=Ready", "certificate/"+release+"-serving", "--timeout=60s"); r.err != nil {
		t.Fatalf("serving Certificate not Ready: %v\n%s", r.err, r)
	}
	checkReplicas(t)
	checkWebhookConfigs(t)
	checkSeedCases(t)
}

// checkReplicas: two replicas of the imported image, Ready (probes
// passing), never restarted, and running as 65532 with a read-only root
// filesystem: in the pod spec and in the running container (its OCI spec
// in containerd and its process on the host).
func checkReplicas(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	dep, err := cluster.cs.AppsV1().Deployments(namespace).Get(ctx, release, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Status.ReadyReplicas != 2 || dep.Status.AvailableReplicas != 2 {
		t.Fatalf("Deployment %s: %d ready, %d available, want 2", release, dep.Status.ReadyReplicas, dep.Status.AvailableReplicas)
	}
	pods := releasePods(t)
	if len(pods) != 2 {
		var desc []string
		for _, p := range pods {
			desc = append(desc, fmt.Sprintf("%s (%s, deleting %v, owner %v)", p.Name, p.Status.Phase, p.DeletionTimestamp != nil, p.OwnerReferences[0].Name))
		}
		t.Fatalf("%d pods, want 2: %s\n%s", len(pods), strings.Join(desc, ", "), diagnose(t))
	}
	for _, p := range pods {
		c := p.Spec.Containers[0]
		if c.Image != cluster.imageRepo+":"+cluster.imageTag || c.ImagePullPolicy != corev1.PullNever {
			t.Errorf("pod %s runs %s (%s), want the imported %s:%s, never pulled", p.Name, c.Image, c.ImagePullPolicy, cluster.imageRepo, cluster.imageTag)
		}
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			t.Errorf("pod %s: no readiness or liveness probe", p.Name)
		}
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
			t.Errorf("pod %s: no preStop sleep (the shutdown delay)", p.Name)
		}
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("pod %s: securityContext %+v lacks readOnlyRootFilesystem/runAsNonRoot", p.Name, sc)
		}
		if !podReady(&p) {
			t.Errorf("pod %s not Ready: %+v", p.Name, p.Status.Conditions)
		}
		if len(p.Status.ContainerStatuses) != 1 {
			t.Fatalf("pod %s: %d container statuses", p.Name, len(p.Status.ContainerStatuses))
		}
		st := p.Status.ContainerStatuses[0]
		if !st.Ready || st.State.Running == nil || st.RestartCount != 0 {
			t.Errorf("pod %s: container ready=%v running=%v restarts=%d", p.Name, st.Ready, st.State.Running != nil, st.RestartCount)
		}
		checkRuntime(t, p.Name, strings.TrimPrefix(st.ContainerID, "containerd://"))
	}
}

// checkRuntime reads the container's OCI spec from containerd and its
// process from /proc: uid and gid 65532, root filesystem mounted read-only.
func checkRuntime(t *testing.T, pod, id string) {
	t.Helper()
	out, err := cluster.node.Ctr(context.Background(), "containers", "info", id)
	if err != nil {
		t.Fatalf("pod %s: %v", pod, err)
	}
	var info struct {
		Spec struct {
			Process struct {
				User struct{ UID, GID uint32 }
			}
			Root struct{ Readonly bool }
		}
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("ctr containers info: %v", err)
	}
	if info.Spec.Process.User.UID != 65532 || info.Spec.Process.User.GID != 65532 || !info.Spec.Root.Readonly {
		t.Errorf("pod %s: OCI spec user %d:%d, root readonly %v; want 65532:65532, read-only",
			pod, info.Spec.Process.User.UID, info.Spec.Process.User.GID, info.Spec.Root.Readonly)
	}
	pid := taskPID(t, id)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) == 5 && (f[0] == "Uid:" || f[0] == "Gid:") {
			for _, id := range f[1:] {
				if id != "65532" {
					t.Errorf("pod %s: process %d runs with %s", pod, pid, l)
					break
				}
			}
		}
	}
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	rootRO := false
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 5 && f[4] == "/" {
			rootRO = strings.HasPrefix(f[5], "ro,") || f[5] == "ro"
		}
	}
	if !rootRO {
		t.Errorf("pod %s: the root filesystem of process %d is not mounted read-only", pod, pid)
	}
	t.Logf("pod %s: container %.12s runs as pid %d, uid/gid 65532, root filesystem read-only", pod, id, pid)
}

// taskPID returns the host PID of a container's task (ctr tasks ls).
func taskPID(t *testing.T, id string) int {
	t.Helper()
	out, err := cluster.node.Ctr(context.Background(), "tasks", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == id {
			var pid int
			if _, err := fmt.Sscan(f[1], &pid); err == nil {
				return pid
			}
		}
	}
	t.Fatalf("no task %s in:\n%s", id, out)
	return 0
}

// checkWebhookConfigs: both configurations call the Service (no URL) and
// carry the injected CA bundle.
func checkWebhookConfigs(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	vwc, err := cluster.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, release, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mwc, err := cluster.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, release, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type cc struct {
		name string
		svc  bool
		url  bool
		ca   int
	}
	var all []cc
	for _, w := range vwc.Webhooks {
		all = append(all, cc{w.Name, w.ClientConfig.Service != nil, w.ClientConfig.URL != nil, len(w.ClientConfig.CABundle)})
	}
	for _, w := range mwc.Webhooks {
		all = append(all, cc{w.Name, w.ClientConfig.Service != nil, w.ClientConfig.URL != nil, len(w.ClientConfig.CABundle)})
	}
	for _, c := range all {
		if !c.svc || c.url || c.ca == 0 {
			t.Errorf("webhook %s: service=%v url=%v caBundle=%d bytes; want the Service and an injected CA", c.name, c.svc, c.url, c.ca)
		}
	}
}

// seedCase is a seed manifest and what Portreeve decides on the host (the
// e2e tests' TestSeedCases, default namespace): denied with these
// fragments, or admitted.
type seedCase struct {
	file   string
	denied []string
}

var seedCases = []seedCase{
	{"influxdb-hostnetwork.yaml", []string{"host-network: hostNetwork is not granted"}},
	{"influxdb-hostport.yaml", []string{"host-ports: hostPort 8086/TCP"}},
	{"influxdb-pod.yaml", nil},
	{"influxdb-nodeport.yaml", []string{"node-ports: type NodePort opens node ports"}},
}

// checkSeedCases creates the seed manifests with a server-side dry run (so
// nothing is scheduled: their images would have to be pulled) in the
// default namespace and wants the host's decisions.
func checkSeedCases(t *testing.T) {
	t.Helper()
	waitWebhook(t, "default")
	for _, sc := range seedCases {
		b, err := os.ReadFile(filepath.Join("..", "fixtures", "seed", sc.file))
		if err != nil {
			t.Fatal(err)
		}
		r := kubectlIn(t, string(b), "create", "--dry-run=server", "-n", "default", "-f", "-")
		if sc.denied == nil {
			if r.err != nil {
				t.Errorf("%s: denied, want admitted:\n%s", sc.file, r)
			}
			continue
		}
		if r.err == nil || !strings.Contains(r.stderr, "denied the request") {
			t.Errorf("%s: admitted, want a denial:\n%s", sc.file, r)
			continue
		}
		for _, want := range sc.denied {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%s: denial lacks %q:\n%s", sc.file, want, r)
			}
		}
	}
}

// waitWebhook waits until the apiserver calls the webhook (its
// configuration cache is eventually consistent).
func waitWebhook(t *testing.T, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"portreeve-probe"},"spec":{"hostNetwork":true,"containers":[{"name":"c","image":"x"}]}}`
	for {
		_, stderr, _ := cluster.cp.KubectlStdin(ctx, strings.NewReader(pod), "create", "--dry-run=server", "-n", ns, "-f", "-")
		if strings.Contains(stderr, "host-network") {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the webhook is not called in %s: %s\n%s", ns, stderr, diagnose(t))
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func releasePods(t *testing.T) []corev1.Pod {
	t.Helper()
	pods, err := cluster.cs.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release})
	if err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// startCertManager applies cert-manager's CRDs and runs its controller and
// cainjector (the project's programs, out of cluster) until the test ends.
// Without them the test is skipped: self-signed mode is tested alone.
func startCertManager(t *testing.T) {
	t.Helper()
	bin := cluster.cp.BinDir
	crds := filepath.Join(bin, "cert-manager-crds.yaml")
	for _, f := range []string{"cert-manager-controller", "cert-manager-cainjector", "cert-manager-crds.yaml"} {
		if _, err := os.Stat(filepath.Join(bin, f)); err != nil {
			t.Skipf("cert-manager programs not built (%v): only self-signed mode is tested", err)
		}
	}
	if r := kubectl(t, "apply", "--server-side", "-f", crds); r.err != nil {
		t.Fatalf("apply cert-manager CRDs: %v\n%s", r.err, r)
	}
	if r := kubectl(t, "wait", "--for=condition=Established", "--timeout=60s", "crd/certificates.cert-manager.io",
		"crd/certificaterequests.cert-manager.io", "crd/issuers.cert-manager.io", "crd/clusterissuers.cert-manager.io"); r.err != nil {
		t.Fatalf("cert-manager CRDs: %v\n%s", r.err, r)
	}
	for _, name := range []string{"cert-manager-controller", "cert-manager-cainjector"} {
		p, err := proc.Start(proc.Options{
			Name: name, Binary: filepath.Join(bin, name), Args: []string{"--kubeconfig=" + cluster.cp.KubeconfigPath},
			LogPath: filepath.Join(t.TempDir(), name+".log"), StopGrace: 10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := p.Stop(); err != nil {
				t.Error(err)
			}
			if t.Failed() {
				t.Logf("%s log:%s", name, p.LogTail(30))
			}
		})
	}
}
