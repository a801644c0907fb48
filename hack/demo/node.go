package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
	"github.com/portreeve/portreeve/test/node"
)

// runNode is the demo on a real node (make demo NODE=1, as root): the chart
// installed with the image of `make image`, its two replicas running, the
// apiserver calling them through the Service, and the seed pods that are
// admitted really running (with the project's sandbox image instead of
// InfluxDB, which would have to be pulled).
func runNode(ctx context.Context, keep bool, tools string) error {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	imgs, err := node.DefaultImages()
	if err != nil {
		return err
	}
	start := time.Now()
	fmt.Println("starting etcd, kube-apiserver and kube-controller-manager v1.37.2 on loopback ...")
	cp, err := controlplane.Start(ctx, controlplane.Options{BinDir: tools, ControllerManager: true,
		APIServerFlags: node.APIServerFlags(), DisableSignalHandler: true})
	if err != nil {
		return err
	}
	defer cp.Stop()
	fmt.Println("starting a node: containerd, kubelet, kube-scheduler, kube-proxy (the host is checked after the teardown) ...")
	n, err := node.Start(ctx, cp, node.Options{SandboxImage: imgs.Sandbox, Images: []string{imgs.Portreeve}})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("tearing down the node ...")
		if err := n.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			return
		}
		fmt.Printf("node torn down in %s; the host is as before\n", n.TeardownTook.Round(100*time.Millisecond))
	}()
	cs, err := cp.Clientset()
	if err != nil {
		return err
	}
	for _, ns := range []string{"default", "team-a"} {
		if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
			return err
		}
		// Pods need the kube-root-ca.crt ConfigMap the controller manager publishes.
		for {
			if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}

	values := filepath.Join(n.Dir, "demo-values.yaml")
	if err := os.WriteFile(values, []byte(demoValues()), 0o600); err != nil {
		return err
	}
	ref := n.Images[0]
	i := strings.LastIndexByte(ref, ':')
	fmt.Printf("helm install --wait of charts/portreeve with %s (imported, never pulled) ...\n", ref)
	if _, stderr, err := cp.Helm(ctx, "install", "portreeve", filepath.Join(root, "charts", "portreeve"),
		"--namespace", harness.Namespace, "--create-namespace", "--wait", "--timeout", "4m",
		"--set", "image.repository="+ref[:i], "--set-string", "image.tag="+ref[i+1:], "--set", "image.pullPolicy=Never",
		"-f", values); err != nil {
		return fmt.Errorf("%w: %s", err, stderr)
	}
	if err := harness.WaitForWebhook(ctx, cp, "default"); err != nil {
		return err
	}
	out, _, _ := cp.Kubectl(ctx, "get", "pods", "-n", harness.Namespace, "-o", "wide")
	fmt.Printf("ready after %s:\n%s\n", time.Since(start).Round(100*time.Millisecond), out)

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tMANIFEST\tRESULT\tWHY (kubectl's own words)")
	for _, ns := range []string{"default", "team-a"} {
		for _, name := range seeds {
			manifest, err := os.ReadFile(filepath.Join(root, "test", "fixtures", "seed", name))
			if err != nil {
				return err
			}
			m, err := onNode(manifest, n.SandboxImage, n.IP)
			if err != nil {
				return err
			}
			out, stderr, err := cp.KubectlStdin(ctx, strings.NewReader(m), "apply", "-n", ns, "-f", "-")
			result, why := outcome(out, stderr, err)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ns, name, result, why)
		}
	}
	tw.Flush()
	time.Sleep(3 * time.Second)
	pods, _, _ := cp.Kubectl(ctx, "get", "pods", "-A", "-o", "wide", "--field-selector", "metadata.namespace!="+harness.Namespace)
	fmt.Printf("\nThe admitted seed pods, running on the node:\n%s", pods)

	if keep {
		fmt.Printf("\nLeft running. Use it with:\n  export KUBECONFIG=%s\n  export PATH=%s:$PATH\nPress Ctrl-C to tear everything down.\n", cp.KubeconfigPath, cp.BinDir)
		<-ctx.Done()
	}
	return nil
}

// demoValues is the chart's values for demoConfig.
func demoValues() string {
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(demoConfig), &cfg); err != nil {
		panic(err)
	}
	// The demo shows denials and rewrites: it enforces (a fresh chart install observes).
	b, err := yaml.Marshal(map[string]any{"enforcement": "enforce", "config": map[string]any{"rules": cfg["rules"], "grants": cfg["grants"]}})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// onNode makes a seed Pod runnable here: the sandbox image (it only
// sleeps), never pulled, and hostPorts bound to the node address only.
func onNode(manifest []byte, image, nodeIP string) (string, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(manifest, &obj); err != nil {
		return "", err
	}
	if obj["kind"] != "Pod" {
		return string(manifest), nil
	}
	spec, _ := obj["spec"].(map[string]any)
	containers, _ := spec["containers"].([]any)
	for _, c := range containers {
		c := c.(map[string]any)
		c["image"], c["imagePullPolicy"] = image, "Never"
		ports, _ := c["ports"].([]any)
		for _, p := range ports {
			if p := p.(map[string]any); p["hostPort"] != nil {
				p["hostIP"] = nodeIP
			}
		}
	}
	b, err := yaml.Marshal(obj)
	return string(b), err
}
