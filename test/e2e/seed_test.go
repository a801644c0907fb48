package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
)

// TestSeedCases applies the seed's InfluxDB manifests in a namespace without
// grants and in a granted one.
func TestSeedCases(t *testing.T) {
	e := setup(t, grantsConfig)
	tests := []struct {
		file      string
		namespace string
		denied    []string // rule ids; empty = admitted
		kind      string
		name      string
	}{
		{"influxdb-hostnetwork.yaml", "default", []string{"host-network: hostNetwork is not granted"}, "pod", "influxdb-hostnetwork"},
		{"influxdb-hostport.yaml", "default", []string{"host-ports: hostPort 8086/TCP"}, "pod", "influxdb-hostport"},
		{"influxdb-pod.yaml", "default", nil, "pod", "influxdb"},
		{"influxdb-nodeport.yaml", "default", []string{"node-ports: type NodePort opens node ports"}, "service", "influxdb-nodeport"},
		{"influxdb-loadbalancer.yaml", "default", []string{"load-balancer: type LoadBalancer is not granted", "node-ports: "}, "service", "influxdb-loadbalancer"},
		{"influxdb-ingress.yaml", "default", nil, "ingress", "influxdb"},
		{"influxdb-nodeport.yaml", "team-a", nil, "service", "influxdb-nodeport"},
		{"influxdb-loadbalancer.yaml", "team-a", nil, "service", "influxdb-loadbalancer"},
		{"influxdb-hostnetwork.yaml", "team-a", []string{"host-network: "}, "pod", "influxdb-hostnetwork"},
	}
	for _, tc := range tests {
		t.Run(tc.namespace+"/"+tc.file, func(t *testing.T) {
			r := e.apply(t, tc.namespace, seed(t, tc.file))
			if len(tc.denied) > 0 {
				mustDeny(t, r, tc.denied...)
				if e.exists(t, tc.namespace, tc.kind, tc.name) {
					t.Fatal("denied object was stored")
				}
				return
			}
			mustAdmit(t, r)
			if !e.exists(t, tc.namespace, tc.kind, tc.name) {
				t.Fatal("admitted object not stored")
			}
		})
	}
}

const hostNetworkDeployment = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      hostNetwork: true
      containers:
        - name: agent
          image: agent:1
          ports: [{containerPort: 9100}]
`

// TestDeploymentTemplateDeniedAtApply: the user learns at kubectl apply, and
// the hostNetwork-implied hostPort is seen on the template too.
func TestDeploymentTemplateDeniedAtApply(t *testing.T) {
	e := setup(t, grantsConfig)
	r := e.apply(t, "default", hostNetworkDeployment)
	mustDeny(t, r, "host-network: ", "host-ports: hostPort 9100/TCP", "(spec.template.spec.hostNetwork)")
	if e.exists(t, "default", "deployment", "agent") {
		t.Fatal("denied Deployment was stored")
	}
}

// TestRewriteLoadBalancer: in rewrite mode a LoadBalancer is stored as
// ClusterIP (default, nothing granted) with nothing the new type forbids,
// the annotation, and the warning kubectl printed.
func TestRewriteLoadBalancer(t *testing.T) {
	e := setup(t, withModes("  load-balancer: {mode: rewrite}\n  node-ports: {mode: rewrite}\n"))
	svc := `
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  loadBalancerSourceRanges: [192.0.2.0/24]
  ports: [{port: 80, targetPort: 8080}]
  selector: {app: web}
