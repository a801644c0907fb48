package policies

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// conflicting errors at evaluation time on every Pod: two outputs of one complete rule.
const conflicting = `# METADATA
# title: always fails on pods
# custom:
#   failurePolicy: %s
package portreeve.rules.conflicting

n := 1 if input.kind.kind == "Pod"

n := 2 if input.kind.kind == "Pod"

deny contains {"msg": sprintf("n is %d", [n])} if n > 0
`

// slow runs far longer than any budget on every Pod.
const slow = `package portreeve.rules.slow

deny contains {"msg": "done"} if {
	input.kind.kind == "Pod"
	count([1 | some i in numbers.range(1, 100000); some j in numbers.range(1, 100000); i == j]) < 0
}
`

func newEngine(t *testing.T, opts Options) *Engine {
	t.Helper()
	e, err := New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func rulesOf(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		if !slices.Contains(out, f.Rule) {
			out = append(out, f.Rule)
		}
	}
	return out
}

func TestFailingRuleFailsAlone(t *testing.T) {
	tests := []struct {
		policy         string
		wantViolations []string
	}{
		{"deny", []string{"conflicting", "host-ports"}},
		{"ignore", []string{"host-ports"}},
	}
	for _, tc := range tests {
		t.Run(tc.policy, func(t *testing.T) {
			var reported []RuleError
			e := newEngine(t, Options{
				Modules:     map[string]string{"custom/conflicting.rego": strings.Replace(conflicting, "%s", tc.policy, 1)},
				OnRuleError: func(re RuleError) { reported = append(reported, re) },
			})
			d, err := e.Evaluate(t.Context(), threeContainerPod())
			if err != nil {
				t.Fatalf("a failing rule failed the whole evaluation: %v", err)
			}
			if got := rulesOf(d.Violations); !slices.Equal(got, tc.wantViolations) {
				t.Fatalf("violations from %v, want %v: %+v", got, tc.wantViolations, d.Violations)
			}
			if len(d.Errors) != 1 || d.Errors[0].Rule != "conflicting" || string(d.Errors[0].FailurePolicy) != tc.policy {
				t.Fatalf("errors = %+v", d.Errors)
			}
			if !strings.Contains(d.Errors[0].Err.Error(), "conflicting.rego:7") {
				t.Errorf("error does not say where: %v", d.Errors[0].Err)
			}
			if len(reported) != 1 || reported[0].Rule != "conflicting" {
				t.Errorf("OnRuleError got %+v", reported)
			}
			if tc.policy == "deny" {
				for _, v := range d.Violations {
					if v.Rule == "conflicting" && !strings.Contains(v.Message, "failure policy is deny") {
						t.Errorf("message %q does not explain the failure", v.Message)
					}
				}
			}
			// A Service does not trip the rule: nothing is reported.
			reported = nil
			svc := &Input{Operation: "CREATE", Kind: GroupVersionKind{Version: "v1", Kind: "Service"}, Namespace: "default",
				Object: map[string]any{"spec": map[string]any{"type": "ClusterIP"}}}
			if d, err := e.Evaluate(t.Context(), svc); err != nil || len(d.Errors) != 0 || len(reported) != 0 {
				t.Fatalf("service: %+v %v %+v", d, err, reported)
			}
		})
	}
}

func TestEvaluationBudget(t *testing.T) {
	e := newEngine(t, Options{Modules: map[string]string{"custom/slow.rego": slow}, EvalTimeout: 50 * time.Millisecond})
	start := time.Now()
	d, err := e.Evaluate(t.Context(), threeContainerPod())
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("evaluation took %s with a 50ms budget", took)
	}
	if got := rulesOf(d.Violations); !slices.Equal(got, []string{"host-ports", "slow"}) {
		t.Fatalf("violations from %v: %+v", got, d.Violations)
	}
	if len(d.Errors) != 1 || !errors.Is(d.Errors[0].Err, ErrBudget) {
		t.Fatalf("errors = %+v", d.Errors)
	}
}

func TestCancelledRequestIsAnError(t *testing.T) {
	e := newEngine(t, Options{Modules: map[string]string{"custom/slow.rego": slow}, EvalTimeout: -1})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.Evaluate(ctx, threeContainerPod()); err == nil {
		t.Fatal("an evaluation whose request ended returned no error")
	}
}

