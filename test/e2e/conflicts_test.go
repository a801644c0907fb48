package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
)

// conflictConfig grants team-a and team-b overlapping exposure, so that the
// conflict rules, not the grants, are what stands between them. team-b's
// ingress domain covers team-a's on purpose (a shared parent domain).
const conflictConfig = `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules: {}
grants:
  - name: team-a
    namespaces: [team-a]
    hostPorts: ["9100", "30080"]
    nodePorts: ["30080", "30100-30199"]
    ingressDomains: ["*.team-a.example.com"]
  - name: team-b
    namespaces: [team-b]
    hostPorts: ["9100"]
    nodePorts: ["30150-30199"]
    ingressDomains: ["*.example.com"]
    reason: shares the example.com zone
`

// conflictEnv is one control plane with Portreeve registered.
type conflictEnv struct {
	cp *controlplane.ControlPlane
	p  *harness.Portreeve
}

type conflictResult struct {
	stdout, stderr string
	err            error
}

func (r conflictResult) String() string { return "stdout: " + r.stdout + "\nstderr: " + r.stderr }

func conflictSetup(t *testing.T) *conflictEnv {
	t.Helper()
	cp := controlplane.StartForTest(t, controlplane.Options{})
	ctx := t.Context()
	for _, ns := range []string{"default", "kube-system", "team-a", "team-b", harness.Namespace} {
		if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	p := harness.StartForTest(t, cp, harness.Options{Config: conflictConfig})
	return &conflictEnv{cp: cp, p: p}
}

func (e *conflictEnv) kubectl(t *testing.T, stdin string, args ...string) conflictResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var out, stderr string
	var err error
	if stdin == "" {
		out, stderr, err = e.cp.Kubectl(ctx, args...)
	} else {
		out, stderr, err = e.cp.KubectlStdin(ctx, strings.NewReader(stdin), args...)
	}
	return conflictResult{out, stderr, err}
}

func (e *conflictEnv) create(t *testing.T, ns, manifest string, extra ...string) conflictResult {
	t.Helper()
	return e.kubectl(t, manifest, append([]string{"create", "-n", ns, "-f", "-"}, extra...)...)
}

func conflictAdmitted(t *testing.T, r conflictResult) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("denied, want admitted:\n%s", r)
	}
}

func conflictDenied(t *testing.T, r conflictResult, wants ...string) {
	t.Helper()
	if r.err == nil {
		t.Fatalf("admitted, want a denial containing %q\n%s", wants, r)
	}
	if !strings.Contains(r.stderr, "denied the request") {
		t.Fatalf("not a webhook denial:\n%s", r)
	}
	for _, w := range wants {
		if !strings.Contains(r.stderr, w) {
			t.Fatalf("denial lacks %q:\n%s", w, r)
		}
	}
}

func conflictPod(name string, port int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  containers:
  - name: app
    image: registry.example/app:1
    ports: [{containerPort: %d, hostPort: %d}]
`, name, port, port)
}

func conflictWorkload(kind, name, selector string, port int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: %s
metadata: {name: %s}
spec:
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:
      nodeSelector: {%s}
      containers:
      - name: app
        image: registry.example/app:1
        ports: [{containerPort: %d, hostPort: %d}]
`, kind, name, name, name, selector, port, port)
}

func conflictService(name, nodePort string) string {
	port := "{port: 80}"
	if nodePort != "" {
		port = "{port: 80, nodePort: " + nodePort + "}"
	}
	return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: %s}\nspec:\n  type: NodePort\n  selector: {app: %s}\n  ports: [%s]\n", name, name, port)
}

func conflictIngress(name, host string) string {
	return fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: %s}
