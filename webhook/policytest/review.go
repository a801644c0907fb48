// Package policytest runs policy authors' tests: their Rego unit tests, with
// the built-in modules and helper library loaded, and case files that name
// objects and the outcome the rules must reach for each, judged through the
// same review the webhooks use. It also holds the offline review that
// `portreeve test`, `explain` and `audit` share.
package policytest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

// Outcome is what the two webhooks would make of one request: the mutating
// review first, then the validating review of its result.
type Outcome struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Allowed is the validating webhook's answer.
	Allowed bool `json:"allowed"`
	// Skipped says why the request was not judged ("" when it was).
	Skipped string `json:"skipped,omitempty"`
	// Decision is the validating review's decision (nil when skipped).
	Decision *policies.Decision `json:"decision,omitempty"`
	// Changes are the rewrites the mutating webhook applied.
	Changes []review.Change `json:"changes,omitempty"`
	// RewriteRejected says why rewrites were asked for but not applied.
	RewriteRejected string `json:"rewriteRejected,omitempty"`
	// Original is the object as submitted; Patched the object after the
	// rewrites (nil when nothing changed).
	Original []byte `json:"-"`
	Patched  []byte `json:"-"`
}

// Rewritten reports whether the mutating webhook changed the object.
func (o *Outcome) Rewritten() bool { return len(o.Patched) > 0 }

// Final is the object the validating webhook judged.
func (o *Outcome) Final() []byte {
	if o.Rewritten() {
		return o.Patched
	}
	return o.Original
}

// Review runs req through the mutating and then the validating review, as the
// apiserver calls the two webhooks.
func Review(ctx context.Context, r *review.Reviewer, req *review.Request) (*Outcome, error) {
	out := &Outcome{Kind: req.Kind.Kind, Namespace: req.Namespace, Name: req.Name, Original: req.Object, Allowed: true}
	if reason := review.Skip(req); reason != "" {
		out.Skipped = reason
		return out, nil
	}
	if !review.Supported(req.Kind) {
		out.Skipped = "kind " + req.Kind.Kind + " is not reviewed"
		return out, nil
	}
	m, err := r.Mutate(ctx, req)
	if err != nil {
		return nil, err
	}
	out.RewriteRejected = m.Rejected
	validate := *req
	if m.Patched != nil {
		out.Patched = m.Patched
		out.Changes = m.Changes
		validate.Object = m.Patched
	}
	d, err := r.Validate(ctx, &validate)
	if err != nil {
		return nil, err
	}
	if d == nil {
		out.Skipped = "exposure unchanged"
		return out, nil
	}
	out.Decision = d
	out.Allowed = d.Allowed()
	return out, nil
}

// ObjectRequest builds the request that creates (or, with old, updates) the
// object raw (JSON): see review.ObjectRequest.
func ObjectRequest(raw, old []byte, namespace string, user policies.User) (*review.Request, error) {
	req, err := review.ObjectRequest(raw, namespace, user)
	if err != nil {
		return nil, err
	}
	if len(old) > 0 {
		req.Operation = "UPDATE"
		req.OldObject = old
	}
	return req, nil
}

// StaticFacts hands the same facts to every request and records no claims:
// the facts of a case file, or none (nil: the rules see {"ready": false}).
type StaticFacts struct{ Value *policies.Facts }

// Facts returns the static facts, less the conflicts whose field no longer
// holds the conflicting value: the facts describe the object as written, and
// a rewrite that moves a port or a host resolves its conflict.
func (s StaticFacts) Facts(in *policies.Input, _ *policies.Config) *policies.Facts {
	if s.Value == nil {
		return nil
	}
	f := *s.Value
	f.HostPortConflicts = slices.DeleteFunc(slices.Clone(f.HostPortConflicts), func(c policies.HostPortConflict) bool {
		return !fieldHolds(in, c.Field, c.Port)
	})
	f.NodePortConflicts = slices.DeleteFunc(slices.Clone(f.NodePortConflicts), func(c policies.NodePortConflict) bool {
		return !fieldHolds(in, c.Field, c.Port)
	})
	f.IngressConflicts = slices.DeleteFunc(slices.Clone(f.IngressConflicts), func(c policies.IngressConflict) bool {
		return !fieldHolds(in, c.Field, c.Host)
	})
	return &f
}

// fieldHolds reports whether the object's field (spec.ports[0].nodePort) has
// the value want; a pod spec field is read from the defaulted pod spec.
func fieldHolds(in *policies.Input, field string, want any) bool {
	var cur any = in.Object
	if in.Pod != nil && strings.HasPrefix(field, in.Pod.Path+".") {
		cur, field = in.Pod.Spec, strings.TrimPrefix(field, in.Pod.Path+".")
	}
	for _, part := range strings.Split(field, ".") {
		name, idx, _ := strings.Cut(part, "[")
		m, _ := cur.(map[string]any)
		cur = m[name]
		for idx != "" {
			var n string
			n, idx, _ = strings.Cut(idx, "]")
			idx = strings.TrimPrefix(idx, "[")
			i, err := strconv.Atoi(n)
			l, _ := cur.([]any)
			if err != nil || i < 0 || i >= len(l) {
				return false
			}
			cur = l[i]
		}
	}
	return fmt.Sprint(cur) == fmt.Sprint(want)
}

// Claim records nothing.
func (StaticFacts) Claim(*policies.Input, bool) {}

// Release releases nothing.
func (StaticFacts) Release(*policies.Input) {}

// ReadOnlyFacts asks Source for facts but records no claims: an audit judges
// objects that exist, it admits nothing.
type ReadOnlyFacts struct{ Source review.FactsSource }

// Facts returns the source's facts.
func (s ReadOnlyFacts) Facts(in *policies.Input, cfg *policies.Config) *policies.Facts {
	return s.Source.Facts(in, cfg)
}

// Claim records nothing.
func (ReadOnlyFacts) Claim(*policies.Input, bool) {}

// Release releases nothing.
func (ReadOnlyFacts) Release(*policies.Input) {}
