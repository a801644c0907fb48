// Package explain says, per object, what every rule made of it and why:
// which rules govern its exposure, which grant allowed it or why none
// applies, which exemption lifted a rule, and what a rewrite changes
// (`portreeve explain`).
package explain

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/offline"
	"github.com/portreeve/portreeve/webhook/policytest"
	"github.com/portreeve/portreeve/webhook/review"
)

// Explanation says, for one object, what every rule made of it and why.
type Explanation struct {
	Kind      string        `json:"kind"`
	Namespace string        `json:"namespace"`
	Name      string        `json:"name"`
	User      policies.User `json:"user"`
	// Verdict is ALLOWED, DENIED, REWRITTEN or SKIPPED.
	Verdict string `json:"verdict"`
	Skipped string `json:"skipped,omitempty"`
	// Rules are the rules that govern this object's exposure: with no grant
	// and no exemption, they would deny it.
	Rules      []RuleExplanation `json:"rules"`
	NotMatched []string          `json:"notMatched"`
	// Grants and Exemptions say which of the configuration's apply to the
	// request, and why the others do not.
	Grants     []GrantStatus   `json:"grants"`
	Exemptions []GrantStatus   `json:"exemptions"`
	Changes    []review.Change `json:"changes,omitempty"`
	// Diff is the object before and after the rewrites, as YAML.
	Diff            string `json:"diff,omitempty"`
	RewriteRejected string `json:"rewriteRejected,omitempty"`
}

