package policies

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/portreeve/portreeve/policies/exposure"
)

func pod(spec map[string]any) *Input {
	return &Input{
		Operation: "CREATE",
		Kind:      GroupVersionKind{Version: "v1", Kind: "Pod"},
		Namespace: "default",
		Name:      "p",
		User:      User{Username: "alice"},
		Object:    map[string]any{"apiVersion": "v1", "kind": "Pod", "spec": spec},
		Pod:       viewOf(spec, "spec"),
	}
}

// viewOf is the rules' view of spec, found at path, as webhook/review makes it.
func viewOf(spec map[string]any, path string) *PodView {
	p, err := exposure.ExtractPodSpec(path, spec)
	if err != nil {
		panic(err)
	}
	return NewPodView(p)
}

func threeContainerPod() *Input {
	c := func(name string, port, hostPort int) map[string]any {
		p := map[string]any{"containerPort": port}
		if hostPort > 0 {
			p["hostPort"] = hostPort
		}
		return map[string]any{"name": name, "image": "x", "ports": []any{p}}
	}
	return pod(map[string]any{"containers": []any{c("a", 80, 80), c("b", 81, 0), c("c", 82, 0)}})
}

func TestEvaluateUsesTheModes(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  host-ports: {mode: warn}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                    string
		cfg                     *Config
		violations, warnings, n int
	}{
		{"deny by default", nil, 1, 0, 0},
		{"warn", cfg, 0, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(t.Context(), Options{Config: tc.cfg})
			if err != nil {
				t.Fatal(err)
			}
			d, err := e.Evaluate(t.Context(), threeContainerPod())
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Violations) != tc.violations || len(d.Warnings) != tc.warnings {
				t.Fatalf("got %+v", d)
			}
		})
	}
}

func TestCustomModules(t *testing.T) {
	tests := []struct {
		name, src, wantErr string
	}{
		{"network builtin blocked", "package portreeve.rules.phone_home\n\ndeny contains {\"msg\": x} if { x := http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1\"}) }\n", "undefined function http.send"},
		{"shadows a built-in rule", "package portreeve.rules.host_network\n\ndeny contains {\"msg\": \"x\"} if { true }\n", "shadows the built-in rule"},
		{"does not parse", "package portreeve.rules.broken\n\ndeny contains if {\n", "does_not_parse.rego:3: rego_parse_error"},
		{"reserved package", "package portreeve.lib.grants\n\nx := 1\n", "reserved"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(t.Context(), Options{Modules: map[string]string{"custom/" + strings.ReplaceAll(tc.name, " ", "_") + ".rego": tc.src}})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	e, err := New(t.Context(), Options{Modules: map[string]string{"custom/team_label.rego": `# METADATA
# title: pods need a team label
package portreeve.rules.team_label

deny contains {"msg": "pods need a team label", "field": "metadata.labels.team"} if {
	input.kind.kind == "Pod"
	not input.object.metadata.labels.team
}
`}})
	if err != nil {
		t.Fatal(err)
	}
	in := pod(map[string]any{})
	in.Object["metadata"] = map[string]any{}
	d, err := e.Evaluate(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Violations) != 1 || d.Violations[0].Rule != "team-label" {
		t.Fatalf("custom rule not evaluated: %+v", d)
	}
}

// BenchmarkEvaluate is the target: a 3-container Pod against all rules.
func BenchmarkEvaluate(b *testing.B) {
	ctx := context.Background()
	e, err := New(ctx, Options{})
	if err != nil {
		b.Fatal(err)
	}
	in := threeContainerPod()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Evaluate(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateKinds covers the other paths: an admitted pod (kube-system
// holds every grant), a NodePort Service and an Ingress, all denied or
// admitted under the built-in configuration.
func BenchmarkEvaluateKinds(b *testing.B) {
	ctx := context.Background()
	e, err := New(ctx, Options{})
	if err != nil {
		b.Fatal(err)
	}
	granted := threeContainerPod()
	granted.Namespace = "kube-system"
	service := &Input{
		Operation: "CREATE", Kind: GroupVersionKind{Version: "v1", Kind: "Service"}, Namespace: "default", Name: "s",
		User: User{Username: "alice"},
		Object: map[string]any{"spec": map[string]any{"type": "NodePort", "ports": []any{
			map[string]any{"port": 80, "nodePort": 30000},
		}}},
	}
	ingress := &Input{
		Operation: "CREATE", Kind: GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
		Namespace: "default", Name: "i", User: User{Username: "alice"},
		Object: map[string]any{"spec": map[string]any{"rules": []any{map[string]any{"host": "www.example.com"}}}},
	}
	for _, tc := range []struct {
		name    string
		in      *Input
		allowed bool
	}{{"pod granted", granted, true}, {"nodeport service", service, false}, {"ingress", ingress, true}} {
		d, err := e.Evaluate(ctx, tc.in)
		if err != nil || d.Allowed() != tc.allowed {
			b.Fatalf("%s: allowed %v (%+v), want %v: %v", tc.name, d.Allowed(), d.Violations, tc.allowed, err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Evaluate(ctx, tc.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestCanRewriteAndJudges(t *testing.T) {
	rewriteHostPorts, err := ParseConfig([]byte("apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\nrules: {host-ports: {mode: rewrite}, node-ports: {mode: off}, node-port-conflicts: {mode: off}}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	builtin := newEngine(t, Options{})
	rewriting := newEngine(t, Options{Config: rewriteHostPorts})
	tests := []struct {
		name   string
		e      *Engine
		family string
		want   bool
	}{
		{"built-in: nothing rewrites pods", builtin, FamilyPods, false},
		{"built-in: node-ports allocates for Services in deny mode", builtin, FamilyServices, true},
		{"built-in: nothing rewrites Ingresses", builtin, FamilyIngresses, false},
		{"host-ports in rewrite mode rewrites pods", rewriting, FamilyPods, true},
		{"node-ports off: nothing rewrites Services", rewriting, FamilyServices, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.e.CanRewrite(tc.family); got != tc.want {
				t.Errorf("CanRewrite(%q) = %v, want %v", tc.family, got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		e          *Engine
		id, family string
		want       bool
	}{
		{builtin, "node-port-conflicts", FamilyServices, true},
		{builtin, "node-port-conflicts", FamilyPods, false},
		{rewriting, "node-port-conflicts", FamilyServices, false},
		{builtin, "no-such-rule", FamilyServices, false},
	} {
		if got := tc.e.Judges(tc.id, tc.family); got != tc.want {
			t.Errorf("Judges(%q, %q) = %v, want %v", tc.id, tc.family, got, tc.want)
		}
	}
}

// TestConflictRuleIDs: the conflict rules' ids that the inventory, the
// reservations and the metrics name are built-in rules.
func TestConflictRuleIDs(t *testing.T) {
	for _, id := range []string{RuleHostPortConflicts, RuleNodePortConflicts, RuleIngressHostConflicts} {
		if !slices.Contains(builtinRuleIDs(), id) {
			t.Errorf("%q is not a built-in rule (%v)", id, builtinRuleIDs())
		}
	}
}
