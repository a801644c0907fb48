package review

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"

	"github.com/portreeve/portreeve/policies"
)

// MaxObjectBytes bounds the objects Portreeve decodes (the apiserver's own
// limit for a request body is 3 MiB).
const MaxObjectBytes = 3 << 20

// Request is an admission request reduced to what the rules need.
type Request struct {
	Operation       string
	Kind            policies.GroupVersionKind
	SubResource     string
	Namespace       string
	Name            string
	User            policies.User
	DryRun          bool
	Object          []byte
	OldObject       []byte
	NamespaceLabels map[string]string
}

// BadRequestError marks a request that cannot be reviewed because of its content.
type BadRequestError struct{ Err error }

func (e *BadRequestError) Error() string { return e.Err.Error() }
func (e *BadRequestError) Unwrap() error { return e.Err }

func badRequest(format string, args ...any) error {
	return &BadRequestError{Err: fmt.Errorf(format, args...)}
}

// Reviewer evaluates requests with the current engine. The engine can be
// swapped at any time (new configuration or modules); requests in flight keep
// the one they started with.
type Reviewer struct {
	engine atomic.Pointer[policies.Engine]
	facts  FactsSource
	// claims serialises the requests that record claims for the same keys,
	// from their facts to their record (contestedKeys).
	claims keyedMutex
	// observe: the installation observes (Observe), findings never deny.
	observe bool
	// limits bound what one review may hold (SetLimits).
	limits Limits
}

// FactsSource computes the facts of a request from an inventory of the
// cluster (webhook/inventory) and records what admitted requests claim.
type FactsSource interface {
	// Facts returns the facts about in; cfg is the configuration of the
	// engine that evaluates it (free ports are listed per grant).
	Facts(in *policies.Input, cfg *policies.Config) *policies.Facts
	// Claim records what the admitted request in claims until the
	// informers show the object. Tentative claims come from the mutating
	// webhook (the ports it chose) and are dropped by Release.
	Claim(in *policies.Input, tentative bool)
	// Release drops the tentative claims of the object in in: the
	// validating webhook refused it.
	Release(in *policies.Input)
}

// UseFacts makes the reviewer hand facts from fs to the rules. Call it
// before serving; without it (nil) the rules see {"ready": false}.
func (r *Reviewer) UseFacts(fs FactsSource) { r.facts = fs }

// withFacts sets in.Facts from the facts source, if any.
func (r *Reviewer) withFacts(in *policies.Input, e *policies.Engine) {
	if r.facts != nil {
		in.Facts = r.facts.Facts(in, e.Config())
	}
}

// recording reports whether the request records claims: it must then hold
// the keys it contests from its facts to its record.
func (r *Reviewer) recording(req *Request) bool {
	return r.facts != nil && !req.DryRun && (req.Operation == "CREATE" || req.Operation == "UPDATE")
}

// NewReviewer returns a Reviewer serving e.
func NewReviewer(e *policies.Engine) *Reviewer {
	r := &Reviewer{}
	r.engine.Store(e)
	return r
}

// Engine returns the engine in use.
func (r *Reviewer) Engine() *policies.Engine { return r.engine.Load() }

// SetEngine swaps in a new engine.
func (r *Reviewer) SetEngine(e *policies.Engine) { r.engine.Store(e) }

// Skip says why a request is not evaluated, or "" when it must be.
func Skip(req *Request) string {
	switch req.Operation {
	case "CREATE", "UPDATE":
	default:
		return "operation " + req.Operation + " is not reviewed"
	}
	switch {
	case req.SubResource == "":
	case req.Kind.Kind == "Pod" && req.SubResource == "ephemeralcontainers":
	default:
		return "subresource " + req.SubResource + " is not reviewed"
	}
	return ""
}

// Input decodes the request into the rules' input.
func Input(req *Request) (*policies.Input, error) {
	if !Supported(req.Kind) {
		return nil, badRequest("%w: %s (Portreeve reviews %v)", ErrUnsupportedKind, gvkString(req.Kind), SupportedKinds())
	}
	obj, err := decodeObject("object", req.Object)
	if err != nil {
		return nil, err
	}
	in := &policies.Input{
		Operation:       req.Operation,
		Kind:            req.Kind,
		Namespace:       req.Namespace,
		Name:            req.Name,
		User:            req.User,
		DryRun:          req.DryRun,
		Object:          obj,
		NamespaceLabels: req.NamespaceLabels,
	}
	if in.Name == "" {
		in.Name = metadataString(obj, "name")
	}
	if in.Namespace == "" {
		in.Namespace = metadataString(obj, "namespace")
	}
	if in.Pod, err = podView(req.Kind, obj); err != nil {
		return nil, &BadRequestError{Err: err}
	}
	if req.Operation == "UPDATE" && len(req.OldObject) > 0 {
		old, err := decodeObject("oldObject", req.OldObject)
		if err != nil {
			return nil, err
		}
		in.OldObject = old
		if _, err := podView(req.Kind, old); err != nil {
			return nil, &BadRequestError{Err: err}
		}
	}
	return in, nil
}

