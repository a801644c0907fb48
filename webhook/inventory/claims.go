// Package inventory keeps Portreeve's inventory of who holds which host port,
// node port and Ingress host in the cluster, fed by informers whose cache
// transforms keep only what the rules need, and computes the facts of one
// admission request from it (policies.Facts). Every lookup goes through a map
// keyed by (protocol, port), node port or host: never a scan of the cluster.
package inventory

import (
	"strconv"
	"strings"
	"time"
)

// objectKey identifies an object: kind, namespace and name.
type objectKey struct {
	kind, namespace, name string
}

// ref is an object in the same namespace: its controller owner, or a holder.
type ref struct {
	kind, name string
}

// nodeScope says on which nodes an object's pods can run, as far as
// Portreeve can tell without watching Nodes.
type nodeScope struct {
	nodeName string
	selector map[string]string
}

// overlaps reports whether two claims can land on the same node: they cannot
// when both name a node and the names differ, or when their node selectors
// give one key different values. Anything else may share a node.
func (a nodeScope) overlaps(b nodeScope) bool {
	if a.nodeName != "" && b.nodeName != "" && a.nodeName != b.nodeName {
		return false
	}
	small, large := a.selector, b.selector
	if len(small) > len(large) {
		small, large = large, small
	}
	for k, v := range small {
		if w, ok := large[k]; ok && w != v {
			return false
		}
	}
	return true
}

// hostPort is one (protocol, hostPort, hostIP) an object binds on its node.
type hostPort struct {
	port     int32
	protocol string
	hostIP   string
	// field is the path in the object under review (request claims only).
	field string
}

// wildcardIP reports whether ip binds every address ("" and 0.0.0.0, as the
// scheduler's NodePorts plugin treats them).
func wildcardIP(ip string) bool { return ip == "" || ip == "0.0.0.0" }

// hostIPsOverlap reports whether two hostIPs of the same (protocol, port) collide.
func hostIPsOverlap(a, b string) bool {
	return wildcardIP(a) || wildcardIP(b) || a == b
}

// nodePort is one node port a Service holds (a port's nodePort, or its
// healthCheckNodePort).
type nodePort struct {
	port     int32
	protocol string
	field    string
}

// hostPath is one Ingress host and path.
type hostPath struct {
	host string
	path string
	// prefix is true for pathType Prefix and ImplementationSpecific (and for
	// a rule without paths, which claims the whole host).
	prefix bool
	field  string
}

// pathsOverlap reports whether two paths of one host can route the same
// request: the same path, or a Prefix path covering the other.
func pathsOverlap(a, b hostPath) bool {
	return a.path == b.path || (a.prefix && prefixCovers(a.path, b.path)) || (b.prefix && prefixCovers(b.path, a.path))
}

// prefixCovers reports whether the Prefix path p matches path q element by
// element, as the Ingress API defines it (/foo covers /foo and /foo/bar,
// not /foobar; a trailing slash is ignored).
func prefixCovers(p, q string) bool {
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return true
	}
	q = strings.TrimSuffix(q, "/")
	return q == p || strings.HasPrefix(q, p+"/")
}

// parentDomain returns the domain below the first label ("a.example.com" ->
// "example.com"); "" for a single label.
func parentDomain(host string) string {
	_, parent, ok := strings.Cut(host, ".")
	if !ok {
		return ""
	}
	return parent
}

// listener is one listener of a Gateway or ListenerSet: routes without
// hostnames inherit its hostname ("" accepts every host).
type listener struct {
	name, hostname string
	port           int32
}

// parentRef is one parent with listeners (a Gateway or ListenerSet) that a
// route attaches to: all its listeners, or the one section names, or those
// on port.
type parentRef struct {
	key     objectKey
	section string
	port    int32
	field   string
}

// claims is everything one object holds. The index stores one per object
// seen by an informer, plus one per pending (just admitted) object.
type claims struct {
	key objectKey
	// owner is the controller owner (empty for none); the holder is the
	// owner's own owner when the index knows it (ReplicaSet -> Deployment).
	owner ref
	// top is the top owner the index names as the holder of the host
	// ports (set when they are indexed).
	top objectKey
	// resourceVersion of the object the informer saw (pending: of the old object).
	resourceVersion string
	scope           nodeScope
	hostPorts       []hostPort
	nodePorts       []nodePort
	hosts           []hostPath
	// listeners are a Gateway's or ListenerSet's.
	listeners []listener
	// route is set for Gateway API routes: parents are the Gateways and
	// ListenerSets they attach to, otherParents is set when a parentRef
	// names anything else (whose listeners are unknown); inherit are the
	// paths a route without hostnames claims on each hostname it inherits
	// from its parents' listeners (the index derives those claims).
	route        bool
	parents      []parentRef
	otherParents bool
	inherit      []hostPath
	// pending claims come from admitted requests; they expire.
	pending   bool
	tentative bool
	// reserved claims were learnt from another replica's reservation
	// (Inventory.Learn), pending too.
	reserved bool
	expires  time.Time
	// gen is the index's generation when the claims were added.
	gen uint64
}

// empty reports whether the object holds nothing.
func (c *claims) empty() bool {
	return len(c.hostPorts) == 0 && len(c.nodePorts) == 0 && len(c.hosts) == 0 && len(c.listeners) == 0 && len(c.inherit) == 0
}

// group is what claims are grouped by in the index: the owner, or the
// object itself. A DaemonSet and its Pods share one group.
func (c *claims) group() objectKey {
	if c.owner.kind != "" {
		return objectKey{kind: c.owner.kind, namespace: c.key.namespace, name: c.owner.name}
	}
	return c.key
}

// live reports whether the claims count at now.
func (c *claims) live(now time.Time) bool {
	return !c.pending || now.Before(c.expires)
}

// newerResourceVersion reports whether resource version a comes after b. They
// are opaque strings in the API; etcd's are integers, which are compared as
// such, anything else counts as newer when different.
func newerResourceVersion(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	if errA != nil || errB != nil {
		return a != b
	}
	return x > y
}
