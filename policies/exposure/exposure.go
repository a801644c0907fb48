package exposure

import (
	"fmt"
	"reflect"
	"slices"
)

// Exposure is everything one object exposes outside the cluster, read once
// from the decoded object: the rules' input, the inventory's claims and the
// UPDATE skip are all computed from it.
type Exposure struct {
	Kind *Kind
	Meta
	// Active is false for objects that hold nothing now (Kind.Active).
	Active bool
	// One of Pod, Service, Ingress, Gateway and Route is set, by the kind's family.
	Pod     *Pod
	Service *Service
	Ingress *Ingress
	Gateway *Gateway
	Route   *Route
}

// Meta is what the inventory needs of an object's metadata.
type Meta struct {
	Name, Namespace, ResourceVersion string
	// Owner is the controller owner (zero for none).
	Owner Owner
}

// Owner is an object's controller owner.
type Owner struct{ Kind, Name string }

// Pod is the exposure of a pod spec (of a Pod or of a workload's template).
type Pod struct {
	// Path is the dotted field path of the pod spec, Pointer its JSON Pointer.
	Path, Pointer string
	// Spec is the pod spec with hostPort defaulted to containerPort on a
	// hostNetwork pod, as the apiserver defaults Pods (but not templates), so
	// that both are judged alike. It shares what it does not change with the
	// object.
	Spec           map[string]any
	ServiceAccount string
	HostNetwork    bool
	// HostPorts lists every host port (init, regular and ephemeral
	// containers; a hostNetwork pod's container ports).
	HostPorts []HostPort
	// Where the pod may run decides which holders of its host ports it meets.
	NodeName     string
	NodeSelector map[string]string
	Affinity     any
	// Containers and Ports count what the spec declares (for Limits).
	Containers, Ports int
}

// HostPort is one host port of a pod spec.
type HostPort struct {
	Port                      int
	Protocol, HostIP          string
	Container, Field, Pointer string
}

// Service is the exposure of a Service.
type Service struct {
	Type string
	// Ports counts the Service's ports.
	Ports int
	// OpensNodePorts: a NodePort Service, or a LoadBalancer that allocates
	// node ports or names one.
	OpensNodePorts bool
	// NodePorts are the explicit node ports (nodePort values and an explicit
	// healthCheckNodePort) of a Service that opens node ports.
	NodePorts []NodePort
	// ImpliedHealthCheckNodePort: a LoadBalancer with externalTrafficPolicy
	// Local and no explicit healthCheckNodePort, for which the apiserver
	// allocates one, open on every node.
	ImpliedHealthCheckNodePort bool
	ExternalIPs                []string
	// judged is the spec without the fields that expose nothing.
	judged map[string]any
}

// NodePort is one explicit node port of a Service.
type NodePort struct {
	Port            int
	Protocol, Field string
}

// Ingress is the exposure of an Ingress.
type Ingress struct {
	// Class is spec.ingressClassName, else the kubernetes.io/ingress.class annotation.
	Class string
	// Hosts are the rules' hosts with each path (a host without paths claims "/").
	Hosts []HostPath
	// DefaultBackend: the Ingress sends every unmatched host somewhere.
	DefaultBackend bool
	// Rules counts the rules and TLS hosts, Paths the paths (for Limits).
	Rules, Paths int
	judged       []any
}

// HostPath is one host and path an Ingress routes.
type HostPath struct {
	Host, Path string
	// Prefix: the path matches its subpaths (pathType Prefix or
	// ImplementationSpecific); else it is Exact.
	Prefix bool
	Field  string
}

// FieldError is an object whose field does not have the type the API gives
// it: the apiserver never sends one, so it was made by hand.
type FieldError struct{ Field, Msg string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldError(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Extract reads the exposure of obj, an object of kind k. It checks on the
// way that the fields it reads have their API types (FieldError), and stops
// at the first bound of lim that the object passes (LimitError).
func Extract(k *Kind, obj map[string]any, lim Limits) (*Exposure, error) {
	md, _ := obj["metadata"].(map[string]any)
	x := &Exposure{Kind: k, Meta: readMeta(md), Active: k.Active(obj)}
	var err error
	switch {
	case k.PodSpec != nil:
		x.Pod, err = extractPod(k, obj, lim)
	case k.Family == FamilyServices:
		x.Service, err = extractService(obj, lim)
	case k.Family == FamilyIngresses:
		x.Ingress, err = extractIngress(obj, md, lim)
	case k.Family == FamilyGateways:
		x.Gateway, err = extractGateway(obj, lim)
	case k.Family == FamilyRoutes:
		x.Route, err = extractRoute(k, obj, lim)
	}
	if err != nil {
		return nil, err
	}
	return x, nil
}

func readMeta(md map[string]any) Meta {
	m := Meta{Name: str(md["name"]), Namespace: str(md["namespace"]), ResourceVersion: str(md["resourceVersion"])}
	refs, _ := md["ownerReferences"].([]any)
	for _, r := range refs {
		rm, _ := r.(map[string]any)
		if c, _ := rm["controller"].(bool); c {
			m.Owner = Owner{Kind: str(rm["kind"]), Name: str(rm["name"])}
			break
		}
	}
	return m
}

// Same reports whether a and b, two versions of one object, expose the
// same: an UPDATE from one to the other changes nothing the built-in rules
// judge. Of a pod spec that is the host network, the service account, the
// host ports and where the pod may run (an image change is not exposure); of
// a Service every spec field but those that expose nothing; of an Ingress its
// whole spec and class; of a Gateway its whole spec; of a route its
// hostnames, parents and (HTTPRoute, TLSRoute) rules.
func Same(a, b *Exposure) bool {
	if a == nil || b == nil || a.Kind != b.Kind {
		return false
	}
	switch {
	case a.Pod != nil && b.Pod != nil:
		x, y := a.Pod, b.Pod
		return x.HostNetwork == y.HostNetwork && x.ServiceAccount == y.ServiceAccount &&
			slices.Equal(x.HostPorts, y.HostPorts) && x.NodeName == y.NodeName &&
			reflect.DeepEqual(x.NodeSelector, y.NodeSelector) && reflect.DeepEqual(x.Affinity, y.Affinity)
	case a.Service != nil && b.Service != nil:
		return reflect.DeepEqual(a.Service.judged, b.Service.judged)
	case a.Ingress != nil && b.Ingress != nil:
		return reflect.DeepEqual(a.Ingress.judged, b.Ingress.judged)
	case a.Gateway != nil && b.Gateway != nil:
		return reflect.DeepEqual(a.Gateway.judged, b.Gateway.judged)
	case a.Route != nil && b.Route != nil:
		return reflect.DeepEqual(a.Route.judged, b.Route.judged)
	}
	return false
}
