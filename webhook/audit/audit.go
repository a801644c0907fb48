// Package audit reviews the existing objects of a cluster with the current
// rules: `portreeve audit` lists what they would deny or rewrite, and serve
// runs the same audit periodically and exports its counts as metrics, and,
// with --policy-reports, its findings as wgpolicyk8s.io PolicyReports.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/policies/exposure"
	"github.com/portreeve/portreeve/webhook/offline"
	"github.com/portreeve/portreeve/webhook/review"
)

// User judges existing objects: who created them is not stored, so grants
// by user or group do not apply (grants by namespace and service account do).
var User = policies.User{Username: "portreeve:audit", Groups: []string{"system:authenticated"}}

// Kind is a kind the audit lists: a row of the table of reviewed kinds.
type Kind struct {
	GVK      policies.GroupVersionKind
	Resource string
}

// GVR is the kind's resource.
func (k Kind) GVR() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: k.GVK.Group, Version: k.GVK.Version, Resource: k.Resource}
}

// Kinds are the kinds Portreeve reviews, from the one table (policies/exposure).
var Kinds = func() []Kind {
	var out []Kind
	for _, k := range exposure.Kinds() {
		out = append(out, Kind{GVK: k.GroupVersionKind, Resource: k.Resource})
	}
	return out
}()

// Results are the kinds of finding an audit reports, worst first.
var Results = []string{"deny", "rewrite", "dryrun", "warn", "error"}

// Finding is one existing object that one rule would not let through unchanged.
type Finding struct {
	Rule      string `json:"rule"`
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	// Result: deny, rewrite, dryrun (would deny once the rule denies), warn or error.
	Result   string   `json:"result"`
	Messages []string `json:"messages"`
}

// Auditor lists the reviewed kinds page by page and reviews each object as
// a CREATE through the offline review. It holds one object at a time: the
// one it reviews (see listPages).
type Auditor struct {
	// Client lists objects as JSON (NewClient).
	Client   rest.Interface
	PageSize int64
	Reviewer *review.Reviewer
	// User makes the requests (zero: User).
	User policies.User
	// Labels returns a namespace's labels.
	Labels func(ctx context.Context, ns string) (map[string]string, error)
	// SkipNamespace reports namespaces never reviewed (exempt or opted out).
	SkipNamespace func(ns string, labels map[string]string) bool
	// IncludeOwned also reports objects whose controller is a reviewed kind
	// (the Pods of a Deployment's ReplicaSet); off, only the owner is.
	IncludeOwned bool
}

// Summary is what one audit run found.
type Summary struct {
	Scanned int `json:"scanned"`
	// Counts are objects per rule and result.
	Counts map[string]map[string]int `json:"counts"`
	// Errors are kinds or objects that could not be listed or reviewed.
	Errors []string `json:"errors,omitempty"`
}

// Run audits every object and calls found for each finding.
func (a *Auditor) Run(ctx context.Context, found func(Finding)) (*Summary, error) {
	sum := &Summary{Counts: map[string]map[string]int{}}
	reviewed := map[string]bool{}
	for _, k := range Kinds {
		reviewed[k.GVK.Kind] = true
	}
	for _, k := range Kinds {
		typeFields := k.typeFields()
		err := listPages(ctx, a.Client, k.GVR(), a.PageSize, func(item []byte) error {
			return a.one(ctx, k, typeFields, item, reviewed, sum, found)
		})
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return sum, ctx.Err()
		case apierrors.IsNotFound(err):
			// The cluster does not serve this kind.
		default:
			sum.Errors = append(sum.Errors, fmt.Sprintf("list %s: %v", k.Resource, err))
		}
	}
	return sum, nil
}

