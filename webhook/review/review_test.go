package review

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/policies/exposure"
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

var anonymous = policies.User{Username: "alice", Groups: []string{"system:authenticated"}}

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

// TestEveryKindUpdate: for every kind of the table, an UPDATE that changes
// exposure is judged like a CREATE (denied here: nothing is granted in
// default), and an UPDATE that changes nothing the built-in rules judge (an
// image, labels, annotations) is spared them. A kind added to the table
// without a case here fails.
func TestEveryKindUpdate(t *testing.T) {
	r := newReviewer(t, `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - {name: domains, namespaces: [team-b], ingressDomains: [team-b.example.com]}
`)
	podSpec := func(image, hostPort string, hostNetwork bool) map[string]any {
		var spec map[string]any
		if err := json.Unmarshal([]byte(`{"hostNetwork":`+strconv.FormatBool(hostNetwork)+`,"containers":[{"name":"c","image":"`+image+`","ports":[{"containerPort":80`+hostPort+`}]}]}`), &spec); err != nil {
			t.Fatal(err)
		}
		return spec
	}
	object := func(k exposure.Kind, labels string, spec map[string]any, top string) []byte {
		obj := map[string]any{"apiVersion": strings.TrimPrefix(k.Group+"/"+k.Version, "/"), "kind": k.Kind,
			"metadata": map[string]any{"name": "x", "labels": map[string]any{"v": labels}}}
		if spec != nil {
			cur := obj
			for _, p := range k.PodSpec[:len(k.PodSpec)-1] {
				next := map[string]any{}
				cur[p] = next
				cur = next
			}
			cur[k.PodSpec[len(k.PodSpec)-1]] = spec
		} else if err := json.Unmarshal([]byte(top), &obj); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type update struct {
		name     string
		old, new []byte
		judged   bool
	}
	cases := func(k exposure.Kind) []update {
		switch {
		case k.PodSpec != nil:
			return []update{
				{"an image and a label", object(k, "1", podSpec("a", "", false), ""), object(k, "2", podSpec("b", "", false), ""), false},
				{"a hostPort", object(k, "1", podSpec("a", "", false), ""), object(k, "1", podSpec("a", `,"hostPort":80`, false), ""), true},
				{"hostNetwork", object(k, "1", podSpec("a", "", false), ""), object(k, "1", podSpec("a", "", true), ""), true},
			}
		case k.Kind == "Service":
			svc := func(typ, app string) []byte {
				return object(k, app, nil, `{"spec":{"type":"`+typ+`","selector":{"app":"`+app+`"},"ports":[{"port":80}]}}`)
			}
			return []update{
				{"a selector and a label", svc("ClusterIP", "a"), svc("ClusterIP", "b"), false},
				{"the type", svc("ClusterIP", "a"), svc("NodePort", "a"), true},
			}
		case k.Kind == "Ingress":
			ing := func(host, note string) []byte {
				return object(k, note, nil, `{"metadata":{"name":"x","annotations":{"note":"`+note+`"}},"spec":{"rules":[{"host":"`+host+`"}]}}`)
			}
			return []update{
				{"an annotation", ing("a.team-b.example.com", "1"), ing("a.team-b.example.com", "2"), false},
				{"a host", ing("a.team-b.example.com", "1"), ing("a.example.org", "1"), true},
			}
		case k.Family == exposure.FamilyGateways:
			gw := func(host, note string) []byte {
				return object(k, note, nil, `{"metadata":{"name":"x","annotations":{"note":"`+note+`"}},"spec":{"listeners":[{"name":"l","port":80,"protocol":"HTTP","hostname":"`+host+`"}]}}`)
			}
			return []update{
				{"an annotation", gw("a.team-b.example.com", "1"), gw("a.team-b.example.com", "2"), false},
				{"a listener hostname", gw("a.team-b.example.com", "1"), gw("a.example.org", "1"), true},
			}
		case k.Family == exposure.FamilyRoutes:
			route := func(hosts, note string) []byte {
				return object(k, note, nil, `{"metadata":{"name":"x","annotations":{"note":"`+note+`"}},"spec":{"parentRefs":[{"name":"gw"}],"hostnames":[`+hosts+`]}}`)
			}
			return []update{
				{"an annotation", route(`"a.team-b.example.com"`, "1"), route(`"a.team-b.example.com"`, "2"), false},
				{"an added hostname", route(`"a.team-b.example.com"`, "1"), route(`"a.team-b.example.com","a.example.org"`, "1"), true},
			}
		}
		return nil
	}
	for _, k := range exposure.Kinds() {
		updates := cases(k)
		if len(updates) == 0 {
			t.Errorf("%s: no UPDATE case", k)
		}
		for _, u := range updates {
			t.Run(k.Kind+"/"+u.name, func(t *testing.T) {
				d, err := r.Validate(t.Context(), &Request{Operation: "UPDATE", Kind: k.GroupVersionKind, Namespace: "default",
					Object: u.new, OldObject: u.old, User: anonymous})
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case u.judged && (d == nil || d.Allowed()):
					t.Errorf("an UPDATE of %s was not judged (or admitted): %+v", u.name, d)
				case !u.judged && d != nil:
					t.Errorf("an UPDATE of %s was judged: %+v", u.name, d)
				}
			})
		}
	}
}
