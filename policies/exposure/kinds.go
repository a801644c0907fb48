// Package exposure says once what Portreeve reviews and what each object
// exposes outside the cluster: the table of reviewed kinds, and one
// extraction from a decoded object of everything the built-in rules, the
// inventory of claims and the UPDATE skip read (host network, host ports,
// node scope, node ports, LoadBalancer and external IPs, Ingress hosts). It
// is pure: no I/O, no Rego.
package exposure

// GroupVersionKind names a kind of object.
type GroupVersionKind struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// String is group/version/Kind, or version/Kind for the core group.
func (k GroupVersionKind) String() string {
	if k.Group == "" {
		return k.Version + "/" + k.Kind
	}
	return k.Group + "/" + k.Version + "/" + k.Kind
}

// Families of objects, as the rules' appliesTo names them.
const (
	FamilyPods      = "pods"
	FamilyServices  = "services"
	FamilyIngresses = "ingresses"
	// FamilyGateways: Gateway API Gateways and ListenerSets (listeners, addresses).
	FamilyGateways = "gateways"
	// FamilyRoutes: Gateway API routes with hostnames (HTTPRoute, GRPCRoute, TLSRoute).
	FamilyRoutes = "routes"
)

// GatewayGroup is the API group of the Gateway API kinds.
const GatewayGroup = "gateway.networking.k8s.io"

// Kind is one reviewed kind: where it is served, where its pod spec lives,
// the family the rules see it as, and what makes an object of it an active
// holder of what it exposes.
type Kind struct {
	GroupVersionKind
	// Resource is the plural resource name the webhooks and RBAC use.
	Resource string
	// PodSpec is the field path of the pod spec; nil for kinds without one.
	PodSpec []string
	// Family is FamilyPods for every kind with a pod spec.
	Family string
	// active reports whether an object holds what it exposes now: it runs
	// pods (replicas above zero, a Job not finished, a CronJob not
	// suspended, a Pod not terminated), or it is a Service or an Ingress.
	active func(obj map[string]any) bool
	// CRD: the kind is served only where its CustomResourceDefinition is
	// installed (Gateway API): the inventory watches it once discovery
	// shows it, and never fails without it.
	CRD bool
}

// Active reports whether obj, an object of this kind, holds what it exposes
// now. A PodTemplate never does: it is a template for others.
func (k *Kind) Active(obj map[string]any) bool {
	if k.active == nil {
		return true
	}
	return k.active(obj)
}

var kinds = []Kind{
	{GroupVersionKind{"", "v1", "Pod"}, "pods", []string{"spec"}, FamilyPods, podRunning, false},
	{GroupVersionKind{"", "v1", "PodTemplate"}, "podtemplates", []string{"template", "spec"}, FamilyPods, never, false},
	{GroupVersionKind{"", "v1", "ReplicationController"}, "replicationcontrollers", templateSpec, FamilyPods, hasReplicas, false},
	{GroupVersionKind{"apps", "v1", "Deployment"}, "deployments", templateSpec, FamilyPods, hasReplicas, false},
	{GroupVersionKind{"apps", "v1", "StatefulSet"}, "statefulsets", templateSpec, FamilyPods, hasReplicas, false},
	{GroupVersionKind{"apps", "v1", "DaemonSet"}, "daemonsets", templateSpec, FamilyPods, nil, false},
	{GroupVersionKind{"apps", "v1", "ReplicaSet"}, "replicasets", templateSpec, FamilyPods, hasReplicas, false},
	{GroupVersionKind{"batch", "v1", "Job"}, "jobs", templateSpec, FamilyPods, jobRunning, false},
	{GroupVersionKind{"batch", "v1", "CronJob"}, "cronjobs", []string{"spec", "jobTemplate", "spec", "template", "spec"}, FamilyPods, notSuspended, false},
	{GroupVersionKind{"", "v1", "Service"}, "services", nil, FamilyServices, nil, false},
	{GroupVersionKind{"networking.k8s.io", "v1", "Ingress"}, "ingresses", nil, FamilyIngresses, nil, false},
	{GroupVersionKind{GatewayGroup, "v1", "Gateway"}, "gateways", nil, FamilyGateways, nil, true},
	{GroupVersionKind{GatewayGroup, "v1", "ListenerSet"}, "listenersets", nil, FamilyGateways, nil, true},
	{GroupVersionKind{GatewayGroup, "v1", "HTTPRoute"}, "httproutes", nil, FamilyRoutes, nil, true},
	{GroupVersionKind{GatewayGroup, "v1", "GRPCRoute"}, "grpcroutes", nil, FamilyRoutes, nil, true},
	{GroupVersionKind{GatewayGroup, "v1", "TLSRoute"}, "tlsroutes", nil, FamilyRoutes, nil, true},
}

var templateSpec = []string{"spec", "template", "spec"}

// Kinds lists the reviewed kinds, in a stable order.
func Kinds() []Kind { return kinds }

// Lookup returns the reviewed kind gvk, or nil when Portreeve does not review it.
func Lookup(gvk GroupVersionKind) *Kind {
	for i := range kinds {
		if kinds[i].GroupVersionKind == gvk {
			return &kinds[i]
		}
	}
	return nil
}

// Names lists the reviewed kinds as group/version/Kind strings.
func Names() []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k.String()
	}
	return out
}

func never(map[string]any) bool { return false }

func podRunning(obj map[string]any) bool {
	status, _ := obj["status"].(map[string]any)
	phase, _ := status["phase"].(string)
	return phase != "Succeeded" && phase != "Failed"
}

func hasReplicas(obj map[string]any) bool {
	spec, _ := obj["spec"].(map[string]any)
	n, ok := spec["replicas"]
	if !ok || n == nil {
		return true // the apiserver defaults replicas to 1
	}
	r, isNumber := Int(n)
	return !isNumber || r > 0
}

func jobRunning(obj map[string]any) bool {
	status, _ := obj["status"].(map[string]any)
	conditions, _ := status["conditions"].([]any)
	for _, c := range conditions {
		cm, _ := c.(map[string]any)
		t, _ := cm["type"].(string)
		s, _ := cm["status"].(string)
		if (t == "Complete" || t == "Failed") && s == "True" {
			return false
		}
	}
	return true
}

func notSuspended(obj map[string]any) bool {
	spec, _ := obj["spec"].(map[string]any)
	suspended, _ := spec["suspend"].(bool)
	return !suspended
}
