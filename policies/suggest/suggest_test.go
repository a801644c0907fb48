package suggest

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/offline"
	"github.com/portreeve/portreeve/webhook/review"
)

// objectsOf reads YAML documents separated by "---" lines.
func objectsOf(t *testing.T, docs string) []Object {
	t.Helper()
	var out []Object
	for i, d := range strings.Split(docs, "\n---\n") {
		if strings.TrimSpace(d) == "" {
			continue
		}
		js, err := yaml.YAMLToJSON([]byte(d))
		if err != nil {
			t.Fatalf("document %d: %v", i+1, err)
		}
		out = append(out, Object{Source: fmt.Sprintf("test#%d", i+1), JSON: js})
	}
	return out
}

// grantsYAML renders grants as Marshal writes them in a configuration.
func grantsYAML(t *testing.T, grants []policies.Grant) string {
	t.Helper()
	if len(grants) == 0 {
		return ""
	}
	out, err := marshal(&policies.Config{Grants: grants})
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(out), "grants:\n")
	return after
}

// reviewAll reviews every object under the configuration text as eval
// does, with every rule denying but those switched off (the suggestion is
// for enforcing), and returns the reports by object and source.
func reviewAll(t *testing.T, config []byte, objects []Object) map[string]*offline.Report {
	t.Helper()
	cfg, err := policies.ParseConfig(config, nil)
	if err != nil {
		t.Fatalf("the suggested configuration does not parse: %v\n%s", err, config)
	}
	for id, rc := range cfg.Rules {
		if rc.Mode != policies.ModeOff {
			delete(cfg.Rules, id)
		}
	}
	engine, err := policies.New(t.Context(), policies.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	r := review.NewReviewer(engine)
	out := map[string]*offline.Report{}
	for _, o := range objects {
		req, err := offline.NewRequest(o.JSON, nil, "default", User)
		if err != nil {
			t.Fatalf("%s: %v", o.Source, err)
		}
		outcome, err := offline.Review(t.Context(), r, req)
		if err != nil {
			t.Fatalf("%s: %v", o.Source, err)
		}
		rep, err := outcome.Report(o.Source)
		if err != nil {
			t.Fatalf("%s: %v", o.Source, err)
		}
		out[Ref{rep.Namespace, rep.Kind, rep.Name}.String()+" "+o.Source] = rep
	}
	return out
}

type suggestCase struct {
	name    string
	objects string
	// base is the configuration added to (--merge); "" is the built-in one.
	base string
	opts Options
	// grants are the new grants, as the output writes them.
	grants string
	// problems are substrings of the conflicts and inexact exposure reported.
	problems []string
	// refused are the objects the suggestion still refuses.
	refused []string
	// unjudged are refused objects that eval admits all the same: without
	// an inventory it does not judge what a route inherits from its parents.
	unjudged []string
	// wider are objects a little wider than the input: each must be denied.
	wider string
}

var suggestCases = []suggestCase{
	{
		name: "hostNetwork DaemonSet under the default service account: a namespace grant, every containerPort a hostPort",
		objects: `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: calico-node, namespace: calico-system}
spec:
  template:
    spec:
      hostNetwork: true
      initContainers:
        - {name: init, image: x, ports: [{containerPort: 9099}]}
      containers:
        - name: calico-node
          image: calico/node
          ports:
            - {containerPort: 179}
            - {containerPort: 4789, protocol: UDP}
            - {containerPort: 9091, hostPort: 9091, protocol: TCP}
`,
		grants: `  - name: ns-calico-system
    namespaces: [calico-system]
    hostNetwork: true
    hostPorts: ["179/TCP", "4789/UDP", "9091/TCP", "9099/TCP"]
    reason: in use by DaemonSet/calico-node (portreeve suggest)
`,
		wider: `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: calico-node, namespace: calico-system}
spec:
  template:
    spec:
      hostNetwork: true
      containers: [{name: c, image: x, ports: [{containerPort: 179}, {containerPort: 5473}]}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: calico-node, namespace: calico-system}
spec:
  template:
    spec:
      hostNetwork: true
      containers: [{name: c, image: x, ports: [{containerPort: 4789, protocol: TCP}]}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: other, namespace: calico-apiserver}
spec:
  template:
    spec:
      hostNetwork: true
      containers: [{name: c, image: x}]
`,
	},
	{
		name: "a workload under its own service account: a service-account grant",
		objects: `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-exporter, namespace: monitoring}
spec:
  template:
    spec:
      serviceAccountName: node-exporter
      hostNetwork: true
      containers: [{name: node-exporter, image: x, ports: [{containerPort: 9100, hostPort: 9100}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: debug, namespace: monitoring}
spec:
  serviceAccount: debugger
  containers: [{name: c, image: x, ports: [{containerPort: 8080, hostPort: 18080}]}]
`,
		grants: `  - name: sa-monitoring-debugger
    serviceAccounts: [monitoring/debugger]
    hostPorts: ["18080/TCP"]
    reason: in use by Pod/debug (portreeve suggest)
  - name: sa-monitoring-node-exporter
    serviceAccounts: [monitoring/node-exporter]
    hostNetwork: true
    hostPorts: ["9100/TCP"]
    reason: in use by DaemonSet/node-exporter (portreeve suggest)
`,
		wider: `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-exporter, namespace: monitoring}
spec:
  template:
    spec:
      hostNetwork: true
      containers: [{name: node-exporter, image: x, ports: [{containerPort: 9100, hostPort: 9100}]}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-exporter, namespace: monitoring}
spec:
  template:
    spec:
      serviceAccountName: node-exporter
      hostNetwork: true
      containers: [{name: node-exporter, image: x, ports: [{containerPort: 9100}, {containerPort: 9101}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: debug, namespace: monitoring}
spec:
  serviceAccountName: debugger
  hostNetwork: true
  containers: [{name: c, image: x, ports: [{containerPort: 18080}]}]
`,
	},
	{
		name: "hostPorts are granted exactly, not as a range, per protocol",
		objects: `
apiVersion: apps/v1
kind: Deployment
metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
spec:
  template:
    spec:
      serviceAccountName: ingress-nginx
      containers:
        - name: controller
          image: x
          ports: [{containerPort: 80, hostPort: 80}, {containerPort: 443, hostPort: 443}, {containerPort: 8443}]
`,
		grants: `  - name: sa-ingress-nginx-ingress-nginx
    serviceAccounts: [ingress-nginx/ingress-nginx]
    hostPorts: ["80/TCP", "443/TCP"]
    reason: in use by Deployment/ingress-nginx-controller (portreeve suggest)
`,
		wider: `
apiVersion: apps/v1
kind: Deployment
metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
spec:
  template:
    spec:
      serviceAccountName: ingress-nginx
      containers: [{name: c, image: x, ports: [{containerPort: 80, hostPort: 81}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
spec:
  template:
    spec:
      serviceAccountName: ingress-nginx
      containers: [{name: c, image: x, ports: [{containerPort: 443, hostPort: 443, protocol: UDP}]}]
`,
	},
	{
		name: "NodePort and LoadBalancer Services: explicit and allocated nodePorts, healthCheckNodePort, classes",
		objects: `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-a}
spec:
  type: NodePort
  ports: [{port: 80, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: shop, namespace: team-b}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  healthCheckNodePort: 32000
  ports: [{name: http, port: 80, nodePort: 31380}, {name: https, port: 443, nodePort: 31443}]
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: team-c}
spec:
  type: LoadBalancer
  loadBalancerClass: example.com/internal
  allocateLoadBalancerNodePorts: false
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: team-d}
spec:
  ports: [{port: 80}]
`,
		grants: `  - name: ns-team-a
    namespaces: [team-a]
    nodePorts: ["30080"]
    reason: in use by Service/web (portreeve suggest)
  - name: ns-team-b
    namespaces: [team-b]
    nodePorts: ["31380", "31443", "32000"]
    loadBalancer: true
    reason: in use by Service/shop (portreeve suggest)
  - name: ns-team-c
    namespaces: [team-c]
    loadBalancer: {classes: [example.com/internal]}
    reason: in use by Service/internal (portreeve suggest)
`,
		wider: `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-a}
spec:
  type: NodePort
  ports: [{port: 80, nodePort: 30081}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-a}
spec:
  type: LoadBalancer
  ports: [{port: 80, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: team-c}
spec:
  type: LoadBalancer
  allocateLoadBalancerNodePorts: false
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: team-c}
spec:
  type: LoadBalancer
  loadBalancerClass: example.com/internal
  ports: [{port: 80, nodePort: 30090}]
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: team-d}
spec:
  type: NodePort
  ports: [{port: 80, nodePort: 30080}]
`,
	},
	{
		name: "externalIPs and loadBalancerIP: one address each, IPv4 and IPv6",
		objects: `
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: team-a}
spec:
  externalIPs: [203.0.113.10, "2001:db8::10"]
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: pinned, namespace: team-a}
spec:
  type: LoadBalancer
  allocateLoadBalancerNodePorts: false
  loadBalancerIP: 198.51.100.7
  ports: [{port: 80}]
`,
		grants: `  - name: ns-team-a
    namespaces: [team-a]
    loadBalancer: true
    externalIPs: ["198.51.100.7/32", "203.0.113.10/32", "2001:db8::10/128"]
    reason: in use by Service/legacy, Service/pinned (portreeve suggest)
`,
		wider: `
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: team-a}
spec:
  externalIPs: [203.0.113.11]
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: team-a}
spec:
  externalIPs: ["2001:db8::11"]
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: pinned, namespace: team-a}
spec:
  type: LoadBalancer
  allocateLoadBalancerNodePorts: false
  loadBalancerIP: 198.51.100.8
  ports: [{port: 80}]
`,
	},
	{
		name: "Ingress hosts (rules and TLS) and classes (field and annotation), exact",
		objects: `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: team-a
  annotations: {kubernetes.io/ingress.class: nginx}
spec:
  tls: [{hosts: [a.team-a.example.com, b.team-a.example.com]}]
  rules: [{host: a.team-a.example.com}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: api, namespace: team-a}
spec:
  ingressClassName: nginx-internal
  rules: [{host: api.team-a.example.com}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: team-b}
spec:
  ingressClassName: nginx
  rules: [{host: shop.example.com}]
`,
		grants: `  - name: ns-team-a
    namespaces: [team-a]
    ingressDomains: [a.team-a.example.com, api.team-a.example.com, b.team-a.example.com]
    ingressClasses: [nginx, nginx-internal]
    reason: in use by Ingress/api, Ingress/web (portreeve suggest)
  - name: ns-team-b
    namespaces: [team-b]
    ingressDomains: [shop.example.com]
    ingressClasses: [nginx]
    reason: in use by Ingress/shop (portreeve suggest)
`,
		wider: `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: team-a}
spec:
  ingressClassName: nginx
  rules: [{host: c.team-a.example.com}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: team-a}
spec:
  ingressClassName: traefik
  rules: [{host: a.team-a.example.com}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: team-a}
spec:
  rules: [{host: a.team-a.example.com}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: team-b}
spec:
  ingressClassName: nginx
  rules: [{host: a.team-a.example.com}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: other, namespace: team-c}
spec:
  rules: [{host: other.example.com}]
`,
	},
	{
		name: "an Ingress without a class leaves its namespace's classes unrestricted",
		objects: `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: a, namespace: team-a}
spec:
  ingressClassName: nginx
  rules: [{host: a.example.com}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: b, namespace: team-a}
spec:
  rules: [{host: b.example.com}]
`,
		grants: `  - name: ns-team-a
    namespaces: [team-a]
    ingressDomains: [a.example.com, b.example.com]
    reason: in use by Ingress/a, Ingress/b (portreeve suggest)
`,
		wider: `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: a, namespace: team-a}
spec:
  rules: [{host: c.example.com}]
`,
	},
	{
		name: "--wildcard-domains grants *.parent for hosts of three labels or more",
		opts: Options{WildcardDomains: true},
		objects: `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: team-a}
spec:
  ingressClassName: nginx
  rules: [{host: a.team-a.example.com}, {host: b.team-a.example.com}, {host: example.org}, {host: "*.apps.example.net"}]
`,
		grants: `  - name: ns-team-a
    namespaces: [team-a]
    ingressDomains: ["*.apps.example.net", "*.team-a.example.com", example.org]
    ingressClasses: [nginx]
    reason: in use by Ingress/web (portreeve suggest)
`,
		wider: `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: team-a}
spec:
  ingressClassName: nginx
  rules: [{host: team-a.example.com}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: team-a}
spec:
  ingressClassName: nginx
  rules: [{host: www.example.org}]
`,
	},
	{
		name: "--widen grants hostPort ranges per protocol and the whole NodePort range",
		opts: Options{Widen: true, NodePortRange: policies.PortSpan{From: 30000, To: 30999}},
		objects: `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: team-a}
spec:
  template:
    spec:
      containers:
        - name: c
          image: x
          ports: [{containerPort: 1, hostPort: 8000}, {containerPort: 2, hostPort: 8005}, {containerPort: 53, hostPort: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-a}
spec:
  type: NodePort
  ports: [{port: 80}]
`,
		grants: `  - name: ns-team-a
    namespaces: [team-a]
    hostPorts: ["53/UDP", "8000-8005/TCP"]
    nodePorts: ["30000-30999"]
    reason: in use by DaemonSet/agent, Service/web (portreeve suggest)
`,
		wider: `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: team-a}
spec:
  template:
    spec:
      containers: [{name: c, image: x, ports: [{containerPort: 1, hostPort: 8006}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-b}
spec:
  type: NodePort
  ports: [{port: 80}]
`,
	},
	{
		name: "a Service that names no nodePort cannot be granted exactly: reported, not granted",
		objects: `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-a}
spec:
  type: NodePort
  ports: [{port: 80, nodePort: 30080}, {port: 443}]
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: team-a}
spec:
  type: LoadBalancer
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: bad, namespace: team-a}
spec:
  externalIPs: [not-an-ip]
  ports: [{port: 80}]
`,
		grants: `  - name: ns-team-a
    namespaces: [team-a]
    loadBalancer: true
    reason: in use by Service/lb (portreeve suggest)
`,
		problems: []string{
			"Service port 443/TCP names no nodePort",
			"Service port 80/TCP names no nodePort",
			`spec.externalIPs[0]: "not-an-ip" is not an IP address: not granted`,
		},
		refused: []string{"team-a/Service/bad", "team-a/Service/lb", "team-a/Service/web"},
	},
	{
		name: "conflicts are reported and not granted; disjoint nodeSelectors and paths are no conflict",
		objects: `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: exporter, namespace: team-x}
spec:
  template:
    spec:
      containers: [{name: c, image: x, ports: [{containerPort: 9100, hostPort: 9100}, {containerPort: 1, hostPort: 9200}]}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: exporter, namespace: team-y}
spec:
  template:
    spec:
      hostNetwork: true
      containers: [{name: c, image: x, ports: [{containerPort: 9100}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: a, namespace: team-z}
spec:
  template:
    spec:
      nodeSelector: {pool: a}
      containers: [{name: c, image: x, ports: [{containerPort: 8080, hostPort: 8080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: b, namespace: team-z}
spec:
  template:
    spec:
      nodeSelector: {pool: b}
      containers: [{name: c, image: x, ports: [{containerPort: 8080, hostPort: 8080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: idle, namespace: team-z}
spec:
  replicas: 0
  template:
    spec:
      containers: [{name: c, image: x, ports: [{containerPort: 9200, hostPort: 9200}]}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: high, namespace: team-z}
spec:
  template:
    spec:
      containers: [{name: c, image: x, ports: [{containerPort: 30500, hostPort: 30500}]}]
---
apiVersion: v1
kind: Service
metadata: {name: one, namespace: team-a}
spec:
  type: NodePort
  ports: [{port: 80, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: two, namespace: team-b}
spec:
  type: NodePort
  ports: [{port: 80, nodePort: 30080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: app, namespace: team-a}
spec:
  ingressClassName: nginx
  rules: [{host: app.example.com, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: one, port: {number: 80}}}}]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: app, namespace: team-b}
spec:
  ingressClassName: nginx
  rules: [{host: app.example.com, http: {paths: [{path: /api, pathType: Exact, backend: {service: {name: two, port: {number: 80}}}}]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: wild, namespace: team-c}
spec:
  ingressClassName: nginx
  rules: [{host: "*.shared.example.com"}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: one, namespace: team-d}
spec:
  ingressClassName: nginx
  rules: [{host: one.shared.example.com}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: api, namespace: team-e}
spec:
  ingressClassName: nginx
  rules: [{host: paths.example.com, http: {paths: [{path: /api, pathType: Exact, backend: {service: {name: x, port: {number: 80}}}}]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: team-f}
spec:
  ingressClassName: nginx
  rules: [{host: paths.example.com, http: {paths: [{path: /web, pathType: Prefix, backend: {service: {name: x, port: {number: 80}}}}]}}]
`,
		grants: `  - name: ns-team-e
    namespaces: [team-e]
    ingressDomains: [paths.example.com]
    ingressClasses: [nginx]
    reason: in use by Ingress/api (portreeve suggest)
  - name: ns-team-f
    namespaces: [team-f]
    ingressDomains: [paths.example.com]
    ingressClasses: [nginx]
    reason: in use by Ingress/web (portreeve suggest)
  - name: ns-team-x
    namespaces: [team-x]
    hostPorts: ["9200/TCP"]
    reason: in use by DaemonSet/exporter (portreeve suggest)
  - name: ns-team-y
    namespaces: [team-y]
    hostNetwork: true
    reason: in use by DaemonSet/exporter (portreeve suggest)
  - name: ns-team-z
    namespaces: [team-z]
    hostPorts: ["8080/TCP", "9200/TCP"]
    reason: in use by Deployment/a, Deployment/b, Deployment/idle (portreeve suggest)
`,
		problems: []string{
			"hostPort 9100/TCP is held by 2 workloads",
			"hostPort 30500/TCP lies in the NodePort range 30000-32767",
			"nodePort 30080 is held by 2 Services",
			"Ingress host app.example.com path / is claimed in 2 namespaces",
			"Ingress host one.shared.example.com path / is claimed in 2 namespaces",
		},
		refused: []string{
			"team-a/Ingress/app", "team-a/Service/one", "team-b/Ingress/app", "team-b/Service/two", "team-c/Ingress/wild",
			"team-d/Ingress/one", "team-x/DaemonSet/exporter", "team-y/DaemonSet/exporter", "team-z/DaemonSet/high",
		},
	},
	{
		name: "skipped: namespaces never reviewed, objects a reviewed controller stands for, finished Pods, other kinds",
		opts: Options{SkipNamespaces: map[string]string{"kube-system": "", "portreeve-system": "Portreeve's own namespace"}},
		objects: `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: kube-proxy, namespace: kube-system}
spec: {template: {spec: {hostNetwork: true, containers: [{name: c, image: x}]}}}
---
apiVersion: v1
kind: Pod
metadata: {name: portreeve-0, namespace: portreeve-system}
spec: {hostNetwork: true, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: agent-x1
  namespace: team-a
  ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: agent, uid: "1", controller: true}]
spec: {hostNetwork: true, containers: [{name: c, image: x}]}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-5d8
  namespace: team-a
  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: "2", controller: true}]
spec: {template: {spec: {hostNetwork: true, containers: [{name: c, image: x}]}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: db-0
  namespace: team-a
  ownerReferences: [{apiVersion: example.com/v1, kind: Database, name: db, uid: "3", controller: true}]
spec:
  serviceAccountName: db
  containers: [{name: c, image: x, ports: [{containerPort: 5432, hostPort: 5432}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: done, namespace: team-a}
spec: {hostNetwork: true, containers: [{name: c, image: x}]}
status: {phase: Succeeded}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: team-a}
---
apiVersion: v1
kind: Pod
metadata: {name: tool}
spec: {hostNetwork: true, containers: [{name: c, image: x}]}
`,
		grants: `  - name: ns-default
    namespaces: [default]
    hostNetwork: true
    reason: in use by Pod/tool (portreeve suggest)
  - name: sa-team-a-db
    serviceAccounts: [team-a/db]
    hostPorts: ["5432/TCP"]
    reason: in use by Pod/db-0 (portreeve suggest)
`,
	},
	{
		name: "--merge: only what the configuration denies is added; exemptions and live grants count, expired ones do not",
		base: `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  host-network: {mode: warn}
  host-ports: {mode: dryrun}
  load-balancer: {mode: "off"}
grants:
  - name: edge
    serviceAccounts: [ingress-nginx/ingress-nginx]
    hostPorts: ["80"]
  - name: ns-team-b
    namespaces: [team-b]
    nodePorts: ["30000-32767"]
    expires: "2020-01-01"
exemptions:
  - name: cni
    namespaces: [team-x]
    rules: [host-network]
    reason: the CNI agent
`,
		opts: Options{Expires: "2099-12-31"},
		objects: `
apiVersion: apps/v1
kind: Deployment
metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
spec:
  template:
    spec:
      serviceAccountName: ingress-nginx
      containers: [{name: c, image: x, ports: [{containerPort: 80, hostPort: 80}, {containerPort: 443, hostPort: 443}]}]
---
apiVersion: v1
kind: Service
metadata: {name: shop, namespace: team-b}
spec:
  type: LoadBalancer
  ports: [{port: 80, nodePort: 31380}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: cni, namespace: team-x}
spec:
  template:
    spec:
      hostNetwork: true
      containers: [{name: c, image: x, ports: [{containerPort: 9099}]}]
`,
		grants: `  - name: sa-ingress-nginx-ingress-nginx
    serviceAccounts: [ingress-nginx/ingress-nginx]
    hostPorts: ["443/TCP"]
    expires: "2099-12-31"
    reason: in use by Deployment/ingress-nginx-controller (portreeve suggest)
  - name: ns-team-b-2
    namespaces: [team-b]
    nodePorts: ["31380"]
    expires: "2099-12-31"
    reason: in use by Service/shop (portreeve suggest)
  - name: ns-team-x
    namespaces: [team-x]
    hostPorts: ["9099/TCP"]
    expires: "2099-12-31"
    reason: in use by DaemonSet/cni (portreeve suggest)
`,
		wider: `
apiVersion: apps/v1
kind: Deployment
metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
spec:
  template:
    spec:
      serviceAccountName: ingress-nginx
      containers: [{name: c, image: x, ports: [{containerPort: 8443, hostPort: 8443}]}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: cni, namespace: team-x}
spec:
  template:
    spec:
      hostNetwork: true
      containers: [{name: c, image: x, ports: [{containerPort: 9098}]}]
`,
	},
	{
		name: "--merge with Ingress classes already restricted: only the missing class is added; no class cannot be granted",
		base: `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - name: team-a
    namespaces: [team-a]
    ingressDomains: ["*.team-a.example.com"]
    ingressClasses: [nginx]
`,
		objects: `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: a, namespace: team-a}
spec:
  ingressClassName: traefik
  rules: [{host: a.team-a.example.com}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: b, namespace: team-a}
spec:
  rules: [{host: b.team-a.example.com}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: catch-all, namespace: team-b}
spec:
  ingressClassName: nginx
  defaultBackend: {service: {name: x, port: {number: 80}}}
`,
		grants: `  - name: ns-team-a
    namespaces: [team-a]
    ingressClasses: [traefik]
    reason: in use by Ingress/a (portreeve suggest)
`,
		refused: []string{"team-a/Ingress/b", "team-b/Ingress/catch-all"},
		wider: `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: a, namespace: team-a}
spec:
  ingressClassName: haproxy
  rules: [{host: a.team-a.example.com}]
`,
	},
	{
		name: "grant names stay unique",
		objects: `
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: a-b}
spec: {serviceAccountName: c, hostNetwork: true, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: q, namespace: a}
spec: {serviceAccountName: b-c, hostNetwork: true, containers: [{name: c, image: x}]}
`,
		grants: `  - name: sa-a-b-c
    serviceAccounts: [a/b-c]
    hostNetwork: true
    reason: in use by Pod/q (portreeve suggest)
  - name: sa-a-b-c-2
    serviceAccounts: [a-b/c]
    hostNetwork: true
    reason: in use by Pod/p (portreeve suggest)
`,
	},
}

func TestSuggest(t *testing.T) {
	for _, tc := range suggestCases {
		t.Run(tc.name, func(t *testing.T) { runSuggestCase(t, tc) })
	}
}

// runSuggestCase suggests for the case's objects and checks the grants, the
// problems and refusals, that the suggestion fed back to eval admits the
// objects and refuses the wider ones, and that it is deterministic and
// idempotent. It returns the suggestion.
func runSuggestCase(t *testing.T, tc suggestCase) *Result {
	t.Helper()
	objects := objectsOf(t, tc.objects)
	opts := tc.opts
	if tc.base != "" {
		base, err := policies.ParseConfig([]byte(tc.base), nil)
		if err != nil {
			t.Fatal(err)
		}
		opts.Base = base
	}
	res, err := Suggest(t.Context(), objects, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := grantsYAML(t, res.Added); got != tc.grants {
		t.Errorf("new grants:\n%s\nwant:\n%s", got, tc.grants)
	}
	var problems []string
	for _, p := range append(slices.Clone(res.Conflicts), res.Inexact...) {
		problems = append(problems, p.Message)
	}
	for _, want := range tc.problems {
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("no problem reported like %q; got:\n%s", want, strings.Join(problems, "\n"))
		}
	}
	if len(problems) != len(tc.problems) {
		t.Errorf("%d problems reported, want %d:\n%s", len(problems), len(tc.problems), strings.Join(problems, "\n"))
	}
	var refused []string
	for _, r := range res.Refused {
		refused = append(refused, r.Object.String())
	}
	if !slices.Equal(refused, tc.refused) {
		t.Errorf("refused %v, want %v", refused, tc.refused)
	}

	// The suggestion admits every object it was made from (but those
	// it reports), and nothing a little wider.
	out, err := Marshal(res.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	skipped := map[string]bool{}
	for _, s := range res.Skipped {
		skipped[s.Object.String()] = true
	}
	for key, rep := range reviewAll(t, out, objects) {
		ref, _, _ := strings.Cut(key, " ")
		if skipped[ref] {
			continue
		}
		if want := !slices.Contains(tc.refused, ref) || slices.Contains(tc.unjudged, ref); rep.Allowed != want {
			t.Errorf("%s: allowed %v, want %v: %v", key, rep.Allowed, want, rep.Violations)
		}
	}
	for key, rep := range reviewAll(t, out, objectsOf(t, tc.wider)) {
		if rep.Allowed {
			t.Errorf("wider object %s is allowed: the grants are too wide\n%s", key, out)
		}
	}

	// The same objects in another order: the same bytes.
	reversed := slices.Clone(objects)
	slices.Reverse(reversed)
	again, err := Suggest(t.Context(), reversed, opts)
	if err != nil {
		t.Fatal(err)
	}
	if out2, _ := Marshal(again.Config, nil); !bytes.Equal(out, out2) {
		t.Errorf("not deterministic:\n%s\nthen\n%s", out, out2)
	}

	// Idempotent: suggesting again on top of the suggestion adds nothing.
	opts.Base = res.Config
	next, err := Suggest(t.Context(), objects, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(next.Added) > 0 {
		t.Errorf("suggesting again adds:\n%s", grantsYAML(t, next.Added))
	}
	if len(next.Refused) != len(res.Refused) {
		t.Errorf("suggesting again refuses %d objects, not %d", len(next.Refused), len(res.Refused))
	}
	return res
}

func TestSuggestDefaultsToACompleteConfiguration(t *testing.T) {
	res, err := Suggest(t.Context(), objectsOf(t, suggestCases[1].objects), Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(res.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - name: system
    namespaces: [kube-system]
    hostNetwork: true
    hostPorts: ["1-65535"]
    nodePorts: ["30000-32767"]
    loadBalancer: true
    externalIPs: ["0.0.0.0/0", "::/0"]
    reason: cluster components run here
  - name: sa-monitoring-debugger
`
	if !strings.HasPrefix(string(out), want) {
		t.Errorf("output starts:\n%s\nwant:\n%s", out, want)
	}
}

func TestMergeKeepsTheConfiguration(t *testing.T) {
	base := `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  host-network: {mode: dryrun}
  ingress-hosts: {mode: "off"}
  load-balancer: {mode: rewrite}
grants:
  - name: ns-team-a
    namespaces: [team-*]
    users: [alice]
    hostPorts: ["8000-8100", "53/UDP"]
    loadBalancer: {classes: [internal], sourceRangesRequired: true}
    expires: "2030-01-01T00:00:00Z"
    reason: "team A: agents"
  - name: nothing
    groups: [ops]
    loadBalancer: false
exemptions:
  - name: incident-42
    users: [alice]
    rules: [host-network]
    expires: "2026-12-31"
    reason: debugging the CNI on node 7
`
	cfg, err := policies.ParseConfig([]byte(base), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Suggest(t.Context(), objectsOf(t, `
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: team-a}
spec: {hostNetwork: true, containers: [{name: c, image: x}]}
`), Options{Base: cfg})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(res.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  host-network: {mode: dryrun}
  ingress-hosts: {mode: "off"}
  load-balancer: {mode: rewrite}
grants:
  - name: ns-team-a
    namespaces: ["team-*"]
    users: [alice]
    hostPorts: ["8000-8100", "53/UDP"]
    loadBalancer: {classes: [internal], sourceRangesRequired: true}
    expires: "2030-01-01T00:00:00Z"
    reason: "team A: agents"
  - name: nothing
    groups: [ops]
    loadBalancer: false
  - name: ns-team-a-2
    namespaces: [team-a]
    hostNetwork: true
    reason: in use by Pod/p (portreeve suggest)
exemptions:
  - name: incident-42
    users: [alice]
    rules: [host-network]
    expires: "2026-12-31"
    reason: debugging the CNI on node 7
`
	if string(out) != want {
		t.Errorf("merged configuration:\n%s\nwant:\n%s", out, want)
	}
}

func TestMarshalReadsBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		lb   *policies.LoadBalancer
		want string
	}{
		{"absent", nil, ""},
		{"true", &policies.LoadBalancer{Allowed: true}, "loadBalancer: true"},
		{"false", &policies.LoadBalancer{}, "loadBalancer: false"},
		{"classes", &policies.LoadBalancer{Allowed: true, Classes: []string{"a", "b"}}, "loadBalancer: {classes: [a, b]}"},
		{"source ranges", &policies.LoadBalancer{Allowed: true, SourceRangesRequired: true}, "loadBalancer: {sourceRangesRequired: true}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &policies.Config{
				APIVersion: "portreeve.io/v1alpha1", Kind: "PolicyConfig",
				Rules: map[string]policies.RuleConfig{"host-ports": {Mode: policies.ModeOff}},
				Grants: []policies.Grant{{
					Name: "yes", Subjects: policies.Subjects{Namespaces: []string{"on", "n"}, Groups: []string{"a: b", "#c", "x y"}},
					LoadBalancer: tc.lb, HostPorts: []string{"80"}, IngressDomains: []string{"*.example.com"},
					Reason: "true",
				}},
			}
			out, err := Marshal(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("no %q in\n%s", tc.want, out)
			}
			back, err := policies.ParseConfig(out, nil)
			if err != nil {
				t.Fatal(err)
			}
			if g := back.Grants[0]; g.Name != "yes" || !slices.Equal(g.Namespaces, []string{"on", "n"}) || g.Reason != "true" ||
				!slices.Equal(g.Groups, []string{"a: b", "#c", "x y"}) || back.Mode("host-ports") != policies.ModeOff {
				t.Errorf("read back as %+v", back)
			}
			if (tc.lb == nil) != (back.Grants[0].LoadBalancer == nil) ||
				tc.lb != nil && tc.lb.Allowed != back.Grants[0].LoadBalancer.Allowed {
				t.Errorf("loadBalancer %+v read back as %+v", tc.lb, back.Grants[0].LoadBalancer)
			}
		})
	}
}

