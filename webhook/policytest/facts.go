package policytest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/portreeve/portreeve/policies"
)

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
		// A hostname a route inherits (Via) is not written in the object:
		// its field is the parentRef it comes through.
		return c.Via == "" && !fieldHolds(in, c.Field, c.Host)
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
