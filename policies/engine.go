// Package policies holds Portreeve's Rego rules and the engine that evaluates
// them. The engine is a pure function of its input: it never calls the cluster.
package policies

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// DefaultEvalTimeout is the time budget of one evaluation when Options.EvalTimeout is 0.
const DefaultEvalTimeout = 500 * time.Millisecond

// Engine evaluates the compiled rules. It is safe for concurrent use and
// immutable: a new configuration or new modules make a new Engine.
type Engine struct {
	config   *Config
	rules    []RuleInfo
	compiler *ast.Compiler
	store    storage.Store
	grants   *grantIndex
	// plans are the fast paths, by query kind and family ("" for other kinds).
	plans   [2]map[string]*plan
	budget  time.Duration
	tracer  topdown.QueryTracer
	onError func(RuleError)
	// perRule holds the queries that evaluate one rule at a time, prepared on
	// first use: only needed to isolate a rule that fails.
	perRule map[string]*ruleQueries
}

// Options configure New.
type Options struct {
	// Config is the policy configuration; DefaultConfig when nil.
	Config *Config
	// Modules are extra Rego modules (file name to source) that join the built-in ones.
	Modules map[string]string
	// EvalTimeout bounds each call that evaluates rules (Evaluate, Rewrites,
	// Query) as a whole, isolating failing rules included (DefaultEvalTimeout
	// when 0, no bound when negative). A rule still running when its time is
	// up has failed; a ctx that ends first ends the call with its error.
	EvalTimeout time.Duration
	// OnRuleError is called for each rule that fails to evaluate (logging, metrics).
	OnRuleError func(RuleError)
	// Tracer receives evaluation events (coverage in portreeve test); nil in serve.
	Tracer topdown.QueryTracer
}

// New parses, compiles and prepares the rules once.
func New(ctx context.Context, opts Options) (*Engine, error) {
	cfg := opts.Config
	if cfg == nil {
		cfg = DefaultConfig()
	}
	compiler, builtinIDs, err := Compile(opts.Modules)
	if err != nil {
		return nil, err
	}
	rules, err := discoverRules(compiler, builtinIDs)
	if err != nil {
		return nil, err
	}
	if err := checkOutputTypes(compiler, rules); err != nil {
		return nil, err
	}
	ids := make([]string, len(rules))
	for i, r := range rules {
		ids[i] = r.ID
	}
	if err := cfg.Validate(ids); err != nil {
		return nil, err
	}
	cfg = withDefaultModes(cfg, rules)
	for i := range rules {
		rules[i].Mode = cfg.Mode(rules[i].ID)
	}
	data := cfg.Data(ids)
	grants, err := newGrantIndex(cfg, data)
	if err != nil {
		return nil, err
	}
	// Values stay in AST form in the store: no conversion of the config per evaluation.
	store := inmem.NewFromObjectWithOpts(map[string]any{"portreeve": map[string]any{"config": data}},
		inmem.OptReturnASTValuesOnRead(true))
	e := &Engine{
		config: cfg, rules: rules, compiler: compiler, store: store, grants: grants,
		budget: opts.EvalTimeout, tracer: opts.Tracer, onError: opts.OnRuleError,
		perRule: make(map[string]*ruleQueries, len(rules)),
	}
	if e.budget == 0 {
		e.budget = DefaultEvalTimeout
	}
	for _, r := range rules {
		e.perRule[r.ID] = &ruleQueries{}
	}
	for _, kind := range []queryKind{queryFindings, queryRewrites} {
		e.plans[kind] = make(map[string]*plan, len(families)+1)
		for _, f := range append([]string{""}, families...) {
			if e.plans[kind][f], err = e.newPlan(ctx, f, kind); err != nil {
				return nil, err
			}
		}
	}
	return e, nil
}

// CanRewrite is false when no rule the configuration turns on can ask to
// rewrite (or allocate for) an object of this family ("" for other kinds):
// the mutating webhook then has nothing to do for it.
func (e *Engine) CanRewrite(family string) bool {
	p := e.plans[queryRewrites][family]
	return p == nil || len(p.slots) > 0
}

// Judges is true when the rule with this id is on and judges objects of this family.
func (e *Engine) Judges(id, family string) bool {
	for _, r := range e.rules {
		if r.ID == id {
			return r.Mode != ModeOff && r.appliesTo(family)
		}
	}
	return false
}

// CustomRulesJudge reports whether an enabled custom rule judges objects of
// family. Custom rules may read any field of an object, so every UPDATE of
// such objects goes to them.
func (e *Engine) CustomRulesJudge(family string) bool {
	for _, r := range e.rules {
		if !r.Builtin && r.Mode != ModeOff && r.appliesTo(family) {
			return true
		}
	}
	return false
}

