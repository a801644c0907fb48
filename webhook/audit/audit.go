// Package audit reviews the existing objects of a cluster with the current
// rules: `portreeve audit` lists what they would deny or rewrite, and serve
// runs the same audit periodically and exports its counts as metrics.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

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
// a CREATE through the offline review. It keeps no object beyond the page it
// reviews.
type Auditor struct {
	Client   dynamic.Interface
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
		err := a.list(ctx, k, func(obj map[string]any) error {
			return a.one(ctx, k, obj, reviewed, sum, found)
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

// list calls fn for every object of kind k, one page (limit/continue) at a time.
func (a *Auditor) list(ctx context.Context, k Kind, fn func(map[string]any) error) error {
	opts := metav1.ListOptions{Limit: a.PageSize}
	for {
		page, err := a.Client.Resource(k.GVR()).List(ctx, opts)
		if err != nil {
			return err
		}
		for i := range page.Items {
			obj := page.Items[i].Object
			obj["apiVersion"], obj["kind"] = page.Items[i].GetAPIVersion(), k.GVK.Kind
			if err := fn(obj); err != nil {
				return err
			}
		}
		next := page.GetContinue()
		if next == "" {
			return nil
		}
		if next == opts.Continue {
			return fmt.Errorf("list %s: the server repeated the continue token", k.Resource)
		}
		opts.Continue = next
	}
}

func (a *Auditor) one(ctx context.Context, k Kind, obj map[string]any, reviewed map[string]bool, sum *Summary, found func(Finding)) error {
	md, _ := obj["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	name, _ := md["name"].(string)
	if !a.IncludeOwned && ownedByReviewedKind(md, reviewed) || terminalPod(k, obj) {
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
	raw, err := json.Marshal(obj)
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

// ownedByReviewedKind reports whether the object's controller is of a kind
// the audit reviews itself (a Deployment's ReplicaSets, their Pods).
func ownedByReviewedKind(md map[string]any, reviewed map[string]bool) bool {
	refs, _ := md["ownerReferences"].([]any)
	for _, r := range refs {
		ref, _ := r.(map[string]any)
		if c, _ := ref["controller"].(bool); c {
			kind, _ := ref["kind"].(string)
			return reviewed[kind]
		}
	}
	return false
}

// terminalPod reports a Pod that has finished: it holds no port any more.
func terminalPod(k Kind, obj map[string]any) bool {
	if k.GVK.Kind != "Pod" {
		return false
	}
	status, _ := obj["status"].(map[string]any)
	phase, _ := status["phase"].(string)
	return phase == "Succeeded" || phase == "Failed"
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
func NamespaceLabels(ctx context.Context, client dynamic.Interface, pageSize int64) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	opts := metav1.ListOptions{Limit: pageSize}
	for {
		page, err := client.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, ns := range page.Items {
			out[ns.GetName()] = ns.GetLabels()
		}
		if opts.Continue = page.GetContinue(); opts.Continue == "" {
			return out, nil
		}
	}
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
