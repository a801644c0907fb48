// Package incluster runs the Helm chart on a real node (test/node): the
// image built by `make image` runs as the chart's two replicas, the
// apiserver calls them through the webhook Service, hostPorts are real, and
// Portreeve stays available through restarts and certificate rotation.
//
// One control plane and one node serve every test of the package (a node
// takes seconds to start and only one may run per machine); each test
// installs the chart itself and uninstalls it when it ends. TestMain tears
// the node down and fails the run if the host is not as it was before.
//
//	PORTREEVE_REQUIRE_TOOLS=1 go test ./test/incluster/ -count=1 -v   (make test-node)
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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
	"github.com/portreeve/portreeve/test/node"
)

const (
	release   = "portreeve"
	namespace = harness.Namespace
)

// cluster is the control plane and node shared by the tests.
var cluster struct {
	cp   *controlplane.ControlPlane
	node *node.Node
	cs   *kubernetes.Clientset
	// imageRepo and imageTag name `make image`'s image as imported.
	imageRepo, imageTag string
	chart               string
	// skip is why the tests skip (prerequisites missing, not strict).
	skip string
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	cpOpts, imgs, err := node.Prerequisites()
	if err != nil {
		if node.Strict() {
			fmt.Fprintf(os.Stderr, "incluster: %v\n", err)
			return 1
		}
		cluster.skip = err.Error()
		return m.Run()
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "incluster:", err)
		return 1
	}
	cluster.chart = filepath.Join(root, "charts", "portreeve")
	if logDir := os.Getenv("PORTREEVE_NODE_LOGS"); logDir != "" {
		cpOpts.LogDir = filepath.Join(logDir, "controlplane")
	}
	start := time.Now()
	cp, err := controlplane.Start(context.Background(), cpOpts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "incluster: start control plane:", err)
		return 1
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "incluster: stop control plane:", err)
		}
	}()
	cpReady := time.Since(start)
	nodeOpts := node.Options{SandboxImage: imgs.Sandbox, Images: []string{imgs.Portreeve}}
	if logDir := os.Getenv("PORTREEVE_NODE_LOGS"); logDir != "" {
		nodeOpts.LogDir = filepath.Join(logDir, "node")
	}
	n, err := node.StartWhenFree(context.Background(), cp, nodeOpts, func(err error) {
		fmt.Printf("node: waiting for another node stack to end: %v\n", err)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "incluster: start node:", err)
		return 1
	}
	fmt.Printf("node: control plane ready in %.1fs, node %s Ready in %.1fs\n", cpReady.Seconds(), n.Name, n.StartTook.Seconds())
	cluster.cp, cluster.node = cp, n
	if cluster.cs, err = cp.Clientset(); err != nil {
		fmt.Fprintln(os.Stderr, "incluster:", err)
		_ = n.Stop()
		return 1
	}
	ref := n.Images[0]
	cluster.imageRepo, cluster.imageTag = ref[:strings.LastIndexByte(ref, ':')], ref[strings.LastIndexByte(ref, ':')+1:]

	code := m.Run()

	// The host-clean check: a teardown that leaves anything fails the run.
	if err := n.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "incluster: node teardown: %v\n", err)
		code = 1
	} else {
		fmt.Printf("node: torn down in %.1fs; host clean (the node part took %.0fs in all)\n", n.TeardownTook.Seconds(), time.Since(start).Seconds())
	}
	return code
}

// requireCluster skips the test when TestMain found no node.
func requireCluster(t *testing.T) {
	t.Helper()
	if cluster.skip != "" {
		t.Skip(cluster.skip)
	}
	if err := cluster.node.Failed(); err != nil {
		t.Fatalf("node: %v", err)
	}
}

// result is what kubectl or helm printed.
type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string { return "stdout: " + r.stdout + "\nstderr: " + r.stderr }

func kubectl(t *testing.T, args ...string) result {
	t.Helper()
	return kubectlIn(t, "", args...)
}

// kubectlIn runs kubectl with stdin.
func kubectlIn(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var in *strings.Reader
	if stdin != "" {
		in = strings.NewReader(stdin)
	}
	var out, errOut string
	var err error
	if in != nil {
		out, errOut, err = cluster.cp.KubectlStdin(ctx, in, args...)
	} else {
		out, errOut, err = cluster.cp.Kubectl(ctx, args...)
	}
	return result{out, errOut, err}
}

func helm(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	out, errOut, err := cluster.cp.Helm(ctx, args...)
	return result{out, errOut, err}
}

// install runs `helm upgrade --install --wait` of the chart with the image
// of `make image` (never pulled) and values (helm arguments such as --set
// or -f), and uninstalls it when the test ends. It returns how long the
// install took.
func install(t *testing.T, values ...string) time.Duration {
	t.Helper()
	start := time.Now()
	r := helm(t, append(installArgs("upgrade", "--install"), values...)...)
	if r.err != nil {
		t.Fatalf("helm install: %v\n%s\n%s", r.err, r, diagnose(t))
	}
	took := time.Since(start)
	t.Cleanup(func() { uninstall(t) })
	return took
}

func installArgs(cmd ...string) []string {
	return append(cmd, release, cluster.chart, "--namespace", namespace, "--create-namespace",
		"--wait", "--timeout", "4m",
		"--set", "image.repository="+cluster.imageRepo,
		"--set-string", "image.tag="+cluster.imageTag, // a tag of digits only is still a string
		"--set", "image.pullPolicy=Never",
		// These tests show what an enforcing installation does; observing is the chart's default.
		"--set", "enforcement=enforce")
}

// uninstall removes the release and waits until its pods are gone.
func uninstall(t *testing.T) {
	t.Helper()
	if r := helm(t, "status", release, "--namespace", namespace); r.err != nil {
		return // not installed
	}
	if r := helm(t, "uninstall", release, "--namespace", namespace, "--wait", "--timeout", "3m"); r.err != nil {
		t.Errorf("helm uninstall: %v\n%s", r.err, r)
	}
	waitFor(t, 2*time.Minute, "the release's pods to go", func() error {
		pods, err := cluster.cs.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d pods left", len(pods.Items))
		}
		return nil
	})
}

// waitFor polls check every 200 ms until it succeeds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v\n%s", what, err, diagnose(t))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ensureNamespace creates a namespace and waits for its default
// ServiceAccount (the controller manager creates it).
func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	_, err := cluster.cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the default ServiceAccount of "+name, func() error {
		_, err := cluster.cs.CoreV1().ServiceAccounts(name).Get(context.Background(), "default", metav1.GetOptions{})
		return err
	})
}

// diagnose describes the release's pods and recent events, for failures.
func diagnose(t *testing.T) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b strings.Builder
	for _, args := range [][]string{
		{"get", "pods", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"logs", "-n", namespace, "-l", "app.kubernetes.io/instance=" + release, "--tail=30", "--prefix"},
	} {
		out, stderr, _ := cluster.cp.Kubectl(ctx, args...)
		fmt.Fprintf(&b, "--- kubectl %s\n%s%s", strings.Join(args, " "), tail(out, 60), stderr)
	}
	return b.String()
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