// one reviews item, the JSON of one listed object of kind k (typeFields:
// its apiVersion and kind, which list items lack). It reads only the head of
// the object itself; the review decodes the rest.
func (a *Auditor) one(ctx context.Context, k Kind, typeFields, item []byte, reviewed map[string]bool, sum *Summary, found func(Finding)) error {
	var h head
	if err := json.Unmarshal(item, &h); err != nil {
		return err
	}
	ns, name := h.Metadata.Namespace, h.Metadata.Name
	if !a.IncludeOwned && h.ownedByReviewedKind(reviewed) || k.GVK.Kind == "Pod" && h.terminal() {
		return nil
	}
	labels, err := a.Labels(ctx, ns)
	if err != nil {
		sum.Errors = append(sum.Errors, fmt.Sprintf("namespace %s: %v", ns, err))
		return nil
	}
	if a.SkipNamespace(ns, labels) {
		return nil
	}
	raw, err := withTypeFields(item, typeFields)
	if err != nil {
		return err
	}
	user := a.User
	if user.Username == "" {
		user = User
	}
	req, err := offline.NewRequest(raw, nil, ns, user)
	if err != nil {
		return err
	}
	req.NamespaceLabels = labels
	out, err := offline.Review(ctx, a.Reviewer, req)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		sum.Errors = append(sum.Errors, fmt.Sprintf("%s %s/%s: %v", k.GVK.Kind, ns, name, err))
		return nil
	}
	sum.Scanned++
	for _, f := range Findings(out) {
		if sum.Counts[f.Rule] == nil {
			sum.Counts[f.Rule] = map[string]int{}
		}
		sum.Counts[f.Rule][f.Result]++
		found(f)
	}
	return nil
}

// Findings turns an outcome into one finding per rule and result.
func Findings(o *offline.Outcome) []Finding {
	byKey := map[string]*Finding{}
	var keys []string
	add := func(rule, result, msg string) {
		key := rule + "\x00" + result
		f := byKey[key]
		if f == nil {
			f = &Finding{Rule: rule, Namespace: o.Namespace, Kind: o.Kind, Name: o.Name, Result: result}
			byKey[key] = f
			keys = append(keys, key)
		}
		f.Messages = append(f.Messages, msg)
	}
	for _, c := range o.Changes {
		add(c.Rule, "rewrite", fmt.Sprintf("%s: %s -> %s (%s)", c.Path, offline.ValueText(c.Before), offline.ValueText(c.After), c.Reason))
	}
	if d := o.Decision; d != nil {
		for _, f := range d.Violations {
			add(f.Rule, "deny", strings.TrimPrefix(f.String(), f.Rule+": "))
		}
		for _, f := range d.DryRun {
			add(f.Rule, "dryrun", strings.TrimPrefix(f.String(), f.Rule+": "))
		}
		for _, f := range d.Warnings {
			add(f.Rule, "warn", strings.TrimPrefix(f.String(), f.Rule+": "))
		}
		for _, e := range d.Errors {
			add(e.Rule, "error", e.Err.Error())
		}
	}
	out := make([]Finding, 0, len(keys))
	for _, k := range keys {
		out = append(out, *byKey[k])
	}
	return out
}

// head is what the audit reads of a listed object before reviewing it.
type head struct {
	Metadata struct {
		Namespace       string `json:"namespace"`
		Name            string `json:"name"`
		OwnerReferences []struct {
			Kind       string `json:"kind"`
			Controller bool   `json:"controller"`
		} `json:"ownerReferences"`
	} `json:"metadata"`
	Status struct {
		Phase string `json:"phase"`
	} `json:"status"`
}

// ownedByReviewedKind reports whether the object's controller is of a kind
// the audit reviews itself (a Deployment's ReplicaSets, their Pods).
func (h *head) ownedByReviewedKind(reviewed map[string]bool) bool {
	for _, ref := range h.Metadata.OwnerReferences {
		if ref.Controller {
			return reviewed[ref.Kind]
		}
	}
	return false
}

// terminal reports, for a Pod, that it has finished: it holds no port any more.
func (h *head) terminal() bool {
	return h.Status.Phase == "Succeeded" || h.Status.Phase == "Failed"
}

// SkipNamespaces returns the namespace filter: exempt names, and namespaces
// carrying the opt-out label (as the chart's webhook configurations skip them).
func SkipNamespaces(exempt []string, ignoreLabel string) func(string, map[string]string) bool {
	return func(ns string, labels map[string]string) bool {
		if slices.Contains(exempt, ns) {
			return true
		}
		_, ignored := labels[ignoreLabel]
		return ignoreLabel != "" && ignored
	}
}

// NamespaceLabels reads every namespace's labels, page by page.
func NamespaceLabels(ctx context.Context, client rest.Interface, pageSize int64) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	err := listPages(ctx, client, gvr, pageSize, func(item []byte) error {
		var ns struct {
			Metadata struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(item, &ns); err != nil {
			return err
		}
		out[ns.Metadata.Name] = ns.Metadata.Labels
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

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
