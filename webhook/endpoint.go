package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	kjson "sigs.k8s.io/json"
)

// Endpoint serves one admission webhook over HTTP: controller-runtime's
// admission.Webhook answers each review (its Handle recovers panics, turns
// patches into the response's JSON patch and echoes the uid), and Endpoint
// reads the AdmissionReview around it in one pass. controller-runtime's own
// ServeHTTP reads the body twice (once to find apiVersion and kind, once
// into the review), which was a sixth of Portreeve's CPU per pod created.
// The review is read as the apiserver writes JSON (field names are
// case-sensitive), and answered in the AdmissionReview version it came in.
type Endpoint struct {
	Webhook *admission.Webhook
	// Log receives the requests that could not be read.
	Log logr.Logger
}

// NewEndpoint serves h, logging through log (as admission.Webhook would,
// with each request's fields only when a line is written).
func NewEndpoint(h admission.Handler, log logr.Logger) *Endpoint {
	return &Endpoint{Webhook: &admission.Webhook{Handler: h, LogConstructor: LogConstructor}, Log: log}
}

// maxReviewBytes bounds a review's body: two objects of at most 3 MiB each
// (the apiserver's own bound on a request body, in JSON) and the rest.
const maxReviewBytes = 7 << 20

var (
	reviewV1      = admissionv1.SchemeGroupVersion.WithKind("AdmissionReview")
	reviewV1beta1 = admissionv1beta1.SchemeGroupVersion.WithKind("AdmissionReview")
	// Their apiVersions, as a review writes them (built once, not per review).
	apiVersionV1      = reviewV1.GroupVersion().String()
	apiVersionV1beta1 = reviewV1beta1.GroupVersion().String()
)

func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	gvk := reviewV1
	var resp admission.Response
	req, code, err := readReview(r, &gvk)
	if err != nil {
		e.Log.Error(err, "cannot read the AdmissionReview", "path", r.URL.Path)
		resp = admission.Errored(code, err)
		resp.UID = req.UID // when it could be read: the apiserver matches answers by it
	} else {
		resp = e.Webhook.Handle(r.Context(), req)
	}
	ar := admissionv1.AdmissionReview{Response: &resp.AdmissionResponse}
	ar.SetGroupVersionKind(gvk)
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(ar); err != nil {
		// The connection broke: nothing more can reach the apiserver.
		e.Log.Error(err, "cannot write the answer", "path", r.URL.Path, "requestID", resp.UID)
	}
}

// readReview reads the AdmissionReview of r, and sets gvk to its version.
// An error comes with the HTTP status it is answered with, and the request
// as far as it could be read.
func readReview(r *http.Request, gvk *schema.GroupVersionKind) (admission.Request, int32, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return admission.Request{}, http.StatusBadRequest, errors.New("request body is empty")
	}
	defer r.Body.Close()
	body, err := readBody(r.Body, r.ContentLength)
	if err != nil {
		code := int32(http.StatusBadRequest)
		if errors.Is(err, errTooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		return admission.Request{}, code, err
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return admission.Request{}, http.StatusBadRequest, fmt.Errorf("contentType=%s, expected application/json", ct)
	}
	var ar admissionv1.AdmissionReview
	if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &ar); err != nil {
		return admission.Request{}, http.StatusBadRequest, fmt.Errorf("decode the AdmissionReview: %w", err)
	}
	var req admission.Request
	if ar.Request != nil {
		req.AdmissionRequest = *ar.Request
	}
	if ar.Kind != "" && ar.Kind != reviewV1.Kind {
		return req, http.StatusBadRequest, fmt.Errorf("kind %s is not an AdmissionReview", ar.Kind)
	}
	switch ar.APIVersion {
	case apiVersionV1beta1:
		*gvk = reviewV1beta1
	case apiVersionV1, "":
	default:
		return req, http.StatusBadRequest, fmt.Errorf("apiVersion %s: an AdmissionReview is admission.k8s.io/v1 or v1beta1", ar.APIVersion)
	}
	return req, 0, nil
}

var errTooLarge = fmt.Errorf("request entity is too large; limit is %d bytes", maxReviewBytes)

// readBody reads a body of at most maxReviewBytes, sized at once when the
// request says how long it is.
func readBody(body io.Reader, length int64) ([]byte, error) {
	var buf bytes.Buffer
	if length > 0 && length <= maxReviewBytes {
		buf.Grow(int(length) + bytes.MinRead)
	}
	n, err := buf.ReadFrom(io.LimitReader(body, maxReviewBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the request body: %w", err)
	}
	if n > maxReviewBytes {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}
