// Package offline is the one offline review: it runs a request through the
// mutating and then the validating review, as the apiserver calls the two
// webhooks, without a cluster. `portreeve eval`, `test`, `explain`, `audit`
// and `suggest` all review through Review.
package offline

import (
	"context"
	"encoding/json"
	"fmt"
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
	// Allowed is the answer the request gets: the mutating webhook's when it
	// refuses the request itself, else the validating webhook's.
	Allowed bool `json:"allowed"`
	// Skipped says why the request was not judged ("" when it was).
	Skipped string `json:"skipped,omitempty"`
	// Decision is the validating review's decision, or the mutating
	// webhook's refusal (RefusedByMutating); nil when skipped.
	Decision *policies.Decision `json:"decision,omitempty"`
	// RefusedByMutating is true when the mutating webhook refused the
	// request itself (review.Mutation.Denied): the apiserver then never
	// calls the validating webhook, and Decision holds only that refusal.
	RefusedByMutating bool `json:"refusedByMutating,omitempty"`
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

// The verdicts of an outcome, as the offline commands print them.
const (
	Allowed   = "ALLOWED"
	Denied    = "DENIED"
	Rewritten = "REWRITTEN"
	Skipped   = "SKIPPED"
)

// Verdict is ALLOWED, DENIED, REWRITTEN (allowed after a rewrite) or SKIPPED.
func (o *Outcome) Verdict() string {
	switch {
	case !o.Allowed:
		return Denied
	case o.Skipped != "":
		return Skipped
	case o.Rewritten():
		return Rewritten
	}
	return Allowed
}

// Review runs req through the mutating and then the validating review, as
// the apiserver calls the two webhooks: a request the webhooks do not judge
// (review.Skip, a kind Portreeve does not review) is skipped, with the
// replacement named when its API was removed from Kubernetes; a refusal by
// the mutating webhook ends the review; otherwise the validating review
// judges the object as rewritten.
func Review(ctx context.Context, r *review.Reviewer, req *review.Request) (*Outcome, error) {
	out := &Outcome{Kind: req.Kind.Kind, Namespace: req.Namespace, Name: req.Name, Original: req.Object, Allowed: true}
	if reason := review.Skip(req); reason != "" {
		out.Skipped = reason
		return out, nil
	}
	if !review.Supported(req.Kind) {
		out.Skipped = NotReviewed(req.Kind)
		return out, nil
	}
	m, err := r.Mutate(ctx, req)
	if err != nil {
		return nil, err
	}
	if len(m.Denied) > 0 {
		out.Allowed, out.RefusedByMutating = false, true
		out.Decision = &policies.Decision{Violations: m.Denied}
		return out, nil
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

// NewRequest builds the request that creates the object raw (JSON), or with
// old updates it, as user: kind and name from the object, the namespace from
// the object, else namespace, else "default".
func NewRequest(raw, old []byte, namespace string, user policies.User) (*review.Request, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if head.Kind == "" || head.APIVersion == "" {
		return nil, fmt.Errorf("object has no apiVersion or kind")
	}
	ns := head.Metadata.Namespace
	if ns == "" {
		ns = namespace
	}
	if ns == "" {
		ns = "default"
	}
	if head.APIVersion == "v1" && head.Kind == "Namespace" {
		ns = "" // cluster-scoped
	}
	group, version, found := strings.Cut(head.APIVersion, "/")
	if !found {
		group, version = "", head.APIVersion
	}
	req := &review.Request{
		Operation: "CREATE",
		Kind:      policies.GroupVersionKind{Group: group, Version: version, Kind: head.Kind},
		Namespace: ns,
		Name:      head.Metadata.Name,
		User:      user,
		Object:    raw,
	}
	if len(old) > 0 {
		req.Operation = "UPDATE"
		req.OldObject = old
	}
	return req, nil
}

// NotReviewed says why a kind is not reviewed: the API that replaces it when
// Kubernetes removed its API, else that Portreeve does not review it.
func NotReviewed(gvk policies.GroupVersionKind) string {
	if gvk == (policies.GroupVersionKind{Version: "v1", Kind: "Namespace"}) {
		return "a Namespace is not reviewed: its labels are those of the objects in it here"
	}
	if replacement, ok := removedAPIs[gvk]; ok {
		return "the " + gvk.String() + " API was removed from Kubernetes (the apiserver refuses it): " +
			"use " + replacement.String() + ", which Portreeve reviews"
	}
	return "kind " + gvk.String() + " is not reviewed"
}

// removedAPIs are API versions of reviewed kinds that Kubernetes no longer
// serves, and what replaces them: manifests written for them still circulate.
var removedAPIs = map[policies.GroupVersionKind]policies.GroupVersionKind{
	{Group: "extensions", Version: "v1beta1", Kind: "Ingress"}:        {Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
	{Group: "networking.k8s.io", Version: "v1beta1", Kind: "Ingress"}: {Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
	{Group: "extensions", Version: "v1beta1", Kind: "DaemonSet"}:      {Group: "apps", Version: "v1", Kind: "DaemonSet"},
	{Group: "extensions", Version: "v1beta1", Kind: "Deployment"}:     {Group: "apps", Version: "v1", Kind: "Deployment"},
	{Group: "extensions", Version: "v1beta1", Kind: "ReplicaSet"}:     {Group: "apps", Version: "v1", Kind: "ReplicaSet"},
	{Group: "apps", Version: "v1beta1", Kind: "Deployment"}:           {Group: "apps", Version: "v1", Kind: "Deployment"},
	{Group: "apps", Version: "v1beta1", Kind: "StatefulSet"}:          {Group: "apps", Version: "v1", Kind: "StatefulSet"},
	{Group: "apps", Version: "v1beta2", Kind: "Deployment"}:           {Group: "apps", Version: "v1", Kind: "Deployment"},
	{Group: "apps", Version: "v1beta2", Kind: "StatefulSet"}:          {Group: "apps", Version: "v1", Kind: "StatefulSet"},
	{Group: "apps", Version: "v1beta2", Kind: "DaemonSet"}:            {Group: "apps", Version: "v1", Kind: "DaemonSet"},
	{Group: "apps", Version: "v1beta2", Kind: "ReplicaSet"}:           {Group: "apps", Version: "v1", Kind: "ReplicaSet"},
	{Group: "batch", Version: "v1beta1", Kind: "CronJob"}:             {Group: "batch", Version: "v1", Kind: "CronJob"},
	{Group: "batch", Version: "v2alpha1", Kind: "CronJob"}:            {Group: "batch", Version: "v1", Kind: "CronJob"},
}
