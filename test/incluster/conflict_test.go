package incluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const (
	conflictNS   = "hostports"
	conflictPort = 18081
)

// TestHostPortConflict shows a hostPort conflict for real. Without
// Portreeve two pods asking for the same hostPort on the one node are both
// stored and the scheduler leaves the second Pending; with Portreeve (the
// namespace granted that hostPort) the second is denied at admission, the
// denial naming the first.
func TestHostPortConflict(t *testing.T) {
	requireCluster(t)
	ensureNamespace(t, conflictNS)
	pods := cluster.cs.CoreV1().Pods(conflictNS)

	t.Run("without Portreeve the second stays Pending", func(t *testing.T) {
		uninstall(t)
		t.Cleanup(func() { deletePods(t, conflictNS, "hp-a", "hp-b") })
		if _, err := pods.Create(context.Background(), hostPortPod("hp-a", conflictPort), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitPhase(t, conflictNS, "hp-a", corev1.PodRunning)
		if _, err := pods.Create(context.Background(), hostPortPod("hp-b", conflictPort), metav1.CreateOptions{}); err != nil {
			t.Fatalf("without Portreeve the second pod is stored: %v", err)
		}
		var msg string
		waitFor(t, time.Minute, "hp-b to be unschedulable", func() error {
			p, err := pods.Get(context.Background(), "hp-b", metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
					msg = c.Message
					return nil
				}
			}
			return fmt.Errorf("hp-b is %s, conditions %+v", p.Status.Phase, p.Status.Conditions)
		})
		if !strings.Contains(msg, "free ports") {
			t.Fatalf("hp-b unschedulable for another reason: %s", msg)
		}
		// It stays so: still Pending a few seconds later.
		time.Sleep(3 * time.Second)
		if p, err := pods.Get(context.Background(), "hp-b", metav1.GetOptions{}); err != nil || p.Status.Phase != corev1.PodPending {
			t.Fatalf("hp-b: %v %v, want Pending", err, p.Status.Phase)
		}
		t.Logf("scheduler: %s", msg)
	})

	t.Run("with Portreeve the second is denied naming the first", func(t *testing.T) {
		install(t, "-f", grantValues(t, conflictNS, fmt.Sprint(conflictPort)))
		t.Cleanup(func() { deletePods(t, conflictNS, "hp-a", "hp-b") })
		waitWebhook(t, conflictNS)
		if _, err := pods.Create(context.Background(), hostPortPod("hp-a", conflictPort), metav1.CreateOptions{}); err != nil {
			t.Fatalf("the first pod (granted hostPort) is denied: %v", err)
		}
		waitPhase(t, conflictNS, "hp-a", corev1.PodRunning)
		// The inventory learns of hp-a through its informers: retry briefly.
		var err error
		waitFor(t, 30*time.Second, "the second pod to be denied", func() error {
			_, err = pods.Create(context.Background(), hostPortPod("hp-b", conflictPort), metav1.CreateOptions{})
			if err == nil {
				deletePods(t, conflictNS, "hp-b")
				return fmt.Errorf("hp-b admitted")
			}
			if !strings.Contains(err.Error(), "denied the request") {
				return err
			}
			return nil
		})
		for _, want := range []string{"host-port-conflicts: ", fmt.Sprintf("hostPort %d/TCP is already held by %s/Pod/hp-a", conflictPort, conflictNS)} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("denial lacks %q: %v", want, err)
			}
		}
		t.Logf("admission: %v", err)
	})
}

// hostPortPod runs the sandbox image (it only sleeps) with a hostPort on
// the node address.
func hostPortPod(name string, port int32) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "c", Image: cluster.node.SandboxImage, ImagePullPolicy: corev1.PullNever,
				Ports: []corev1.ContainerPort{{ContainerPort: 8080, HostPort: port, HostIP: cluster.node.IP}},
			}},
		},
	}
}

// grantValues writes a values file whose policy configuration grants ns
// the hostPorts (next to the chart's system grant).
func grantValues(t *testing.T, ns string, hostPorts ...string) string {
	t.Helper()
	values := fmt.Sprintf(`config:
  grants:
    - name: system
      namespaces: [kube-system]
      hostNetwork: true
      hostPorts: ["1-65535"]
      nodePorts: ["30000-32767"]
      loadBalancer: true
    - name: %[1]s
      namespaces: [%[1]s]
      hostPorts: ["%[2]s"]
`, ns, strings.Join(hostPorts, `", "`))
	p := filepath.Join(t.TempDir(), "grants.yaml")
	if err := os.WriteFile(p, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitPhase(t *testing.T, ns, name string, phase corev1.PodPhase) {
	t.Helper()
	waitFor(t, 2*time.Minute, ns+"/"+name+" "+string(phase), func() error {
		p, err := cluster.cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != phase {
			return fmt.Errorf("%s", p.Status.Phase)
		}
		return nil
	})
}

// deletePods deletes pods at once and waits until they are gone.
func deletePods(t *testing.T, ns string, names ...string) {
	t.Helper()
	for _, n := range names {
		_ = cluster.cs.CoreV1().Pods(ns).Delete(context.Background(), n, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}
	waitFor(t, time.Minute, "pods deleted", func() error {
		for _, n := range names {
			if _, err := cluster.cs.CoreV1().Pods(ns).Get(context.Background(), n, metav1.GetOptions{}); err == nil {
				return fmt.Errorf("%s still there", n)
			}
		}
		return nil
	})
}
