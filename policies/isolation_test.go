package policies

import (
	"context"
	"errors"
	"fmt"
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

// slowModule is custom rule slow<n>, as in the reproduction of a slow review:
// on every object it loops far longer than any budget before it decides. set
// is the output it computes (deny, or rewrite in rewrite mode).
func slowModule(n int, policy FailurePolicy, set string) string {
	mode := "deny"
	out := `{"msg": "x"}`
	if set == "rewrite" {
		mode = "rewrite"
		out = `{"op": "remove", "path": "/spec/hostNetwork", "reason": "x"}`
	}
	return fmt.Sprintf(`# METADATA
# custom:
#   mode: %s
#   failurePolicy: %s
package portreeve.rules.slow%d

%s contains %s if {
	some a in numbers.range(1, 4000)
	some b in numbers.range(1, 4000)
	a * b == -1
}
`, mode, policy, n, set, out)
}

// fastRule denies pods without a team label at once.
const fastRule = `package portreeve.rules.team_label

deny contains {"msg": "pods need a team label"} if {
	input.kind.kind == "Pod"
	not input.object.metadata.labels.team
}
`

// slowModules are n slow rules of one failure policy, plus the fast rule.
func slowModules(n int, policy FailurePolicy, set string) map[string]string {
	m := map[string]string{"custom/team_label.rego": fastRule}
	for i := range n {
		m[fmt.Sprintf("custom/slow%d.rego", i)] = slowModule(i, policy, set)
	}
	return m
}

func hostNetworkPod() *Input {
	in := threeContainerPod()
	in.Pod.Spec["hostNetwork"] = true
	return in
}

// The deadline tests run at the default budget, a tenth of the apiserver's
// webhook timeout (5 s), as the reproduction of a slow review did: re-running
// every slow rule with a budget of its own took (10+1) × 500 ms = 5.5 s for
// ten slow rules, and the apiserver gave up first. Every call must answer
// within testBound, a second before the apiserver gives up, which leaves a
// busy 2-core machine, or -race, room (a bound of 1.5 s failed under load):
// these are correctness bounds with wide margins (the answer comes before the
// apiserver gives up, which the old cost did not), not speed targets, which
// live in benchmarks.
const (
	testBudget = DefaultEvalTimeout
	testBound  = webhookTimeout - time.Second
	// webhookTimeout is the apiserver's default timeout of a webhook call.
	webhookTimeout = 5 * time.Second
)

func TestBudgetBoundsTheWholeEvaluation(t *testing.T) {
	if old := 11 * testBudget; old <= webhookTimeout || testBound >= webhookTimeout {
		t.Fatalf("the bound %s must lie below the webhook timeout %s, and the old cost of ten slow rules %s above it", testBound, webhookTimeout, old)
	}
	tests := []struct {
		name   string
		slow   int
		policy FailurePolicy
	}{
		{"one slow rule", 1, FailDeny},
		{"three slow rules", 3, FailDeny},
		{"ten slow rules", 10, FailDeny},
		{"ten slow rules that fail open", 10, FailIgnore},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var reported []RuleError
			e := newEngine(t, Options{
				Modules:     slowModules(tc.slow, tc.policy, "deny"),
				EvalTimeout: testBudget,
				OnRuleError: func(re RuleError) { reported = append(reported, re) },
			})
			var slow []string
			for i := range tc.slow {
				slow = append(slow, fmt.Sprintf("slow%d", i))
			}
			slices.Sort(slow)
			start := time.Now()
			d, err := e.Evaluate(t.Context(), hostNetworkPod())
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if took > testBound {
				t.Errorf("answered after %s, past the bound %s (budget %s)", took, testBound, testBudget)
			}
			// The built-in rules keep their own findings.
			if !slices.ContainsFunc(d.Violations, func(f Finding) bool {
				return f.Rule == "host-network" && strings.HasPrefix(f.Message, "hostNetwork is not granted")
			}) {
				t.Errorf("no host-network finding: %+v", d.Violations)
			}
			// Every slow rule gets the verdict of its failure policy and is reported as a timeout.
			var denied []string
			for _, f := range slices.Concat(d.Violations, d.Warnings, d.DryRun) {
				if !strings.HasPrefix(f.Rule, "slow") {
					continue
				}
				denied = append(denied, f.Rule)
				if !strings.Contains(f.Message, "failed to evaluate") || !strings.Contains(f.Message, "time budget exceeded") {
					t.Errorf("%s: message %q does not say the rule ran out of time", f.Rule, f.Message)
				}
			}
			if tc.policy == FailIgnore && len(denied) != 0 || tc.policy == FailDeny && !slices.Equal(denied, slow) {
				t.Errorf("findings of slow rules %v, want one per slow rule when the failure policy is deny, none when ignore", denied)
			}
			for _, errs := range [][]RuleError{d.Errors, reported} {
				var rules []string
				for _, re := range errs {
					if !re.Timeout || !errors.Is(re.Err, ErrBudget) {
						t.Errorf("rule error %+v is not a timeout", re)
					}
					// On a first request no rule is known to be slow: the
					// fast custom rule runs after the slow ones (by id) and
					// may find no time left (TestSlowRulesRerunLast).
					if re.Rule == "team-label" {
						continue
					}
					rules = append(rules, re.Rule)
					if re.FailurePolicy != tc.policy {
						t.Errorf("rule error %+v, want failure policy %s", re, tc.policy)
					}
				}
				slices.Sort(rules)
				if !slices.Equal(rules, slow) {
					t.Errorf("rule errors of %v, want %v", rules, slow)
				}
			}
			if !slices.ContainsFunc(d.Errors, func(re RuleError) bool { return re.Rule == "team-label" }) &&
				!slices.Contains(rulesOf(d.Violations), "team-label") {
				t.Errorf("the fast custom rule has neither its finding nor a timeout: %+v", d)
			}
		})
	}
}

