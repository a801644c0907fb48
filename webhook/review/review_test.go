package review

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/policies"
)

func newReviewer(t testing.TB, configYAML string) *Reviewer {
	t.Helper()
	var cfg *policies.Config
	if configYAML != "" {
		var err error
		cfg, err = policies.ParseConfig([]byte(configYAML), nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	e, err := policies.New(t.Context(), policies.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return NewReviewer(e)
}

func toJSON(t testing.TB, y string) []byte {
	t.Helper()
	b, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rules(fs []ReportFinding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Rule)
	}
	slices.Sort(out)
	return out
}

var anonymous = policies.User{Username: "alice", Groups: []string{"system:authenticated"}}

// TestSeedCases is the seed blog's five ways to expose InfluxDB (plus the
// plain pod) under the built-in configuration.
func TestSeedCases(t *testing.T) {
	r := newReviewer(t, "")
	tests := []struct {
		file      string
		namespace string
		denied    []string
	}{
		{"influxdb-hostnetwork.yaml", "default", []string{"host-network"}},
		{"influxdb-hostport.yaml", "default", []string{"host-ports"}},
		{"influxdb-pod.yaml", "default", nil},
		{"influxdb-nodeport.yaml", "default", []string{"node-ports"}},
		{"influxdb-loadbalancer.yaml", "default", []string{"load-balancer", "node-ports"}},
		{"influxdb-ingress.yaml", "default", nil},
		{"influxdb-hostnetwork.yaml", "kube-system", nil},
		{"influxdb-hostport.yaml", "kube-system", nil},
		{"influxdb-pod.yaml", "kube-system", nil},
		{"influxdb-nodeport.yaml", "kube-system", nil},
		{"influxdb-loadbalancer.yaml", "kube-system", nil},
		{"influxdb-ingress.yaml", "kube-system", nil},
	}
	for _, tc := range tests {
		t.Run(tc.namespace+"/"+tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("..", "..", "test", "fixtures", "seed", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			rep, err := r.ReviewObject(t.Context(), toJSON(t, string(raw)), tc.namespace, anonymous)
			if err != nil {
				t.Fatal(err)
			}
			if got := rules(rep.Violations); !slices.Equal(got, tc.denied) {
				t.Fatalf("denied by %v, want %v: %+v", got, tc.denied, rep.Violations)
			}
			if rep.Allowed != (len(tc.denied) == 0) {
				t.Fatalf("allowed = %v with violations %v", rep.Allowed, rep.Violations)
			}
		})
	}
}

const teamConfig = `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  load-balancer: {mode: rewrite}
  node-ports: {mode: rewrite}
  host-ports: {mode: rewrite}
  external-ips: {mode: rewrite}
grants:
  - name: team-a
    namespaces: [team-a]
    nodePorts: ["30100-30199"]
    externalIPs: ["203.0.113.0/24"]
  - name: lb-only
    namespaces: [lb-only]
    loadBalancer: true
`

// A LoadBalancer as the apiserver hands it to a mutating webhook: defaulted.
const defaultedLoadBalancer = `
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  allocateLoadBalancerNodePorts: true
  externalTrafficPolicy: Local
  healthCheckNodePort: 32000
  loadBalancerClass: example.com/lb
  loadBalancerSourceRanges: [10.0.0.0/8]
  loadBalancerIP: 198.51.100.7
  externalIPs: [203.0.113.5, 192.0.2.1]
  sessionAffinity: None
  ports:
    - {port: 80, targetPort: 8080, protocol: TCP, nodePort: 30150}
    - {port: 443, targetPort: 8443, protocol: TCP, nodePort: 31000}
  selector: {app: web}
`

func TestRewriteLoadBalancerYieldsValidService(t *testing.T) {
	r := newReviewer(t, teamConfig)
	tests := []struct {
		namespace     string
		wantType      corev1.ServiceType
		wantNodePorts []int32
		wantETP       corev1.ServiceExternalTrafficPolicy
		wantExternal  []string
	}{
		// node ports granted: NodePort, keeping the granted nodePort and moving
		// the other into the range (-1: any port in 30100-30199).
		{"team-a", corev1.ServiceTypeNodePort, []int32{30150, -1}, corev1.ServiceExternalTrafficPolicyLocal, []string{"203.0.113.5"}},
		// nothing granted: ClusterIP with every LoadBalancer and node port field gone.
		{"default", corev1.ServiceTypeClusterIP, []int32{0, 0}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.namespace, func(t *testing.T) {
			rep, err := r.ReviewObject(t.Context(), toJSON(t, defaultedLoadBalancer), tc.namespace, anonymous)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Allowed {
				t.Fatalf("rewritten object is still denied: %+v", rep.Violations)
			}
			var svc corev1.Service
			dec := json.NewDecoder(strings.NewReader(string(rep.Patched)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&svc); err != nil {
				t.Fatalf("patched object is not a Service: %v", err)
			}
			s := svc.Spec
			if s.Type != tc.wantType {
				t.Errorf("type = %s, want %s", s.Type, tc.wantType)
			}
			for i, p := range s.Ports {
				if tc.wantNodePorts[i] == -1 && p.NodePort >= 30100 && p.NodePort <= 30199 {
					continue
				}
				if p.NodePort != tc.wantNodePorts[i] {
					t.Errorf("ports[%d].nodePort = %d, want %d", i, p.NodePort, tc.wantNodePorts[i])
				}
			}
			if s.AllocateLoadBalancerNodePorts != nil || s.LoadBalancerClass != nil || s.LoadBalancerSourceRanges != nil ||
				s.LoadBalancerIP != "" || s.HealthCheckNodePort != 0 {
				t.Errorf("LoadBalancer fields left on a %s: %+v", s.Type, s)
			}
			if s.ExternalTrafficPolicy != tc.wantETP {
				t.Errorf("externalTrafficPolicy = %q, want %q", s.ExternalTrafficPolicy, tc.wantETP)
			}
			if !slices.Equal(s.ExternalIPs, tc.wantExternal) {
				t.Errorf("externalIPs = %v, want %v", s.ExternalIPs, tc.wantExternal)
			}
			var changes []Change
			if err := json.Unmarshal([]byte(svc.Annotations[RewritesAnnotation]), &changes); err != nil || len(changes) == 0 {
				t.Fatalf("annotation %s = %q (%v)", RewritesAnnotation, svc.Annotations[RewritesAnnotation], err)
			}
			if len(rep.Warnings) != len(changes) {
				t.Errorf("%d warnings for %d changes", len(rep.Warnings), len(changes))
			}
		})
	}
}

func TestRewriteGrantedLoadBalancerSwitchesNodePortsOff(t *testing.T) {
	r := newReviewer(t, teamConfig)
	rep, err := r.ReviewObject(t.Context(), toJSON(t, `
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  ports: [{port: 80, nodePort: 30001}]
`), "lb-only", anonymous)
	if err != nil {
		t.Fatal(err)
	}
	var svc corev1.Service
	if err := json.Unmarshal(rep.Patched, &svc); err != nil {
		t.Fatal(err)
	}
	if !rep.Allowed || svc.Spec.Type != corev1.ServiceTypeLoadBalancer ||
		svc.Spec.AllocateLoadBalancerNodePorts == nil || *svc.Spec.AllocateLoadBalancerNodePorts ||
		svc.Spec.Ports[0].NodePort != 0 {
		t.Fatalf("got allowed=%v spec=%+v violations=%v", rep.Allowed, svc.Spec, rep.Violations)
	}
}

func TestRewriteCannotFixHostNetworkPorts(t *testing.T) {
	r := newReviewer(t, teamConfig)
	rep, err := r.ReviewObject(t.Context(), toJSON(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: agent}
spec:
  template:
    spec:
      hostNetwork: true
      containers: [{name: a, image: x, ports: [{containerPort: 9100}]}]
`), "team-a", anonymous)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Allowed || rep.Patched != nil {
		t.Fatalf("a hostNetwork template must be denied, not rewritten: %+v", rep)
	}
	if got := rules(rep.Violations); !slices.Equal(got, []string{"host-network", "host-ports"}) {
		t.Fatalf("denied by %v", got)
	}
}

func TestInputDefaultsHostNetworkPortsOnTemplates(t *testing.T) {
	for _, tc := range []struct{ kind, group, manifest string }{
		{"Pod", "", `{"apiVersion":"v1","kind":"Pod","spec":{"hostNetwork":true,"containers":[{"name":"a","ports":[{"containerPort":9100}]}]}}`},
		{"Deployment", "apps", `{"apiVersion":"apps/v1","kind":"Deployment","spec":{"template":{"spec":{"hostNetwork":true,"containers":[{"name":"a","ports":[{"containerPort":9100}]}]}}}}`},
		{"CronJob", "batch", `{"apiVersion":"batch/v1","kind":"CronJob","spec":{"jobTemplate":{"spec":{"template":{"spec":{"hostNetwork":true,"initContainers":[{"name":"a","ports":[{"containerPort":9100}]}]}}}}}}`},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			in, err := Input(&Request{Operation: "CREATE", Kind: policies.GroupVersionKind{Group: tc.group, Version: "v1", Kind: tc.kind}, Object: []byte(tc.manifest)})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(in.Pod.Spec)
			if !strings.Contains(string(b), `"hostPort":9100`) {
				t.Fatalf("hostPort not defaulted: %s", b)
			}
			if strings.Contains(tc.manifest, "hostPort") {
				t.Fatal("test input must not set hostPort")
			}
		})
	}
}

func TestUpdateSkipsOnlyWhatNoRuleJudges(t *testing.T) {
	const config = `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - name: team-b
    namespaces: [team-b]
    loadBalancer: true
    ingressDomains: [team-b.example.com]
  - name: default-lb
    namespaces: [default]
    loadBalancer: true
`
	// A custom rule that reads an annotation (examples/lb-internal, in deny mode).
	lbInternal, err := os.ReadFile("../../examples/lb-internal/lb_internal.rego")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := policies.ParseConfig([]byte(config+"rules:\n  lb-internal: {mode: deny}\n"), []string{"lb-internal"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := policies.New(t.Context(), policies.Options{Config: cfg, Modules: map[string]string{"lb_internal.rego": string(lbInternal)}})
	if err != nil {
		t.Fatal(err)
	}
	builtin, custom := newReviewer(t, config), NewReviewer(e)

	svc := policies.GroupVersionKind{Version: "v1", Kind: "Service"}
	ing := policies.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}
	deploy := policies.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	nodePort := `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s","labels":{"a":"1"}},"spec":{"type":"NodePort","selector":{"app":"a"},"ports":[{"port":80}]}}`
	relabelled := `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s","labels":{"a":"2"}},"spec":{"type":"NodePort","selector":{"app":"b"},"ports":[{"port":80}]}}`
	clusterIP := `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"type":"ClusterIP","ports":[{"port":80}]}}`
	lb := func(policy string) string {
		return `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"type":"LoadBalancer","allocateLoadBalancerNodePorts":false,"externalTrafficPolicy":"` + policy + `","ports":[{"port":443}]}}`
	}
	internalLB := `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s","annotations":{"service.beta.kubernetes.io/aws-load-balancer-scheme":"internal"}},"spec":{"type":"LoadBalancer","allocateLoadBalancerNodePorts":false,"ports":[{"port":443}]}}`
	publicLB := `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"type":"LoadBalancer","allocateLoadBalancerNodePorts":false,"ports":[{"port":443}]}}`
	ingress := func(extra string) string {
		return `{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"i"},"spec":{"rules":[{"host":"a.team-b.example.com"}]` + extra + `}}`
	}
	deployment := func(image, port string) string {
		return `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"template":{"spec":{"containers":[{"name":"c","image":"` + image + `","ports":[{"containerPort":80` + port + `}]}]}}}}`
	}
	tests := []struct {
		name      string
		r         *Reviewer
		kind      policies.GroupVersionKind
		namespace string
		old, new  string
		want      string // "skipped", "allowed" or "denied"
	}{
		{"label and selector change of an existing NodePort", builtin, svc, "default", nodePort, relabelled, "skipped"},
		{"ClusterIP to NodePort is judged like a CREATE", builtin, svc, "default", clusterIP, relabelled, "denied"},
		{"externalTrafficPolicy Cluster to Local opens a healthCheckNodePort", builtin, svc, "default", lb("Cluster"), lb("Local"), "denied"},
		{"a default backend added to an Ingress", builtin, ing, "team-b", ingress(""), ingress(`,"defaultBackend":{"service":{"name":"s","port":{"number":80}}}`), "denied"},
		{"an Ingress host changed", builtin, ing, "team-b", ingress(""), strings.Replace(ingress(""), "a.team-b", "a.team-c", 1), "denied"},
		{"an image change of a workload with a hostPort", builtin, deploy, "default", deployment("a", `,"hostPort":80`), deployment("b", `,"hostPort":80`), "skipped"},
		{"a hostPort added to a workload", builtin, deploy, "default", deployment("a", ""), deployment("a", `,"hostPort":80`), "denied"},
		{"without custom rules an annotation removal is not judged", builtin, svc, "default", internalLB, publicLB, "skipped"},
		{"a custom rule sees the annotation removed", custom, svc, "default", internalLB, publicLB, "denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			labels := map[string]string{"team": "a"}
			d, err := tc.r.Validate(t.Context(), &Request{Operation: "UPDATE", Kind: tc.kind, Namespace: tc.namespace,
				Object: []byte(tc.new), OldObject: []byte(tc.old), User: anonymous, NamespaceLabels: labels})
			if err != nil {
				t.Fatal(err)
			}
			got := "skipped"
			switch {
			case d != nil && d.Allowed():
				got = "allowed"
			case d != nil:
				got = "denied"
			}
			if got != tc.want {
				t.Fatalf("%s, want %s (%+v)", got, tc.want, d)
			}
			// The mutating webhook skips exactly what the validating one does.
			m, err := tc.r.Mutate(t.Context(), &Request{Operation: "UPDATE", Kind: tc.kind, Namespace: tc.namespace,
				Object: []byte(tc.new), OldObject: []byte(tc.old), User: anonymous, NamespaceLabels: labels})
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "skipped" && (m.Patched != nil || len(m.Denied) > 0) {
				t.Fatalf("mutating review acted on a skipped UPDATE: %+v", m)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	r := newReviewer(t, "")
	pod := policies.GroupVersionKind{Version: "v1", Kind: "Pod"}
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"empty object", Request{Operation: "CREATE", Kind: pod}, "object is empty"},
		{"not JSON", Request{Operation: "CREATE", Kind: pod, Object: []byte("{")}, "not a JSON object"},
		{"JSON array", Request{Operation: "CREATE", Kind: pod, Object: []byte("[]")}, "not a JSON object"},
		{"null", Request{Operation: "CREATE", Kind: pod, Object: []byte("null")}, "null"},
		{"spec is a string", Request{Operation: "CREATE", Kind: pod, Object: []byte(`{"spec":"x"}`)}, "spec is not an object"},
		{"template spec is a list", Request{Operation: "CREATE", Kind: policies.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, Object: []byte(`{"spec":{"template":[]}}`)}, "spec.template: expected an object"},
		{"unknown kind", Request{Operation: "CREATE", Kind: policies.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Widget"}, Object: []byte(`{}`)}, "unsupported kind"},
		{"huge object", Request{Operation: "CREATE", Kind: pod, Object: []byte(`{"x":"` + strings.Repeat("a", MaxObjectBytes) + `"}`)}, "more than"},
		{"bad old object", Request{Operation: "UPDATE", Kind: pod, Object: []byte(`{}`), OldObject: []byte(`{`)}, "oldObject is not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Validate(t.Context(), &tc.req)
			if err == nil || !IsBadRequest(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a bad request containing %q", err, tc.want)
			}
			if _, err := r.Mutate(t.Context(), &tc.req); err == nil {
				t.Fatal("Mutate accepted bad input")
			}
		})
	}
}

func TestSkip(t *testing.T) {
	tests := []struct {
		op, kind, sub string
		skip          bool
	}{
		{"CREATE", "Pod", "", false},
		{"UPDATE", "Pod", "ephemeralcontainers", false},
		{"UPDATE", "Pod", "status", true},
		{"DELETE", "Pod", "", true},
		{"CONNECT", "Pod", "exec", true},
		{"UPDATE", "Service", "status", true},
	}
	for _, tc := range tests {
		got := Skip(&Request{Operation: tc.op, Kind: policies.GroupVersionKind{Kind: tc.kind}, SubResource: tc.sub}) != ""
		if got != tc.skip {
			t.Errorf("Skip(%s %s/%s) = %v, want %v", tc.op, tc.kind, tc.sub, got, tc.skip)
		}
	}
}

func FuzzReview(f *testing.F) {
	r := newReviewer(f, teamConfig)
	for _, s := range []string{
		`{"apiVersion":"v1","kind":"Pod","spec":{"hostNetwork":true,"containers":[{"ports":[{"containerPort":1}]}]}}`,
		defaultedLoadBalancer,
		`{"spec":{"containers":[{"ports":[{"hostPort":"x"}]}]}}`,
		`{"spec":{"type":"LoadBalancer","ports":[{"nodePort":-1}],"externalIPs":["::1","x"]}}`,
		`{"spec":{"rules":[{"host":"*.a"}],"tls":[{"hosts":[1]}]}}`,
	} {
		f.Add(s, "Pod")
		f.Add(s, "Service")
		f.Add(s, "Ingress")
	}
	kinds := map[string]policies.GroupVersionKind{
		"Pod":     {Version: "v1", Kind: "Pod"},
		"Service": {Version: "v1", Kind: "Service"},
		"Ingress": {Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
	}
	f.Fuzz(func(t *testing.T, obj, kind string) {
		gvk, ok := kinds[kind]
		if !ok {
			gvk = policies.GroupVersionKind{Version: "v1", Kind: kind}
		}
		req := &Request{Operation: "CREATE", Kind: gvk, Namespace: "team-a", Object: []byte(obj), User: anonymous}
		if _, err := r.Validate(t.Context(), req); err != nil && !IsBadRequest(err) {
			// Evaluation errors are allowed (they become 500s) but never panics.
			t.Logf("validate: %v", err)
		}
		if _, err := r.Mutate(t.Context(), req); err != nil && !IsBadRequest(err) {
			t.Logf("mutate: %v", err)
		}
	})
}

func TestFamily(t *testing.T) {
	for _, tc := range []struct {
		gvk  policies.GroupVersionKind
		want string
	}{
		{policies.GroupVersionKind{Version: "v1", Kind: "Pod"}, policies.FamilyPods},
		{policies.GroupVersionKind{Group: "batch", Version: "v1", Kind: "CronJob"}, policies.FamilyPods},
		{policies.GroupVersionKind{Version: "v1", Kind: "Service"}, policies.FamilyServices},
		{policies.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}, policies.FamilyIngresses},
	} {
		in, err := Input(&Request{Operation: "CREATE", Kind: tc.gvk, Object: []byte(`{}`)})
		if err != nil {
			t.Fatalf("%v: %v", tc.gvk, err)
		}
		if got := in.Family(); got != tc.want {
			t.Errorf("Family of %v = %q, want %q", tc.gvk, got, tc.want)
		}
	}
	if got := (&policies.Input{Kind: policies.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Service"}}).Family(); got != "" {
		t.Errorf("Family of example.com/v1/Service = %q, want none", got)
	}
}
