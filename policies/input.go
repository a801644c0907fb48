package policies

import "github.com/open-policy-agent/opa/v1/ast"

// Input is the document every rule sees as `input`. It is the contract between
// the Go side and the Rego rules (docs/policy-authoring.md documents every field).
type Input struct {
	// Operation is CREATE or UPDATE.
	Operation string `json:"operation"`
	// Kind is the object's group, version and kind.
	Kind GroupVersionKind `json:"kind"`
	// Namespace and Name of the object.
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// User is who makes the request.
	User User `json:"user"`
	// DryRun is true for server-side dry runs.
	DryRun bool `json:"dryRun"`
	// Object is the object under review; OldObject the stored one on UPDATE.
	Object    map[string]any `json:"object"`
	OldObject map[string]any `json:"oldObject,omitempty"`
	// NamespaceLabels are the labels of the object's namespace.
	NamespaceLabels map[string]string `json:"namespaceLabels"`
	// Pod is the pod spec of a Pod or of a workload's pod template, defaulted
	// as the apiserver defaults Pods; nil for other kinds.
	Pod *PodView `json:"pod,omitempty"`
	// Facts are what the cluster already holds that concerns this object:
	// conflicts with other objects and free ports. Always present in Rego;
	// nil here becomes {"ready": false} (no inventory, e.g. `portreeve eval`).
	Facts *Facts `json:"facts"`
}

// GroupVersionKind names a kind of object.
type GroupVersionKind struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// User is the requester.
type User struct {
	Username string   `json:"username"`
	Groups   []string `json:"groups"`
}

// PodView locates a pod spec inside the object.
type PodView struct {
	// Path is the dotted field path of the pod spec, e.g. spec.template.spec.
	Path string `json:"path"`
	// Pointer is the JSON Pointer of the pod spec, e.g. /spec/template/spec.
	Pointer string `json:"pointer"`
	// Spec is the pod spec with hostPort defaulted to containerPort on hostNetwork pods.
	Spec map[string]any `json:"spec"`
	// ServiceAccount is the pod's serviceAccountName ("default" when unset).
	ServiceAccount string `json:"serviceAccount"`
}

// value converts the input to an AST value without a JSON round trip.
func (in *Input) value() (ast.Value, error) {
	groups := make([]any, len(in.User.Groups))
	for i, g := range in.User.Groups {
		groups[i] = g
	}
	labels := make(map[string]any, len(in.NamespaceLabels))
	for k, v := range in.NamespaceLabels {
		labels[k] = v
	}
	m := map[string]any{
		"operation":       in.Operation,
		"kind":            map[string]any{"group": in.Kind.Group, "version": in.Kind.Version, "kind": in.Kind.Kind},
		"namespace":       in.Namespace,
		"name":            in.Name,
		"user":            map[string]any{"username": in.User.Username, "groups": groups},
		"dryRun":          in.DryRun,
		"object":          in.Object,
		"namespaceLabels": labels,
	}
	if in.OldObject != nil {
		m["oldObject"] = in.OldObject
	}
	if in.Pod != nil {
		m["pod"] = map[string]any{
			"path":           in.Pod.Path,
			"pointer":        in.Pod.Pointer,
			"spec":           in.Pod.Spec,
			"serviceAccount": in.Pod.ServiceAccount,
		}
	}
	m["facts"] = in.Facts.value()
	return ast.InterfaceToValue(m)
}
