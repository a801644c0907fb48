package suggest

import (
	"fmt"
	"slices"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/policies/exposure"
)

// Gateway API. A Gateway needs the loadBalancer grant (gateway-load-balancer)
// and its addresses externalIPs (gateway-addresses); the listener hostnames
// of a Gateway or ListenerSet and the hostnames of a route need
// ingressDomains (gateway-hosts), "*" for a listener without a hostname. A
// route without hostnames inherits those of its parents' listeners: in a
// cluster the inventory finds the parents, here they are found among the
// objects read and handed to the rules as the same facts (routeParents).

// everyHost is the host a listener without a hostname accepts: every one.
const everyHost = "*"

// hostClaim is one host and path an Ingress or a route claims, and for a
// route the parents it claims it through (one, for an inherited hostname).
type hostClaim struct {
	exposure.HostPath
	parents []exposure.ParentRef
}

// parentKey names a Gateway or ListenerSet.
type parentKey struct{ kind, namespace, name string }

// listenerIndex holds the listeners of every Gateway and ListenerSet read,
// reviewed or not (one in a namespace never reviewed is still a parent).
type listenerIndex map[parentKey][]exposure.Listener

// add records the listeners of obj, an object of kind k in namespace ns,
// when it is a Gateway or ListenerSet with listeners (the inventory knows
// no parent without).
func (idx listenerIndex) add(k *exposure.Kind, ns, name string, obj map[string]any) {
	if k.Family != exposure.FamilyGateways {
		return
	}
	x, err := exposure.Extract(k, obj, exposure.Limits{})
	key := parentKey{k.Kind, ns, name}
	if err != nil || len(x.Gateway.Listeners) == 0 {
		delete(idx, key) // read again: the last one counts
		return
	}
	idx[key] = x.Gateway.Listeners
}

// readGateway lists the load balancer of a Gateway (not of a ListenerSet,
// which provisions nothing), its addresses and every listener's hostname.
// The grant for a Gateway's load balancer names no class: a class
// restriction does not cover a Gateway.
func (r *record) readGateway(k *exposure.Kind, g *exposure.Gateway) {
	if k.Kind == "Gateway" {
		r.items = append(r.items, &item{kind: loadBalancerItem, rule: "gateway-load-balancer", field: "spec.gatewayClassName"})
	}
	for _, l := range g.Listeners {
		r.items = append(r.items, &item{kind: ingressHostItem, rule: "gateway-hosts", field: l.Field + ".hostname", value: hostnameOf(l)})
	}
	for _, a := range g.Addresses {
		it := addressItem(a.Field, a.Value)
		it.rule = "gateway-addresses"
		if a.Type != "IPAddress" {
			it.value = a.Value
			it.invalid = fmt.Sprintf("address %q of type %s is granted only by externalIPs 0.0.0.0/0 or ::/0 (every address)", a.Value, a.Type)
		}
		r.items = append(r.items, it)
	}
}

func hostnameOf(l exposure.Listener) string {
	if l.Hostname == "" {
		return everyHost
	}
	return l.Hostname
}

// readRoute lists a route's hostnames and keeps its claims and parents;
// what a route without hostnames inherits is added by inheritHosts.
func (r *record) readRoute(rt *exposure.Route) {
	r.route = true
	for _, p := range rt.Parents {
		if p = p.Resolved(r.ref.Namespace); p.Listeners() {
			r.parents = append(r.parents, p)
		} else {
			r.otherParents = true
		}
	}
	for i, h := range rt.Hosts {
		if i == 0 || h.Field != rt.Hosts[i-1].Field { // one item per hostname, whatever its paths
			r.items = append(r.items, &item{kind: ingressHostItem, rule: "gateway-hosts", field: h.Field, value: h.Host})
		}
		r.paths = append(r.paths, hostClaim{HostPath: h, parents: r.parents})
	}
	r.inherit = rt.Paths
}

// selects reports whether parentRef p attaches to listener l: the one its
// sectionName names, else those on its port, else every listener.
func selects(p exposure.ParentRef, l exposure.Listener) bool {
	if p.SectionName != "" {
		return l.Name == p.SectionName
	}
	return p.Port == 0 || l.Port == p.Port
}

