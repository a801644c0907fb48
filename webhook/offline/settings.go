package offline

import (
	"context"
	"encoding/json"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

// Settings are what shapes an offline decision besides the object: the
// policy set, the cluster's NodePort range, and the namespace, namespace
// labels and user of each request. The offline commands fill them from one
// set of flags.
type Settings struct {
	// Config is the policy configuration (nil: the built-in one).
	Config *policies.Config
	// Modules are the custom rules, keyed by file name.
	Modules map[string]string
	// NodePortRange is the cluster's Service NodePort range (zero: the
	// kube-apiserver's default, policies.DefaultNodePortRange).
	NodePortRange policies.PortSpan
	// Namespace is the namespace of objects that name none ("" for "default").
	Namespace string
	// NamespaceLabels are the labels of the object's namespace, unless
	// Namespaces has it.
	NamespaceLabels map[string]string
	// Namespaces are the labels of namespaces whose Namespace manifests are
	// among the input (a GitOps render ships its Namespaces): they are what
	// the objects in those namespaces are judged with.
	Namespaces map[string]map[string]string
	// User makes the requests.
	User policies.User
}

// NewEngine builds the engine of the settings' policy set.
func (s *Settings) NewEngine(ctx context.Context) (*policies.Engine, error) {
	return policies.New(ctx, policies.Options{Config: s.Config, Modules: s.Modules})
}

// NewReviewer returns a reviewer serving e that hands the rules the
// settings' NodePort range (there is no inventory offline).
func (s *Settings) NewReviewer(e *policies.Engine) *review.Reviewer {
	r := review.NewReviewer(e)
	if f := NodePortRangeFacts(s.NodePortRange); f != nil {
		r.UseFacts(f)
	}
	return r
}

// Request builds the request that creates the object raw (JSON) under the
// settings: their user, namespace (for objects that name none) and
// namespace labels.
func (s *Settings) Request(raw []byte) (*review.Request, error) {
	req, err := NewRequest(raw, nil, s.Namespace, s.User)
	if err != nil {
		return nil, err
	}
	req.NamespaceLabels = s.NamespaceLabels
	if labels, ok := s.Namespaces[req.Namespace]; ok {
		req.NamespaceLabels = labels
	}
	return req, nil
}

// UseNamespaces records the labels of the Namespace manifests among raws
// (JSON objects; others are left alone) for the requests of the objects in
// those namespaces.
func (s *Settings) UseNamespaces(raws [][]byte) {
	for _, raw := range raws {
		name, labels, ok := NamespaceManifest(raw)
		if !ok {
			continue
		}
		if s.Namespaces == nil {
			s.Namespaces = map[string]map[string]string{}
		}
		s.Namespaces[name] = labels
	}
}

// NamespaceManifest reads a Namespace manifest (JSON): its name and labels,
// with the label the apiserver gives every namespace
// (kubernetes.io/metadata.name). ok is false for any other object.
func NamespaceManifest(raw []byte) (name string, labels map[string]string, ok bool) {
	var ns struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if json.Unmarshal(raw, &ns) != nil || ns.APIVersion != "v1" || ns.Kind != "Namespace" || ns.Metadata.Name == "" {
		return "", nil, false
	}
	labels = ns.Metadata.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	labels["kubernetes.io/metadata.name"] = ns.Metadata.Name
	return ns.Metadata.Name, labels, true
}

// RangeFacts hands the rules a NodePort range and nothing else, and records
// no claims: the facts of an offline review, where there is no inventory.
type RangeFacts struct{ Span policies.PortSpan }

// NodePortRangeFacts returns the facts source of a cluster whose NodePort
// range is span, or nil for the default range (zero or equal to it): the
// rules then see the facts of no inventory at all, {"ready": false} with the
// default range.
func NodePortRangeFacts(span policies.PortSpan) review.FactsSource {
	if span == (policies.PortSpan{}) || span == policies.DefaultNodePortRange {
		return nil
	}
	return RangeFacts{Span: span}
}

// Facts returns the range, with the inventory not ready and no conflicts.
func (f RangeFacts) Facts(*policies.Input, *policies.Config) *policies.Facts {
	return &policies.Facts{NodePortRange: f.Span}
}

// Claim records nothing.
func (RangeFacts) Claim(*policies.Input, bool) {}

// Release releases nothing.
func (RangeFacts) Release(*policies.Input) {}
