package node

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/portreeve/portreeve/test/controlplane"
)

// TestNode starts a node, runs a pod with a hostPort on it, shows that a
// second node stack is refused, and checks the host after the teardown.
func TestNode(t *testing.T) {
	cpOpts, imgs := Required(t)
	cp := controlplane.StartForTest(t, cpOpts)
	n := StartForTest(t, cp, Options{SandboxImage: imgs.Sandbox})

	t.Run("second stack refused", func(t *testing.T) {
		_, err := Start(t.Context(), cp, Options{SandboxImage: imgs.Sandbox})
		if !errors.Is(err, ErrNodeRunning) {
			t.Fatalf("second Start: %v, want ErrNodeRunning", err)
		}
	})

	cs, err := cp.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("pod with a hostPort runs", func(t *testing.T) {
		pod := sandboxPod("hostport", n.SandboxImage, n.IP, 18080)
		if _, err := cs.CoreV1().Pods("default").Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		running := waitPodRunning(t, cs, "default", "hostport")
		_, pods, _ := net.ParseCIDR(DefaultPodCIDR)
		if ip := net.ParseIP(running.Status.PodIP); !pods.Contains(ip) {
			t.Fatalf("pod IP %s outside the pod range %s", running.Status.PodIP, DefaultPodCIDR)
		}
		if running.Spec.NodeName != n.Name {
			t.Fatalf("pod scheduled to %q, want %q", running.Spec.NodeName, n.Name)
		}
		// The hostPort is real: portmap's DNAT rule for node-ip:18080. kube-proxy
		// rewrites the nat table now and then, so a listing can miss it: retry.
		var rules []string
		for deadline := time.Now().Add(15 * time.Second); ; {
			if rules, err = nftRuleset(t.Context()); err != nil {
				t.Fatal(err)
			}
			// nft does not always render the xtables DNAT target (then the
			// pod IP is missing from the line): the per-pod chain matching
			// node-ip:18080 is what portmap adds for this hostPort.
			if slices.ContainsFunc(rules, func(l string) bool {
				return strings.Contains(l, "CNI-DN-") && strings.Contains(l, "dport 18080") &&
					(strings.Contains(l, running.Status.PodIP) || strings.Contains(l, "daddr "+n.IP))
			}) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no DNAT rule for hostPort 18080 to %s in:\n%s", running.Status.PodIP, strings.Join(rules, "\n"))
			}
			time.Sleep(500 * time.Millisecond)
		}
	})

	t.Run("the snapshot sees the node", func(t *testing.T) {
		now, err := TakeSnapshot(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		diff := n.rec.Before.Diff(now)
		var sysctls, paths []string
		for _, d := range diff {
			switch f := strings.Fields(d); f[0] {
			case "sysctl":
				sysctls = append(sysctls, f[1])
			case "path":
				paths = append(paths, strings.TrimSuffix(f[1], ":"))
			}
		}
		slices.Sort(paths)
		t.Logf("node: while it runs the host differs from the snapshot in %d ways, among them kernel settings %v and host paths %v (all undone by Stop)",
			len(diff), sysctls, slices.Compact(paths))
		for _, want := range []string{"network device added: " + bridgeName, "process added", "route added: blackhole " + DefaultBlock, "cgroup added: memory/kubepods"} {
			if !slices.ContainsFunc(diff, func(d string) bool { return strings.HasPrefix(d, want) }) {
				t.Errorf("the snapshot misses %q in:\n%s", want, strings.Join(diff, "\n"))
			}
		}
	})
}

// TestNodeCleansUpAfterADeadProcess: a record left by a process that died
// is torn down by Recover, and the host matches its snapshot again.
func TestNodeCleansUpAfterADeadProcess(t *testing.T) {
	_, _ = Required(t)
	ctx := t.Context()
	var lock *hostLock
	waitUntil := time.Now().Add(20 * time.Minute)
	for {
		var err error
		if lock, err = acquireLock(); err == nil {
			break
		}
		if !errors.Is(err, ErrNodeRunning) || time.Now().After(waitUntil) {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // another package's node stack runs
	}
	defer lock.release()
	before, err := TakeSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// What a dead stack leaves: its devices, route, guard table and dir.
	r := &record{PID: 1, Dir: t.TempDir() + "/" + dirPrefix + "dead", Bridge: bridgeName, HostVeth: hostVeth, Block: DefaultBlock, GuardTable: guardTable, Before: before}
	if err := r.save(); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"ip", "link", "add", hostVeth, "type", "veth", "peer", "name", peerVeth(hostVeth)},
		{"ip", "addr", "add", DefaultNodeIP + "/32", "dev", hostVeth},
		{"ip", "route", "add", "blackhole", DefaultBlock},
		{"nft", "add", "table", "inet", guardTable},
	} {
		if _, err := run(ctx, c[0], c[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	after, err := TakeSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := before.Diff(after); len(d) < 4 {
		t.Fatalf("the snapshot misses the changes: %q", d)
	}
	if err := Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if r, _ := loadRecord(); r != nil {
		t.Fatal("record left after Recover")
	}
}

func sandboxPod(name, image, hostIP string, hostPort int32) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "c", Image: image, ImagePullPolicy: corev1.PullNever,
				Ports: []corev1.ContainerPort{{ContainerPort: 8080, HostPort: hostPort, HostIP: hostIP}},
			}},
		},
	}
}

func waitPodRunning(t *testing.T, cs kubernetes.Interface, ns, name string) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			return p
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s/%s not Running: %v %+v", ns, name, err, p.Status)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
