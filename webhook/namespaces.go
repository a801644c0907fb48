package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

// OptOutGuard serves /namespaces: it keeps the namespace opt-out label (the
// chart's webhook.ignoreLabel) an admin's act. The webhooks never see a
// namespace that carries it, so whoever may create or update namespaces
// could otherwise switch Portreeve off for one. Only the subjects of the
// configuration's namespaceOptOut may set it (policies.NamespaceOptOut).
// It judges the label alone: every other namespace write is allowed.
type OptOutGuard struct {
	// Reviewer gives the configuration in use and the enforcement.
	Reviewer *review.Reviewer
	// Label is the opt-out label key.
	Label    string
	Recorder Recorder
}

var _ admission.Handler = (*OptOutGuard)(nil)

// Handle judges one Namespace CREATE or UPDATE.
func (g *OptOutGuard) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	if req.Kind.Kind != "Namespace" || req.Kind.Group != "" {
		g.record(req, "error", start)
		return admission.Errored(http.StatusBadRequest, errors.New("portreeve: /namespaces reviews Namespaces, got "+req.Kind.String()))
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		g.record(req, "skipped", start)
		return admission.Allowed("operation " + string(req.Operation) + " is not reviewed")
	}
	set, err := hasLabel(req.Object.Raw, g.Label)
	if err != nil {
		g.record(req, "error", start)
		return admission.Errored(http.StatusBadRequest, errors.New("portreeve: object: "+err.Error()))
	}
	if req.Operation == admissionv1.Update && set {
		had, err := hasLabel(req.OldObject.Raw, g.Label)
		if err != nil {
			g.record(req, "error", start)
			return admission.Errored(http.StatusBadRequest, errors.New("portreeve: oldObject: "+err.Error()))
		}
		set = !had // keeping a label someone was allowed to set is not setting it
	}
	if !set {
		g.record(req, "allowed", start)
		return admission.Allowed("")
	}
	who := g.Reviewer.Engine().Config().OptOut()
	user := policies.User{Username: req.UserInfo.Username, Groups: req.UserInfo.Groups}
	if who.Allows(user) {
		logf.FromContext(ctx).Info("namespace opted out", "namespace", req.Name, "label", g.Label)
		g.record(req, "allowed", start)
		return admission.Allowed("")
	}
	finding := policies.Finding{
		Rule: "namespace-opt-out",
		Message: "the label " + g.Label + " switches Portreeve off for a namespace, and only " + who.String() +
			" may set it (namespaceOptOut of the policy configuration)",
		Field: "metadata.labels",
		Fix:   "remove the label, or ask a cluster admin",
	}
	if g.Reviewer.Enforcement() == review.Observe {
		g.record(req, "would_deny", start)
		return admission.Allowed("").WithWarnings(wouldDeny(finding.String()))
	}
	logf.FromContext(ctx).Info("denied", "rules", []string{finding.Rule}, "namespace", req.Name)
	g.record(req, "denied", start)
	return forbidden([]policies.Finding{finding})
}

func (g *OptOutGuard) record(req admission.Request, decision string, start time.Time) {
	if g.Recorder == nil {
		return
	}
	g.Recorder.Observe("namespaces", time.Since(start))
	rule := ""
	if decision == "denied" || decision == "would_deny" {
		rule = "namespace-opt-out"
	}
	g.Recorder.Request("namespaces", req.Kind.Kind, string(req.Operation), decision)
	g.Recorder.Decision("namespaces", req.Kind.Kind, string(req.Operation), decision, rule)
}

// hasLabel reports whether the object raw carries the label key.
func hasLabel(raw []byte, key string) (bool, error) {
	if len(raw) == 0 {
		return false, errors.New("is empty")
	}
	if len(raw) > review.MaxObjectBytes {
		return false, errors.New("is larger than Portreeve reviews")
	}
	var obj struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return false, err
	}
	_, ok := obj.Metadata.Labels[key]
	return ok, nil
}
