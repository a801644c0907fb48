package suggest

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/inventory"
	"github.com/portreeve/portreeve/webhook/offline"
	"github.com/portreeve/portreeve/webhook/review"
)

// gatewayCases are suggestCases for the Gateway API kinds. inventory lists
// objects that, reviewed after the case's objects under the suggestion with
// an inventory of those objects (as serve would), must be refused: routes
// that inherit hostnames the suggestion does not grant.
var gatewayCases = []struct {
	suggestCase
	inventoryWider string
}{
	{suggestCase: suggestCase{
		name: "Gateways: loadBalancer without classes, addresses, listener hostnames (* without one); ListenerSets and routes: hostnames",
		objects: `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: infra}
spec:
  gatewayClassName: cloud
  addresses: [{type: IPAddress, value: 203.0.113.10}, {value: "2001:db8::10"}]
  listeners:
    - {name: shop, port: 443, protocol: HTTPS, hostname: "*.shop.example.com"}
    - {name: www, port: 443, protocol: HTTPS, hostname: www.shop.example.com}
    - {name: org, port: 443, protocol: HTTPS, hostname: shop.example.org}
---
apiVersion: v1
kind: Service
metadata: {name: metal, namespace: infra}
spec: {type: LoadBalancer, loadBalancerClass: metal.example.com/lb, allocateLoadBalancerNodePorts: false, ports: [{port: 443}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: catch-all, namespace: edge}
spec:
  gatewayClassName: cloud
  listeners:
    - {name: http, port: 80, protocol: HTTP}
    - {name: api, port: 443, protocol: HTTPS, hostname: api.example.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: extra, namespace: team-b}
spec:
  parentRef: {name: shared, namespace: infra}
  listeners: [{name: b, port: 443, protocol: HTTPS, hostname: b.team-b.example.com}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: team-a}
spec:
  parentRefs: [{name: shared, namespace: infra}]
  hostnames: [a.shop.example.com, shop.example.org]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: api, namespace: team-a}
spec:
  parentRefs: [{name: shared, namespace: infra}]
  hostnames: [api.team-a.example.com]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: db, namespace: team-b}
spec:
  parentRefs: [{name: shared, namespace: infra}]
  hostnames: [db.team-b.example.com]
  rules: [{backendRefs: [{name: db, port: 5432}]}]
`,
		grants: `  - name: ns-edge
    namespaces: [edge]
    loadBalancer: true
    ingressDomains: ["*"]
    reason: in use by Gateway/catch-all (portreeve suggest)
  - name: ns-infra
    namespaces: [infra]
    loadBalancer: true
    externalIPs: ["203.0.113.10/32", "2001:db8::10/128"]
    ingressDomains: ["*.shop.example.com", shop.example.org]
    reason: in use by Gateway/shared, Service/metal (portreeve suggest)
  - name: ns-team-a
    namespaces: [team-a]
    ingressDomains: [a.shop.example.com, api.team-a.example.com, shop.example.org]
    reason: in use by GRPCRoute/api, HTTPRoute/shop (portreeve suggest)
  - name: ns-team-b
    namespaces: [team-b]
    ingressDomains: [b.team-b.example.com, db.team-b.example.com]
    reason: in use by ListenerSet/extra, TLSRoute/db (portreeve suggest)
`,
		wider: `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: infra}
spec:
  gatewayClassName: cloud
  addresses: [{value: 203.0.113.11}]
  listeners: [{name: shop, port: 443, protocol: HTTPS, hostname: "*.shop.example.com"}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: infra}
spec:
  gatewayClassName: cloud
  listeners: [{name: all, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: own, namespace: team-a}
spec:
  gatewayClassName: cloud
  listeners: [{name: a, port: 443, protocol: HTTPS, hostname: a.shop.example.com}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: extra, namespace: team-b}
spec:
  parentRef: {name: shared, namespace: infra}
  listeners: [{name: all, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: team-a}
spec:
  parentRefs: [{name: shared, namespace: infra}]
  hostnames: [b.shop.example.com]
`,
	}},
	{suggestCase: suggestCase{
		name: "routes without hostnames: the hostnames of the listeners their parentRefs select (sectionName, port); a parent not read is reported",
		objects: `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: infra}
spec:
  gatewayClassName: cloud
  listeners:
    - {name: web, port: 443, protocol: HTTPS, hostname: "*.shop.example.com"}
    - {name: plain, port: 80, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: more, namespace: infra}
spec:
  parentRef: {name: shared}
  listeners: [{name: net, port: 443, protocol: HTTPS, hostname: more.example.net}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: team-a}
spec:
  parentRefs: [{name: shared, namespace: infra, sectionName: web}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: all, namespace: team-b}
spec:
  parentRefs: [{name: shared, namespace: infra, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: later, namespace: team-c}
spec:
  parentRefs: [{name: missing, namespace: infra}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mesh, namespace: team-d}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: more, namespace: team-e}
spec:
  parentRefs: [{kind: ListenerSet, name: more, namespace: infra}]
`,
		grants: `  - name: ns-infra
    namespaces: [infra]
    loadBalancer: true
    ingressDomains: ["*"]
    reason: in use by Gateway/shared, ListenerSet/more (portreeve suggest)
  - name: ns-team-a
    namespaces: [team-a]
    ingressDomains: ["*.shop.example.com"]
    reason: in use by HTTPRoute/web (portreeve suggest)
  - name: ns-team-b
    namespaces: [team-b]
    ingressDomains: ["*"]
    reason: in use by HTTPRoute/all (portreeve suggest)
  - name: ns-team-e
    namespaces: [team-e]
    ingressDomains: [more.example.net]
    reason: in use by GRPCRoute/more (portreeve suggest)
`,
		problems: []string{"spec.parentRefs[0]: the route has no hostnames and its parent infra/Gateway/missing was not read"},
		wider: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: team-a}
spec:
  parentRefs: [{name: shared, namespace: infra}]
  hostnames: [shop.example.com]
`,
	}, inventoryWider: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: team-a}
spec:
  parentRefs: [{name: shared, namespace: infra, sectionName: plain}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: more, namespace: team-e}
spec:
  parentRefs: [{name: shared, namespace: infra, sectionName: web}]
`},
	{suggestCase: suggestCase{
		name: "route host conflicts: two namespaces on one listener, a route and an Ingress; not routes on different Gateways or sections",
		objects: `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: infra}
spec:
  gatewayClassName: cloud
  listeners:
    - {name: web, port: 443, protocol: HTTPS, hostname: "*.example.com"}
    - {name: other, port: 8443, protocol: HTTPS, hostname: "*.example.com"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: second, namespace: infra}
spec:
  gatewayClassName: cloud
  listeners: [{name: web, port: 443, protocol: HTTPS, hostname: "*.example.com"}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: third, namespace: infra}
spec:
  gatewayClassName: cloud
  listeners: [{name: web, port: 443, protocol: HTTPS, hostname: "*.example.net"}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: team-a}
spec: {parentRefs: [{name: shared, namespace: infra}], hostnames: [app.example.com]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: team-b}
spec: {parentRefs: [{name: shared, namespace: infra}], hostnames: [app.example.com]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: team-c}
spec: {parentRefs: [{name: second, namespace: infra}], hostnames: [app.example.com]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split, namespace: team-d}
spec: {parentRefs: [{name: shared, namespace: infra, sectionName: web}], hostnames: [split.example.com]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split, namespace: team-e}
spec: {parentRefs: [{name: shared, namespace: infra, sectionName: other}], hostnames: [split.example.com]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: team-f}
spec:
  ingressClassName: nginx
  rules: [{host: shop.example.com}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: team-g}
spec: {parentRefs: [{name: second, namespace: infra}], hostnames: [shop.example.com]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: inherit, namespace: team-h}
spec: {parentRefs: [{name: third, namespace: infra}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: inherit, namespace: team-i}
spec: {parentRefs: [{name: third, namespace: infra, sectionName: web}]}
`,
		grants: `  - name: ns-infra
    namespaces: [infra]
    loadBalancer: true
    ingressDomains: ["*.example.com", "*.example.net"]
    reason: in use by Gateway/second, Gateway/shared, Gateway/third (portreeve suggest)
  - name: ns-team-c
    namespaces: [team-c]
    ingressDomains: [app.example.com]
    reason: in use by HTTPRoute/app (portreeve suggest)
  - name: ns-team-d
    namespaces: [team-d]
    ingressDomains: [split.example.com]
    reason: in use by HTTPRoute/split (portreeve suggest)
  - name: ns-team-e
    namespaces: [team-e]
    ingressDomains: [split.example.com]
    reason: in use by HTTPRoute/split (portreeve suggest)
`,
		problems: []string{
			"route hostname *.example.net path / is claimed in 2 namespaces",
			"route hostname app.example.com path / is claimed in 2 namespaces",
			"Ingress and route host shop.example.com path / is claimed in 2 namespaces",
		},
		refused: []string{
			"team-a/HTTPRoute/app", "team-b/HTTPRoute/app", "team-f/Ingress/shop", "team-g/HTTPRoute/shop",
			"team-h/HTTPRoute/inherit", "team-i/HTTPRoute/inherit",
		},
		unjudged: []string{"team-h/HTTPRoute/inherit", "team-i/HTTPRoute/inherit"},
	}},
	{suggestCase: suggestCase{
		name: "--merge: internal classes need no loadBalancer, a class restriction does not cover a Gateway; addresses that are not IPs; --wildcard-domains",
		base: `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
gatewayAPI: {internalClasses: [cluster-local]}
grants:
  - name: lb
    namespaces: [team-x]
    loadBalancer: {classes: [metal]}
`,
		opts: Options{WildcardDomains: true},
		objects: `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: mesh, namespace: team-m}
spec:
  gatewayClassName: cluster-local
  listeners: [{name: m, port: 80, protocol: HTTP, hostname: a.mesh.team-m.example.com}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: team-m}
spec: {parentRefs: [{name: mesh}], hostnames: [web.team-m.example.com]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: team-x}
spec:
  gatewayClassName: cloud
  addresses: [{type: Hostname, value: lb.example.com}, {value: not-an-ip}]
  listeners: [{name: x, port: 443, protocol: HTTPS, hostname: example.org}]
`,
		grants: `  - name: ns-team-m
    namespaces: [team-m]
    ingressDomains: ["*.mesh.team-m.example.com", "*.team-m.example.com"]
    reason: in use by Gateway/mesh, HTTPRoute/web (portreeve suggest)
  - name: ns-team-x
    namespaces: [team-x]
    loadBalancer: true
    ingressDomains: [example.org]
    reason: in use by Gateway/gw (portreeve suggest)
`,
		problems: []string{
			`spec.addresses[0].value: address "lb.example.com" of type Hostname is granted only by externalIPs 0.0.0.0/0 or ::/0`,
			`spec.addresses[1].value: "not-an-ip" is not an IP address`,
		},
		refused: []string{"team-x/Gateway/gw"},
		wider: `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: mesh, namespace: team-m}
spec:
  gatewayClassName: cloud
  listeners: [{name: m, port: 80, protocol: HTTP, hostname: a.mesh.team-m.example.com}]
`,
	}},
}

