// Package policies holds Portreeve's Rego rules and the engine that evaluates
// them. The engine is a pure function of its input: it never calls the cluster.
package policies

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
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
}

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
}

// Allowed is true when no rule denies.
func (d Decision) Allowed() bool { return len(d.Violations) == 0 }

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
	findings rego.PreparedEvalQuery
	rewrites rego.PreparedEvalQuery
}

// Options configure New.
type Options struct {
	// Config is the policy configuration; DefaultConfig when nil.
	Config *Config
	// Modules are extra Rego modules (file name to source) that join the built-in ones.
	Modules map[string]string
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
	rules := discoverRules(compiler, builtinIDs, cfg)
	ids := make([]string, len(rules))
	for i, r := range rules {
		ids[i] = r.ID
	}
	if err := cfg.Validate(ids); err != nil {
		return nil, err
	}
	store := inmem.NewFromObject(map[string]any{"portreeve": map[string]any{"config": cfg.Data(ids)}})
	prepare := func(query string) (rego.PreparedEvalQuery, error) {
		return rego.New(
			rego.Query(query),
			rego.Compiler(compiler),
			rego.Store(store),
			rego.Capabilities(Capabilities()),
		).PrepareForEval(ctx)
	}
	e := &Engine{config: cfg, rules: rules}
	if e.findings, err = prepare("data.portreeve.main.findings"); err != nil {
		return nil, fmt.Errorf("prepare findings query: %w", err)
	}
	if e.rewrites, err = prepare("data.portreeve.main.rewrites"); err != nil {
		return nil, fmt.Errorf("prepare rewrites query: %w", err)
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
		if id, ok := ruleID(modules[name]); ok && slices.Contains(builtinIDs, id) {
			return nil, nil, fmt.Errorf("%s: package %s shadows the built-in rule %q", name, modules[name].Package.Path, id)
		}
		if strings.HasPrefix(modules[name].Package.Path.String(), "data.portreeve.lib") ||
			modules[name].Package.Path.String() == "data.portreeve.main" {
			return nil, nil, fmt.Errorf("%s: package %s is reserved for Portreeve", name, modules[name].Package.Path)
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

func discoverRules(c *ast.Compiler, builtinIDs []string, cfg *Config) []RuleInfo {
	byID := map[string]*RuleInfo{}
	for _, m := range c.Modules {
		id, ok := ruleID(m)
		if !ok {
			continue
		}
		info := byID[id]
		if info == nil {
			info = &RuleInfo{ID: id, Builtin: slices.Contains(builtinIDs, id), Mode: cfg.Mode(id)}
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
		}
	}
	out := make([]RuleInfo, 0, len(byID))
	for _, id := range sortedKeys(byID) {
		out = append(out, *byID[id])
	}
	return out
}

// Rules lists the rules the engine evaluates, sorted by id.
func (e *Engine) Rules() []RuleInfo { return slices.Clone(e.rules) }

// Config returns the configuration the engine was built with.
func (e *Engine) Config() *Config { return e.config }

// Evaluate runs every rule against the input and sorts the findings by mode.
func (e *Engine) Evaluate(ctx context.Context, in *Input) (Decision, error) {
	var d Decision
	rs, err := e.eval(ctx, e.findings, in)
	if err != nil {
		return d, err
	}
	for _, raw := range rs {
		m, ok := raw.(map[string]any)
		if !ok {
			return d, fmt.Errorf("rule finding is not an object: %v", raw)
		}
		f := Finding{Rule: str(m["rule"]), Message: str(m["msg"]), Field: str(m["field"]), Fix: str(m["fix"])}
		if f.Message == "" {
			return d, fmt.Errorf("rule %s returned a finding without msg: %v", f.Rule, raw)
		}
		if str(m["type"]) == "warn" {
			d.Warnings = append(d.Warnings, f)
			continue
		}
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
	sortFindings(d.Violations)
	sortFindings(d.Warnings)
	sortFindings(d.DryRun)
	return d, nil
}

// Rewrites returns the JSON Patch operations that rules in rewrite mode ask
// for, sorted by path and rule. The caller applies and checks them.
func (e *Engine) Rewrites(ctx context.Context, in *Input) ([]Rewrite, error) {
	rs, err := e.eval(ctx, e.rewrites, in)
	if err != nil {
		return nil, err
	}
	out := make([]Rewrite, 0, len(rs))
	for _, raw := range rs {
		m, ok := raw.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("rewrite is not an object: %v", raw)
		}
		r := Rewrite{Rule: str(m["rule"]), Op: str(m["op"]), Path: str(m["path"]), Value: m["value"], Reason: str(m["reason"])}
		switch r.Op {
		case "add", "replace", "remove":
		default:
			return nil, fmt.Errorf("rule %s: rewrite op must be add, replace or remove, got %q", r.Rule, r.Op)
		}
		if !strings.HasPrefix(r.Path, "/spec/") {
			return nil, fmt.Errorf("rule %s: rewrite path must lie under /spec, got %q", r.Rule, r.Path)
		}
		if r.Reason == "" {
			return nil, fmt.Errorf("rule %s: rewrite of %s has no reason", r.Rule, r.Path)
		}
		out = append(out, r)
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

func (e *Engine) eval(ctx context.Context, q rego.PreparedEvalQuery, in *Input) ([]any, error) {
	v, err := in.value()
	if err != nil {
		return nil, fmt.Errorf("convert input: %w", err)
	}
	rs, err := q.Eval(ctx, rego.EvalParsedInput(v))
	if err != nil {
		return nil, fmt.Errorf("evaluate rules: %w", err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil
	}
	set, ok := rs[0].Expressions[0].Value.([]any)
	if !ok {
		return nil, fmt.Errorf("rules returned %T, want a set", rs[0].Expressions[0].Value)
	}
	return set, nil
}

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

// RuleIDs lists the ids of the built-in rules.
func RuleIDs() []string {
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
}