// inheritHosts resolves the parents of every route among the Gateways and
// ListenerSets read: the facts the rules see (routeParents), and for a route
// without hostnames an item per hostname it inherits (gateway-hosts denies
// it on the parentRef) and its claims on them. A route without hostnames
// whose parent was not read inherits what cannot be judged: reported.
func inheritHosts(records []*record, idx listenerIndex) []Problem {
	var out []Problem
	for _, r := range records {
		if !r.route {
			continue
		}
		for _, p := range r.parents {
			all, known := idx[parentKey{p.Kind, p.Namespace, p.Name}]
			rp := policies.RouteParent{
				Field: p.Field, Kind: p.Kind, Namespace: p.Namespace, Name: p.Name, SectionName: p.SectionName,
				Known: known, Listeners: []policies.ParentListener{},
			}
			for _, l := range all {
				if !selects(p, l) {
					continue
				}
				rp.Listeners = append(rp.Listeners, policies.ParentListener{Name: l.Name, Hostname: l.Hostname})
				if r.inherit == nil {
					continue
				}
				host := hostnameOf(l)
				if !slices.ContainsFunc(r.items, func(it *item) bool { return it.field == p.Field && it.value == host }) {
					r.items = append(r.items, &item{kind: ingressHostItem, rule: "gateway-hosts", field: p.Field, value: host, inherited: true})
				}
				for _, h := range r.inherit {
					c := hostClaim{HostPath: exposure.HostPath{Host: host, Path: h.Path, Prefix: h.Prefix, Field: p.Field}, parents: []exposure.ParentRef{p}}
					if !slices.ContainsFunc(r.paths, func(o hostClaim) bool { return o.HostPath == c.HostPath }) {
						r.paths = append(r.paths, c)
					}
				}
			}
			r.routeParents = append(r.routeParents, rp)
			if r.inherit != nil && !known {
				out = append(out, Problem{
					Message: fmt.Sprintf("%s: the route has no hostnames and its parent %s/%s/%s was not read (or has no listeners), so the hostnames it inherits are not granted "+
						"(set spec.hostnames, or suggest from the objects that include the parent)", p.Field, p.Namespace, p.Kind, p.Name),
					Objects: []Ref{r.ref},
				})
			}
		}
	}
	return out
}

// routesMeet reports whether two claims on one host can meet: unless both
// are routes whose parents are all read and share no listener (the same
// Gateway or ListenerSet, and the same sectionName or none on either side).
func routesMeet(a, b *record, ap, bp []exposure.ParentRef, idx listenerIndex) bool {
	if !a.route || !b.route || parentsUnknown(a, idx) || parentsUnknown(b, idx) {
		return true
	}
	for _, p := range ap {
		for _, q := range bp {
			same := p.Kind == q.Kind && p.Namespace == q.Namespace && p.Name == q.Name
			if same && (p.SectionName == "" || q.SectionName == "" || p.SectionName == q.SectionName) {
				return true
			}
		}
	}
	return false
}

// parentsUnknown reports whether a route may attach to listeners no object
// read names: it has no parents with listeners, names another kind, or names
// a Gateway or ListenerSet not read. It then meets every listener.
func parentsUnknown(r *record, idx listenerIndex) bool {
	if r.otherParents || len(r.parents) == 0 {
		return true
	}
	return slices.ContainsFunc(r.parents, func(p exposure.ParentRef) bool {
		_, ok := idx[parentKey{p.Kind, p.Namespace, p.Name}]
		return !ok
	})
}

// suggestFacts hands the rules the NodePort range and, for a route, its
// parents among the objects read; no inventory (not ready, no conflicts:
// those are found across the objects read by findConflicts), no claims.
type suggestFacts struct {
	span    policies.PortSpan
	parents map[string][]policies.RouteParent
}

func newSuggestFacts(span policies.PortSpan, records []*record) *suggestFacts {
	f := &suggestFacts{span: span, parents: map[string][]policies.RouteParent{}}
	for _, r := range records {
		if r.route {
			f.parents[r.ref.String()] = r.routeParents
		}
	}
	return f
}

// Facts returns the range, and a route's parents.
func (f *suggestFacts) Facts(in *policies.Input, _ *policies.Config) *policies.Facts {
	out := &policies.Facts{NodePortRange: f.span}
	if in.Kind.Group == exposure.GatewayGroup {
		out.RouteParents = f.parents[Ref{Namespace: in.Namespace, Kind: in.Kind.Kind, Name: in.Name}.String()]
	}
	return out
}

// Claim records nothing.
func (*suggestFacts) Claim(*policies.Input, bool) {}

// Release releases nothing.
func (*suggestFacts) Release(*policies.Input) {}
