package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
)

// gatewayConfig grants team-a its own domain and team-b a parent domain
// covering it (so that the conflict rule, not the grants, stands between
// them), and team-a one CIDR for Gateway addresses.
const gatewayConfig = `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules: {}
grants:
  - name: team-a
    namespaces: [team-a]
    ingressDomains: ["*.team-a.example.com"]
    externalIPs: [203.0.113.0/24]
  - name: team-b
    namespaces: [team-b]
    ingressDomains: ["*.example.com"]
    reason: shares the example.com zone
`

// gatewayCRDs returns the Gateway API standard CRDs hack/tools.sh wrote
// from the Go module sigs.k8s.io/gateway-api.
func gatewayCRDs(t *testing.T) string {
	t.Helper()
	binDir := controlplane.RequireTools(t, controlplane.Options{}, controlplane.BinKubectl)
	files, _ := filepath.Glob(filepath.Join(binDir, "gateway-api-*-crds.yaml"))
	if len(files) == 0 {
		err := fmt.Errorf("no gateway-api-*-crds.yaml in %s (run hack/tools.sh)", binDir)
		if v := os.Getenv(controlplane.EnvRequireTools); v != "" && v != "0" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return files[len(files)-1]
}

func gateway(name string, hosts ...string) string {
	var ls []string
	for i, h := range hosts {
		ls = append(ls, fmt.Sprintf("{name: l%d, port: 80, protocol: HTTP, hostname: %q}", i, h))
	}
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: %s}
spec:
  gatewayClassName: shared
  listeners: [%s]
`, name, strings.Join(ls, ", "))
}

func httpRoute(name string, hosts ...string) string {
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s}
spec:
  parentRefs: [{name: gw, namespace: team-a}]
  hostnames: [%s]
  rules: [{backendRefs: [{name: web, port: 80}]}]
`, name, `"`+strings.Join(hosts, `", "`)+`"`)
}

// TestGatewayAPI: serve starts on a cluster without the Gateway API CRDs
// and serves; once the CRDs are applied, Gateways and routes are reviewed
// under the namespaces' ingressDomains grants, and the routes join the
// inventory (discovery polled every second here), so that a host an
// HTTPRoute of team-a claims is denied to an HTTPRoute or an Ingress of
// team-b, naming the route; an UPDATE that adds a hostname is reviewed.
func TestGatewayAPI(t *testing.T) {
	crds := gatewayCRDs(t)
	cp := controlplane.StartForTest(t, controlplane.Options{})
	ctx := t.Context()
	for _, ns := range []string{"default", "kube-system", "team-a", "team-b", harness.Namespace} {
		if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Started (and its webhooks answering) before the CRDs exist.
	p := harness.StartForTest(t, cp, harness.Options{Config: gatewayConfig, ExtraArgs: []string{"--crd-poll-interval=1s"}})
	e := &conflictEnv{cp: cp, p: p}
	conflictAdmitted(t, e.create(t, "team-a", conflictIngress("before", "before.team-a.example.com")))

	applyCRDs(ctx, t, cp, crds)

	// The first create waits for kubectl and the apiserver to know the kind.
	var r conflictResult
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		r = e.create(t, "team-a", gateway("outside", "a.team-a.example.com", "bank.example.org"))
		if r.err == nil || strings.Contains(r.stderr, "denied the request") || time.Now().After(deadline) {
			break
		}
	}
	t.Run("a Gateway listener hostname outside the namespace's domains is denied", func(t *testing.T) {
		conflictDenied(t, r, "gateway-hosts", `hostname "bank.example.org" is not inside a domain granted to namespace "team-a"`, "spec.listeners[1].hostname")
		conflictAdmitted(t, e.create(t, "team-a", gateway("gw", "*.team-a.example.com")))
	})
	t.Run("a Gateway address outside the externalIPs grant is denied", func(t *testing.T) {
		gw := strings.Replace(gateway("addr", "x.team-a.example.com"), "  gatewayClassName: shared\n",
			"  gatewayClassName: shared\n  addresses: [{value: 198.51.100.1}]\n", 1)
		conflictDenied(t, e.create(t, "team-a", gw), "gateway-addresses", `address "198.51.100.1"`)
	})

	conflictAdmitted(t, e.create(t, "team-a", httpRoute("web", "a.team-a.example.com")))
	// The route reaches the inventory once discovery shows HTTPRoutes and
	// their informer lists them: a dry run from team-b is denied then.
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(time.Second) {
		r = e.create(t, "team-b", httpRoute("probe", "a.team-a.example.com"), "--dry-run=server")
		if r.err != nil || time.Now().After(deadline) {
			break
		}
	}
	t.Run("the same host as an HTTPRoute in team-b is denied naming the route", func(t *testing.T) {
		conflictDenied(t, r, "ingress-host-conflicts", `host "a.team-a.example.com" path "/" is already claimed in another namespace by team-a/HTTPRoute/web`)
		conflictDenied(t, e.create(t, "team-b", httpRoute("wild", "*.team-a.example.com")), "team-a/HTTPRoute/web")
	})
	t.Run("the same host as an Ingress in team-b is denied naming the route", func(t *testing.T) {
		conflictDenied(t, e.create(t, "team-b", conflictIngress("shop", "a.team-a.example.com")), "ingress-host-conflicts", "team-a/HTTPRoute/web")
	})
	t.Run("team-a may add to its own host", func(t *testing.T) {
		conflictAdmitted(t, e.create(t, "team-a", httpRoute("more", "a.team-a.example.com")))
	})
	t.Run("an UPDATE that adds a hostname is reviewed", func(t *testing.T) {
		conflictAdmitted(t, e.create(t, "team-b", httpRoute("b", "b.example.com")))
		add := func(host string) conflictResult {
			return e.kubectl(t, "", "patch", "-n", "team-b", "httproute", "b", "--type=json",
				"-p", `[{"op":"add","path":"/spec/hostnames/-","value":"`+host+`"}]`)
		}
		conflictDenied(t, add("a.team-a.example.com"), "team-a/HTTPRoute/web", "spec.hostnames[1]")
		conflictDenied(t, add("bank.example.org"), "gateway-hosts", "spec.hostnames[1]")
		conflictAdmitted(t, add("c.example.com"))
	})
	t.Run("portreeve ports shows the routes' hosts", func(t *testing.T) {
		r := portsJSON(t, cp, "--host", "a.team-a.example.com")
		var holders []string
		for _, h := range r.Hosts {
			holders = append(holders, h.Holder.Namespace+"/"+h.Holder.Kind+"/"+h.Holder.Name)
		}
		if !slices.Contains(holders, "team-a/HTTPRoute/web") || !slices.Contains(holders, "team-a/HTTPRoute/more") {
			t.Errorf("hosts of a.team-a.example.com: %v", holders)
		}
	})
	if log := p.LogTail(); !strings.Contains(log, "watching a CRD kind") {
		t.Errorf("serve's log does not say it started watching the Gateway API kinds:\n%s", log)
	}
}
