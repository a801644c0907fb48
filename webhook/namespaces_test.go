package webhook

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portreeve/portreeve/webhook/review"
)

func TestOptOutGuard(t *testing.T) {
	const (
		plain    = `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"n","labels":{"team":"a"}}}`
		labelled = `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"n","labels":{"team":"a","portreeve.io/ignore":""}}}`
		relabel  = `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"n","labels":{"team":"b","portreeve.io/ignore":""}}}`
	)
	alice := authenticationv1.UserInfo{Username: "alice", Groups: []string{"system:authenticated"}}
	root := authenticationv1.UserInfo{Username: "root", Groups: []string{"system:masters"}}
	argo := authenticationv1.UserInfo{Username: "system:serviceaccount:argocd:argocd-application-controller"}
	named := "apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\nnamespaceOptOut: {serviceAccounts: [argocd/argocd-application-controller]}\n"
	tests := []struct {
		name      string
		config    string
		op        admissionv1.Operation
		user      authenticationv1.UserInfo
		old, obj  string
		observe   bool
		allowed   bool
		code      int32
		recorded  string
		warning   string
		forbidden string
	}{
		{name: "a namespace without the label", op: admissionv1.Create, user: alice, obj: plain, allowed: true, code: http.StatusOK, recorded: "allowed/"},
		{name: "a user who may only create namespaces sets it", op: admissionv1.Create, user: alice, obj: labelled, code: http.StatusForbidden, recorded: "denied/namespace-opt-out",
			forbidden: "namespace-opt-out: the label portreeve.io/ignore switches Portreeve off for a namespace, and only groups system:masters may set it"},
		{name: "an admin sets it", op: admissionv1.Create, user: root, obj: labelled, allowed: true, code: http.StatusOK, recorded: "allowed/"},
		{name: "adding it on update", op: admissionv1.Update, user: alice, old: plain, obj: labelled, code: http.StatusForbidden, recorded: "denied/namespace-opt-out"},
		{name: "an update that keeps it", op: admissionv1.Update, user: alice, old: labelled, obj: relabel, allowed: true, code: http.StatusOK, recorded: "allowed/"},
		{name: "removing it", op: admissionv1.Update, user: alice, old: labelled, obj: plain, allowed: true, code: http.StatusOK, recorded: "allowed/"},
		{name: "a service account named in the configuration", config: named, op: admissionv1.Create, user: argo, obj: labelled, allowed: true, code: http.StatusOK, recorded: "allowed/"},
		{name: "naming someone replaces the default", config: named, op: admissionv1.Create, user: root, obj: labelled, code: http.StatusForbidden, recorded: "denied/namespace-opt-out",
			forbidden: "only service accounts argocd/argocd-application-controller may set it"},
		{name: "observing warns", op: admissionv1.Create, user: alice, obj: labelled, observe: true, allowed: true, code: http.StatusOK, recorded: "would_deny/namespace-opt-out",
			warning: "portreeve would deny (enforcement: observe): namespace-opt-out: "},
		{name: "not JSON", op: admissionv1.Create, user: alice, obj: `{"metadata":`, code: http.StatusBadRequest, recorded: "error/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, rec := newHandler(t, tc.config, false)
			if tc.observe {
				h.Reviewer.SetEnforcement(review.Observe)
			}
			g := &OptOutGuard{Reviewer: h.Reviewer, Label: "portreeve.io/ignore", Recorder: rec}
			req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
				UID: "1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Namespace"}, Operation: tc.op, Name: "n",
				UserInfo: tc.user, Object: runtime.RawExtension{Raw: []byte(tc.obj)}, OldObject: runtime.RawExtension{Raw: []byte(tc.old)},
			}}
			resp := g.Handle(t.Context(), req)
			if resp.Allowed != tc.allowed || resp.Result.Code != tc.code {
				t.Fatalf("allowed=%v code=%d msg=%q, want allowed=%v code=%d", resp.Allowed, resp.Result.Code, resp.Result.Message, tc.allowed, tc.code)
			}
			if !strings.Contains(resp.Result.Message, tc.forbidden) {
				t.Errorf("message %q lacks %q", resp.Result.Message, tc.forbidden)
			}
			if tc.warning != "" && (len(resp.Warnings) != 1 || !strings.HasPrefix(resp.Warnings[0], tc.warning)) {
				t.Errorf("warnings %q", resp.Warnings)
			}
			if want := "namespaces/Namespace/" + string(tc.op) + "/" + tc.recorded; !slices.Contains(rec.decisions, want) {
				t.Errorf("%s not recorded: %v", want, rec.decisions)
			}
		})
	}
}
