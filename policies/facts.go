package policies

import (
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Facts are computed in Go from Portreeve's inventory of the cluster (an
// informer cache of Pods, workloads, Services and Ingresses) for the object
// under review, and handed to the rules as input.facts. Rego never calls the
// cluster: a rule that needs to know what others hold reads it here.
//
// The facts are best effort. The inventory is eventually consistent and two
// requests (or two replicas) can race; the apiserver's nodePort allocator and
// the scheduler remain the final arbiters (docs/conflicts.md).
type Facts struct {
	// Ready is true when the inventory has synced, so that the lists below
	// are complete. When false the lists are empty: a rule cannot tell "no
	// conflict" from "not known yet", and should look at NotReady.
	Ready bool `json:"ready"`
	// Seen is the inventory's generation the facts were computed at (not
	// for rules): what the inventory learnt later was not seen by them.
	Seen uint64 `json:"-"`
	// NotReady says what rules do with a request that needs the inventory
	// while Ready is false: "deny" (the default of `serve
	// --inventory-not-ready`) or "allow". Empty when there is no inventory at
	// all (offline commands): rules then judge without facts.
	NotReady string `json:"notReady,omitempty"`
	// NodePortRange is the cluster's Service NodePort range (the
	// kube-apiserver's --service-node-port-range; `serve --node-port-range`,
	// default 30000-32767). kube-proxy listens on every node for each
	// allocated port in it, so a hostPort inside it collides sooner or later.
	// Zero when unknown: the rules then see the default range.
	NodePortRange PortSpan `json:"nodePortRange"`
	// HostPortConflicts lists, for each hostPort of the object's pod spec,
	// the other holders of the same (protocol, port) whose hostIP overlaps
	// (empty and 0.0.0.0 overlap every address, as in the scheduler) and
	// that can run on the same node: Pods and pod templates (a DaemonSet's
	// template holds its hostPorts on every node it selects, before its pods
	// exist), and Services whose nodePort is that port (kube-proxy listens on
	// every node). Two claims cannot share a node when both name a node and
	// the names differ, or when their nodeSelectors give the same key
	// different values. The object's own claims (same object, or the same
	// top owner: a Deployment and its ReplicaSets and Pods) never conflict.
	HostPortConflicts []HostPortConflict `json:"hostPortConflicts"`
	// NodePortConflicts lists the object's explicit nodePorts (and
	// healthCheckNodePort) that another Service already holds.
	NodePortConflicts []NodePortConflict `json:"nodePortConflicts"`
	// FreeNodePorts maps a grant name to the first free ports inside that
	// grant's nodePorts ranges: enough to give every port of the Service one.
	// Only for Services, and only for grants whose namespaces match and that
	// have not expired (Rego still decides which grants apply). Ports the
	// object itself asks for are not listed.
	FreeNodePorts map[string][]int `json:"freeNodePorts"`
	// FreeHostPorts maps a grant name to a few hostPorts inside that grant's
	// hostPorts ranges that no claim that can share a node holds, outside the
	// NodePort range: suggestions for a conflicting hostPort. Only computed
	// when HostPortConflicts is not empty or a hostPort lies in the NodePort
	// range.
	FreeHostPorts map[string][]int `json:"freeHostPorts"`
	// IngressConflicts lists the object's Ingress host and path pairs that an
	// Ingress in another namespace already claims: the same host, or a
	// wildcard covering it either way (*.example.com covers a.example.com but
	// not a.b.example.com, as in the Ingress API), with overlapping paths (the
	// same path, or a Prefix path covering the other).
	IngressConflicts []IngressConflict `json:"ingressConflicts"`
	// RouteParents lists, for a Gateway API route, each of its
	// spec.parentRefs that names a Gateway or a ListenerSet, with the
	// listeners it attaches to as the inventory knows them: a route without
	// hostnames inherits theirs. Known is false when the inventory holds no
	// such parent (not created yet, or not shown by the informers yet).
	RouteParents []RouteParent `json:"routeParents"`
}

// RouteParent is one parentRef of a route and the listeners it attaches to.
type RouteParent struct {
	// Field is spec.parentRefs[i].
	Field string `json:"field"`
	// Kind, Namespace and Name name the parent (defaults filled in).
	Kind        string `json:"kind"`
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	SectionName string `json:"sectionName,omitempty"`
	Known       bool   `json:"known"`
	// Listeners are the parent's listeners the ref selects: the one its
	// sectionName names, else those on its port, else all.
	Listeners []ParentListener `json:"listeners"`
}

// ParentListener is a listener a route attaches to.
type ParentListener struct {
	Name string `json:"name"`
	// Hostname is empty for a listener that accepts every host.
	Hostname string `json:"hostname"`
}

// PortSpan is an inclusive range of ports.
type PortSpan struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// Holder names an object that holds a port or a host.
type Holder struct {
	Namespace string `json:"namespace"`
	// Kind is the top owner's kind that Portreeve knows: a Pod made by a
	// ReplicaSet of a Deployment is held by the Deployment.
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Claim says what the holder holds, for messages: "hostPort 9100/TCP",
	// "nodePort 30080/TCP", "host app.example.com path /".
	Claim string `json:"claim"`
	// Pending is true when the claim comes from a request Portreeve admitted
	// moments ago that the informers have not shown yet.
	Pending bool `json:"pending,omitempty"`
}

// HostPortConflict is one hostPort of the object that others hold.
type HostPortConflict struct {
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	HostIP   string `json:"hostIP"`
	// Field is the object's field path of the hostPort, e.g.
	// spec.template.spec.containers[0].ports[1].hostPort (as k8s.host_ports).
	Field string `json:"field"`
	// Holders are the first holders (at most ten), sorted by namespace, kind and name.
	Holders []Holder `json:"holders"`
	// HolderCount counts every holder, listed or not (the inventory lists a
	// few: a review's cost must not grow with the holders of a port).
	HolderCount int `json:"holderCount,omitempty"`
}

// NodePortConflict is one explicit nodePort of the Service that another
// Service holds.
type NodePortConflict struct {
	Port int `json:"port"`
	// Field is spec.ports[i].nodePort or spec.healthCheckNodePort.
	Field  string `json:"field"`
	Holder Holder `json:"holder"`
}

// IngressConflict is one host and path of the Ingress that an Ingress in
// another namespace claims.
type IngressConflict struct {
	Host string `json:"host"`
	Path string `json:"path"`
	// Field is spec.rules[i].host (Ingress), spec.hostnames[i] (route), or
	// spec.parentRefs[i] for a hostname a route without hostnames inherits.
	Field string `json:"field"`
	// Via names the listener an inherited hostname comes from, for messages:
	// "listener web of infra/Gateway/shared"; empty otherwise.
	Via string `json:"via,omitempty"`
	// Holders are the first holders (at most ten), sorted by namespace, kind
	// and name; Claim names the host and path each holds.
	Holders []Holder `json:"holders"`
	// HolderCount counts every holder, listed or not.
	HolderCount int `json:"holderCount,omitempty"`
}

// DefaultNodePortRange is the kube-apiserver's default --service-node-port-range.
var DefaultNodePortRange = PortSpan{From: 30000, To: 32767}

// noFacts are the facts without an inventory; shared, and never written.
var noFacts = ast.MustInterfaceToValue((*Facts)(nil).value())

func (s PortSpan) value() map[string]any { return map[string]any{"from": s.From, "to": s.To} }

// ast converts the facts to Rego input.
func (f *Facts) ast() ast.Value {
	if f == nil {
		return noFacts
	}
	return ast.MustInterfaceToValue(f.value())
}

// value converts the facts to Rego input without a JSON round trip.
func (f *Facts) value() map[string]any {
	if f == nil {
		return map[string]any{"ready": false, "nodePortRange": DefaultNodePortRange.value()}
	}
	m := map[string]any{
		"ready":             f.Ready,
		"nodePortRange":     DefaultNodePortRange.value(),
		"hostPortConflicts": make([]any, len(f.HostPortConflicts)),
		"nodePortConflicts": make([]any, len(f.NodePortConflicts)),
		"freeNodePorts":     freePortsValue(f.FreeNodePorts),
		"freeHostPorts":     freePortsValue(f.FreeHostPorts),
		"ingressConflicts":  make([]any, len(f.IngressConflicts)),
		"routeParents":      routeParentsValue(f.RouteParents),
	}
	if f.NotReady != "" {
		m["notReady"] = f.NotReady
	}
	if f.NodePortRange.From != 0 {
		m["nodePortRange"] = f.NodePortRange.value()
	}
	hp := m["hostPortConflicts"].([]any)
	for i, c := range f.HostPortConflicts {
		n := max(c.HolderCount, len(c.Holders))
		hp[i] = map[string]any{
			"port": c.Port, "protocol": c.Protocol, "hostIP": c.HostIP, "field": c.Field,
			"holders": holdersValue(c.Holders), "holderCount": n, "holdersText": holdersText(c.Holders, n),
		}
	}
	np := m["nodePortConflicts"].([]any)
	for i, c := range f.NodePortConflicts {
		np[i] = map[string]any{"port": c.Port, "field": c.Field, "holder": c.Holder.value()}
	}
	ic := m["ingressConflicts"].([]any)
	for i, c := range f.IngressConflicts {
		n := max(c.HolderCount, len(c.Holders))
		ic[i] = map[string]any{
			"host": c.Host, "path": c.Path, "field": c.Field,
			"holders": holdersValue(c.Holders), "holderCount": n, "holdersText": holdersText(c.Holders, n),
		}
		if c.Via != "" {
			ic[i].(map[string]any)["via"] = c.Via
		}
	}
	return m
}

func routeParentsValue(ps []RouteParent) []any {
	out := make([]any, len(ps))
	for i, p := range ps {
		ls := make([]any, len(p.Listeners))
		for j, l := range p.Listeners {
			ls[j] = map[string]any{"name": l.Name, "hostname": l.Hostname}
		}
		out[i] = map[string]any{
			"field": p.Field, "kind": p.Kind, "namespace": p.Namespace, "name": p.Name,
			"sectionName": p.SectionName, "known": p.Known, "listeners": ls,
		}
	}
	return out
}

func (h Holder) value() map[string]any {
	return map[string]any{
		"namespace": h.Namespace, "kind": h.Kind, "name": h.Name, "claim": h.Claim, "pending": h.Pending,
	}
}

// holdersShown is how many holders a message names (the Rego library's
// facts.holders_shown); the others are counted.
const holdersShown = 5

// holdersText renders the holders of a conflict, n in all, for a message:
// "team-a/Pod/web (hostPort 9100/TCP), ... and 7 more". It is the Rego
// library's facts.conflict_holders_text, done once in Go: a sprintf per
// holder in the rules made a conflicting request cost them ten times a clean
// one. TestHoldersTextIsRegos holds the two to the same text.
func holdersText(hs []Holder, n int) string {
	var b strings.Builder
	for i, h := range hs[:min(len(hs), holdersShown)] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(h.Namespace + "/" + h.Kind + "/" + h.Name + " (" + h.Claim)
		if h.Pending {
			b.WriteString(", admitted moments ago")
		}
		b.WriteString(")")
	}
	if n > holdersShown {
		b.WriteString(" and " + strconv.Itoa(n-holdersShown) + " more")
	}
	return b.String()
}

func holdersValue(hs []Holder) []any {
	out := make([]any, len(hs))
	for i, h := range hs {
		out[i] = h.value()
	}
	return out
}

func freePortsValue(m map[string][]int) map[string]any {
	out := make(map[string]any, len(m))
	for name, ports := range m {
		ps := make([]any, len(ports))
		for i, p := range ports {
			ps[i] = p
		}
		out[name] = ps
	}
	return out
}

// String renders a holder as namespace/Kind/name.
func (h Holder) String() string {
	return h.Namespace + "/" + h.Kind + "/" + h.Name
}

// SortHolders sorts holders by namespace, kind, name and claim, and drops repeats.
func SortHolders(hs []Holder) []Holder {
	slices.SortFunc(hs, compareHolders)
	return slices.CompactFunc(hs, func(a, b Holder) bool { return compareHolders(a, b) == 0 })
}

func compareHolders(a, b Holder) int {
	for _, c := range [][2]string{{a.Namespace, b.Namespace}, {a.Kind, b.Kind}, {a.Name, b.Name}, {a.Claim, b.Claim}} {
		if c[0] != c[1] {
			if c[0] < c[1] {
				return -1
			}
			return 1
		}
	}
	return 0
}
