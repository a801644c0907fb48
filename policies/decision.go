package policies

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

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
