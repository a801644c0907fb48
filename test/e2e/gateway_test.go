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
// them), and team-a one CIDR for Gateway addresses. team-a and the
// platform team's infra namespace may create Gateways (loadBalancer);
// team-b only of the internal class cluster-local.
const gatewayConfig = `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules: {}
gatewayAPI:
  internalClasses: [cluster-local]
grants:
  - name: team-a
    namespaces: [team-a]
    ingressDomains: ["*.team-a.example.com"]
    externalIPs: [203.0.113.0/24]
    loadBalancer: true
  - name: team-b
    namespaces: [team-b]
    ingressDomains: ["*.example.com"]
    reason: shares the example.com zone
  - name: infra
    namespaces: [infra]
    ingressDomains: ["*"]
    loadBalancer: true
    reason: the platform team's shared Gateways
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
	return routeTo(name, "{name: gw, namespace: team-a}", hosts...)
}

// routeTo is an HTTPRoute with these parentRefs (a YAML flow list's
// entries) and hostnames (none: it inherits its listeners').
func routeTo(name, parents string, hosts ...string) string {
	hostnames := ""
	if len(hosts) > 0 {
		hostnames = `  hostnames: ["` + strings.Join(hosts, `", "`) + `"]` + "\n"
	}
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s}
spec:
  parentRefs: [%s]
%s  rules: [{backendRefs: [{name: web, port: 80}]}]
`, name, parents, hostnames)
}

// sharedGateway is the platform team's Gateway: a listener per team domain,
// one outside every team's, and one for every host.
const sharedGateway = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared}
spec:
  gatewayClassName: shared
  listeners:
    - {name: team-a, port: 443, protocol: HTTPS, hostname: "*.team-a.example.com"}
    - {name: org, port: 443, protocol: HTTPS, hostname: shop.example.org}
    - {name: all, port: 80, protocol: HTTP}
`

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
	for _, ns := range []string{"default", "kube-system", "team-a", "team-b", "infra", harness.Namespace} {
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
	t.Run("a Gateway needs the loadBalancer grant unless its class is internal", func(t *testing.T) {
		conflictDenied(t, e.create(t, "team-b", gateway("own", "own.example.com")), "gateway-load-balancer",
			`a Gateway of class "shared" provisions a load balancer, which is not granted to namespace "team-b"`, "spec.gatewayClassName")
		internal := strings.Replace(gateway("mesh", "mesh.example.com"), "gatewayClassName: shared", "gatewayClassName: cluster-local", 1)
		conflictAdmitted(t, e.create(t, "team-b", internal))
		conflictAdmitted(t, e.create(t, "infra", sharedGateway))
		conflictAdmitted(t, e.create(t, "infra", strings.Replace(sharedGateway, "name: shared}", "name: other}", 1)))
	})
	t.Run("a route without hostnames is judged by the hostnames it inherits", func(t *testing.T) {
		conflictDenied(t, e.create(t, "team-b", routeTo("org", "{name: shared, namespace: infra, sectionName: org}")), "gateway-hosts",
			`hostname "shop.example.org" (inherited from listener "org" of infra/Gateway/shared) is not inside a domain granted to namespace "team-b"`,
			"spec.parentRefs[0]")
		conflictDenied(t, e.create(t, "team-b", routeTo("all", "{name: shared, namespace: infra, sectionName: all}")), "gateway-hosts",
			`hostname "*" (inherited from listener "all" of infra/Gateway/shared)`)
		conflictAdmitted(t, e.create(t, "team-a", routeTo("inherits", "{name: shared, namespace: infra, sectionName: team-a}")))
		// team-a now holds *.team-a.example.com on the shared Gateway's listener.
		conflictDenied(t, e.create(t, "team-b", routeTo("z", "{name: shared, namespace: infra}", "z.team-a.example.com")),
			"ingress-host-conflicts", `host "z.team-a.example.com" path "/" is already claimed in another namespace by team-a/HTTPRoute/inherits`)
	})
	t.Run("routes conflict per parent Gateway, and everywhere when the parent is unknown", func(t *testing.T) {
		conflictAdmitted(t, e.create(t, "team-b", routeTo("elsewhere", "{name: other, namespace: infra}", "z.team-a.example.com", "a.team-a.example.com")))
		conflictDenied(t, e.create(t, "team-b", routeTo("unknown", "{name: later, namespace: infra}", "a.team-a.example.com")),
			"ingress-host-conflicts", "team-a/HTTPRoute/web")
		r := e.create(t, "team-b", routeTo("waits", "{name: later, namespace: infra}"))
		conflictAdmitted(t, r)
		if !strings.Contains(r.stderr, "its parent infra/Gateway/later is not known to Portreeve") {
			t.Errorf("no warning about the unknown parent:\n%s", r)
		}
	})
	if log := p.LogTail(); !strings.Contains(log, "watching a CRD kind") {
		t.Errorf("serve's log does not say it started watching the Gateway API kinds:\n%s", log)
	}
}
