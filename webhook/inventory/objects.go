package inventory

import (
	"strings"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/portreeve/portreeve/policies/exposure"
)

// Held is what the informers' cache keeps of an object of a reviewed kind:
// its name and what it claims, read by the one extraction of
// policies/exposure that reviews use too. It is a few hundred bytes instead
// of the whole object.
type Held struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	claims *claims
}

// DeepCopyObject copies the metadata; the claims are never written once made.
func (h *Held) DeepCopyObject() runtime.Object {
	out := &Held{TypeMeta: h.TypeMeta, claims: h.claims}
	h.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return out
}

// Transform returns the transform of the informer of kind k: it runs on
// every object the informer receives, before it enters the cache, and turns
// the decoded typed object into a Held. It is idempotent
// (client-go may run it on an object twice) and keeps nothing of the decoded
// object, so that it can be collected.
func Transform(k *exposure.Kind) func(obj any) (any, error) {
	return func(obj any) (any, error) {
		switch o := obj.(type) {
		case *Held:
			return o, nil
		case runtime.Object:
			if _, isMeta := o.(*metav1.PartialObjectMetadata); isMeta {
				return obj, nil
			}
			m, err := toMap(o)
			if err != nil {
				return nil, err
			}
			return held(k, m), nil
		}
		return obj, nil
	}
}

// held reads what obj, an object of kind k, claims. An object the
// extraction cannot read (a field of the wrong type: the apiserver's
// validation makes that impossible) claims nothing.
func held(k *exposure.Kind, obj map[string]any) *Held {
	x, err := exposure.Extract(k, obj, exposure.Limits{})
	if err != nil {
		md, _ := obj["metadata"].(map[string]any)
		name, _ := md["name"].(string)
		namespace, _ := md["namespace"].(string)
		x = &exposure.Exposure{Kind: k, Meta: exposure.Meta{Name: name, Namespace: namespace}}
	}
	if !x.Active {
		// It holds nothing now; its owner still names its Pods' holder.
		bare := *x
		bare.Pod, bare.Service, bare.Ingress = nil, nil, nil
		x = &bare
	}
	c := exposureClaims(x, false)
	// Keep nothing of the decoded object: copy what is unique, intern what repeats.
	c.key.namespace, c.key.name = intern(c.key.namespace), strings.Clone(c.key.name)
	c.resourceVersion = strings.Clone(c.resourceVersion)
	c.owner = ownerRef(intern(c.owner.kind), strings.Clone(c.owner.name))
	for i := range c.hostPorts {
		c.hostPorts[i].hostIP = intern(c.hostPorts[i].hostIP)
	}
	c.scope.nodeName = intern(c.scope.nodeName)
	if len(c.scope.selector) > 0 {
		sel := make(map[string]string, len(c.scope.selector))
		for key, v := range c.scope.selector {
			sel[intern(key)] = intern(v)
		}
		c.scope.selector = sel
	}
	for i := range c.hosts {
		c.hosts[i].host, c.hosts[i].path = strings.Clone(c.hosts[i].host), strings.Clone(c.hosts[i].path)
	}
	h := &Held{claims: c}
	h.Name, h.Namespace, h.ResourceVersion = c.key.name, c.key.namespace, c.resourceVersion
	return h
}

// TransformNamespace keeps a namespace's name and labels (namespace
// selectors and the rules' namespaceLabels need them).
func TransformNamespace(obj any) (any, error) {
	ns, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	out := &metav1.PartialObjectMetadata{TypeMeta: ns.TypeMeta}
	out.Name = ns.Name
	out.ResourceVersion = ns.ResourceVersion
	out.Labels = ns.Labels
	return out, nil
}

// intern returns the canonical copy of a string that many objects repeat
// (namespaces, kinds, node names, protocols, selector labels).
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// claimsOf returns what a (transformed) object holds, and for ReplicaSets
// and Jobs the owner the index remembers to name the top owner of their Pods.
// It returns nil for objects of other types.
func claimsOf(obj any) *claims {
	if h, ok := obj.(*Held); ok {
		return h.claims
	}
	return nil
}

func newHostPath(host, path string, exact bool) hostPath {
	if path == "" {
		path = "/"
	}
	return hostPath{host: host, path: path, prefix: !exact}
}

// ownerRef is the owner a claim is grouped and named by. A mirror pod's
// owner is its Node, which would merge unrelated static pods: they stand alone.
func ownerRef(kind, name string) ref {
	if kind == "" || kind == "Node" {
		return ref{}
	}
	return ref{kind: kind, name: name}
}