func TestCheckExpires(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in, err string
	}{
		{"", ""},
		{"2027-06-30", ""},
		{"2026-05-01", ""}, // valid through that day
		{"2027-06-30T12:00:00Z", ""},
		{"2026-04-30", "lies in the past"},
		{"30/06/2027", "must be a date"},
		{"2027-06-31", "must be a date"},
	} {
		err := CheckExpires(tc.in, now)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("CheckExpires(%q) = %v, want %q", tc.in, err, tc.err)
		}
	}
}

func TestReport(t *testing.T) {
	res, err := Suggest(t.Context(), objectsOf(t, suggestCases[11].objects+"\n---\n"+`
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: a, namespace: team-x}
spec: {template: {spec: {containers: [{name: c, image: x, ports: [{containerPort: 1, hostPort: 9100}]}]}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: b, namespace: team-y}
spec: {template: {spec: {containers: [{name: c, image: x, ports: [{containerPort: 1, hostPort: 9100}]}]}}}
`), suggestCases[11].opts)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := res.WriteReport(&b); err != nil {
		t.Fatal(err)
	}
	want := `portreeve suggest: reviewed 4 objects, skipped 6; 2 new grants
  + ns-default: Pod/tool
  + sa-team-a-db: Pod/db-0
skipped:
  1 a Pod that has finished holds no port
  2 controlled by a workload that is reviewed instead
  1 kind v1 ConfigMap is not reviewed
  1 namespace kube-system is never reviewed
  1 namespace portreeve-system is never reviewed (Portreeve's own namespace)
conflicts no grant can fix (not granted):
  team-x/DaemonSet/a, team-y/DaemonSet/b
    hostPort 9100/TCP is held by 2 workloads that may run on the same nodes (no nodeName or nodeSelector tells them apart): granted to none of them
the suggested configuration still refuses 2 objects:
  team-x/DaemonSet/a
    host-ports: hostPort 9100/TCP of container "c" is not in a range granted to namespace "team-x" (granted: none) (spec.template.spec.containers[0].ports[0].hostPort); fix: drop the hostPort and expose the pod through a Service, or ask a cluster admin for a grant of this port
  team-y/DaemonSet/b
    host-ports: hostPort 9100/TCP of container "c" is not in a range granted to namespace "team-y" (granted: none) (spec.template.spec.containers[0].ports[0].hostPort); fix: drop the hostPort and expose the pod through a Service, or ask a cluster admin for a grant of this port
`
	if b.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", b.String(), want)
	}
	if !res.Unresolved() {
		t.Error("Unresolved() is false with a conflict")
	}
}

func TestSuggestRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, objects string
		opts          Options
		err           string
	}{
		{"no kind", "apiVersion: v1\nmetadata: {name: x}\n", Options{}, "test#1: object has no apiVersion or kind"},
		{"expires in the past", "", Options{Expires: "2001-01-01"}, "lies in the past"},
		{"bad expires", "", Options{Expires: "soon"}, "must be a date"},
		{"bad spec", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: 80}\n", Options{}, "default/Service/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Suggest(t.Context(), objectsOf(t, tc.objects), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}
