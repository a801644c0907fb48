package policytest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/offline"
	"github.com/portreeve/portreeve/webhook/review"
)

// check compares an outcome with the expectations and returns one line per
// difference.
func check(want Expect, got *offline.Outcome) ([]string, error) {
	var problems []string
	d := got.Decision
	if d == nil {
		d = &policies.Decision{}
	}
	if want.Allowed != nil && *want.Allowed != got.Allowed {
		problems = append(problems, fmt.Sprintf("allowed: want %t, got %t", *want.Allowed, got.Allowed))
	}
	sets := []struct {
		what string
		want *[]string
		got  []string
	}{
		{"denied", want.Denied, findingRules(d.Violations)},
		{"warned", want.Warned, findingRules(d.Warnings)},
		{"dryRun", want.DryRun, findingRules(d.DryRun)},
		{"errors", want.Errors, errorRules(d.Errors)},
		{"rewrittenBy", want.RewrittenBy, changeRules(got.Changes)},
	}
	for _, s := range sets {
		if s.want == nil {
			continue
		}
		w := slices.Clone(*s.want)
		slices.Sort(w)
		w = slices.Compact(w)
		if !slices.Equal(w, s.got) {
			problems = append(problems, fmt.Sprintf("%s: want %s, got %s", s.what, list(w), list(s.got)))
		}
	}
	for _, m := range want.Messages {
		if !anyContains(d, m) {
			problems = append(problems, fmt.Sprintf("messages: no denial or warning contains %q", m))
		}
	}
	if want.Rewritten != nil && *want.Rewritten != got.Rewritten() {
		problems = append(problems, fmt.Sprintf("rewritten: want %t, got %t", *want.Rewritten, got.Rewritten()))
	}
	if want.Patch != nil {
		w, err := canonicalOps(*want.Patch)
		if err != nil {
			return nil, fmt.Errorf("expect.patch: %w", err)
		}
		g, err := canonicalOps(Patch(got.Changes))
		if err != nil {
			return nil, err
		}
		if !slices.Equal(w, g) {
			p := "patch: differs"
			for _, op := range w {
				if !slices.Contains(g, op) {
					p += "\n    missing:    " + op
				}
			}
			for _, op := range g {
				if !slices.Contains(w, op) {
					p += "\n    unexpected: " + op
				}
			}
			problems = append(problems, p)
		}
	}
	if want.Object != nil {
		w, err := canonicalYAML(want.Object)
		if err != nil {
			return nil, fmt.Errorf("expect.object: %w", err)
		}
		final, err := StripRewriteRecord(got.Final(), got.Original)
		if err != nil {
			return nil, err
		}
		g, err := canonicalYAML(final)
		if err != nil {
			return nil, err
		}
		if w != g {
			problems = append(problems, "object: differs from the rewritten object (- want, + got):\n"+indent(Diff(w, g), "    "))
		}
	}
	return problems, nil
}

func findingRules(fs []policies.Finding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.Rule)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func errorRules(es []policies.RuleError) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.Rule)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func changeRules(cs []review.Change) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Rule)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func list(s []string) string { return "[" + strings.Join(s, " ") + "]" }

func anyContains(d *policies.Decision, sub string) bool {
	for _, fs := range [][]policies.Finding{d.Violations, d.Warnings, d.DryRun} {
		for _, f := range fs {
			if strings.Contains(f.String(), sub) {
				return true
			}
		}
	}
	return false
}

// Patch turns applied rewrites into the JSON Patch they amount to.
func Patch(changes []review.Change) []PatchOp {
	out := make([]PatchOp, 0, len(changes))
	for _, c := range changes {
		switch {
		case c.After == nil:
			out = append(out, PatchOp{Op: "remove", Path: c.Path})
		case c.Before == nil:
			out = append(out, PatchOp{Op: "add", Path: c.Path, Value: c.After})
		default:
			out = append(out, PatchOp{Op: "replace", Path: c.Path, Value: c.After})
		}
	}
	return out
}

// canonicalOps renders operations as sorted JSON lines, values normalised.
func canonicalOps(ops []PatchOp) ([]string, error) {
	out := make([]string, 0, len(ops))
	for _, op := range ops {
		b, err := json.Marshal(op)
		if err != nil {
			return nil, err
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, err
		}
		if b, err = json.Marshal(v); err != nil {
			return nil, err
		}
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out, nil
}

// canonicalYAML renders an object (JSON bytes or a decoded value) as YAML
// with sorted keys.
func canonicalYAML(v any) (string, error) {
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return "", err
		}
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		return "", err
	}
	y, err := yaml.Marshal(x)
	return string(y), err
}

// StripRewriteRecord removes the portreeve.io/rewrites annotation from obj,
// and the annotations map if that leaves it empty and the original had none.
func StripRewriteRecord(obj, original []byte) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	md, _ := m["metadata"].(map[string]any)
	ann, _ := md["annotations"].(map[string]any)
	if _, ok := ann[review.RewritesAnnotation]; !ok {
		return m, nil
	}
	delete(ann, review.RewritesAnnotation)
	if len(ann) == 0 {
		var o struct {
			Metadata struct {
				Annotations map[string]any `json:"annotations"`
			} `json:"metadata"`
		}
		_ = json.Unmarshal(original, &o)
		if o.Metadata.Annotations == nil {
			delete(md, "annotations")
		}
	}
	return m, nil
}

func jsonOf(v any) ([]byte, error) { return json.Marshal(v) }

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}

// Describe renders an outcome for people: the verdict, every finding and
// every rewrite, one per line, each line after the first indented.
func Describe(o *offline.Outcome, prefix string) string {
	var b strings.Builder
	verdict := o.Verdict()
	if o.Skipped != "" {
		verdict += " (" + o.Skipped + ")"
	}
	if o.RefusedByMutating {
		verdict += " (by the mutating webhook)"
	}
	fmt.Fprintf(&b, "%s%s %s %s/%s\n", prefix, verdict, o.Kind, o.Namespace, o.Name)
	pad := strings.Repeat(" ", len(prefix)+2)
	if d := o.Decision; d != nil {
		for _, f := range d.Violations {
			fmt.Fprintf(&b, "%sdenied:  %s\n", pad, f)
		}
		for _, f := range d.Warnings {
			fmt.Fprintf(&b, "%swarning: %s\n", pad, f)
		}
		for _, f := range d.DryRun {
			fmt.Fprintf(&b, "%sdryrun:  %s\n", pad, f)
		}
		for _, e := range d.Errors {
			fmt.Fprintf(&b, "%serror:   %s\n", pad, e.Error())
		}
	}
	for _, c := range o.Changes {
		fmt.Fprintf(&b, "%srewrite: %s\n", pad, c.Warning())
	}
	if o.RewriteRejected != "" {
		fmt.Fprintf(&b, "%srewrite not applied: %s\n", pad, o.RewriteRejected)
	}
	return strings.TrimRight(b.String(), "\n")
}
