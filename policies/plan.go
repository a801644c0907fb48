package policies

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// A plan is the fast path for one family of objects: one prepared query that
// reads the output sets of exactly the rules the configuration turns on for
// that family, as an array with one element per slot. The configuration is
// fixed for the engine's lifetime, so which rules run and which of their sets
// count in their mode is settled here, once, rather than by Rego on every
// request; the exemptions that apply are resolved in Go with the grants.
// data.portreeve.main.findings and .rewrites state the same semantics in
// Rego; TestPlanMatchesMain holds the two to each other.
type plan struct {
	query *prepared
	slots []slot
}

// slot is one output set of one rule: deny, warn, rewrite or allocate.
type slot struct {
	rule, set string
}

// tagged is one element of a rule's output set, with where it came from.
type tagged struct {
	rule, set string
	raw       *ast.Term
}

// json is the element as a Go value (a map for a well-formed one).
func (t tagged) json() any {
	v, err := ast.JSON(t.raw.Value)
	if err != nil {
		return nil
	}
	return v
}

// outputSets are the sets a query kind reads, for a rule in the given mode.
func outputSets(kind queryKind, mode Mode) []string {
	switch {
	case mode == ModeOff:
		return nil
	case kind == queryFindings:
		return []string{"deny", "warn"}
	case mode == ModeRewrite:
		return []string{"rewrite", "allocate"}
	default:
		return []string{"allocate"}
	}
}

// newPlan prepares the fast path of one family (every rule when family is "").
func (e *Engine) newPlan(ctx context.Context, family string, kind queryKind) (*plan, error) {
	p := &plan{}
	var terms []string
	for _, r := range e.rules {
		if !r.appliesTo(family) {
			continue
		}
		pkg := rulesPackagePrefix + strings.ReplaceAll(r.ID, "-", "_")
		for _, set := range outputSets(kind, r.Mode) {
			ref := pkg + "." + set
			if len(e.compiler.GetRulesExact(ast.MustParseRef(ref))) == 0 {
				continue
			}
			p.slots = append(p.slots, slot{rule: r.ID, set: set})
			terms = append(terms, ref)
		}
	}
	var err error
	if p.query, err = e.prepare("[" + strings.Join(terms, ", ") + "]"); err != nil {
		return nil, fmt.Errorf("prepare the rules of %q: %w", family, err)
	}
	return p, nil
}

// eval runs the plan and drops the output of the rules the request is
// exempt from. ok is false when the query is undefined (a rule's output is a
// complete rule that did not produce a value): the caller then evaluates rule
// by rule.
func (p *plan) eval(ctx context.Context, e *Engine, v ast.Value, now time.Time, res *resolved) (out []tagged, ok bool, err error) {
	val, err := e.evalValue(ctx, p.query, v, now)
	if err != nil || val == nil {
		return nil, false, err
	}
	elems, _ := val.(*ast.Array)
	if elems == nil || elems.Len() != len(p.slots) {
		return nil, false, fmt.Errorf("rules returned %v, want an array of %d sets", val, len(p.slots))
	}
	for i, s := range p.slots {
		if res.exempts(s.rule) {
			continue
		}
		set, isSet := elems.Elem(i).Value.(ast.Set)
		if !isSet {
			return nil, false, fmt.Errorf("rule %s: %s is %s, want a set", s.rule, s.set, ast.ValueName(elems.Elem(i).Value))
		}
		for _, t := range set.Slice() {
			out = append(out, tagged{rule: s.rule, set: s.set, raw: t})
		}
	}
	return out, true, nil
}