// Rules lists the rules the engine evaluates, sorted by id.
func (e *Engine) Rules() []RuleInfo { return slices.Clone(e.rules) }

// Config returns the configuration the engine was built with.
func (e *Engine) Config() *Config { return e.config }

// Evaluate runs every rule against the input and sorts the findings by mode.
// A rule that fails (an evaluation error, the time budget, a malformed
// finding) fails alone: its failure policy decides, the other rules' findings
// stand.
func (e *Engine) Evaluate(ctx context.Context, in *Input) (Decision, error) {
	var d Decision
	rs, failed, release, err := e.evalIsolated(ctx, in, queryFindings)
	if err != nil {
		return d, err
	}
	defer release()
	findings := make([]Finding, 0, len(rs))
	types := make([]string, 0, len(rs))
	for _, t := range rs {
		f, bad := t.finding()
		if bad != "" {
			failed = addFailure(failed, f.Rule, fmt.Errorf("%s: %v", bad, t.raw))
			continue
		}
		findings = append(findings, f)
		types = append(types, t.set)
	}
	for i, f := range findings {
		if _, bad := failed[f.Rule]; bad {
			continue
		}
		if types[i] == "warn" {
			d.Warnings = append(d.Warnings, f)
			continue
		}
		e.bucket(&d, f)
	}
	for _, id := range sortedKeys(failed) {
		re := e.ruleError(id, failed[id])
		d.Errors = append(d.Errors, re)
		if re.FailurePolicy == FailDeny {
			e.bucket(&d, Finding{
				Rule:    id,
				Message: "the rule failed to evaluate and its failure policy is deny: " + re.Err.Error(),
				Fix:     "ask a cluster admin to fix the rule",
			})
		}
	}
	sortFindings(d.Violations)
	sortFindings(d.Warnings)
	sortFindings(d.DryRun)
	return d, nil
}

// Rewrites returns the JSON Patch operations that rules in rewrite mode ask
// for, sorted by path and rule. The caller applies and checks them. A rule
// that fails, or asks for a malformed rewrite, contributes no rewrites.
func (e *Engine) Rewrites(ctx context.Context, in *Input) ([]Rewrite, error) {
	rs, failed, release, err := e.evalIsolated(ctx, in, queryRewrites)
	if err != nil {
		return nil, err
	}
	defer release()
	out := make([]Rewrite, 0, len(rs))
	for _, t := range rs {
		m, _ := t.json().(map[string]any)
		r := Rewrite{Rule: t.rule, Op: str(m["op"]), Path: str(m["path"]), Value: m["value"], Reason: str(m["reason"])}
		if err := rewriteProblem(m, r); err != nil {
			failed = addFailure(failed, r.Rule, err)
			continue
		}
		out = append(out, r)
	}
	for _, id := range sortedKeys(failed) {
		e.ruleError(id, failed[id])
		out = slices.DeleteFunc(out, func(r Rewrite) bool { return r.Rule == id })
	}
	slices.SortFunc(out, func(a, b Rewrite) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		if c := strings.Compare(a.Rule, b.Rule); c != 0 {
			return c
		}
		return strings.Compare(a.Op, b.Op)
	})
	return out, nil
}

// Query evaluates any query against the engine's modules and configuration
// with this input, and returns the value of its first expression (nil when
// undefined). It prepares the query on each call: for offline tools only.
// The time budget bounds it too: the error is then ErrBudget.
func (e *Engine) Query(ctx context.Context, query string, in *Input) (any, error) {
	if e.budget > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, e.budget, ErrBudget)
		defer cancel()
	}
	res := e.grants.resolve(in, time.Now())
	v, release := in.value(&res)
	defer release()
	rs, err := rego.New(
		rego.Query(query),
		rego.Compiler(e.compiler),
		rego.Store(e.store),
		rego.Capabilities(Capabilities()),
		rego.ParsedInput(v),
	).Eval(ctx)
	switch {
	case err == nil:
	case errors.Is(context.Cause(ctx), ErrBudget):
		return nil, fmt.Errorf("%w (%s)", ErrBudget, e.budget)
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%w: %w", ctx.Err(), err)
	default:
		return nil, err
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil
	}
	return rs[0].Expressions[0].Value, nil
}

// Modules returns the parsed modules the engine evaluates, by file name.
func (e *Engine) Modules() map[string]*ast.Module { return e.compiler.Modules }
