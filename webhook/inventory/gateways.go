package inventory

import (
	"slices"
	"time"

	"github.com/portreeve/portreeve/policies"
)

// Gateway API parents. A route without hostnames attaches with the
// hostnames of its parents' listeners: the index keeps the listeners of
// every Gateway and ListenerSet (their claims), the routes without
// hostnames by each parent they name (inheriting), and for each such route
// the claims on the hostnames it inherits (derived), indexed among the
// hosts like any other claim. When a parent's listeners change, the
// derived claims of its routes are made again (settleLocked). A listener
// without a hostname gives "*": every host, judged by gateway-hosts, which
// in the host index meets only other "*" claims (an Ingress rule without a
// host claims nothing either).

// everyHost is the hostname a listener without one gives its routes.
const everyHost = "*"

// listenersOf returns the listeners of a Gateway or ListenerSet: of its
// admitted update while that is pending, else of what the informers show;
// false when the index holds no such object.
func (x *Index) listenersOf(k objectKey) ([]listener, bool) {
	if c, ok := x.pending[k]; ok && len(c.listeners) > 0 {
		return c.listeners, true
	}
	if c, ok := x.objects[k]; ok && len(c.listeners) > 0 {
		return c.listeners, true
	}
	return nil, false
}

// selects reports whether the parentRef p attaches to listener l: the one
// its sectionName names, else those on its port, else every listener.
func (p parentRef) selects(l listener) bool {
	if p.section != "" {
		return l.name == p.section
	}
	return p.port == 0 || l.port == p.port
}

// inherited lists the hostnames the parentRef p gives a route without
// hostnames, each with the listener it comes from; known is false when the
// index holds no such parent.
func (x *Index) inherited(p parentRef) (ls []listener, known bool) {
	all, known := x.listenersOf(p.key)
	for _, l := range all {
		if p.selects(l) {
			ls = append(ls, l)
		}
	}
	return ls, known
}

// addGatewayParts records what a Gateway, ListenerSet or route adds beyond
// its hosts: a parent's listeners changed (its routes' derived claims are
// made again when the index settles), or a route without hostnames
// inherits from its parents.
func (x *Index) addGatewayParts(c *claims) {
	if len(c.listeners) > 0 {
		x.dirty = append(x.dirty, c.key)
	}
	if len(c.inherit) == 0 {
		return
	}
	for _, p := range c.parents {
		if x.inheriting[p.key] == nil {
			x.inheriting[p.key] = members{}
		}
		x.inheriting[p.key][c] = struct{}{}
	}
	x.derive(c)
}

func (x *Index) removeGatewayParts(c *claims) {
	if len(c.listeners) > 0 {
		x.dirty = append(x.dirty, c.key)
	}
	if len(c.inherit) == 0 {
		return
	}
	for _, p := range c.parents {
		delete(x.inheriting[p.key], c)
		if len(x.inheriting[p.key]) == 0 {
			delete(x.inheriting, p.key)
		}
	}
	if d, ok := x.derived[c]; ok {
		x.removeHosts(d)
		delete(x.derived, c)
	}
}

// derive makes (again) the claims of route c on the hostnames it inherits
// from its parents' listeners now, and indexes them.
func (x *Index) derive(c *claims) {
	if old, ok := x.derived[c]; ok {
		x.removeHosts(old)
		delete(x.derived, c)
	}
	d := &claims{
		key: c.key, owner: c.owner, resourceVersion: c.resourceVersion, route: true, parents: c.parents,
		otherParents: c.otherParents, pending: c.pending, tentative: c.tentative, reserved: c.reserved,
		expires: c.expires, gen: c.gen,
	}
	d.hosts = x.inheritedHosts(c)
	if len(d.hosts) == 0 {
		return
	}
	x.derived[c] = d
	x.addHosts(d)
}

// inheritedHosts lists the hosts and paths route c, which has no hostnames
// of its own, claims through its parents' listeners as the index knows them.
func (x *Index) inheritedHosts(c *claims) []hostPath {
	var out []hostPath
	for _, p := range c.parents {
		ls, _ := x.inherited(p)
		for _, l := range ls {
			for _, h := range c.inherit {
				hp := hostPath{host: hostnameOf(l), path: h.path, prefix: h.prefix}
				if !slices.Contains(out, hp) {
					out = append(out, hp)
				}
			}
		}
	}
	return out
}

// inheritedHostsOf is inheritedHosts under the index's read lock.
func (x *Index) inheritedHostsOf(c *claims) []hostPath {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.inheritedHosts(c)
}

func hostnameOf(l listener) string {
	if l.hostname == "" {
		return everyHost
	}
	return l.hostname
}