func TestMalformedOutputFailsTheRule(t *testing.T) {
	e := newEngine(t, Options{Modules: map[string]string{"custom/nomsg.rego": `package portreeve.rules.nomsg

deny contains {"field": "spec"} if input.kind.kind == "Pod"

rewrite contains {"op": "replace", "path": "/metadata/name", "value": "x", "reason": "r"} if input.kind.kind == "Pod"
`}, Config: mustConfig(t, "rules: {nomsg: {mode: rewrite}}")})
	d, err := e.Evaluate(t.Context(), threeContainerPod())
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Errors) != 1 || !strings.Contains(d.Errors[0].Err.Error(), "no msg") {
		t.Fatalf("errors = %+v", d.Errors)
	}
	rw, err := e.Rewrites(t.Context(), threeContainerPod())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rw {
		if r.Rule == "nomsg" {
			t.Fatalf("a malformed rewrite was kept: %+v", r)
		}
	}
}

func mustConfig(t *testing.T, extra string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte("apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\n"+extra+"\n"), []string{"nomsg", "team-label"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRuleMetadata(t *testing.T) {
	src := `# METADATA
# title: pods need a team label
# description: Every pod carries a team label.
# custom:
#   mode: dryrun
#   failurePolicy: ignore
package portreeve.rules.team_label

deny contains {"msg": "pods need a team label"} if {
	input.kind.kind == "Pod"
	not input.object.metadata.labels.team
}
`
	e := newEngine(t, Options{Modules: map[string]string{"custom/team_label.rego": src}})
	i := slices.IndexFunc(e.Rules(), func(r RuleInfo) bool { return r.ID == "team-label" })
	r := e.Rules()[i]
	if r.Mode != ModeDryRun || r.DefaultMode != ModeDryRun || r.FailurePolicy != FailIgnore || r.Builtin ||
		r.File != "custom/team_label.rego" || r.Title != "pods need a team label" {
		t.Fatalf("rule info %+v", r)
	}
	in := threeContainerPod()
	in.Object["metadata"] = map[string]any{}
	d, err := e.Evaluate(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rulesOf(d.DryRun), []string{"team-label"}) {
		t.Fatalf("default mode not applied: %+v", d)
	}
	// The configuration overrides the default mode.
	e = newEngine(t, Options{Modules: map[string]string{"custom/team_label.rego": src}, Config: mustConfig(t, "rules: {team-label: {mode: deny}}")})
	if d, _ := e.Evaluate(t.Context(), in); !slices.Contains(rulesOf(d.Violations), "team-label") {
		t.Fatalf("configured mode not applied: %+v", d)
	}
	for _, e := range e.Rules() {
		if e.Builtin && e.FailurePolicy != FailDeny {
			t.Errorf("built-in rule %s has failure policy %q", e.ID, e.FailurePolicy)
		}
	}
}

func TestCustomModulesRejected(t *testing.T) {
	tests := []struct {
		name, src, wantErr string
	}{
		{"bad failure policy", "# METADATA\n# custom:\n#   failurePolicy: maybe\npackage portreeve.rules.x\n\ndeny contains {\"msg\": \"x\"} if false\n",
			"custom/x.rego:1: rule x: custom.failurePolicy must be deny or ignore"},
		{"bad mode", "# METADATA\n# custom:\n#   mode: loud\npackage portreeve.rules.x\n", "custom.mode must be one of"},
		{"strings as findings", "package portreeve.rules.x\n\ndeny contains \"no\" if input.kind.kind == \"Pod\"\n",
			"deny must hold objects"},
		{"deny not a set", "package portreeve.rules.x\n\ndeny := {\"msg\": \"no\"}\n", "deny must be a set"},
		{"reserved config", "package portreeve.config\n\nx := 1\n", "custom/x.rego:1: package portreeve.config is reserved"},
		{"reserved other", "package portreeve.extra\n\nx := 1\n", "is reserved"},
		{"upper case rule", "package portreeve.rules.Teams\n\nx := 1\n", `rule package name "Teams"`},
		{"shadow with line", "\n\npackage portreeve.rules.host_ports\n", "custom/x.rego:3: package portreeve.rules.host_ports shadows"},
		{"shadow below", "package portreeve.rules.host_ports.more\n\nx := 1\n", "shadows the built-in rule"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(t.Context(), Options{Modules: map[string]string{"custom/x.rego": tc.src}})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	// Helper packages of a custom rule and outside portreeve are fine.
	if _, err := New(t.Context(), Options{Modules: map[string]string{
		"custom/a.rego": "package portreeve.rules.mine.helpers\n\nx := 1\n",
		"custom/b.rego": "package acme.lib\n\ny := 2\n",
	}}); err != nil {
		t.Fatal(err)
	}
}
