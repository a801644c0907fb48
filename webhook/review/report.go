package review

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"gomodules.xyz/jsonpatch/v2"

	"github.com/portreeve/portreeve/policies"
)

// Report is the outcome of reviewing one object as the two webhooks would:
// the mutating review first, then the validating review of its result.
type Report struct {
	// Source is where the object was read (file#document), when it was.
	Source     string                `json:"source,omitempty"`
	Kind       string                `json:"kind"`
	Namespace  string                `json:"namespace"`
	Name       string                `json:"name"`
	Allowed    bool                  `json:"allowed"`
	Violations []ReportFinding       `json:"violations"`
	Warnings   []string              `json:"warnings"`
	DryRun     []ReportFinding       `json:"dryRun,omitempty"`
	Patch      []jsonpatch.Operation `json:"patch"`
	Skipped    string                `json:"skipped,omitempty"`
	// Patched is the object after the rewrites (not part of the JSON output).
	Patched []byte `json:"-"`
}

// ReportFinding is a finding in a report.
type ReportFinding struct {
	Rule    string `json:"rule"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// ObjectRequest builds the request that creates the object raw (JSON) as
// user: kind and name from the object, the namespace from the object, else
// namespace, else "default".
func ObjectRequest(raw []byte, namespace string, user policies.User) (*Request, error) {
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
	group, version, found := strings.Cut(head.APIVersion, "/")
	if !found {
		group, version = "", head.APIVersion
	}
	return &Request{
		Operation: "CREATE",
		Kind:      policies.GroupVersionKind{Group: group, Version: version, Kind: head.Kind},
		Namespace: ns,
		Name:      head.Metadata.Name,
		User:      user,
		Object:    raw,
	}, nil
}

// ReviewObject reviews one manifest object as a CREATE by user. The namespace
// defaults to "default" when neither the object nor namespace names one.
func (r *Reviewer) ReviewObject(ctx context.Context, raw []byte, namespace string, user policies.User) (*Report, error) {
	req, err := ObjectRequest(raw, namespace, user)
	if err != nil {
		return nil, err
	}
	return r.ReviewRequest(ctx, req)
}

// ReviewRequest reviews a request (one ObjectRequest built, then adjusted:
// its namespace's labels, say) as the two webhooks would.
func (r *Reviewer) ReviewRequest(ctx context.Context, req *Request) (*Report, error) {
	raw := req.Object
	rep := &Report{Kind: req.Kind.Kind, Namespace: req.Namespace, Name: req.Name, Violations: []ReportFinding{}, Warnings: []string{}, Patch: []jsonpatch.Operation{}}
	if !Supported(req.Kind) {
		rep.Allowed = true
		rep.Skipped = "kind " + gvkString(req.Kind) + " is not reviewed"
		if replacement, ok := removedAPIs[req.Kind]; ok {
			rep.Skipped = "the " + gvkString(req.Kind) + " API was removed from Kubernetes (the apiserver refuses it): " +
				"use " + gvkString(replacement) + ", which Portreeve reviews"
		}
		return rep, nil
	}
	m, err := r.Mutate(ctx, req)
	if err != nil {
		return nil, err
	}
	if m.Rejected != "" {
		rep.Warnings = append(rep.Warnings, "portreeve could not rewrite the object: "+m.Rejected)
	}
	if m.Patched != nil {
		ops, err := jsonpatch.CreatePatch(raw, m.Patched)
		if err != nil {
			return nil, err
		}
		rep.Patch = ops
		rep.Patched = m.Patched
		rep.Warnings = append(rep.Warnings, m.Warnings()...)
		req.Object = m.Patched
	}
	d, err := r.Validate(ctx, req)
	if err != nil {
		return nil, err
	}
	rep.Allowed = true
	if d != nil {
		rep.Allowed = d.Allowed()
		for _, v := range d.Violations {
			rep.Violations = append(rep.Violations, ReportFinding{Rule: v.Rule, Message: v.String(), Field: v.Field})
		}
		for _, w := range d.Warnings {
			rep.Warnings = append(rep.Warnings, w.String())
		}
		for _, f := range d.DryRun {
			rep.DryRun = append(rep.DryRun, ReportFinding{Rule: f.Rule, Message: f.String(), Field: f.Field})
		}
	}
	return rep, nil
}

// removedAPIs are API versions of reviewed kinds that Kubernetes no longer
// serves, and what replaces them: manifests written for them still circulate.
var removedAPIs = map[policies.GroupVersionKind]policies.GroupVersionKind{
	{Group: "extensions", Version: "v1beta1", Kind: "Ingress"}:        {Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
	{Group: "networking.k8s.io", Version: "v1beta1", Kind: "Ingress"}: {Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
	{Group: "extensions", Version: "v1beta1", Kind: "DaemonSet"}:      {Group: "apps", Version: "v1", Kind: "DaemonSet"},
	{Group: "extensions", Version: "v1beta1", Kind: "Deployment"}:     {Group: "apps", Version: "v1", Kind: "Deployment"},
	{Group: "apps", Version: "v1beta1", Kind: "Deployment"}:           {Group: "apps", Version: "v1", Kind: "Deployment"},
	{Group: "apps", Version: "v1beta2", Kind: "Deployment"}:           {Group: "apps", Version: "v1", Kind: "Deployment"},
	{Group: "batch", Version: "v1beta1", Kind: "CronJob"}:             {Group: "batch", Version: "v1", Kind: "CronJob"},
}
