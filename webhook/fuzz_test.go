package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	kjson "sigs.k8s.io/json"
)

// FuzzHandler: AdmissionReview bytes in, an answer out, through the HTTP
// handler the server mounts: never a panic, always an AdmissionReview the
// apiserver can read (the request's uid echoed when it could be read), and a
// hostNetwork Pod in a namespace without grants is never allowed silently.
func FuzzHandler(f *testing.F) {
	h, _ := newHandler(f, "", false)
	srv := NewEndpoint(h, logr.Discard())
	review := func(req string) string {
		return `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":` + req + `}`
	}
	for _, s := range []string{
		review(`{"uid":"1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"default","operation":"CREATE","userInfo":{"username":"alice"},"object":` + hostNetworkAndPortPod + `}`),
		review(`{"uid":"2","kind":{"group":"","version":"v1","kind":"Service"},"namespace":"default","operation":"UPDATE","object":` + loadBalancer + `,"oldObject":{}}`),
		review(`{"uid":"3","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"default","operation":"CREATE","object":{"spec":{"containers":[{"ports":[{"hostPort":"80"}]}]}}}`),
		review(`{}`),
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
		`[]`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("answer is not an AdmissionReview (%v): %s", err, rec.Body.Bytes())
		}
		// Read as the apiserver and controller-runtime read JSON: field names
		// are case-sensitive ("speC" is not the spec; encoding/json would
		// take it for one, and see a hostNetwork Pod that is none).
		var in admissionv1.AdmissionReview
		if kjson.UnmarshalCaseSensitivePreserveInts(body, &in) != nil || in.Request == nil {
			return
		}
		if in.Request.UID != "" && out.Response.UID != in.Request.UID {
			t.Errorf("uid %q answered as %q", in.Request.UID, out.Response.UID)
		}
		var pod struct {
			Spec struct {
				HostNetwork bool `json:"hostNetwork"`
			} `json:"spec"`
		}
		if in.Request.Kind.Group == "" && in.Request.Kind.Version == "v1" && in.Request.Kind.Kind == "Pod" && in.Request.SubResource == "" &&
			in.Request.Operation == admissionv1.Create && in.Request.Namespace == "default" &&
			kjson.UnmarshalCaseSensitivePreserveInts(in.Request.Object.Raw, &pod) == nil && pod.Spec.HostNetwork && out.Response.Allowed && len(out.Response.Warnings) == 0 {
			t.Errorf("a hostNetwork Pod in default was allowed silently: %s", body)
		}
	})
}