`
	r := e.apply(t, "default", svc)
	mustAdmit(t, r)
	if !strings.Contains(r.stderr, "Warning: portreeve rewrote /spec/type") {
		t.Fatalf("kubectl printed no rewrite warning:\n%s", r)
	}
	got := e.kubectl(t, "get", "-n", "default", "service", "web", "-o", "json")
	if got.err != nil {
		t.Fatal(got)
	}
	var stored struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec map[string]any `json:"spec"`
	}
	if err := json.Unmarshal([]byte(got.stdout), &stored); err != nil {
		t.Fatal(err)
	}
	if stored.Spec["type"] != "ClusterIP" {
		t.Fatalf("stored type %v, want ClusterIP", stored.Spec["type"])
	}
	for _, field := range []string{"allocateLoadBalancerNodePorts", "loadBalancerSourceRanges", "externalTrafficPolicy", "healthCheckNodePort"} {
		if _, ok := stored.Spec[field]; ok {
			t.Errorf("stored ClusterIP Service keeps %s: %v", field, stored.Spec[field])
		}
	}
	if strings.Contains(got.stdout, `"nodePort"`) {
		t.Errorf("stored ClusterIP Service keeps a nodePort:\n%s", got.stdout)
	}
	ann := stored.Metadata.Annotations["portreeve.io/rewrites"]
	if !strings.Contains(ann, `"rule":"load-balancer"`) || !strings.Contains(ann, `"after":"ClusterIP"`) {
		t.Fatalf("annotation portreeve.io/rewrites = %q", ann)
	}

	// In team-a node ports are granted: the LoadBalancer is stored as-is.
	r = e.apply(t, "team-a", strings.Replace(svc, "name: web", "name: granted", 1))
	mustAdmit(t, r)
	if typ := e.kubectl(t, "get", "-n", "team-a", "service", "granted", "-o", "jsonpath={.spec.type}"); typ.stdout != "LoadBalancer" {
		t.Fatalf("granted LoadBalancer stored as %q", typ.stdout)
	}
}

// TestWarnAndDryRunModes: warn admits and kubectl prints the warning; dryrun
// admits silently and counts the finding.
func TestWarnAndDryRunModes(t *testing.T) {
	e := setup(t, withModes("  host-network: {mode: warn}\n  host-ports: {mode: dryrun}\n"))
	r := e.apply(t, "default", seed(t, "influxdb-hostnetwork.yaml"))
	mustAdmit(t, r)
	if !strings.Contains(r.stderr, "Warning: host-network: hostNetwork is not granted") {
		t.Fatalf("kubectl printed no warning:\n%s", r)
	}
	r = e.apply(t, "default", seed(t, "influxdb-hostport.yaml"))
	mustAdmit(t, r)
	if strings.Contains(r.stderr, "Warning") {
		t.Fatalf("dryrun printed a warning:\n%s", r)
	}
	metrics, err := e.p.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	want := `portreeve_admission_decisions_total{decision="dryrun",kind="Pod",operation="CREATE",rule="host-ports",webhook="validating"}`
	if !strings.Contains(metrics, want) {
		t.Fatalf("metrics lack %s", want)
	}
}

// TestUpdateToNodePortDenied: an UPDATE that turns a ClusterIP Service into
// NodePort is judged like a CREATE.
func TestUpdateToNodePortDenied(t *testing.T) {
	e := setup(t, grantsConfig)
	mustAdmit(t, e.apply(t, "default", `
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  ports: [{port: 5432}]
`))
	r := e.kubectl(t, "patch", "-n", "default", "service", "db", "-p", `{"spec":{"type":"NodePort"}}`)
	mustDeny(t, r, "node-ports: type NodePort opens node ports")
	if typ := e.kubectl(t, "get", "-n", "default", "service", "db", "-o", "jsonpath={.spec.type}"); typ.stdout != "ClusterIP" {
		t.Fatalf("stored type %q after a denied update", typ.stdout)
	}
	// An update that leaves the exposure alone is not judged.
	mustAdmit(t, e.kubectl(t, "label", "-n", "default", "service", "db", "team=db"))
}

// TestServerDryRun: --dry-run=server is decided like the real request and stores nothing.
func TestServerDryRun(t *testing.T) {
	e := setup(t, withModes("  load-balancer: {mode: rewrite}\n"))
	real := e.apply(t, "default", seed(t, "influxdb-hostnetwork.yaml"))
	dry := e.apply(t, "default", seed(t, "influxdb-hostnetwork.yaml"), "--dry-run=server")
	mustDeny(t, dry, "host-network: ")
	mustDeny(t, real, "host-network: ")
	msg := func(s string) string { return s[strings.Index(s, "denied the request"):] }
	if msg(dry.stderr) != msg(real.stderr) {
		t.Fatalf("dry run and real request differ:\n%s\n%s", dry.stderr, real.stderr)
	}
	r := e.apply(t, "default", seed(t, "influxdb-loadbalancer.yaml"), "--dry-run=server", "-o", "jsonpath={.spec.type}")
	mustAdmit(t, r)
	if r.stdout != "ClusterIP" || !strings.Contains(r.stderr, "Warning: portreeve rewrote") {
		t.Fatalf("dry run not rewritten like the real request:\n%s", r)
	}
	if e.exists(t, "default", "service", "influxdb-loadbalancer") {
		t.Fatal("a server-side dry run stored the object")
	}
}

// TestWebhookUnavailable: with the webhook down, failurePolicy Fail refuses
// with a clear apiserver error and stores nothing, Ignore admits, and its own
// namespace and kube-system never reach the webhook.
func TestWebhookUnavailable(t *testing.T) {
	e := setup(t, grantsConfig)
	if err := e.p.Stop(); err != nil {
		t.Fatal(err)
	}
	waitDown(t, e.p.HealthURL)

	r := e.apply(t, "default", seed(t, "influxdb-nodeport.yaml"))
	if r.err == nil || !strings.Contains(r.stderr, "failed calling webhook") {
		t.Fatalf("failurePolicy Fail: want a failed-call error:\n%s", r)
	}
	if e.exists(t, "default", "service", "influxdb-nodeport") {
		t.Fatal("stored although the webhook failed")
	}
	// Objects that cannot matter never leave the apiserver (matchConditions).
	mustAdmit(t, e.apply(t, "default", seed(t, "influxdb-pod.yaml")))
	// Exempt namespaces never reach the webhook.
	for _, ns := range []string{"kube-system", "portreeve"} {
		mustAdmit(t, e.apply(t, ns, seed(t, "influxdb-hostnetwork.yaml")))
	}

	// The same configurations with failurePolicy Ignore admit.
	if err := e.p.RegisterWebhooks(t.Context(), e.cp,
		"--set", "webhook.validating.failurePolicy=Ignore", "--set", "webhook.mutating.failurePolicy=Ignore"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r = e.apply(t, "default", seed(t, "influxdb-nodeport.yaml"))
		if r.err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	mustAdmit(t, r)
}

func waitDown(t *testing.T, healthURL string) {
	t.Helper()
	for range 50 {
		resp, err := http.Get(healthURL + "/healthz")
		if err != nil {
			return
		}
		resp.Body.Close()
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("portreeve still answers after Stop")
}

// TestUpdateBypassesRefused: UPDATEs that change what a rule judges are
// reviewed, through kubectl: a default backend added to an Ingress, a
// LoadBalancer switched to externalTrafficPolicy Local (a healthCheckNodePort
// on every node), and an annotation a custom rule requires, removed.
func TestUpdateBypassesRefused(t *testing.T) {
	dir := t.TempDir()
	rule, err := os.ReadFile(filepath.Join("..", "..", "examples", "lb-internal", "lb_internal.rego"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lb_internal.rego"), rule, 0o600); err != nil {
		t.Fatal(err)
	}
	config := strings.Replace(withModes("  lb-internal: {mode: deny}\n"), "grants:\n", `grants:
  - name: lb
    namespaces: [default, team-b]
    loadBalancer: true
  - name: shop-domains
    namespaces: [team-a]
    ingressDomains: [shop.example.com]
