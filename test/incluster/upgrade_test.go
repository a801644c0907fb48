package incluster

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestUpgradeAndUninstall: `helm upgrade` to new values keeps Portreeve
// deciding (the injected CA bundle survives, the new configuration is
// applied), and `helm uninstall` leaves no webhook configuration behind:
// pods are admitted and run afterwards.
func TestUpgradeAndUninstall(t *testing.T) {
	requireCluster(t)
	install(t)
	waitWebhook(t, "default")

	start := time.Now()
	r := helm(t, append(installArgs("upgrade"), "--set", "replicas=3", "--set", "config.rules.host-network.mode=warn")...)
	if r.err != nil {
		t.Fatalf("helm upgrade: %v\n%s\n%s", r.err, r, diagnose(t))
	}
	t.Logf("timing: helm upgrade --wait to 3 replicas and a new configuration took %.1fs", time.Since(start).Seconds())
	dep, err := cluster.cs.AppsV1().Deployments(namespace).Get(context.Background(), release, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Status.ReadyReplicas != 3 {
		t.Fatalf("%d ready replicas after the upgrade, want 3", dep.Status.ReadyReplicas)
	}
	// The CA bundle the rotator injected survived the upgrade: still decided.
	hostPort := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"hp"},"spec":{"containers":[{"name":"c","image":"x","ports":[{"containerPort":80,"hostPort":8086}]}]}}`
	if r := kubectlIn(t, hostPort, "create", "--dry-run=server", "-n", "default", "-f", "-"); r.err == nil || !strings.Contains(r.stderr, "host-ports: ") {
		t.Fatalf("after the upgrade a hostPort pod is not denied:\n%s", r)
	}
	// The new configuration reaches every pod (a ConfigMap volume, reloaded
	// without a restart): hostNetwork is now only warned about, by whichever
	// replica the apiserver picks, ten times in a row.
	hostNetwork := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"hn"},"spec":{"hostNetwork":true,"containers":[{"name":"c","image":"x"}]}}`
	start = time.Now()
	inARow := 0
	waitFor(t, 3*time.Minute, "the new configuration to apply", func() error {
		r := kubectlIn(t, hostNetwork, "create", "--dry-run=server", "-n", "default", "-f", "-")
		if r.err != nil || !strings.Contains(r.stderr, "Warning: host-network: ") {
			inARow = 0
			return fmt.Errorf("%s", r)
		}
		if inARow++; inARow < 10 {
			return fmt.Errorf("%d in a row", inARow)
		}
		return nil
	})
	t.Logf("timing: the upgraded configuration applied %.1fs after helm upgrade returned", time.Since(start).Seconds())

	start = time.Now()
	uninstall(t)
	t.Logf("timing: helm uninstall --wait and the pods gone after %.1fs", time.Since(start).Seconds())
	ctx := context.Background()
	vwcs, err := cluster.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mwcs, err := cluster.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(vwcs.Items)+len(mwcs.Items) > 0 {
		t.Fatalf("webhook configurations left after uninstall: %d validating, %d mutating", len(vwcs.Items), len(mwcs.Items))
	}
	// Nothing blocks pods: a pod with a hostPort is admitted and runs, and
	// a hostNetwork pod is admitted (no policy any more).
	pods := cluster.cs.CoreV1().Pods("default")
	if _, err := pods.Create(ctx, hostPortPod("after-uninstall", 18082), metav1.CreateOptions{}); err != nil {
		t.Fatalf("a pod is refused after uninstall: %v", err)
	}
	t.Cleanup(func() { deletePods(t, "default", "after-uninstall") })
	waitPhase(t, "default", "after-uninstall", corev1.PodRunning)
	if r := kubectlIn(t, hostNetwork, "create", "--dry-run=server", "-n", "default", "-f", "-"); r.err != nil || strings.Contains(r.stderr, "host-network") {
		t.Fatalf("after uninstall a hostNetwork pod is still judged:\n%s", r)
	}
}

