package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/policies"
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

func newExplainCommand() *cobra.Command {
	var (
		files                         []string
		configPath, policyDir, output string
		rf                            requestFlags
	)
	cmd := &cobra.Command{
		Use:   "explain -f FILE|DIR|- [flags]",
		Short: "Explain, per object, which rules match, which grant allows it or why none applies, and what a rewrite changes",
		Long: "Reviews every object as a CREATE (mutating, then validating) and explains the outcome:\n" +
			"  - every rule that governs the object's exposure (one that would deny it with no grant and no exemption),\n" +
			"    what it decided, and which grant allowed it or which exemption lifted it;\n" +
			"  - every grant and exemption of the configuration, with why it does not apply (other namespace,\n" +
			"    other service account, other user or groups, expired);\n" +
			"  - for rewrites, each change with its reason and a before/after diff of the object.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return &exitError{code: 2, err: fmt.Errorf("no input: pass -f FILE, -f DIR or -f -")}
			}
			if output != "text" && output != "json" {
				return &exitError{code: 2, err: fmt.Errorf("-o must be text or json, got %q", output)}
			}
			set, err := loadPolicySet(configPath, policyDir)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			ms, err := readManifests(files, cmd.InOrStdin())
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			u := rf.requester()
			ex := &explainer{set: set, engines: map[string]*policies.Engine{}}
			var out []*Explanation
			for _, m := range ms {
				req, err := policytest.ObjectRequest(m.JSON, nil, rf.namespace, u)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("%s: %w", m.Source, err)}
				}
				req.NamespaceLabels = rf.nsLabels
				e, err := ex.explain(cmd.Context(), req)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("%s: %w", m.Source, err)}
				}
				out = append(out, e)
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			for i, e := range out {
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				printExplanation(cmd.OutOrStdout(), e)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file, directory or - for stdin (repeatable)")
	cmd.Flags().StringVar(&configPath, "config", "", "policy configuration file (default: the built-in configuration)")
	cmd.Flags().StringVar(&policyDir, "policy-dir", "", "folder of custom Rego rules, as for serve")
	rf.addFlags(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// explainer evaluates an object against the real policy set and against
// variants of its configuration: no grant or exemption active (which rules
// match), and one grant or exemption at a time (which one allows).
type explainer struct {
	set     *policySet
	engines map[string]*policies.Engine
}

// variant returns the engine of the configuration with every rule in deny
// mode, only the grant or exemption named keep active (none when ""), the
// other grants expired (so that they still count as configured) and the
// other exemptions removed.
func (x *explainer) variant(ctx context.Context, kind, keep string) (*policies.Engine, error) {
	key := kind + "/" + keep
	if e, ok := x.engines[key]; ok {
		return e, nil
	}
	cfg := *x.set.config
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
	for _, id := range append(policies.RuleIDs(), policies.CustomRuleIDs(x.set.modules)...) {
		cfg.Rules[id] = policies.RuleConfig{Mode: policies.ModeDeny}
	}
	e, err := policies.New(ctx, policies.Options{Config: &cfg, Modules: x.set.modules})
	if err != nil {
		return nil, err
	}
	x.engines[key] = e
	return e, nil
}

func (x *explainer) real(ctx context.Context) (*policies.Engine, error) {
	if e, ok := x.engines[""]; ok {
		return e, nil
	}
	e, err := policies.New(ctx, policies.Options{Config: x.set.config, Modules: x.set.modules})
	x.engines[""] = e
	return e, err
}

// denies reports whether rule denies req under engine e.
func denies(ctx context.Context, e *policies.Engine, req *review.Request, rule string) (bool, error) {
	d, err := review.NewReviewer(e).Validate(ctx, req)
	if err != nil || d == nil {
		return false, err
	}
	return slices.ContainsFunc(d.Violations, func(f policies.Finding) bool { return f.Rule == rule }), nil
}

func (x *explainer) explain(ctx context.Context, req *review.Request) (*Explanation, error) {
	engine, err := x.real(ctx)
	if err != nil {
		return nil, err
	}
	out, err := policytest.Review(ctx, review.NewReviewer(engine), req)
	if err != nil {
		return nil, err
	}
	ex := &Explanation{Kind: out.Kind, Namespace: out.Namespace, Name: out.Name, User: req.User,
		Verdict: verdict(out), Skipped: out.Skipped, Changes: out.Changes, RewriteRejected: out.RewriteRejected,
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
	pd, err := review.NewReviewer(probe).Validate(ctx, req)
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

func (x *explainer) grantStatus(ctx context.Context, e *policies.Engine, in *policies.Input, ex *Explanation) error {
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

func (x *explainer) ruleResult(ctx context.Context, req *review.Request, out *policytest.Outcome, r policies.RuleInfo, ex *Explanation) (RuleExplanation, error) {
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
		if deny, err := denies(ctx, e, req, r.ID); err != nil {
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
		if deny, err := denies(ctx, e, req, r.ID); err != nil {
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

func verdict(o *policytest.Outcome) string {
	switch {
	case o.Skipped != "":
		return "SKIPPED"
	case !o.Allowed:
		return "DENIED"
	case o.Rewritten():
		return "REWRITTEN"
	}
	return "ALLOWED"
}

// objectDiff is the YAML diff of the object before and after the rewrites
// (Portreeve's own record annotation left out).
func objectDiff(o *policytest.Outcome) (string, error) {
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

func printExplanation(w io.Writer, e *Explanation) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s/%s (CREATE by %s; groups: %s)\n", e.Kind, e.Namespace, e.Name, e.User.Username, strings.Join(e.User.Groups, ", "))
	fmt.Fprintf(&b, "  verdict: %s", e.Verdict)
	if e.Skipped != "" {
		fmt.Fprintf(&b, " (%s)", e.Skipped)
	}
	b.WriteString("\n")
	for _, r := range e.Rules {
		fmt.Fprintf(&b, "  %s (mode %s): %s", r.Rule, r.Mode, r.Result)
		switch {
		case len(r.AllowedBy) > 0:
			fmt.Fprintf(&b, " by grant %s", strings.Join(r.AllowedBy, ", "))
		case len(r.ExemptedBy) > 0:
			fmt.Fprintf(&b, " by exemption %s", strings.Join(r.ExemptedBy, ", "))
		}
		b.WriteString("\n")
		for _, f := range r.Findings {
			fmt.Fprintf(&b, "      %s\n", f)
		}
		if r.Error != "" {
			fmt.Fprintf(&b, "      %s\n", r.Error)
		}
		if r.Result == "denied" || r.Result == "dryrun" || r.Result == "warned" || r.Result == "rewritten" {
			writeGrantReasons(&b, e.Grants)
		}
	}
	if len(e.NotMatched) > 0 {
		fmt.Fprintf(&b, "  not matched: %s\n", strings.Join(e.NotMatched, ", "))
	}
	if len(e.Changes) > 0 {
		b.WriteString("  rewrites:\n")
		for _, c := range e.Changes {
			fmt.Fprintf(&b, "    %s: %s -> %s (%s: %s)\n", c.Path, jsonText(c.Before), jsonText(c.After), c.Rule, c.Reason)
		}
		if e.Diff != "" {
			b.WriteString("    --- before\n    +++ after\n")
			for l := range strings.SplitSeq(e.Diff, "\n") {
				fmt.Fprintf(&b, "    %s\n", l)
			}
		}
	}
	if e.RewriteRejected != "" {
		fmt.Fprintf(&b, "  rewrite not applied: %s\n", e.RewriteRejected)
	}
	_, _ = io.WriteString(w, b.String())
}

// writeGrantReasons says, for a rule no grant allowed, what each grant is to the request.
func writeGrantReasons(b *strings.Builder, grants []GrantStatus) {
	if len(grants) == 0 {
		b.WriteString("    no grant allowed it: the configuration has no grants\n")
		return
	}
	b.WriteString("    no grant allowed it:\n")
	for _, g := range grants {
		if g.Applies {
			fmt.Fprintf(b, "      %s: applies to this request, but does not allow this\n", g.Name)
			continue
		}
		fmt.Fprintf(b, "      %s: does not apply: %s\n", g.Name, strings.Join(g.Reasons, "; "))
	}
}

func jsonText(v any) string {
	if v == nil {
		return "(none)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func yamlOf(v any) (string, error) {
	b, err := yaml.Marshal(v)
	return string(b), err
}