// settleLocked makes again the derived claims of the routes whose parents'
// listeners changed. Every write to the index ends with it.
func (x *Index) settleLocked() {
	for len(x.dirty) > 0 {
		k := x.dirty[0]
		x.dirty = x.dirty[1:]
		for c := range x.inheriting[k] {
			x.derive(c)
		}
	}
	x.dirty = nil
}

// hostsOf returns the claims c holds on hosts: its own, or for a route
// without hostnames those it inherits.
func (x *Index) hostsOf(c *claims) *claims {
	if d, ok := x.derived[c]; ok {
		return d
	}
	return c
}

// routeParentFacts lists the route's parents with the listeners each
// selects, as the rules see them (policies.Facts.RouteParents).
func (x *Index) routeParentFacts(req *request) []policies.RouteParent {
	var out []policies.RouteParent
	for _, p := range req.parents {
		ls, known := x.inherited(p)
		rp := policies.RouteParent{
			Field: p.field, Kind: p.key.kind, Namespace: p.key.namespace, Name: p.key.name,
			SectionName: p.section, Known: known, Listeners: []policies.ParentListener{},
		}
		for _, l := range ls {
			rp.Listeners = append(rp.Listeners, policies.ParentListener{Name: l.name, Hostname: l.hostname})
		}
		out = append(out, rp)
	}
	return out
}

// routeHost is one host and path a route request claims, and the parents
// it claims it through (one, for an inherited hostname).
type routeHost struct {
	hostPath
	parents []parentRef
	via     string
}

// routeHosts lists what a route request claims: its hostnames through all
// its parents, or (without hostnames) each hostname it inherits through
// the parent that gives it.
func (x *Index) routeHosts(req *request) []routeHost {
	var out []routeHost
	for _, h := range req.hosts {
		out = append(out, routeHost{hostPath: h, parents: req.parents})
	}
	for _, p := range req.parents {
		ls, _ := x.inherited(p)
		for _, l := range ls {
			via := "listener " + l.name + " of " + p.key.namespace + "/" + p.key.kind + "/" + p.key.name
			for _, h := range req.inherit {
				hp := hostPath{host: hostnameOf(l), path: h.path, prefix: h.prefix, field: p.field}
				out = append(out, routeHost{hostPath: hp, parents: []parentRef{p}, via: via})
			}
		}
	}
	return out
}

// routeFilter returns which holders a route request that claims through
// parents meets: every Ingress (routes and Ingresses often share one
// proxy), and the routes that can attach to one of the same listeners.
func (x *Index) routeFilter(req *request, parents []parentRef) func(*claims) bool {
	self := &claims{route: true, parents: parents, otherParents: req.otherParents}
	return func(c *claims) bool { return x.routesMeet(self, c) }
}

// parentsUnknown reports whether a route may attach to listeners the index
// cannot name: it has no parents with listeners, names something else, or
// names a Gateway or ListenerSet the index does not hold. It then meets
// every listener.
func (x *Index) parentsUnknown(other bool, parents []parentRef) bool {
	if other || len(parents) == 0 {
		return true
	}
	for _, p := range parents {
		if _, ok := x.listenersOf(p.key); !ok {
			return true
		}
	}
	return false
}

// parentsMeet reports whether two routes can attach to one listener: the
// same Gateway (or ListenerSet), and the same sectionName or none on
// either side (a port is not compared: the safe side).
func parentsMeet(a, b []parentRef) bool {
	for _, p := range a {
		for _, q := range b {
			if p.key == q.key && (p.section == "" || q.section == "" || p.section == q.section) {
				return true
			}
		}
	}
	return false
}

// routeConflicts adds to f the hosts of a route request that another
// namespace's Ingress, or route on one of the same listeners, claims.
func (x *Index) routeConflicts(req *request, now time.Time, f *policies.Facts) {
	f.RouteParents = x.routeParentFacts(req)
	for _, h := range x.routeHosts(req) {
		holders, n := x.hostHolders(req, h.hostPath, now, maxHolders, x.routeFilter(req, h.parents))
		if n > 0 {
			f.IngressConflicts = append(f.IngressConflicts, policies.IngressConflict{
				Host: h.host, Path: h.path, Field: h.field, Via: h.via, Holders: holders, HolderCount: n,
			})
		}
	}
}

// routesMeet reports whether two holders of one host can meet: unless both
// are routes whose known parents share no listener.
func (x *Index) routesMeet(a, b *claims) bool {
	if !a.route || !b.route || x.parentsUnknown(a.otherParents, a.parents) || x.parentsUnknown(b.otherParents, b.parents) {
		return true
	}
	return parentsMeet(a.parents, b.parents)
}