// TestBrokenConfigRefusedBeforeItLands: `helm upgrade` with a configuration
// that would not load fails in the chart's configuration check (a hook Job
// running the image's `portreeve config validate` on this node), its output
// names every key at fault, and nothing of the running installation changed:
// the same pods, the same Deployment, the same configuration, still deciding.
func TestBrokenConfigRefusedBeforeItLands(t *testing.T) {
	requireCluster(t)
	install(t)
	waitWebhook(t, "default")
	ctx := context.Background()
	before, err := cluster.cs.AppsV1().Deployments(namespace).Get(ctx, release, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podsBefore := podUIDs(t)
	cmBefore, err := cluster.cs.CoreV1().ConfigMaps(namespace).Get(ctx, release+"-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Both pass the chart's values schema (their shape is right); only Portreeve can tell that they are wrong.
	broken := `[{"name":"team-a","namespaces":["team-a"],"hostPorts":["80-70"]},{"name":"team-b","namespaces":["team-b"],"nodePorts":["32000-31000"]}]`
	start := time.Now()
	r := helm(t, append(installArgs("upgrade"), "--set-json", "config.grants="+broken)...)
	t.Logf("timing: the refused helm upgrade returned after %.1fs", time.Since(start).Seconds())
	if r.err == nil {
		t.Fatalf("helm upgrade with a broken configuration succeeded:\n%s", r)
	}
	t.Logf("the refused helm upgrade said:\n%s", r)
	for _, want := range []string{"pre-upgrade hooks failed", `grants[0].hostPorts[0]`, `"80-70"`, `grants[1].nodePorts[0]`} {
		if !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("helm's output lacks %q:\n%s", want, r)
		}
	}
	after, err := cluster.cs.AppsV1().Deployments(namespace).Get(ctx, release, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.Generation != before.Generation {
		t.Errorf("the Deployment changed: generation %d -> %d", before.Generation, after.Generation)
	}
	if got := podUIDs(t); !maps.Equal(got, podsBefore) {
		t.Errorf("Portreeve's pods changed: %v -> %v", podsBefore, got)
	}
	cmAfter, err := cluster.cs.CoreV1().ConfigMaps(namespace).Get(ctx, release+"-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(cmAfter.Data, cmBefore.Data) {
		t.Errorf("the configuration changed:\n%s", cmAfter.Data["config.yaml"])
	}
	hostPort := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"hp"},"spec":{"containers":[{"name":"c","image":"x","ports":[{"containerPort":80,"hostPort":8086}]}]}}`
	if r := kubectlIn(t, hostPort, "create", "--dry-run=server", "-n", "default", "-f", "-"); r.err == nil || !strings.Contains(r.stderr, "host-ports: ") {
		t.Fatalf("after the refused upgrade a hostPort pod is not denied:\n%s", r)
	}
	// The failed check stays for diagnosis (its ConfigMap is gone), until its TTL or the next attempt;
	// an admin who read it deletes it, as this test does before it uninstalls.
	job, err := cluster.cs.BatchV1().Jobs(namespace).Get(ctx, release+"-config-check", metav1.GetOptions{})
	if err != nil || job.Spec.TTLSecondsAfterFinished == nil {
		t.Fatalf("the failed check's Job: %v %+v", err, job)
	}
	if _, err := cluster.cs.CoreV1().ConfigMaps(namespace).Get(ctx, release+"-config-check", metav1.GetOptions{}); err == nil {
		t.Error("the failed check's ConfigMap was left behind")
	}
	background := metav1.DeletePropagationBackground
	if err := cluster.cs.BatchV1().Jobs(namespace).Delete(ctx, job.Name, metav1.DeleteOptions{PropagationPolicy: &background}); err != nil {
		t.Fatal(err)
	}
}

// podUIDs returns the UIDs of Portreeve's running pods by name.
func podUIDs(t *testing.T) map[string]string {
	t.Helper()
	pods, err := cluster.cs.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=portreeve,app.kubernetes.io/component!=config-check"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		out[p.Name] = string(p.UID)
	}
	return out
}
