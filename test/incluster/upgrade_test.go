package incluster

import (
	"context"
	"fmt"
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