// RuleExplanation is what one matched rule decided.
type RuleExplanation struct {
	Rule string        `json:"rule"`
	Mode policies.Mode `json:"mode"`
	// Result: denied, warned, dryrun, rewritten, error, off, exempted or allowed.
	Result   string   `json:"result"`
	Findings []string `json:"findings,omitempty"`
	// AllowedBy names the grants each of which alone allows the object.
	AllowedBy []string `json:"allowedBy,omitempty"`
	// ExemptedBy names the exemptions that lift the rule for this request.
	ExemptedBy []string `json:"exemptedBy,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// GrantStatus is whether a grant or exemption applies, and why not.
type GrantStatus struct {
	Name    string   `json:"name"`
	Applies bool     `json:"applies"`
	Reasons []string `json:"reasons"`
}

// Explainer evaluates an object against the real policy set and against
// variants of its configuration: no grant or exemption active (which rules
// match), and one grant or exemption at a time (which one allows). It keeps
// the engines it builds for the next objects.
type Explainer struct {
	settings *offline.Settings
	engines  map[string]*policies.Engine
}

// New returns an Explainer of the policy set (and NodePort range) of s.
func New(s *offline.Settings) *Explainer {
	return &Explainer{settings: s, engines: map[string]*policies.Engine{}}
}

// variant returns the engine of the configuration with every rule in deny
// mode, only the grant or exemption named keep active (none when ""), the
// other grants expired (so that they still count as configured) and the
// other exemptions removed.
func (x *Explainer) variant(ctx context.Context, kind, keep string) (*policies.Engine, error) {
	key := kind + "/" + keep
	if e, ok := x.engines[key]; ok {
		return e, nil
	}
	base := x.settings.Config
	if base == nil {
		base = policies.DefaultConfig()
	}
	cfg := *base
	cfg.Grants = slices.Clone(cfg.Grants)
	for i := range cfg.Grants {
		if kind != "grant" || cfg.Grants[i].Name != keep {
			cfg.Grants[i].Expires = "2000-01-01"
		}
	}
	cfg.Exemptions = slices.DeleteFunc(slices.Clone(cfg.Exemptions), func(e policies.Exemption) bool {
		return kind != "exemption" || e.Name != keep
	})
	cfg.Rules = map[string]policies.RuleConfig{}
	for _, id := range append(policies.RuleIDs(), policies.CustomRuleIDs(x.settings.Modules)...) {
		cfg.Rules[id] = policies.RuleConfig{Mode: policies.ModeDeny}
	}
	e, err := policies.New(ctx, policies.Options{Config: &cfg, Modules: x.settings.Modules})
	if err != nil {
		return nil, err
	}
	x.engines[key] = e
	return e, nil
}

func (x *Explainer) real(ctx context.Context) (*policies.Engine, error) {
	if e, ok := x.engines[""]; ok {
		return e, nil
	}
	e, err := x.settings.NewEngine(ctx)
	if err != nil {
		return nil, err
	}
	x.engines[""] = e
	return e, nil
}

// denies reports whether rule denies req under engine e.
func (x *Explainer) denies(ctx context.Context, e *policies.Engine, req *review.Request, rule string) (bool, error) {
	d, err := x.settings.NewReviewer(e).Validate(ctx, req)
	if err != nil || d == nil {
		return false, err
	}
	return slices.ContainsFunc(d.Violations, func(f policies.Finding) bool { return f.Rule == rule }), nil
}

// Explain reviews req through the offline review and explains the outcome.
func (x *Explainer) Explain(ctx context.Context, req *review.Request) (*Explanation, error) {
	engine, err := x.real(ctx)
	if err != nil {
		return nil, err
	}
	out, err := offline.Review(ctx, x.settings.NewReviewer(engine), req)
	if err != nil {
		return nil, err
	}
	ex := &Explanation{Kind: out.Kind, Namespace: out.Namespace, Name: out.Name, User: req.User,
		Verdict: out.Verdict(), Skipped: out.Skipped, Changes: out.Changes, RewriteRejected: out.RewriteRejected,
		Rules: []RuleExplanation{}, NotMatched: []string{}, Grants: []GrantStatus{}, Exemptions: []GrantStatus{}}
	if out.Skipped != "" {
		return ex, nil
	}
	if out.Rewritten() {
		if ex.Diff, err = objectDiff(out); err != nil {
			return nil, err
		}
	}
	in, err := review.Input(req)
	if err != nil {
		return nil, err
	}
	if err := x.grantStatus(ctx, engine, in, ex); err != nil {
		return nil, err
	}
	probe, err := x.variant(ctx, "none", "")
	if err != nil {
		return nil, err
	}
	pd, err := x.settings.NewReviewer(probe).Validate(ctx, req)
	if err != nil {
		return nil, err
	}
	matched := map[string]bool{}
	for _, f := range pd.Violations {
		matched[f.Rule] = true
	}
	d := out.Decision
	for _, fs := range [][]policies.Finding{d.Violations, d.Warnings, d.DryRun} {
		for _, f := range fs {
			matched[f.Rule] = true
		}
	}
	for _, c := range out.Changes {
		matched[c.Rule] = true
	}
	for _, r := range engine.Rules() {
		if !matched[r.ID] {
			ex.NotMatched = append(ex.NotMatched, r.ID)
			continue
		}
		re, err := x.ruleResult(ctx, req, out, r, ex)
		if err != nil {
			return nil, err
		}
		ex.Rules = append(ex.Rules, re)
	}
	return ex, nil
}

func (x *Explainer) grantStatus(ctx context.Context, e *policies.Engine, in *policies.Input, ex *Explanation) error {
	v, err := e.Query(ctx, "data.portreeve.lib.grants.explanation", in)
	if err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var gs struct {
		Grants     []GrantStatus `json:"grants"`
		Exemptions []GrantStatus `json:"exemptions"`
	}
	if err := json.Unmarshal(b, &gs); err != nil {
		return err
	}
	ex.Grants, ex.Exemptions = gs.Grants, gs.Exemptions
	return nil
}

func (x *Explainer) ruleResult(ctx context.Context, req *review.Request, out *offline.Outcome, r policies.RuleInfo, ex *Explanation) (RuleExplanation, error) {
	re := RuleExplanation{Rule: r.ID, Mode: r.Mode}
	d := out.Decision
	add := func(result string, fs []policies.Finding) {
		for _, f := range fs {
			if f.Rule == r.ID {
				re.Result = result
				re.Findings = append(re.Findings, strings.TrimPrefix(f.String(), r.ID+": "))
			}
		}
	}
	add("dryrun", d.DryRun)
	add("warned", d.Warnings)
	add("denied", d.Violations)
	for _, e := range d.Errors {
		if e.Rule == r.ID {
			re.Result, re.Error = "error", e.Err.Error()
		}
	}
	if slices.ContainsFunc(out.Changes, func(c review.Change) bool { return c.Rule == r.ID }) && re.Result == "" {
		re.Result = "rewritten"
	}
	if re.Result == "denied" || re.Result == "error" || re.Result == "rewritten" {
		return re, nil
	}
	if r.Mode == policies.ModeOff {
		re.Result = "off"
		return re, nil
	}
	// No finding that denies: which applicable grant or exemption allows it?
	for _, g := range ex.Grants {
		if !g.Applies {
			continue
		}
		e, err := x.variant(ctx, "grant", g.Name)
		if err != nil {
			return re, err
		}
		if deny, err := x.denies(ctx, e, req, r.ID); err != nil {
			return re, err
		} else if !deny {
			re.AllowedBy = append(re.AllowedBy, g.Name)
		}
	}
	for _, g := range ex.Exemptions {
		if !g.Applies {
			continue
		}
		e, err := x.variant(ctx, "exemption", g.Name)
		if err != nil {
			return re, err
		}
		if deny, err := x.denies(ctx, e, req, r.ID); err != nil {
			return re, err
		} else if !deny {
			re.ExemptedBy = append(re.ExemptedBy, g.Name)
		}
	}
	switch {
	case re.Result != "": // warned or dryrun: the mode, or the rule's own warn set
	case len(re.ExemptedBy) > 0:
		re.Result = "exempted"
	default:
		re.Result = "allowed"
	}
	return re, nil
}

// objectDiff is the YAML diff of the object before and after the rewrites
// (Portreeve's own record annotation left out).
func objectDiff(o *offline.Outcome) (string, error) {
	after, err := policytest.StripRewriteRecord(o.Patched, o.Original)
	if err != nil {
		return "", err
	}
	var before any
	if err := json.Unmarshal(o.Original, &before); err != nil {
		return "", err
	}
	b, err := yamlOf(before)
	if err != nil {
		return "", err
	}
	a, err := yamlOf(after)
	if err != nil {
		return "", err
	}
	return policytest.Diff(b, a), nil
}

func yamlOf(v any) (string, error) {
	b, err := yaml.Marshal(v)
	return string(b), err
}
