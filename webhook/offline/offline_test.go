package offline

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

func TestNewRequest(t *testing.T) {
	for _, tc := range []struct {
		name, object, namespace string
		old                     []byte
		want                    review.Request
		err                     string
	}{
		{name: "core kind, namespace of the object", object: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"a"}}`, namespace: "b",
			want: review.Request{Operation: "CREATE", Kind: policies.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "a", Name: "p"}},
		{name: "grouped kind, namespace given", object: `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"}}`, namespace: "b",
			want: review.Request{Operation: "CREATE", Kind: policies.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, Namespace: "b", Name: "d"}},
		{name: "no namespace at all", object: `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}}`,
			want: review.Request{Operation: "CREATE", Kind: policies.GroupVersionKind{Version: "v1", Kind: "Service"}, Namespace: "default", Name: "s"}},
		{name: "an old object makes an UPDATE", object: `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}}`, old: []byte(`{}`),
			want: review.Request{Operation: "UPDATE", Kind: policies.GroupVersionKind{Version: "v1", Kind: "Service"}, Namespace: "default", Name: "s"}},
		{name: "no kind", object: `{"apiVersion":"v1"}`, err: "no apiVersion or kind"},
		{name: "not an object", object: `[1]`, err: "not a Kubernetes object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := NewRequest([]byte(tc.object), tc.old, tc.namespace, anonymous)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.Operation != tc.want.Operation || req.Kind != tc.want.Kind || req.Namespace != tc.want.Namespace ||
				req.Name != tc.want.Name || req.User.Username != anonymous.Username || string(req.Object) != tc.object ||
				string(req.OldObject) != string(tc.old) {
				t.Fatalf("got %+v", req)
			}
		})
	}
}

func TestReviewSkips(t *testing.T) {
	r := newReviewer(t, "")
	pod := policies.GroupVersionKind{Version: "v1", Kind: "Pod"}
	hostNetwork := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"hostNetwork":true,"containers":[{"name":"c"}]}}`)
	for _, tc := range []struct {
		name string
		req  review.Request
		want string
	}{
		{"an operation the webhooks do not review", review.Request{Operation: "DELETE", Kind: pod, Object: hostNetwork}, "operation DELETE is not reviewed"},
		{"a subresource the webhooks do not review", review.Request{Operation: "UPDATE", Kind: pod, SubResource: "status", Object: hostNetwork, OldObject: hostNetwork}, "subresource status is not reviewed"},
		{"a kind Portreeve does not review", review.Request{Operation: "CREATE", Kind: policies.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, Object: []byte(`{}`)}, "kind v1/ConfigMap is not reviewed"},
		{"the seed's removed Ingress API", review.Request{Operation: "CREATE", Kind: policies.GroupVersionKind{Group: "extensions", Version: "v1beta1", Kind: "Ingress"}, Object: []byte(`{}`)},
			"the extensions/v1beta1/Ingress API was removed from Kubernetes (the apiserver refuses it): use networking.k8s.io/v1/Ingress, which Portreeve reviews"},
		{"a removed workload API", review.Request{Operation: "CREATE", Kind: policies.GroupVersionKind{Group: "apps", Version: "v1beta2", Kind: "DaemonSet"}, Object: []byte(`{}`)},
			"use apps/v1/DaemonSet"},
		{"an UPDATE that leaves exposure alone", review.Request{Operation: "UPDATE", Kind: policies.GroupVersionKind{Version: "v1", Kind: "Service"},
			Object:    []byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"s","labels":{"a":"2"}},"spec":{"type":"NodePort","ports":[{"port":80}]}}`),
			OldObject: []byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"s","labels":{"a":"1"}},"spec":{"type":"NodePort","ports":[{"port":80}]}}`)},
			"exposure unchanged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Review(t.Context(), r, &tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.Skipped, tc.want) || !out.Allowed || out.Decision != nil || out.Verdict() != Skipped {
				t.Fatalf("skipped %q (verdict %s), want %q", out.Skipped, out.Verdict(), tc.want)
			}
		})
	}
}

// conflictFacts reports that another Service holds nodePort 30080.
type conflictFacts struct{}

func (conflictFacts) Facts(*policies.Input, *policies.Config) *policies.Facts {
	return &policies.Facts{Ready: true, NodePortConflicts: []policies.NodePortConflict{{
		Port: 30080, Field: "spec.ports[0].nodePort", Holder: policies.Holder{Namespace: "b", Kind: "Service", Name: "other", Claim: "nodePort 30080/TCP"},
	}}}
}
func (conflictFacts) Claim(*policies.Input, bool) {}
func (conflictFacts) Release(*policies.Input)     {}

// TestReviewStopsAtTheMutatingRefusal: node-port-conflicts refuses in the
// mutating webhook (the apiserver allocates the nodePort before the
// validating webhook is called), so the validating review never runs.
func TestReviewStopsAtTheMutatingRefusal(t *testing.T) {
	r := newReviewer(t, `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - {name: a, namespaces: [a], nodePorts: ["30000-32767"]}