// The rules known to run out of time alone are re-run last, so that they
// cost the fast custom rules nothing from the next request on.
func TestSlowRulesRerunLast(t *testing.T) {
	e := newEngine(t, Options{Modules: slowModules(3, FailDeny, "deny")})
	in := hostNetworkPod()
	tests := []struct {
		name         string
		ranOut       []string
		custom, slow []string
	}{
		{"none known slow", nil, []string{"slow0", "slow1", "slow2", "team-label"}, nil},
		{"one known slow", []string{"slow1"}, []string{"slow0", "slow2", "team-label"}, []string{"slow1"}},
		{"two known slow", []string{"slow0", "slow2"}, []string{"slow1", "team-label"}, []string{"slow0", "slow2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for id, rq := range e.perRule {
				rq.ranOut.Store(slices.Contains(tc.ranOut, id))
			}
			res := e.grants.resolve(in, time.Now())
			g := e.isolationGroups(e.plans[queryFindings][in.Family()], &res)
			ids := func(rs []RuleInfo) []string {
				var out []string
				for _, r := range rs {
					out = append(out, r.ID)
				}
				return out
			}
			if len(g[groupBuiltin]) == 0 {
				t.Error("no built-in rule to re-run")
			}
			for _, r := range g[groupBuiltin] {
				if !r.Builtin {
					t.Errorf("custom rule %s re-runs with the built-in ones", r.ID)
				}
			}
			if got := ids(g[groupCustom]); !slices.Equal(got, tc.custom) {
				t.Errorf("custom group %v, want %v", got, tc.custom)
			}
			if got := ids(g[groupSlow]); !slices.Equal(got, tc.slow) {
				t.Errorf("slow group %v, want %v", got, tc.slow)
			}
		})
	}
}

func TestBudgetBoundsEveryEntryPoint(t *testing.T) {
	const loop = `count([1 | some a in numbers.range(1, 4000); some b in numbers.range(1, 4000); a * b == -1])`
	var reported []RuleError
	e := newEngine(t, Options{
		Modules:     slowModules(10, FailDeny, "rewrite"),
		EvalTimeout: testBudget,
		OnRuleError: func(re RuleError) { reported = append(reported, re) },
	})
	tests := []struct {
		name     string
		call     func(context.Context) error
		timeouts int // rule errors reported as timeouts
	}{
		{"rewrites", func(ctx context.Context) error {
			rw, err := e.Rewrites(ctx, hostNetworkPod())
			if len(rw) != 0 {
				return fmt.Errorf("rules that ran out of time rewrote: %+v", rw)
			}
			return err
		}, 10},
		{"query", func(ctx context.Context) error {
			_, err := e.Query(ctx, loop, hostNetworkPod())
			if !errors.Is(err, ErrBudget) {
				return fmt.Errorf("a query past the budget returned %v, want %v", err, ErrBudget)
			}
			return nil
		}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reported = nil
			start := time.Now()
			err := tc.call(t.Context())
			if took := time.Since(start); took > testBound {
				t.Errorf("answered after %s (budget %s, bound %s)", took, testBudget, testBound)
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(reported) != tc.timeouts || slices.ContainsFunc(reported, func(re RuleError) bool { return !re.Timeout }) {
				t.Errorf("reported %+v, want %d timeouts", reported, tc.timeouts)
			}
		})
	}
}

func TestShorterContextDeadlineWins(t *testing.T) {
	const wait = 100 * time.Millisecond
	tests := []struct {
		name, set string
		call      func(context.Context, *Engine) error
	}{
		{"evaluate", "deny", func(ctx context.Context, e *Engine) error { _, err := e.Evaluate(ctx, hostNetworkPod()); return err }},
		{"rewrites", "rewrite", func(ctx context.Context, e *Engine) error { _, err := e.Rewrites(ctx, hostNetworkPod()); return err }},
		{"query", "deny", func(ctx context.Context, e *Engine) error {
			_, err := e.Query(ctx, "data.portreeve.rules.slow0.deny", hostNetworkPod())
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Options{Modules: slowModules(10, FailDeny, tc.set), EvalTimeout: time.Minute})
			ctx, cancel := context.WithTimeout(t.Context(), wait)
			defer cancel()
			start := time.Now()
			err := tc.call(ctx, e)
			// The budget is a minute: answering within a second and a half of
			// the caller's deadline (room for a loaded machine) shows it won.
			if took := time.Since(start); took > wait+1500*time.Millisecond {
				t.Errorf("answered after %s, the caller gave up after %s", took, wait)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want the caller's %v", err, context.DeadlineExceeded)
			}
		})
	}
}
