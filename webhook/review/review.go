package review

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/policies/exposure"
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
	limits exposure.Limits
	// reservations, when set, make admitted claims visible to the other
	// replicas (UseReservations).
	reservations Reservations
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

// Input decodes the request into the rules' input, and reads what its
// object (and the stored object of an UPDATE) exposes. Objects beyond no
// limit are read whole: see Reviewer.input.
func Input(req *Request) (*policies.Input, error) { return input(req, exposure.Limits{}) }

func input(req *Request, lim exposure.Limits) (*policies.Input, error) {
	kind := exposure.Lookup(req.Kind)
	if kind == nil {
		return nil, badRequest("%w: %s (Portreeve reviews %v)", ErrUnsupportedKind, req.Kind, SupportedKinds())
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
	if in.Exposure, err = extract(kind, obj, lim); err != nil {
		return nil, err
	}
	if in.Name == "" {
		in.Name = in.Exposure.Name
	}
	if in.Namespace == "" {
		in.Namespace = in.Exposure.Namespace
	}
	if in.Exposure.Pod != nil {
		in.Pod = policies.NewPodView(in.Exposure.Pod)
	}
	if req.Operation == "UPDATE" && len(req.OldObject) > 0 {
		old, err := decodeObject("oldObject", req.OldObject)
		if err != nil {
			return nil, err
		}
		in.OldObject = old
		// A stored object beyond a limit is judged as changed (the new one
		// passed them): it is reviewed rather than skipped.
		if in.OldExposure, err = extract(kind, old, lim); err != nil && !IsLimit(err) {
			return nil, err
		}
	}
	return in, nil
}

// extract reads the exposure of obj; a field of the wrong type is a bad request.
func extract(kind *exposure.Kind, obj map[string]any, lim exposure.Limits) (*exposure.Exposure, error) {
	x, err := exposure.Extract(kind, obj, lim)
	var fe *exposure.FieldError
	if errors.As(err, &fe) {
		return nil, &BadRequestError{Err: err}
	}
	return x, err
}

// unjudged reports whether engine e need not judge the UPDATE in: it leaves
// alone everything the built-in rules judge (exposure.Same), and no enabled
// custom rule judges objects of its family. Custom rules may read any field
// (the shipped example reads an annotation), so they see every UPDATE.
func unjudged(in *policies.Input, e *policies.Engine) bool {
	if in.Operation != "UPDATE" || in.OldExposure == nil || e.CustomRulesJudge(in.Family()) {
		return false
	}
	return exposure.Same(in.Exposure, in.OldExposure)
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

// Validate evaluates the request. A nil Decision with no error means the
// request was skipped (see Skip and Input).
func (r *Reviewer) Validate(ctx context.Context, req *Request) (*policies.Decision, error) {
	if Skip(req) != "" {
		return nil, nil
	}
	in, err := input(req, r.limits)
	if err != nil {
		return nil, err
	}
	engine := r.Engine()
	if unjudged(in, engine) {
		return nil, nil
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
	if record && d.Allowed() && r.reservations != nil && !r.observe {
		if d, err = r.reserve(ctx, in, engine, d); err != nil {
			return nil, err
		}
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