`)
	r.UseFacts(conflictFacts{})
	req, err := NewRequest([]byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"s","namespace":"a"},"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":30080}]}}`), nil, "", anonymous)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Review(t.Context(), r, req)
	if err != nil {
		t.Fatal(err)
	}
	if out.Allowed || !out.RefusedByMutating || out.Verdict() != Denied || len(out.Decision.Violations) != 1 ||
		out.Decision.Violations[0].Rule != "node-port-conflicts" || !strings.Contains(out.Decision.Violations[0].String(), "already allocated to b/Service/other") {
		t.Fatalf("outcome %+v, decision %+v", out, out.Decision)
	}
}

// TestSettingsNodePortRange: the cluster's NodePort range decides which
// hostPorts host-port-conflicts denies, offline too.
func TestSettingsNodePortRange(t *testing.T) {
	cfg, err := policies.ParseConfig([]byte(`
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - {name: a, namespaces: [a], hostPorts: ["1-65535"]}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	pod := func(port int) []byte {
		b, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "p"},
			"spec": map[string]any{"containers": []any{map[string]any{"name": "c", "ports": []any{map[string]any{"containerPort": 80, "hostPort": port}}}}}})
		return b
	}
	for _, tc := range []struct {
		span   policies.PortSpan
		port   int
		denied bool
	}{
		{policies.PortSpan{}, 30080, true},
		{policies.PortSpan{}, 20080, false},
		{policies.PortSpan{From: 20000, To: 22767}, 30080, false},
		{policies.PortSpan{From: 20000, To: 22767}, 20080, true},
	} {
		s := &Settings{Config: cfg, NodePortRange: tc.span, Namespace: "a", NamespaceLabels: map[string]string{"team": "a"}, User: anonymous}
		e, err := s.NewEngine(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		req, err := s.Request(pod(tc.port))
		if err != nil {
			t.Fatal(err)
		}
		if req.Namespace != "a" || req.NamespaceLabels["team"] != "a" || req.User.Username != anonymous.Username {
			t.Fatalf("request %+v", req)
		}
		out, err := Review(t.Context(), s.NewReviewer(e), req)
		if err != nil {
			t.Fatal(err)
		}
		var rules []string
		for _, v := range out.Decision.Violations {
			rules = append(rules, v.Rule)
		}
		if got := slices.Equal(rules, []string{"host-port-conflicts"}); got != tc.denied || out.Allowed == tc.denied {
			t.Errorf("range %v, hostPort %d: denied by %v", tc.span, tc.port, rules)
		}
	}
	if NodePortRangeFacts(policies.DefaultNodePortRange) != nil || NodePortRangeFacts(policies.PortSpan{}) != nil {
		t.Error("the default range needs no facts")
	}
}

// TestReport is eval's JSON shape: every list present (empty, not null),
// the patch of the rewrites, and warnings in the order kubectl prints them.
func TestReport(t *testing.T) {
	r := newReviewer(t, teamConfig)
	rep, err := reviewObject(t, r, toJSON(t, defaultedLoadBalancer), "default")
	if err != nil {
		t.Fatal(err)
	}
	rep.Source = "svc.yaml#1"
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"allowed", "kind", "name", "namespace", "patch", "source", "violations", "warnings"}; !slices.Equal(keys, want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
	if rep.Verdict != Rewritten || !rep.Allowed || len(rep.Patch) == 0 || len(rep.Warnings) == 0 ||
		!strings.HasPrefix(rep.Warnings[0], "portreeve rewrote ") || rep.Patched == nil {
		t.Errorf("report %+v", rep)
	}

	rep, err = reviewObject(t, r, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(rep)
	if want := `{"kind":"ConfigMap","namespace":"default","name":"c","allowed":true,"violations":[],"warnings":[],"patch":[],"skipped":"kind v1/ConfigMap is not reviewed"}`; string(b) != want {
		t.Errorf("json %s\nwant %s", b, want)
	}
}

func TestWriteReports(t *testing.T) {
	reports := []*Report{
		{Source: "a.yaml#1", Kind: "Pod", Namespace: "default", Name: "p", Allowed: true, Verdict: Allowed},
		{Source: "a.yaml#2", Kind: "Pod", Namespace: "default", Name: "hn", Verdict: Denied,
			Violations: []ReportFinding{{Rule: "host-network", Message: "host-network: no"}}, Warnings: []string{"w"}},
		{Kind: "Service", Namespace: "a", Name: "s", Allowed: true, Verdict: Rewritten, DryRun: []ReportFinding{{Rule: "x", Message: "x: maybe"}}},
		{Kind: "ConfigMap", Namespace: "a", Name: "c", Allowed: true, Verdict: Skipped, Skipped: "kind v1/ConfigMap is not reviewed"},
	}
	var b strings.Builder
	if err := WriteReports(&b, "text", reports); err != nil {
		t.Fatal(err)
	}
	want := `ALLOWED   Pod default/p (a.yaml#1)
DENIED    Pod default/hn (a.yaml#2)
  denied:  host-network: no
  warning: w
REWRITTEN Service a/s
  dryrun:  x: maybe
SKIPPED   ConfigMap a/c
  kind v1/ConfigMap is not reviewed
4 objects: 1 allowed, 1 rewritten, 1 denied, 1 skipped
`
	if b.String() != want {
		t.Errorf("text:\n%s\nwant:\n%s", b.String(), want)
	}
}
