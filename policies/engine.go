// Package policies holds Portreeve's Rego rules and the engine that evaluates
// them. The engine is a pure function of its input: it never calls the cluster.
package policies

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/types"

	"github.com/portreeve/portreeve/policies/exposure"
)

const rulesPackagePrefix = "data.portreeve.rules."

// blockedBuiltins can reach the network or the host; no rule may call them.
var blockedBuiltins = []string{
	"http.send", "net.lookup_ip_addr", "opa.runtime", "providers.aws.sign_req",
	"rego.parse_module", "trace",
}

// Capabilities are the OPA capabilities rules are compiled with: this version's
// builtins minus the blocked ones, and no network access for schemas.
func Capabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool {
		return slices.Contains(blockedBuiltins, b.Name)
	})
	c.AllowNet = []string{}
	return c
}

// RuleInfo describes one rule package.
type RuleInfo struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Mode        Mode   `json:"mode"`
	Builtin     bool   `json:"builtin"`
	// DefaultMode is the mode from the METADATA annotation custom.mode, used
	// when the configuration names none ("" means deny).
	DefaultMode Mode `json:"defaultMode,omitempty"`
	// FailurePolicy (custom.failurePolicy: deny or ignore; default deny) says
	// what an evaluation error of this rule does to its decision.
	FailurePolicy FailurePolicy `json:"failurePolicy"`
	// File is the module that declares the rule package (the first, if several do).
	File string `json:"file,omitempty"`
	// AppliesTo lists the families of objects the rule judges (custom.appliesTo:
	// pods, services, ingresses); empty means every object. The engine does not
	// evaluate a rule for other objects at all.
	AppliesTo []string `json:"appliesTo,omitempty"`
}

// Families of objects: what has a pod spec, Services, Ingresses.
const (
	FamilyPods      = exposure.FamilyPods
	FamilyServices  = exposure.FamilyServices
	FamilyIngresses = exposure.FamilyIngresses
)

var families = []string{FamilyPods, FamilyServices, FamilyIngresses}

// Family names the family of the input's object (FamilyPods, FamilyServices,
// FamilyIngresses; "" for other kinds).
func (in *Input) Family() string {
	if in.Exposure != nil {
		return in.Exposure.Kind.Family
	}
	switch {
	case in.Pod != nil:
		return FamilyPods
	case in.Kind.Group == "" && in.Kind.Kind == "Service":
		return FamilyServices
	case in.Kind.Group == "networking.k8s.io" && in.Kind.Kind == "Ingress":
		return FamilyIngresses
	}
	return ""
}

func (r RuleInfo) appliesTo(family string) bool {
	return len(r.AppliesTo) == 0 || family == "" || slices.Contains(r.AppliesTo, family)
}

// FailurePolicy says what a rule that fails to evaluate decides.
type FailurePolicy string

// The failure policies.
const (
	// FailDeny turns the error into a finding of the rule (a denial in deny mode).
	FailDeny FailurePolicy = "deny"
	// FailIgnore drops the rule's findings for that request.
	FailIgnore FailurePolicy = "ignore"
)

// DefaultEvalTimeout is the time budget of one evaluation when Options.EvalTimeout is 0.
const DefaultEvalTimeout = 500 * time.Millisecond

