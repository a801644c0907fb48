package review

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/portreeve/portreeve/policies"
)

// RewritesAnnotation records on the object what Portreeve changed and why.
const RewritesAnnotation = "portreeve.io/rewrites"

// Change is one applied rewrite, as recorded in the annotation.
type Change struct {
	Rule   string `json:"rule"`
	Path   string `json:"path"`
	Before any    `json:"before,omitempty"`
	After  any    `json:"after,omitempty"`
	Reason string `json:"reason"`
}

// Warning renders a change as the admission warning kubectl prints.
func (c Change) Warning() string {
	return fmt.Sprintf("portreeve rewrote %s: %s -> %s (%s: %s)", c.Path, show(c.Before), show(c.After), c.Rule, c.Reason)
}

func show(v any) string {
	if v == nil {
		return "(removed)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// Mutation is the outcome of the mutating review.
type Mutation struct {
	// Patched is the rewritten object, nil when nothing changed.
	Patched []byte
	// Changes lists what changed, in the order applied.
	Changes []Change
	// Rejected explains why rewrites were asked for but not applied (the
	// validating webhook then refuses the object).
	Rejected string
	// Denied holds the violations the mutating webhook must refuse itself
	// (see mutatingStageRules): the request is denied with them.
	Denied []policies.Finding
}

// mutatingStageRules are rules whose violations the mutating webhook refuses
// itself: the kube-apiserver acts on their fields between the mutating and
// the validating webhooks (it allocates an explicit nodePort, and fails with
// a bare "provided port is already allocated" when another Service holds it),
// so the validating webhook never sees these requests.
var mutatingStageRules = []string{policies.RuleNodePortConflicts}

// mutatingStageViolations evaluates in when its facts hold a conflict that a
// mutating-stage rule judges, and returns that rule's violations.
func mutatingStageViolations(ctx context.Context, e *policies.Engine, in *policies.Input) ([]policies.Finding, error) {
	if in.Facts == nil || len(in.Facts.NodePortConflicts) == 0 {
		return nil, nil
	}
	d, err := e.Evaluate(ctx, in)
	if err != nil {
		return nil, err
	}
	var out []policies.Finding
	for _, v := range d.Violations {
		if slices.Contains(mutatingStageRules, v.Rule) {
			out = append(out, v)
		}
	}
	return out, nil
}

// Mutate asks the rules in rewrite mode for their rewrites, applies them to a
// copy, records them in the annotation and checks that the result passes those
// rules. It returns an empty Mutation when nothing is to be rewritten.
//
// An observing reviewer rewrites nothing and refuses nothing: it returns an
// empty Mutation at once, and the validating review records what the rules
// would have done.
func (r *Reviewer) Mutate(ctx context.Context, req *Request) (*Mutation, error) {
	if Skip(req) != "" || r.observe {
		return &Mutation{}, nil
	}
	in, err := input(req, r.limits)
	if err != nil {
		return nil, err
	}
	engine := r.Engine()
	if unjudged(in, engine) {
		return &Mutation{}, nil
	}
	// With no rule to rewrite this kind of object and none judging it at
	// this stage, there is nothing to do: spare the facts and the rules (the
	// validating webhook judges the object all the same).
	if family := in.Family(); !engine.CanRewrite(family) &&
		!slices.ContainsFunc(mutatingStageRules, func(id string) bool { return engine.Judges(id, family) }) {
		return &Mutation{}, nil
	}
	record := r.recording(req)
	if record {
		defer r.claims.lock(contestedKeys(in))()
	}
	r.withFacts(in, engine)
	rewrites, err := engine.Rewrites(ctx, in)
	if err != nil {
		return nil, err
	}
	if len(rewrites) == 0 {
		denied, err := mutatingStageViolations(ctx, engine, in)
		if err != nil {
			return nil, err
		}
		return &Mutation{Denied: denied}, nil
	}
	rewrites, err = dedupe(rewrites)
	if err != nil {
		return &Mutation{Rejected: err.Error()}, nil
	}
	patched, changes, err := apply(req.Object, in.Object, rewrites)
	if err != nil {
		return &Mutation{Rejected: err.Error()}, nil
	}
	// The result must pass the rules that rewrote it.
	check := *req
	check.Object = patched
	check.Operation = "CREATE" // judge the result as a whole, not as an unchanged update
	checkIn, err := Input(&check)
	if err != nil {
		return &Mutation{Rejected: fmt.Sprintf("rewritten object does not decode: %v", err)}, nil
	}
	r.withFacts(checkIn, engine)
	d, err := engine.Evaluate(ctx, checkIn)
	if err != nil {
		return nil, err
	}
	for _, v := range d.Violations {
		for _, rw := range rewrites {
			if rw.Rule == v.Rule {
				return &Mutation{Rejected: "the rewrite would still be refused: " + v.String()}, nil
			}
		}
	}
	var denied []policies.Finding
	for _, v := range d.Violations {
		if slices.Contains(mutatingStageRules, v.Rule) {
			denied = append(denied, v)
		}
	}
	if len(denied) > 0 {
		return &Mutation{Denied: denied}, nil
	}
	if record {
		// The ports the rewrite chose are held for this object until the
		// validating webhook admits (or refuses) it.
		checkIn.Operation = req.Operation
		r.facts.Claim(checkIn, true)
	}
	return &Mutation{Patched: patched, Changes: changes}, nil
}

// dedupe drops repeated operations and refuses contradicting ones.
func dedupe(rs []policies.Rewrite) ([]policies.Rewrite, error) {
	out := make([]policies.Rewrite, 0, len(rs))
	seen := map[string]policies.Rewrite{}
	for _, r := range rs {
		v, _ := json.Marshal(r.Value)
		if prev, ok := seen[r.Path]; ok {
			pv, _ := json.Marshal(prev.Value)
			if prev.Op == r.Op && string(pv) == string(v) {
				continue
			}
			if prev.Op == "remove" && r.Op == "remove" {
				continue
			}
			return nil, fmt.Errorf("rules %s and %s ask for different rewrites of %s", prev.Rule, r.Rule, r.Path)
		}
		seen[r.Path] = r
		out = append(out, r)
	}
	return out, nil
}

// apply applies the rewrites and the annotation to raw; obj is raw decoded.
func apply(raw []byte, obj map[string]any, rs []policies.Rewrite) ([]byte, []Change, error) {
	changes := make([]Change, 0, len(rs))
	ops := make([]map[string]any, 0, len(rs)+2)
	for _, r := range rs {
		before, exists := lookup(obj, r.Path)
		if r.Op == "remove" && !exists {
			continue
		}
		op := map[string]any{"op": r.Op, "path": r.Path}
		if r.Op == "replace" && !exists {
			op["op"] = "add"
		}
		var after any
		if r.Op != "remove" {
			op["value"] = r.Value
			after = r.Value
		}
		ops = append(ops, op)
		changes = append(changes, Change{Rule: r.Rule, Path: r.Path, Before: before, After: after, Reason: r.Reason})
	}
	if len(changes) == 0 {
		return nil, nil, nil
	}
	record, err := json.Marshal(changes)
	if err != nil {
		return nil, nil, err
	}
	md, _ := obj["metadata"].(map[string]any)
	if md == nil {
		ops = append(ops, map[string]any{"op": "add", "path": "/metadata", "value": map[string]any{}})
	}
	if ann, _ := md["annotations"].(map[string]any); ann == nil {
		ops = append(ops, map[string]any{"op": "add", "path": "/metadata/annotations", "value": map[string]any{}})
	}
	ops = append(ops, map[string]any{
		"op":    "add",
		"path":  "/metadata/annotations/" + strings.ReplaceAll(RewritesAnnotation, "/", "~1"),
		"value": string(record),
	})
	patchJSON, err := json.Marshal(ops)
	if err != nil {
		return nil, nil, err
	}
	patch, err := jsonpatch.DecodePatch(patchJSON)
	if err != nil {
		return nil, nil, fmt.Errorf("rewrite is not a valid JSON Patch: %w", err)
	}
	out, err := patch.ApplyWithOptions(raw, &jsonpatch.ApplyOptions{
		SupportNegativeIndices:   false,
		AccumulatedCopySizeLimit: MaxObjectBytes,
		AllowMissingPathOnRemove: true,
		EnsurePathExistsOnAdd:    false,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("apply rewrite: %w", err)
	}
	return out, changes, nil
}

// lookup resolves a JSON Pointer in a decoded object.
func lookup(obj map[string]any, pointer string) (any, bool) {
	var cur any = obj
	for _, tok := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// Warnings renders the changes as admission warnings.
func (m *Mutation) Warnings() []string {
	out := make([]string, 0, len(m.Changes))
	for _, c := range m.Changes {
		out = append(out, c.Warning())
	}
	return slices.Clip(out)
}