func TestSuggestGatewayAPI(t *testing.T) {
	for _, tc := range gatewayCases {
		t.Run(tc.name, func(t *testing.T) {
			res := runSuggestCase(t, tc.suggestCase)
			out, err := Marshal(res.Config, nil)
			if err != nil {
				t.Fatal(err)
			}
			refused := map[string]bool{}
			for _, r := range tc.refused {
				refused[r] = true
			}
			for ref, allowed := range reviewWithInventory(t, out, objectsOf(t, tc.objects), objectsOf(t, tc.inventoryWider)) {
				if wider, ok := strings.CutPrefix(ref, "wider "); ok {
					if allowed {
						t.Errorf("wider object %s is allowed under the inventory: the grants are too wide\n%s", wider, out)
					}
				} else if allowed == refused[ref] {
					t.Errorf("%s: allowed %v under the inventory, want %v", ref, allowed, !refused[ref])
				}
			}
		})
	}
}

// reviewWithInventory reviews the objects as serve would under the
// configuration text, with an inventory that learns every object admitted
// (Gateways and ListenerSets first, so that routes without hostnames inherit
// their listeners' hostnames), and then the wider objects. It returns
// whether each was allowed, the wider ones prefixed with "wider ".
func reviewWithInventory(t *testing.T, config []byte, objects, wider []Object) map[string]bool {
	t.Helper()
	cfg, err := policies.ParseConfig(config, nil)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := policies.New(t.Context(), policies.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	inv := inventory.New(inventory.Options{})
	inv.MarkSynced()
	r := review.NewReviewer(engine)
	r.UseFacts(inv)
	out := map[string]bool{}
	do := func(prefix string, o Object) {
		req, err := offline.NewRequest(o.JSON, nil, "default", User)
		if err != nil {
			t.Fatalf("%s: %v", o.Source, err)
		}
		outcome, err := offline.Review(t.Context(), r, req)
		if err != nil {
			t.Fatalf("%s: %v", o.Source, err)
		}
		out[prefix+Ref{outcome.Namespace, outcome.Kind, outcome.Name}.String()] = outcome.Allowed
	}
	isParent := func(o Object) bool {
		var head struct{ Kind string }
		if err := json.Unmarshal(o.JSON, &head); err != nil {
			t.Fatal(err)
		}
		return head.Kind == "Gateway" || head.Kind == "ListenerSet"
	}
	for _, first := range []bool{true, false} {
		for _, o := range objects {
			if isParent(o) == first {
				do("", o)
			}
		}
	}
	for _, o := range wider {
		do("wider ", o)
	}
	return out
}
