package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	jsonpatch "gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// TestEndpoint: what the apiserver sends is read once and answered as an
// AdmissionReview of the version it came in, with the uid echoed and the
// handler's patch; what cannot be read gets an error answer, never a panic
// and never an allow.
func TestEndpoint(t *testing.T) {
	var seen admission.Request
	e := NewEndpoint(admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		seen = req
		if req.Name == "panic" {
			panic("boom")
		}
		return admission.Patched("rewritten", jsonpatch.JsonPatchOperation{Operation: "add", Path: "/metadata/labels", Value: map[string]any{"a": "b"}})
	}), logr.Discard())
	request := `{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},"name":"p","namespace":"ns","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","spec":{"hostNetwork":true}}}`
	tests := []struct {
		name        string
		body        string
		contentType string
		wantVersion string
		wantCode    int32 // 0: allowed with the patch
		wantMessage string
	}{
		{name: "v1", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":` + request + `}`, wantVersion: "admission.k8s.io/v1"},
		{name: "v1beta1 answered as v1beta1", body: `{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":` + request + `}`, wantVersion: "admission.k8s.io/v1beta1"},
		{name: "no apiVersion answered as v1", body: `{"request":` + request + `}`, wantVersion: "admission.k8s.io/v1"},
		{name: "empty body", body: "", wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMessage: "request body is empty"},
		{name: "not JSON", body: "{", wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMessage: "decode the AdmissionReview"},
		{name: "wrong content type", body: `{"request":` + request + `}`, contentType: "application/yaml", wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMessage: "expected application/json"},
		{name: "another kind", body: `{"apiVersion":"v1","kind":"Pod"}`, wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMessage: "kind Pod is not an AdmissionReview"},
		{name: "another version", body: `{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview"}`, wantVersion: "admission.k8s.io/v1", wantCode: 400, wantMessage: "an AdmissionReview is admission.k8s.io/v1 or v1beta1"},
		{name: "too large", body: `{"request":{"uid":"` + strings.Repeat("x", maxReviewBytes) + `"}}`, wantVersion: "admission.k8s.io/v1", wantCode: 413, wantMessage: "too large"},
		{name: "case-sensitive field names", body: `{"Request":` + request + `}`, wantVersion: "admission.k8s.io/v1"},
		{name: "panic recovered", body: `{"request":{"uid":"u2","name":"panic"}}`, wantVersion: "admission.k8s.io/v1", wantCode: 500, wantMessage: "panic: boom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen = admission.Request{}
			req := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader([]byte(tc.body)))
			if tc.body == "" {
				req.Body = http.NoBody
			}
			req.Header.Set("Content-Type", "application/json")
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Fatalf("answer is not an AdmissionReview (%v): %s", err, rec.Body.Bytes())
			}
			if out.APIVersion != tc.wantVersion || out.Kind != "AdmissionReview" {
				t.Errorf("answered as %s %s, want %s AdmissionReview", out.APIVersion, out.Kind, tc.wantVersion)
			}
			r := out.Response
			if tc.wantCode != 0 {
				if r.Allowed || r.Result == nil || r.Result.Code != tc.wantCode || !strings.Contains(r.Result.Message, tc.wantMessage) {
					t.Errorf("answer %+v, want refused with %d %q", r, tc.wantCode, tc.wantMessage)
				}
				return
			}
			if strings.Contains(tc.name, "case-sensitive") {
				// "Request" is not "request": nothing was read.
				if seen.UID != "" || r.UID != "" {
					t.Errorf("a review without a request read one: %+v", seen)
				}
				return
			}
			if !r.Allowed || r.UID != "u1" || string(r.Patch) == "" || *r.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Errorf("answer %+v, want allowed with uid u1 and the patch", r)
			}
			if seen.Name != "p" || !bytes.Contains(seen.Object.Raw, []byte(`"hostNetwork":true`)) {
				t.Errorf("the handler saw %+v", seen)
			}
		})
	}
}