spec:
  rules:
  - host: %q
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
`, name, host)
}

// nodePortOf returns the Service's first nodePort as kubectl shows it.
func (e *conflictEnv) nodePortOf(t *testing.T, ns, name string) int {
	t.Helper()
	r := e.kubectl(t, "", "get", "service", "-n", ns, name, "-o", "jsonpath={.spec.ports[0].nodePort}")
	if r.err != nil {
		t.Fatalf("kubectl get service: %s", r)
	}
	n, err := strconv.Atoi(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatalf("nodePort %q: %v", r.stdout, err)
	}
	return n
}

// TestConflicts walks the cases through a real kube-apiserver with
// real kubectl: hostPort against a NodePort Service, a Deployment against a
// DaemonSet's template, nodePorts assigned from the namespace's range and
// taken nodePorts denied or moved, and Ingress hosts claimed by another
// namespace.
func TestConflicts(t *testing.T) {
	e := conflictSetup(t)

	t.Run("hostPort held by a NodePort Service", func(t *testing.T) {
		conflictAdmitted(t, e.create(t, "team-a", conflictService("web", "30080")))
		r := e.create(t, "team-a", conflictPod("hostport", 30080))
		conflictDenied(t, r, "host-port-conflicts: hostPort 30080/TCP is already held by team-a/Service/web (nodePort 30080/TCP on every node)",
			"NodePort range 30000-32767")
	})

	t.Run("hostPort held by a DaemonSet's template", func(t *testing.T) {
		conflictAdmitted(t, e.create(t, "team-a", conflictWorkload("DaemonSet", "node-exporter", "pool: monitoring", 9100)))
		r := e.create(t, "team-b", conflictWorkload("Deployment", "scraper", "pool: monitoring", 9100))
		conflictDenied(t, r, "host-port-conflicts: hostPort 9100/TCP is already held by team-a/DaemonSet/node-exporter (hostPort 9100/TCP)",
			"(spec.template.spec.containers[0].ports[0].hostPort)")
		// Nodes of another pool cannot run the DaemonSet's pods.
		conflictAdmitted(t, e.create(t, "team-b", conflictWorkload("Deployment", "scraper", "pool: web", 9100)))
	})

	t.Run("nodePort assigned from the namespace's range", func(t *testing.T) {
		conflictAdmitted(t, e.create(t, "team-a", conflictService("auto", "")))
		if n := e.nodePortOf(t, "team-a", "auto"); n < 30100 || n > 30199 {
			t.Errorf("team-a's Service got nodePort %d, want one in 30100-30199", n)
		}
	})

	t.Run("nodePort taken by team-b denied, then moved in rewrite mode", func(t *testing.T) {
		conflictAdmitted(t, e.create(t, "team-b", conflictService("b-web", "30150")))
		r := e.create(t, "team-a", conflictService("a-web", "30150"))
		conflictDenied(t, r, "node-port-conflicts: nodePort 30150 is already allocated to team-b/Service/b-web")

		rewrite := strings.Replace(conflictConfig, "rules: {}", "rules: {node-port-conflicts: {mode: rewrite}}", 1)
		if err := e.p.SetConfig(rewrite); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			r = e.create(t, "team-a", conflictService("a-web", "30150"), "--dry-run=server")
			if r.err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rewrite mode not applied within 30s:\n%s", r)
			}
			time.Sleep(300 * time.Millisecond)
		}
		r = e.create(t, "team-a", conflictService("a-web", "30150"))
		conflictAdmitted(t, r)
		if !strings.Contains(r.stderr, "portreeve rewrote /spec/ports/0/nodePort: 30150 -> ") {
			t.Errorf("kubectl printed no rewrite warning:\n%s", r)
		}
		if n := e.nodePortOf(t, "team-a", "a-web"); n == 30150 || n < 30100 || n > 30199 {
			t.Errorf("moved to nodePort %d, want a free one in 30100-30199", n)
		}
		ann := e.kubectl(t, "", "get", "service", "-n", "team-a", "a-web", "-o", `jsonpath={.metadata.annotations.portreeve\.io/rewrites}`)
		if !strings.Contains(ann.stdout, `"rule":"node-port-conflicts"`) {
			t.Errorf("rewrite not recorded in the annotation: %s", ann)
		}
		if err := e.p.SetConfig(conflictConfig); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Ingress host claimed by another namespace", func(t *testing.T) {
		conflictAdmitted(t, e.create(t, "team-a", conflictIngress("app", "app.team-a.example.com")))
		r := e.create(t, "team-b", conflictIngress("steal", "app.team-a.example.com"))
		conflictDenied(t, r, `ingress-host-conflicts: host "app.team-a.example.com" path "/" is already claimed in another namespace by team-a/Ingress/app`)
		r = e.create(t, "team-b", conflictIngress("wild", "*.team-a.example.com"))
		conflictDenied(t, r, `ingress-host-conflicts: host "*.team-a.example.com" path "/" is already claimed in another namespace by team-a/Ingress/app (host app.team-a.example.com path /)`)
		// The owner's own namespace may add to it, and other hosts are free.
		conflictAdmitted(t, e.create(t, "team-a", conflictIngress("more", "*.team-a.example.com")))
		conflictAdmitted(t, e.create(t, "team-b", conflictIngress("own", "shop.team-b.example.com")))
	})
}

// TestConflictConcurrentRequests sends concurrent creates of pods asking
// for the same hostPort through the apiserver to one Portreeve: exactly one
// is admitted, the others are denied naming it, although no informer can
// have shown it yet.
func TestConflictConcurrentRequests(t *testing.T) {
	e := conflictSetup(t)
	const n = 4
	results := make([]conflictResult, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i] = e.create(t, "team-a", conflictPod(fmt.Sprintf("race-%d", i), 9100))
		})
	}
	wg.Wait()
	admitted := 0
	for i, r := range results {
		if r.err == nil {
			admitted++
			continue
		}
		if !strings.Contains(r.stderr, "host-port-conflicts: hostPort 9100/TCP is already held by team-a/Pod/race-") {
			t.Errorf("request %d: unexpected denial:\n%s", i, r)
		}
	}
	if admitted != 1 {
		t.Fatalf("%d of %d concurrent requests for hostPort 9100 admitted, want 1", admitted, n)
	}
	pods := e.kubectl(t, "", "get", "pods", "-n", "team-a", "-o", "name")
	if got := strings.Count(pods.stdout, "pod/race-"); got != 1 {
		t.Errorf("%d race pods stored, want 1:\n%s", got, pods)
	}
}
