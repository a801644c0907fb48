// Package webhook adapts admission requests to the review logic: thin
// handlers for the validating and the mutating webhook, and their metrics.
package webhook

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

// NamespaceLabeler returns the labels of a namespace.
type NamespaceLabeler interface {
	NamespaceLabels(ctx context.Context, name string) (map[string]string, error)
}

// Handler serves one of the two webhooks.
type Handler struct {
	// Mutating selects the mutating webhook; otherwise validating.
	Mutating bool
	Reviewer *review.Reviewer
	// Namespaces looks up namespace labels; nil means none.
	Namespaces NamespaceLabeler
	Recorder   Recorder
	// ExemptNamespaces are never reviewed (Portreeve's own namespace, kube-system).
	ExemptNamespaces []string
}

var _ admission.Handler = (*Handler)(nil)

func (h *Handler) name() string {
	if h.Mutating {
		return "mutating"
	}
	return "validating"
}

// Handle reviews one admission request.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	kind := req.Kind.Kind
	if req.Operation == "" || req.Kind.Kind == "" || req.Kind.Version == "" {
		// The apiserver always sends both: this review was made by hand, and
		// allowing what cannot be read would be a silent bypass.
		h.record("", "", "error", nil, start)
		return admission.Errored(http.StatusBadRequest, errors.New("portreeve: the AdmissionReview has no request, or its request names no operation or kind"))
	}
	r := &review.Request{
		Operation:   string(req.Operation),
		Kind:        policies.GroupVersionKind{Group: req.Kind.Group, Version: req.Kind.Version, Kind: req.Kind.Kind},
		SubResource: req.SubResource,
		Namespace:   req.Namespace,
		Name:        req.Name,
		User:        policies.User{Username: req.UserInfo.Username, Groups: req.UserInfo.Groups},
		DryRun:      req.DryRun != nil && *req.DryRun,
		Object:      req.Object.Raw,
		OldObject:   req.OldObject.Raw,
	}
	if reason := h.skip(r); reason != "" {
		h.record(kind, r.Operation, "skipped", nil, start)
		return admission.Allowed(reason)
	}
	if h.Namespaces != nil && r.Namespace != "" {
		labels, err := h.Namespaces.NamespaceLabels(ctx, r.Namespace)
		if err != nil {
			h.record(kind, r.Operation, "error", nil, start)
			return admission.Errored(http.StatusInternalServerError, errors.New("portreeve: look up namespace "+r.Namespace+": "+err.Error()))
		}
		r.NamespaceLabels = labels
	}
	if h.Mutating {
		return h.mutate(ctx, req, r, start)
	}
	return h.validate(ctx, r, start)
}

func (h *Handler) skip(r *review.Request) string {
	if reason := review.Skip(r); reason != "" {
		return reason
	}
	if slices.Contains(h.ExemptNamespaces, r.Namespace) {
		return "namespace " + r.Namespace + " is exempt"
	}
	return ""
}

func (h *Handler) validate(ctx context.Context, r *review.Request, start time.Time) admission.Response {
	d, err := h.Reviewer.Validate(ctx, r)
	if err != nil {
		return h.errored(ctx, r, err, start)
	}
	if d == nil {
		h.record(r.Kind.Kind, r.Operation, "skipped", nil, start)
		return admission.Allowed("exposure unchanged")
	}
	warnings := make([]string, 0, len(d.Warnings)+len(d.Observed))
	for _, w := range d.Warnings {
		warnings = append(warnings, w.String())
	}
	if len(d.Observed) > 0 {
		engine := h.Reviewer.Engine()
		for _, f := range d.Observed {
			warnings = append(warnings, observedWarning(engine, f))
		}
		logf.FromContext(ctx).Info("would deny", "rules", ruleIDs(d.Observed), "enforcement", review.Observe)
	}
	h.recordFindings(r, d, start)
	if !d.Allowed() {
		logf.FromContext(ctx).Info("denied", "rules", ruleIDs(d.Violations))
		return forbidden(d.Violations).WithWarnings(warnings...)
	}
	return admission.Allowed("").WithWarnings(warnings...)
}

// forbidden is the 403 response listing the violations.
func forbidden(violations []policies.Finding) admission.Response {
	msgs := make([]string, 0, len(violations))
	for _, v := range violations {
		msgs = append(msgs, v.String())
	}
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
		Allowed: false,
		Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusForbidden,
			Reason:  metav1.StatusReasonForbidden,
			Message: strings.Join(msgs, "; "),
		},
	}}
}

// observedWarning is the warning of a finding that an observing installation
// only records: what enforcing would do, then the finding as a denial reads.
func observedWarning(e *policies.Engine, f policies.Finding) string {
	would := "would deny"
	if e.Config().Mode(f.Rule) == policies.ModeRewrite {
		would = "would rewrite or deny"
	}
	return "portreeve " + would + observeSuffix + f.String()
}

// observeSuffix follows "portreeve would deny" in every warning of an
// observing installation: what enforcing would have done, then why.
const observeSuffix = " (enforcement: observe): "

// wouldDeny is the warning of a refusal an observing installation only records.
func wouldDeny(msg string) string { return "portreeve would deny" + observeSuffix + msg }