// Finding is one result of a rule: a violation or a warning.
type Finding struct {
	Rule    string `json:"rule"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	Fix     string `json:"fix,omitempty"`
}

// String renders a finding as `<rule>: <what and why> (<field>); <fix>`.
func (f Finding) String() string {
	var b strings.Builder
	b.WriteString(f.Rule)
	b.WriteString(": ")
	b.WriteString(f.Message)
	if f.Field != "" {
		b.WriteString(" (")
		b.WriteString(f.Field)
		b.WriteString(")")
	}
	if f.Fix != "" {
		b.WriteString("; fix: ")
		b.WriteString(f.Fix)
	}
	return b.String()
}

// Decision is what the rules decided, with each finding sorted into the
// bucket its rule's mode asks for.
type Decision struct {
	// Violations come from rules in deny (or rewrite) mode: the request is refused.
	Violations []Finding
	// Warnings come from rules in warn mode and from rules' own warn sets.
	Warnings []Finding
	// DryRun findings are only recorded.
	DryRun []Finding
	// Observed are the violations of an installation that observes
	// (Decision.Observe): they would deny under enforcement, and are only
	// recorded and returned as warnings.
	Observed []Finding
	// Errors lists the rules that failed to evaluate; their failure policy
	// decided what they contribute to the buckets above.
	Errors []RuleError
}

// Allowed is true when no rule denies.
func (d Decision) Allowed() bool { return len(d.Violations) == 0 }

// Observe turns the decision into what an observing installation does with
// it: the violations become Observed findings (recorded and returned as
// warnings) and the request is allowed.
func (d *Decision) Observe() {
	d.Observed = append(d.Observed, d.Violations...)
	d.Violations = nil
}

// Rewrite is one JSON Patch operation a rule in rewrite mode asks for.
type Rewrite struct {
	Rule   string `json:"rule"`
	Op     string `json:"op"`
	Path   string `json:"path"`
	Value  any    `json:"value,omitempty"`
	Reason string `json:"reason"`
}

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

// Compile parses and compiles the built-in modules plus extra ones with the
// sandboxed capabilities. It returns the ids of the built-in rules too.
func Compile(extra map[string]string) (*ast.Compiler, []string, error) {
	builtinSrc, err := BuiltinModules()
	if err != nil {
		return nil, nil, err
	}
	modules := map[string]*ast.Module{}
	var builtinIDs []string
	parse := func(name, src string) error {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
		if err != nil {
			return err
		}
		modules[name] = m
		return nil
	}
	for _, name := range sortedKeys(builtinSrc) {
		if err := parse(name, builtinSrc[name]); err != nil {
			return nil, nil, fmt.Errorf("built-in module %s: %w", name, err)
		}
		if id, ok := ruleID(modules[name]); ok {
			builtinIDs = append(builtinIDs, id)
		}
	}
	for _, name := range sortedKeys(extra) {
		if _, dup := modules[name]; dup {
			return nil, nil, fmt.Errorf("module %s: name taken by a built-in module", name)
		}
		if err := parse(name, extra[name]); err != nil {
			return nil, nil, err
		}
		if err := checkCustomPackage(name, modules[name], builtinIDs); err != nil {
			return nil, nil, err
		}
	}
	compiler := ast.NewCompiler().
		WithCapabilities(Capabilities()).
		WithEnablePrintStatements(false)
	compiler.Compile(modules)
	if compiler.Failed() {
		return nil, nil, compileError(compiler.Errors)
	}
	return compiler, builtinIDs, nil
}

// rulePackageName is what a custom rule package's last segment must look like.
var rulePackageName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// checkCustomPackage rejects a custom module whose package shadows a built-in
// rule or takes a name Portreeve reserves: under data.portreeve only
// data.portreeve.rules.<name> (and packages below it) are open to authors.
func checkCustomPackage(file string, m *ast.Module, builtinIDs []string) error {
	path := m.Package.Path.String()
	where := fmt.Sprintf("%s:%d", file, m.Package.Location.Row)
	if path != "data.portreeve" && !strings.HasPrefix(path, "data.portreeve.") {
		return nil
	}
	rest, ok := strings.CutPrefix(path, rulesPackagePrefix)
	if !ok {
		return fmt.Errorf("%s: package %s is reserved for Portreeve (custom rules go in package portreeve.rules.<name>)",
			where, strings.TrimPrefix(path, "data."))
	}
	name, _, _ := strings.Cut(rest, ".")
	if !rulePackageName.MatchString(name) {
		return fmt.Errorf("%s: rule package name %q must be lower case letters, digits and underscores, starting with a letter",
			where, name)
	}
	if id := strings.ReplaceAll(name, "_", "-"); slices.Contains(builtinIDs, id) {
		return fmt.Errorf("%s: package %s shadows the built-in rule %q", where, strings.TrimPrefix(path, "data."), id)
	}
	return nil
}

func compileError(errs ast.Errors) error {
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		out = append(out, e)
	}
	return fmt.Errorf("compile rules: %w", errors.Join(out...))
}

// ruleID returns the rule id of a rule package (portreeve.rules.host_ports -> host-ports).
func ruleID(m *ast.Module) (string, bool) {
	p := m.Package.Path.String()
	if !strings.HasPrefix(p, rulesPackagePrefix) {
		return "", false
	}
	rest := strings.TrimPrefix(p, rulesPackagePrefix)
	if strings.Contains(rest, ".") || strings.HasSuffix(rest, "_test") {
		return "", false
	}
	return strings.ReplaceAll(rest, "_", "-"), true
}

func discoverRules(c *ast.Compiler, builtinIDs []string) ([]RuleInfo, error) {
	byID := map[string]*RuleInfo{}
	var errs []error
	for _, name := range sortedKeys(c.Modules) {
		m := c.Modules[name]
		id, ok := ruleID(m)
		if !ok {
			continue
		}
		info := byID[id]
		if info == nil {
			info = &RuleInfo{ID: id, Builtin: slices.Contains(builtinIDs, id), FailurePolicy: FailDeny, File: name}
			byID[id] = info
		}
		for _, a := range m.Annotations {
			if a.Scope != "package" {
				continue
			}
			if a.Title != "" {
				info.Title = a.Title
			}
			if a.Description != "" {
				info.Description = strings.TrimSpace(a.Description)
			}
			if err := readCustom(info, a); err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: rule %s: %w", name, a.Location.Row, id, err))
			}
		}
	}
	out := make([]RuleInfo, 0, len(byID))
	for _, id := range sortedKeys(byID) {
		out = append(out, *byID[id])
	}
	return out, errors.Join(errs...)
}

// checkOutputTypes rejects a custom rule whose deny, warn or rewrite is, by
// the type checker's inference, not a set that can hold objects: such
// findings would never reach the engine.
func checkOutputTypes(c *ast.Compiler, rules []RuleInfo) error {
	var errs []error
	for _, r := range rules {
		if r.Builtin {
			continue
		}
		pkg := rulesPackagePrefix + strings.ReplaceAll(r.ID, "-", "_")
		for _, out := range []string{"deny", "warn", "rewrite"} {
			t := c.TypeEnv.GetByRef(ast.MustParseRef(pkg + "." + out))
			if t == nil || types.Nil(t) {
				continue
			}
			if _, isSet := t.(*types.Set); !isSet {
				if _, isAny := t.(types.Any); !isAny {
					errs = append(errs, fmt.Errorf("%s: rule %s: %s must be a set (%s contains {...} if ...), not %s",
						r.File, r.ID, out, out, t))
				}
				continue
			}
			if !mayBeObject(types.Values(t)) {
				errs = append(errs, fmt.Errorf("%s: rule %s: %s must hold objects such as {\"msg\": ...}, not %s",
					r.File, r.ID, out, types.Values(t)))
			}
		}
	}
	return errors.Join(errs...)
}

func mayBeObject(t types.Type) bool {
	switch t := t.(type) {
	case nil, *types.Object:
		return true
	case types.Any:
		if len(t) == 0 {
			return true
		}
		for _, x := range t {
			if mayBeObject(x) {
				return true
			}
		}
	}
	return false
}

// readCustom reads the METADATA custom keys Portreeve knows: mode and failurePolicy.
func readCustom(info *RuleInfo, a *ast.Annotations) error {
	if v, ok := a.Custom["appliesTo"]; ok {
		list, _ := v.([]any)
		if len(list) == 0 {
			return fmt.Errorf("custom.appliesTo must list some of %v; got %v", families, v)
		}
		for _, item := range list {
			f, _ := item.(string)
			if !slices.Contains(families, f) {
				return fmt.Errorf("custom.appliesTo must list some of %v; got %v", families, item)
			}
			info.AppliesTo = append(info.AppliesTo, f)
		}
	}
	if v, ok := a.Custom["mode"]; ok {
		m, _ := v.(string)
		if !slices.Contains(modes, Mode(m)) {
			return fmt.Errorf("custom.mode must be one of deny, warn, dryrun, rewrite, off; got %v", v)
		}
		info.DefaultMode = Mode(m)
	}
	if v, ok := a.Custom["failurePolicy"]; ok {
		p, _ := v.(string)
		if p != string(FailDeny) && p != string(FailIgnore) {
			return fmt.Errorf("custom.failurePolicy must be deny or ignore; got %v", v)
		}
		info.FailurePolicy = FailurePolicy(p)
	}
	return nil
}

// withDefaultModes returns cfg with each rule's default mode (from its
// metadata) filled in where cfg names no mode; cfg itself is not changed.
func withDefaultModes(cfg *Config, rules []RuleInfo) *Config {
	var out *Config
	for _, r := range rules {
		if r.DefaultMode == "" {
			continue
		}
		if _, set := cfg.Rules[r.ID]; set {
			continue
		}
		if out == nil {
			c := *cfg
			c.Rules = make(map[string]RuleConfig, len(cfg.Rules)+1)
			for k, v := range cfg.Rules {
				c.Rules[k] = v
			}
			out = &c
		}
		out.Rules[r.ID] = RuleConfig{Mode: r.DefaultMode}
	}
	if out == nil {
		return cfg
	}
	return out
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

// bucket files a deny finding by its rule's mode.
func (e *Engine) bucket(d *Decision, f Finding) {
	switch e.config.Mode(f.Rule) {
	case ModeWarn:
		d.Warnings = append(d.Warnings, f)
	case ModeDryRun:
		d.DryRun = append(d.DryRun, f)
	case ModeOff:
	default: // deny, and rewrite: what reaches validation unrewritten is refused
		d.Violations = append(d.Violations, f)
	}
}

// The keys of a finding.
var (
	keyMsg   = ast.StringTerm("msg")
	keyField = ast.StringTerm("field")
	keyFix   = ast.StringTerm("fix")
)

// finding reads an element of a deny or warn set as a finding, straight from
// the AST, or says what is wrong with it.
func (t tagged) finding() (Finding, string) {
	f := Finding{Rule: t.rule}
	obj, ok := t.raw.Value.(ast.Object)
	if !ok {
		return f, "finding is not an object"
	}
	for _, k := range []struct {
		key *ast.Term
		dst *string
	}{{keyMsg, &f.Message}, {keyField, &f.Field}, {keyFix, &f.Fix}} {
		v := obj.Get(k.key)
		if v == nil {
			continue
		}
		switch s := v.Value.(type) {
		case ast.String:
			*k.dst = string(s)
		case ast.Null:
		default:
			if k.key != keyMsg {
				return f, "finding's " + string(k.key.Value.(ast.String)) + " is not a string"
			}
		}
	}
	if f.Message == "" {
		return f, "finding has no msg"
	}
	return f, ""
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

func rewriteProblem(m map[string]any, r Rewrite) error {
	if m == nil {
		return errors.New("rewrite is not an object")
	}
	switch r.Op {
	case "add", "replace", "remove":
	default:
		return fmt.Errorf("rewrite op must be add, replace or remove, got %q", r.Op)
	}
	if !strings.HasPrefix(r.Path, "/spec/") {
		return fmt.Errorf("rewrite path must lie under /spec, got %q", r.Path)
	}
	if r.Reason == "" {
		return fmt.Errorf("rewrite of %s has no reason", r.Path)
	}
	return nil
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

func sortFindings(fs []Finding) {
	slices.SortFunc(fs, func(a, b Finding) int {
		if c := strings.Compare(a.Rule, b.Rule); c != 0 {
			return c
		}
		if c := strings.Compare(a.Field, b.Field); c != 0 {
			return c
		}
		return strings.Compare(a.Message, b.Message)
	})
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// CustomRuleIDs lists the ids of the rule packages that modules declare,
// sorted (modules that do not parse are skipped: New reports them).
func CustomRuleIDs(modules map[string]string) []string {
	var ids []string
	for name, src := range modules {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			continue
		}
		if id, ok := ruleID(m); ok && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// RuleIDs lists the ids of the built-in rules.
func RuleIDs() []string { return slices.Clone(builtinRuleIDs()) }

// builtinRuleIDs parses the embedded modules once: they never change, and
// every configuration that is parsed or validated asks for them.
var builtinRuleIDs = sync.OnceValue(func() []string {
	src, err := BuiltinModules()
	if err != nil {
		return nil
	}
	var ids []string
	for name, s := range src {
		m, err := ast.ParseModuleWithOpts(name, s, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			continue
		}
		if id, ok := ruleID(m); ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
})