`, 1)
	cp := controlplane.StartForTest(t, controlplane.Options{})
	ctx := t.Context()
	for _, ns := range []string{"default", "team-a", harness.Namespace} {
		if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := cp.EnsureNamespace(ctx, "team-b", map[string]string{"team": "b"}); err != nil {
		t.Fatal(err)
	}
	p := harness.StartForTest(t, cp, harness.Options{Config: config, ExtraArgs: []string{"--policy-dir=" + dir}})
	e := &env{cp: cp, p: p}

	// An Ingress inside team-a's domain, then a default backend: it claims every host.
	mustAdmit(t, e.apply(t, "team-a", `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
    - host: shop.example.com
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}
`))
	mustDeny(t, e.kubectl(t, "patch", "-n", "team-a", "ingress", "web", "--type=merge", "-p",
		`{"spec":{"defaultBackend":{"service":{"name":"web","port":{"number":80}}}}}`), "ingress-hosts: ")

	// A LoadBalancer without node ports, then externalTrafficPolicy Local.
	mustAdmit(t, e.apply(t, "default", `
apiVersion: v1
kind: Service
metadata: {name: lb}
spec:
  type: LoadBalancer
  allocateLoadBalancerNodePorts: false
  externalTrafficPolicy: Cluster
  ports: [{port: 443}]
`))
	mustDeny(t, e.kubectl(t, "patch", "-n", "default", "service", "lb", "-p", `{"spec":{"externalTrafficPolicy":"Local"}}`),
		"node-ports: type LoadBalancer with externalTrafficPolicy: Local (its healthCheckNodePort) opens node ports")
	if hc := e.kubectl(t, "get", "-n", "default", "service", "lb", "-o", "jsonpath={.spec.healthCheckNodePort}"); hc.stdout != "" {
		t.Fatalf("a healthCheckNodePort %s was allocated after a denied update", hc.stdout)
	}

	// A team's internal LoadBalancer (lb-internal in deny), then its annotation removed.
	mustAdmit(t, e.apply(t, "team-b", `
apiVersion: v1
kind: Service
metadata:
  name: shop
  annotations: {service.beta.kubernetes.io/aws-load-balancer-scheme: internal}
spec:
  type: LoadBalancer
  allocateLoadBalancerNodePorts: false
  ports: [{port: 443}]
`))
	mustDeny(t, e.kubectl(t, "annotate", "-n", "team-b", "service", "shop", "service.beta.kubernetes.io/aws-load-balancer-scheme-"),
		`lb-internal: a LoadBalancer in team "b"'s namespace must be internal`)
}
