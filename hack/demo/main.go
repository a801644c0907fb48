// Command demo runs the seed cases through a real kube-apiserver with
// Portreeve registered, and prints what was admitted, denied or rewritten.
//
//	go run ./hack/demo [--keep] [--portreeve bin/portreeve] [--tools DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
)

// demoConfig is the built-in configuration plus one granted namespace, and
// LoadBalancers rewritten rather than denied.
const demoConfig = `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  load-balancer: {mode: rewrite}
grants:
  - name: system
    namespaces: [kube-system]
    hostNetwork: true
    hostPorts: ["1-65535"]
    nodePorts: ["30000-32767"]
    loadBalancer: true
    reason: cluster components run here
  - name: team-a
    namespaces: [team-a]
    hostPorts: ["8086"]
    nodePorts: ["30000-30999"]
    loadBalancer: true
    ingressDomains: ["*.kube.example.com"]
    reason: the demo's granted namespace
`

var seeds = []string{
	"influxdb-hostnetwork.yaml",
	"influxdb-hostport.yaml",
	"influxdb-pod.yaml",
	"influxdb-nodeport.yaml",
	"influxdb-loadbalancer.yaml",
	"influxdb-ingress.yaml",
}

func main() {
	keep := flag.Bool("keep", false, "leave the control plane and Portreeve running and print the KUBECONFIG")
	binary := flag.String("portreeve", "", "the portreeve binary (default: built)")
	tools := flag.String("tools", "", "folder with kube-apiserver, etcd, kubectl and helm (default: hack/tools.sh bindir)")
	onNode := flag.Bool("node", false, "install the chart on a real node instead (root; make image pause-image; hack/tools.sh node)")
	flag.Parse()
	var err error
	if *onNode {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = runNode(ctx, *keep, *tools)
		stop()
	} else {
		err = run(*keep, *binary, *tools)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(keep bool, binary, tools string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	start := time.Now()
	fmt.Println("starting etcd and kube-apiserver v1.37.2 on loopback ...")
	cp, err := controlplane.Start(ctx, controlplane.Options{BinDir: tools, DisableSignalHandler: true})
	if err != nil {
		return err
	}
	defer cp.Stop()
	for _, ns := range []string{"default", "team-a", harness.Namespace} {
		if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
			return err
		}
	}
	fmt.Println("starting portreeve serve with the built-in configuration plus a grant for team-a ...")
	p, err := harness.Start(ctx, harness.Options{Binary: binary, Kubeconfig: cp.KubeconfigPath, Config: demoConfig})
	if err != nil {
		return err
	}
	defer p.Stop()
	if err := p.RegisterWebhooks(ctx, cp); err != nil {
		return err
	}
	if err := harness.WaitForWebhook(ctx, cp, "default"); err != nil {
		return err
	}
	fmt.Printf("ready after %s; applying the seed manifests with kubectl in default and team-a:\n\n", time.Since(start).Round(100*time.Millisecond))

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tMANIFEST\tRESULT\tWHY (kubectl's own words)")
	for _, ns := range []string{"default", "team-a"} {
		for _, name := range seeds {
			manifest, err := os.ReadFile(filepath.Join(root, "test", "fixtures", "seed", name))
			if err != nil {
				return err
			}
			out, stderr, err := cp.KubectlStdin(ctx, strings.NewReader(string(manifest)), "apply", "-n", ns, "-f", "-")
			result, why := outcome(out, stderr, err)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ns, name, result, why)
		}
	}
	tw.Flush()
	stored, _, _ := cp.Kubectl(ctx, "get", "services", "-A", "-o",
		"custom-columns=NAMESPACE:.metadata.namespace,NAME:.metadata.name,TYPE:.spec.type,NODEPORT:.spec.ports[*].nodePort,REWRITES:.metadata.annotations.portreeve\\.io/rewrites")
	fmt.Printf("\nServices as stored:\n%s", stored)

	if keep {
		fmt.Printf("\nLeft running. Use it with:\n  export KUBECONFIG=%s\n  export PATH=%s:$PATH\nPress Ctrl-C to tear everything down.\n", cp.KubeconfigPath, cp.BinDir)
		<-ctx.Done()
	}
	fmt.Println("\ntearing down ...")
	return nil
}

func outcome(stdout, stderr string, err error) (result, why string) {
	var warnings []string
	var errs []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		switch {
		case strings.HasPrefix(l, "Warning: "):
			warnings = append(warnings, strings.TrimPrefix(l, "Warning: "))
		case l != "":
			errs = append(errs, l)
		}
	}
	switch {
	case err != nil:
		msg := strings.Join(errs, " ")
		if i := strings.Index(msg, "denied the request: "); i >= 0 {
			msg = msg[i+len("denied the request: "):]
		}
		return "DENIED", shorten(msg)
	case len(warnings) > 0 && strings.Contains(warnings[0], "portreeve rewrote"):
		// The type change says the most; then the rest.
		for i, w := range warnings {
			if strings.Contains(w, "/spec/type") {
				warnings[0], warnings[i] = warnings[i], warnings[0]
			}
		}
		if len(warnings) > 1 {
			warnings[0] = fmt.Sprintf("%s (and %d more)", warnings[0], len(warnings)-1)
		}
		return "REWRITTEN", shorten(warnings[0])
	case len(warnings) > 0:
		return "WARNED", shorten(strings.Join(warnings, "; "))
	}
	return "ADMITTED", strings.TrimSpace(stdout)
}

func shorten(s string) string {
	if len(s) > 160 {
		return s[:157] + "..."
	}
	return s
}
