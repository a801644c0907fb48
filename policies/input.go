package policies

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/portreeve/portreeve/policies/exposure"
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
	// Exposure is what the object exposes (read once by webhook/review),
	// OldExposure what the stored object of an UPDATE did; nil when the
	// input was built otherwise (tests).
	Exposure    *exposure.Exposure `json:"-"`
	OldExposure *exposure.Exposure `json:"-"`
}

// GroupVersionKind names a kind of object.
type GroupVersionKind = exposure.GroupVersionKind

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
	// ports are the host ports of the exposure the view was made from.
	ports    []HostPort
	hasPorts bool
}

// NewPodView is the rules' view of the pod spec of an exposure.
func NewPodView(p *exposure.Pod) *PodView {
	return &PodView{Path: p.Path, Pointer: p.Pointer, Spec: p.Spec, ServiceAccount: p.ServiceAccount, ports: p.HostPorts, hasPorts: true}
}

// value converts the input to an AST value without a JSON round trip. It
// stays a tree of Go maps that converts lazily, key by key, as far as the
// rules read it: most rules read a few fields of a large object. The maps of
// the tree's top come from a pool: call release once nothing reads the value
// any more (results converted to Go).
func (in *Input) value(res *resolved) (v ast.Value, release func()) {
	labels := noLabels
	if len(in.NamespaceLabels) > 0 {
		labels = in.NamespaceLabels
	}
	m := inputMapsPool.Get().(*inputMaps)
	doc := m.doc
	doc["operation"] = operationValue(in.Operation)
	doc["kind"] = kindValue(in.Kind)
	doc["namespace"] = in.Namespace
	doc["name"] = in.Name
	// Small parts are AST already (a lazy object costs a cache map of its
	// own); what may be large stays lazy.
	doc["user"] = userValue(in.User)
	doc["dryRun"] = in.DryRun
	doc["object"] = orEmpty(in.Object)
	doc["namespaceLabels"] = labels
	doc["facts"] = in.Facts.ast()
	doc["grants"] = res.value
	if in.OldObject != nil {
		doc["oldObject"] = in.OldObject
	}
	if in.Pod != nil {
		pod := m.pod
		pod["path"] = in.Pod.Path
		pod["pointer"] = in.Pod.Pointer
		pod["spec"] = orEmpty(in.Pod.Spec)
		pod["serviceAccount"] = in.Pod.ServiceAccount
		pod["hostPorts"] = ast.NewArray(in.Pod.hostPorts()...)
		doc["pod"] = pod
	}
	return ast.LazyObject(doc), m.release
}

// inputMaps are the pooled maps of an input's top.
type inputMaps struct {
	doc, pod map[string]any
}

var inputMapsPool = sync.Pool{New: func() any {
	return &inputMaps{doc: make(map[string]any, 12), pod: make(map[string]any, 5)}
}}

func (m *inputMaps) release() {
	clear(m.doc)
	clear(m.pod)
	inputMapsPool.Put(m)
}

// users caches input.user by a hash of the user: most requests come from a
// few controllers. It stops growing at maxUsers entries.
var (
	users     sync.Map // uint64 -> cachedUser
	userCount atomic.Int64
	userSeed  = maphash.MakeSeed()
)

const maxUsers = 4096

type cachedUser struct {
	user  User
	value ast.Value
}

func userValue(u User) ast.Value {
	var h maphash.Hash
	h.SetSeed(userSeed)
	h.WriteString(u.Username)
	for _, g := range u.Groups {
		h.WriteByte(0)
		h.WriteString(g)
	}
	key := h.Sum64()
	if c, ok := users.Load(key); ok && c.(cachedUser).user.equal(u) {
		return c.(cachedUser).value
	}
	groups := make([]*ast.Term, len(u.Groups))
	for i, g := range u.Groups {
		groups[i] = ast.StringTerm(g)
	}
	v := ast.NewObject(ast.Item(keyUsername, ast.StringTerm(u.Username)), ast.Item(keyGroups, ast.ArrayTerm(groups...)))
	if userCount.Load() < maxUsers {
		c := cachedUser{user: User{Username: u.Username, Groups: slices.Clone(u.Groups)}, value: v}
		if _, loaded := users.LoadOrStore(key, c); !loaded {
			userCount.Add(1)
		}
	}
	return v
}

func (u User) equal(o User) bool { return u.Username == o.Username && slices.Equal(u.Groups, o.Groups) }

// operationValue spares the common operations a conversion to any.
func operationValue(op string) any {
	switch op {
	case "CREATE":
		return opCreate
	case "UPDATE":
		return opUpdate
	}
	return op
}

var opCreate, opUpdate any = "CREATE", "UPDATE"

// kinds caches input.kind by kind: there are few, and every request has one.
var kinds sync.Map

func kindValue(k GroupVersionKind) ast.Value {
	if v, ok := kinds.Load(k); ok {
		return v.(ast.Value)
	}
	v := ast.NewObject(
		ast.Item(ast.StringTerm("group"), ast.StringTerm(k.Group)),
		ast.Item(ast.StringTerm("version"), ast.StringTerm(k.Version)),
		ast.Item(ast.StringTerm("kind"), ast.StringTerm(k.Kind)),
	)
	kinds.Store(k, v)
	return v
}

var (
	keyUsername = ast.StringTerm("username")
	keyGroups   = ast.StringTerm("groups")
	keyActive   = ast.StringTerm("active")
	keyExpired  = ast.StringTerm("expired")
	noLabels    = map[string]string{}
)

// hostPortKeys are the keys of an element of input.pod.hostPorts; terms are
// never written once built, so all requests share them.
var hostPortKeys = [...]*ast.Term{
	ast.StringTerm("port"), ast.StringTerm("protocol"), ast.StringTerm("hostIP"),
	ast.StringTerm("container"), ast.StringTerm("field"), ast.StringTerm("pointer"),
}

// HostPort is one hostPort of a pod spec, as the rules see it in
// input.pod.hostPorts.
type HostPort = exposure.HostPort

// HostPorts lists every hostPort of the (defaulted) pod spec, from the
// exposure the view was made from; a view written by hand (tests) has its
// spec read by the same extraction.
func (p *PodView) HostPorts() []HostPort {
	if !p.hasPorts {
		if x, err := exposure.ExtractPodSpec(p.Path, p.Spec); err == nil {
			p.ports = x.HostPorts
		}
		p.hasPorts = true
	}
	return p.ports
}

// hostPorts lists every hostPort of the (defaulted) pod spec as the rules
// see it in input.pod.hostPorts: {port, protocol, hostIP, container, field,
// pointer}. It is computed here, once, rather than by every rule.
func (p *PodView) hostPorts() []*ast.Term {
	ports := p.HostPorts()
	out := make([]*ast.Term, 0, len(ports))
	for _, hp := range ports {
		out = append(out, ast.ObjectTerm(
			ast.Item(hostPortKeys[0], ast.InternedTerm(hp.Port)),
			ast.Item(hostPortKeys[1], ast.InternedTerm(hp.Protocol)),
			ast.Item(hostPortKeys[2], ast.InternedTerm(hp.HostIP)),
			ast.Item(hostPortKeys[3], ast.StringTerm(hp.Container)),
			ast.Item(hostPortKeys[4], ast.StringTerm(hp.Field)),
			ast.Item(hostPortKeys[5], ast.StringTerm(hp.Pointer)),
		))
	}
	return out
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