func (h *Handler) mutate(ctx context.Context, req admission.Request, r *review.Request, start time.Time) admission.Response {
	if h.Reviewer.Enforcement() == review.Observe {
		h.record(r.Kind.Kind, r.Operation, "skipped", nil, start)
		return admission.Allowed("enforcement: observe, nothing is rewritten")
	}
	m, err := h.Reviewer.Mutate(ctx, r)
	if err != nil {
		return h.errored(ctx, r, err, start)
	}
	if len(m.Denied) > 0 {
		// The apiserver would act on these fields before the validating webhook.
		logf.FromContext(ctx).Info("denied", "rules", ruleIDs(m.Denied))
		h.record(r.Kind.Kind, r.Operation, "denied", ruleIDs(m.Denied), start)
		h.countConflicts(m.Denied)
		return forbidden(m.Denied)
	}
	if m.Rejected != "" {
		logf.FromContext(ctx).Error(errors.New(m.Rejected), "rewrite not applied")
		h.record(r.Kind.Kind, r.Operation, "rewrite_rejected", nil, start)
		return admission.Allowed("").WithWarnings("portreeve could not rewrite the object: " + m.Rejected)
	}
	if m.Patched == nil {
		h.record(r.Kind.Kind, r.Operation, "unchanged", nil, start)
		return admission.Allowed("")
	}
	rules := make([]string, 0, len(m.Changes))
	moved := make([]policies.Finding, 0, len(m.Changes))
	for _, c := range m.Changes {
		if !slices.Contains(rules, c.Rule) {
			rules = append(rules, c.Rule)
		}
		moved = append(moved, policies.Finding{Rule: c.Rule})
	}
	h.record(r.Kind.Kind, r.Operation, "rewritten", rules, start)
	h.countConflicts(moved)
	logf.FromContext(ctx).Info("rewritten", "rules", rules)
	return admission.PatchResponseFromRaw(req.Object.Raw, m.Patched).WithWarnings(m.Warnings()...)
}

func (h *Handler) errored(ctx context.Context, r *review.Request, err error, start time.Time) admission.Response {
	if review.IsLimit(err) {
		// Not a malformed request: an object beyond what one review may hold, refused as a rule would.
		const fix = "split the workload, or ask a cluster admin to raise the limit"
		logf.FromContext(ctx).Info("over a limit", "error", err.Error())
		if h.Reviewer.Enforcement() == review.Observe {
			h.record(r.Kind.Kind, r.Operation, "would_deny", []string{"limits"}, start)
			return admission.Allowed("").WithWarnings(wouldDeny("portreeve: " + err.Error() + "; fix: " + fix))
		}
		h.record(r.Kind.Kind, r.Operation, "denied", []string{"limits"}, start)
		return forbidden([]policies.Finding{{Rule: "limits", Message: err.Error(), Fix: fix}})
	}
	code := int32(http.StatusInternalServerError)
	if review.IsBadRequest(err) {
		code = http.StatusBadRequest
	}
	logf.FromContext(ctx).Error(err, "review failed")
	h.record(r.Kind.Kind, r.Operation, "error", nil, start)
	return admission.Errored(code, errors.New("portreeve: "+err.Error()))
}

func (h *Handler) recordFindings(r *review.Request, d *policies.Decision, start time.Time) {
	decision, rules := "allowed", []string(nil)
	switch {
	case len(d.Violations) > 0:
		decision, rules = "denied", ruleIDs(d.Violations)
	case len(d.Warnings) > 0:
		decision, rules = "warned", ruleIDs(d.Warnings)
	}
	request := decision
	if decision != "denied" && len(d.Observed) > 0 {
		request = "would_deny" // admitted only because Portreeve observes
	}
	h.recordRequest(r.Kind.Kind, r.Operation, request, start)
	h.recordOnly(r.Kind.Kind, r.Operation, decision, rules)
	if len(d.DryRun) > 0 {
		h.recordOnly(r.Kind.Kind, r.Operation, "dryrun", ruleIDs(d.DryRun))
	}
	if len(d.Observed) > 0 {
		h.recordOnly(r.Kind.Kind, r.Operation, "would_deny", ruleIDs(d.Observed))
	}
	h.countConflicts(d.Violations, d.Warnings, d.DryRun, d.Observed)
}

// record counts one request, answered with decision, and its findings' rules.
func (h *Handler) record(kind, op, decision string, rules []string, start time.Time) {
	h.recordRequest(kind, op, decision, start)
	h.recordOnly(kind, op, decision, rules)
}

// recordRequest counts one request and its review time.
func (h *Handler) recordRequest(kind, op, decision string, start time.Time) {
	if h.Recorder == nil {
		return
	}
	h.Recorder.Observe(h.name(), time.Since(start))
	h.Recorder.Request(h.name(), kind, op, decision)
}

func (h *Handler) recordOnly(kind, op, decision string, rules []string) {
	if h.Recorder == nil {
		return
	}
	if len(rules) == 0 {
		h.Recorder.Decision(h.name(), kind, op, decision, "")
	}
	for _, rule := range rules {
		h.Recorder.Decision(h.name(), kind, op, decision, rule)
	}
}

// conflictRules judge conflicts with what the cluster holds
// (portreeve_conflicts_total).
var conflictRules = []string{policies.RuleHostPortConflicts, policies.RuleNodePortConflicts, policies.RuleIngressHostConflicts}

// countConflicts counts the findings of the conflict rules, whatever their
// bucket. The validating webhook counts what it found; the mutating one only
// what it denied or rewrote itself (the validating webhook never sees those
// conflicts), so that each conflict counts once.
func (h *Handler) countConflicts(buckets ...[]policies.Finding) {
	if h.Recorder == nil {
		return
	}
	var n [3]int
	for _, fs := range buckets {
		for _, f := range fs {
			if i := slices.Index(conflictRules, f.Rule); i >= 0 {
				n[i]++
			}
		}
	}
	for i, c := range n {
		if c > 0 {
			h.Recorder.Conflicts(conflictRules[i], c)
		}
	}
}

func ruleIDs(fs []policies.Finding) []string {
	var out []string
	for _, f := range fs {
		if !slices.Contains(out, f.Rule) {
			out = append(out, f.Rule)
		}
	}
	return out
}