// unjudged reports whether engine e need not judge the UPDATE in: it leaves
// alone everything the built-in rules judge (exposure), and no enabled custom
// rule judges objects of its family. Custom rules may read any field (the
// shipped example reads an annotation), so they see every UPDATE.
func unjudged(in *policies.Input, e *policies.Engine) bool {
	if in.Operation != "UPDATE" || in.OldObject == nil || e.CustomRulesJudge(in.Family()) {
		return false
	}
	oldPod, err := podView(in.Kind, in.OldObject)
	if err != nil {
		return false
	}
	return reflect.DeepEqual(exposure(in.Kind, in.Object, in.Pod), exposure(in.Kind, in.OldObject, oldPod))
}

func decodeObject(what string, raw []byte) (map[string]any, error) {
	if len(raw) == 0 {
		return nil, badRequest("%s is empty", what)
	}
	if len(raw) > MaxObjectBytes {
		return nil, badRequest("%s is %d bytes, more than the %d Portreeve reviews", what, len(raw), MaxObjectBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, badRequest("%s is not a JSON object: %v", what, err)
	}
	if obj == nil {
		return nil, badRequest("%s is null", what)
	}
	if dec.More() {
		return nil, badRequest("%s has trailing data after the JSON object", what)
	}
	if _, ok := obj["metadata"].(map[string]any); !ok && obj["metadata"] != nil {
		return nil, badRequest("%s.metadata is not an object", what)
	}
	if s, ok := obj["spec"]; ok && s != nil {
		if _, ok := s.(map[string]any); !ok {
			return nil, badRequest("%s.spec is not an object", what)
		}
	}
	return obj, nil
}

func metadataString(obj map[string]any, key string) string {
	md, _ := obj["metadata"].(map[string]any)
	s, _ := md[key].(string)
	return s
}

// exposure is the part of an object the built-in rules judge: an UPDATE that
// leaves it alone is not reviewed, so a policy change never blocks unrelated
// updates. Of a pod spec it is what the rules read (an image change is not
// exposure); of a Service or an Ingress it is the whole spec but the fields
// known not to expose anything, so that a field added to the API, or newly
// judged by a rule, is reviewed rather than skipped.
func exposure(gvk policies.GroupVersionKind, obj map[string]any, pod *policies.PodView) any {
	if pod != nil {
		return []any{
			pod.Spec["hostNetwork"], pod.ServiceAccount, containerPorts(pod.Spec),
			// Where the pod may run decides which holders of its host ports it meets.
			pod.Spec["nodeName"], pod.Spec["nodeSelector"], pod.Spec["affinity"],
		}
	}
	spec, _ := obj["spec"].(map[string]any)
	if gvk.Kind == "Service" {
		out := make(map[string]any, len(spec))
		for k, v := range spec {
			if !slices.Contains(serviceFieldsNotExposure, k) {
				out[k] = v
			}
		}
		return out
	}
	md, _ := obj["metadata"].(map[string]any)
	ann, _ := md["annotations"].(map[string]any)
	return []any{spec, ann["kubernetes.io/ingress.class"]}
}

// serviceFieldsNotExposure are the Service spec fields that open nothing
// outside the cluster: changing them alone is not reviewed.
var serviceFieldsNotExposure = []string{
	"selector", "clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "sessionAffinity",
	"sessionAffinityConfig", "publishNotReadyAddresses", "internalTrafficPolicy", "trafficDistribution",
}

func containerPorts(spec map[string]any) []any {
	var out []any
	for _, list := range []string{"initContainers", "containers", "ephemeralContainers"} {
		cs, _ := spec[list].([]any)
		for _, c := range cs {
			cm, _ := c.(map[string]any)
			out = append(out, cm["ports"])
		}
	}
	return out
}

// Validate evaluates the request. A nil Decision with no error means the
// request was skipped (see Skip and Input).
func (r *Reviewer) Validate(ctx context.Context, req *Request) (*policies.Decision, error) {
	if Skip(req) != "" {
		return nil, nil
	}
	in, err := Input(req)
	if err != nil {
		return nil, err
	}
	engine := r.Engine()
	if unjudged(in, engine) {
		return nil, nil
	}
	if err := r.limits.check(in); err != nil {
		return nil, err
	}
	record := r.recording(req)
	if record {
		defer r.claims.lock(contestedKeys(in))()
	}
	r.withFacts(in, engine)
	d, err := engine.Evaluate(ctx, in)
	if err != nil {
		return nil, err
	}
	if r.observe {
		d.Observe()
	}
	if record {
		if d.Allowed() {
			r.facts.Claim(in, false)
		} else {
			r.facts.Release(in)
		}
	}
	return &d, nil
}

// IsBadRequest reports whether err is about the request's content.
func IsBadRequest(err error) bool {
	var bre *BadRequestError
	return errors.As(err, &bre)
}
