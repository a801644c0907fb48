package policies

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

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

// value converts the input to an AST value without a JSON round trip. The pod
// spec is converted once when it is the object's own (not defaulted) spec.
func (in *Input) value() (ast.Value, error) {
	groups := make([]*ast.Term, len(in.User.Groups))
	for i, g := range in.User.Groups {
		groups[i] = ast.StringTerm(g)
	}
	labels := make([][2]*ast.Term, 0, len(in.NamespaceLabels))
	for k, v := range in.NamespaceLabels {
		labels = append(labels, ast.Item(ast.StringTerm(k), ast.StringTerm(v)))
	}
	object, err := ast.InterfaceToValue(in.Object)
	if err != nil {
		return nil, err
	}
	facts, err := ast.InterfaceToValue(in.Facts.value())
	if err != nil {
		return nil, err
	}
	items := [][2]*ast.Term{
		ast.Item(ast.StringTerm("operation"), ast.StringTerm(in.Operation)),
		ast.Item(ast.StringTerm("kind"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("group"), ast.StringTerm(in.Kind.Group)),
			ast.Item(ast.StringTerm("version"), ast.StringTerm(in.Kind.Version)),
			ast.Item(ast.StringTerm("kind"), ast.StringTerm(in.Kind.Kind)),
		)),
		ast.Item(ast.StringTerm("namespace"), ast.StringTerm(in.Namespace)),
		ast.Item(ast.StringTerm("name"), ast.StringTerm(in.Name)),
		ast.Item(ast.StringTerm("user"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("username"), ast.StringTerm(in.User.Username)),
			ast.Item(ast.StringTerm("groups"), ast.ArrayTerm(groups...)),
		)),
		ast.Item(ast.StringTerm("dryRun"), ast.BooleanTerm(in.DryRun)),
		ast.Item(ast.StringTerm("object"), ast.NewTerm(object)),
		ast.Item(ast.StringTerm("namespaceLabels"), ast.ObjectTerm(labels...)),
		ast.Item(ast.StringTerm("facts"), ast.NewTerm(facts)),
	}
	if in.OldObject != nil {
		old, err := ast.InterfaceToValue(in.OldObject)
		if err != nil {
			return nil, err
		}
		items = append(items, ast.Item(ast.StringTerm("oldObject"), ast.NewTerm(old)))
	}
	if in.Pod != nil {
		spec, err := in.podSpecValue(object)
		if err != nil {
			return nil, err
		}
		items = append(items, ast.Item(ast.StringTerm("pod"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("path"), ast.StringTerm(in.Pod.Path)),
			ast.Item(ast.StringTerm("pointer"), ast.StringTerm(in.Pod.Pointer)),
			ast.Item(ast.StringTerm("spec"), ast.NewTerm(spec)),
			ast.Item(ast.StringTerm("serviceAccount"), ast.StringTerm(in.Pod.ServiceAccount)),
			ast.Item(ast.StringTerm("hostPorts"), ast.ArrayTerm(in.Pod.hostPorts()...)),
		)))
	}
	return ast.NewObject(items...), nil
}

// podSpecValue reuses the converted object's spec when the pod spec is that
// very map (no defaulting applied), else converts the defaulted copy.
func (in *Input) podSpecValue(object ast.Value) (ast.Value, error) {
	cur := any(in.Object)
	ref := ast.Ref{}
	for _, p := range strings.Split(in.Pod.Path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			cur = nil
			break
		}
		cur = m[p]
		ref = append(ref, ast.StringTerm(p))
	}
	if m, ok := cur.(map[string]any); ok && len(m) > 0 && reflect.ValueOf(m).UnsafePointer() == reflect.ValueOf(in.Pod.Spec).UnsafePointer() {
		if v, err := object.Find(ref); err == nil {
			return v, nil
		}
	}
	return ast.InterfaceToValue(in.Pod.Spec)
}

var containerLists = []string{"initContainers", "containers", "ephemeralContainers"}

// hostPorts lists every hostPort of the (defaulted) pod spec as the rules
// see it in input.pod.hostPorts: {port, protocol, hostIP, container, field,
// pointer}. It is computed here, once, rather than by every rule.
func (p *PodView) hostPorts() []*ast.Term {
	var out []*ast.Term
	for _, list := range containerLists {
		containers, _ := p.Spec[list].([]any)
		for i, c := range containers {
			cm, _ := c.(map[string]any)
			ports, _ := cm["ports"].([]any)
			for j, port := range ports {
				pm, _ := port.(map[string]any)
				number, ok := portNumber(pm["hostPort"])
				if !ok || number <= 0 {
					continue
				}
				protocol, _ := pm["protocol"].(string)
				if protocol == "" {
					protocol = "TCP"
				}
				hostIP, _ := pm["hostIP"].(string)
				name, _ := cm["name"].(string)
				idx := strconv.Itoa(i)
				jdx := strconv.Itoa(j)
				out = append(out, ast.ObjectTerm(
					ast.Item(ast.StringTerm("port"), ast.IntNumberTerm(number)),
					ast.Item(ast.StringTerm("protocol"), ast.StringTerm(protocol)),
					ast.Item(ast.StringTerm("hostIP"), ast.StringTerm(hostIP)),
					ast.Item(ast.StringTerm("container"), ast.StringTerm(name)),
					ast.Item(ast.StringTerm("field"), ast.StringTerm(p.Path+"."+list+"["+idx+"].ports["+jdx+"].hostPort")),
					ast.Item(ast.StringTerm("pointer"), ast.StringTerm(p.Pointer+"/"+list+"/"+idx+"/ports/"+jdx+"/hostPort")),
				))
			}
		}
	}
	return out
}

// portNumber reads a JSON number (json.Number, float64 or int) as a port; a
// non-integer is not a port (the rules then see none, and the apiserver's
// own validation refuses the object).
func portNumber(v any) (int, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := strconv.Atoi(n.String())
		return i, err == nil
	case float64:
		return int(n), n == float64(int(n))
	case int:
		return n, true
	case int64:
		return int(n), true
	}
	return 0, false
}
