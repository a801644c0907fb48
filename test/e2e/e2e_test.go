// Package e2e proves what users see through a real kube-apiserver: kubectl
// denials, stored rewritten objects, warnings, dry runs and failure policies,
// with Portreeve's built binary registered through the chart's own webhook
// configurations.
package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
)

// env is one control plane with Portreeve registered.
type env struct {
	cp *controlplane.ControlPlane
	p  *harness.Portreeve
}

// grantsConfig grants team-a the seed's exposure (node ports including the
// seed's 30000, LoadBalancers); default gets nothing beyond the built-in config.
const grantsConfig = `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules: {}
grants:
  - name: system
    namespaces: [kube-system]
    hostNetwork: true
    hostPorts: ["1-65535"]
    nodePorts: ["30000-32767"]
    loadBalancer: true
  - name: team-a
    namespaces: [team-a]
    nodePorts: ["30000-30999"]
    loadBalancer: true
    reason: the seed's granted namespace
`

func withModes(modes string) string {
	return strings.Replace(grantsConfig, "rules: {}", "rules:\n"+modes, 1)
}

// setup starts a control plane with namespaces default, team-a and
// portreeve, runs Portreeve with config and registers its webhooks (extra
// helm values adjust the chart's webhook configurations).
func setup(t *testing.T, config string, values ...string) *env {
	t.Helper()
	cp := controlplane.StartForTest(t, controlplane.Options{})
	ctx := t.Context()
	for _, ns := range []string{"default", "kube-system", "team-a", harness.Namespace} {
		if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	p := harness.StartForTest(t, cp, harness.Options{Config: config}, values...)
	return &env{cp: cp, p: p}
}

// result is what kubectl printed.
type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return "stdout: " + r.stdout + "\nstderr: " + r.stderr
}

func (e *env) kubectl(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	out, stderr, err := e.cp.Kubectl(ctx, args...)
	return result{out, stderr, err}
}

func (e *env) apply(t *testing.T, namespace, manifest string, extra ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	args := append([]string{"apply", "-n", namespace, "-f", "-"}, extra...)
	out, stderr, err := e.cp.KubectlStdin(ctx, strings.NewReader(manifest), args...)
	return result{out, stderr, err}
}

func seed(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "fixtures", "seed", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustDeny(t *testing.T, r result, wants ...string) {
	t.Helper()
	if r.err == nil {
		t.Fatalf("admitted, want a denial containing %q\n%s", wants, r)
	}
	if !strings.Contains(r.stderr, `admission webhook "`) || !strings.Contains(r.stderr, "denied the request") {
		t.Fatalf("not a webhook denial:\n%s", r)
	}
	for _, w := range wants {
		if !strings.Contains(r.stderr, w) {
			t.Fatalf("denial lacks %q:\n%s", w, r)
		}
	}
}

func mustAdmit(t *testing.T, r result) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("denied, want admitted:\n%s", r)
	}
}

// exists reports whether kubectl finds the object.
func (e *env) exists(t *testing.T, namespace, kind, name string) bool {
	t.Helper()
	r := e.kubectl(t, "get", "-n", namespace, kind, name, "-o", "name")
	if r.err != nil && !strings.Contains(r.stderr, "NotFound") {
		t.Fatalf("kubectl get: %s", r)
	}
	return r.err == nil
}

// applyCRDs applies the CustomResourceDefinitions in file (server-side:
// some are larger than client-side apply's annotation allows) and waits
// until the apiserver serves every CRD.
func applyCRDs(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, file string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, stderr, err := cp.Kubectl(ctx, "apply", "--server-side", "-f", file); err != nil {
		t.Fatalf("apply the CRDs of %s: %v\n%s", file, err, stderr)
	}
	if _, stderr, err := cp.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		t.Fatalf("wait for the CRDs of %s: %v\n%s", file, err, stderr)
	}
}
