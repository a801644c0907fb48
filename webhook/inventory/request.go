package inventory

import (
	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/policies/exposure"
)

// request is what the object under review claims, read from its exposure
// (policies/exposure, read once by webhook/review).
type request struct {
	claims
	// holder is the top owner the object's claims belong to: another object
	// of the same holder never conflicts with it.
	holder objectKey
	// active is true when the object runs pods now (replicas above zero, a
	// Job not finished, a CronJob not suspended) or is a Service or Ingress:
	// only active objects are recorded as pending claims.
	active bool
	// opensNodePorts is true for NodePort Services, and LoadBalancers that
	// allocate node ports or ask for one.
	opensNodePorts bool
	// servicePorts counts the Service's ports.
	servicePorts int
}

// readRequest extracts the claims of the object in the input.
func readRequest(in *policies.Input) *request {
	x := in.Exposure
	if x == nil {
		return &request{claims: claims{key: objectKey{kind: in.Kind.Kind, namespace: in.Namespace, name: in.Name}}}
	}
	r := &request{claims: *exposureClaims(x, true), active: x.Active}
	r.key = objectKey{kind: in.Kind.Kind, namespace: in.Namespace, name: in.Name}
	// The claims replace those of the stored object, whose version they follow.
	r.resourceVersion = ""
	if in.OldExposure != nil {
		r.resourceVersion = in.OldExposure.ResourceVersion
	}
	if x.Service != nil {
		r.opensNodePorts = x.Service.OpensNodePorts
		r.servicePorts = x.Service.Ports
	}
	r.holder = r.group()
	return r
}

// exposureClaims is what an object claims, from its exposure, active or not
// (a request is judged for what it would hold): the one reading of an object
// for the informers' objects and the requests alike. fields keeps the field
// paths that denials name (requests only).
func exposureClaims(x *exposure.Exposure, fields bool) *claims {
	c := &claims{
		key:             objectKey{kind: x.Kind.Kind, namespace: x.Namespace, name: x.Name},
		resourceVersion: x.ResourceVersion,
		owner:           ownerRef(x.Owner.Kind, x.Owner.Name),
	}
	field := func(f string) string {
		if fields {
			return f
		}
		return ""
	}
	switch {
	case x.Pod != nil:
		for _, hp := range x.Pod.HostPorts {
			if hp.Port > 65535 {
				continue
			}
			c.hostPorts = append(c.hostPorts, hostPort{port: int32(hp.Port), protocol: intern(hp.Protocol), hostIP: hp.HostIP, field: field(hp.Field)})
		}
		if len(c.hostPorts) > 0 {
			c.scope = nodeScope{nodeName: x.Pod.NodeName, selector: x.Pod.NodeSelector}
		}
	case x.Service != nil:
		for _, np := range x.Service.NodePorts {
			c.nodePorts = append(c.nodePorts, nodePort{port: int32(np.Port), protocol: intern(np.Protocol), field: field(np.Field)})
		}
	case x.Ingress != nil:
		for _, h := range x.Ingress.Hosts {
			c.hosts = append(c.hosts, hostPath{host: h.Host, path: h.Path, prefix: h.Prefix, field: field(h.Field)})
		}
	case x.Route != nil:
		// A route's hostnames claim hosts as an Ingress's do: routes and
		// Ingresses often share one proxy.
		for _, h := range x.Route.Hosts {
			c.hosts = append(c.hosts, hostPath{host: h.Host, path: h.Path, prefix: h.Prefix, field: field(h.Field)})
		}
		routeParents(c, x.Route, x.Namespace, fields)
	case x.Gateway != nil:
		for _, l := range x.Gateway.Listeners {
			c.listeners = append(c.listeners, listener{name: l.Name, hostname: l.Hostname, port: int32(min(max(l.Port, 0), 65535))})
		}
	}
	return c
}

// routeParents records the parents of a route in namespace ns, and the
// paths it claims on inherited hostnames when it has none of its own.
func routeParents(c *claims, r *exposure.Route, ns string, fields bool) {
	c.route = true
	for _, p := range r.Parents {
		p = p.Resolved(ns)
		if !p.Listeners() {
			c.otherParents = true
			continue
		}
		ref := parentRef{key: objectKey{kind: intern(p.Kind), namespace: intern(p.Namespace), name: p.Name}, section: p.SectionName,
			port: int32(min(max(p.Port, 0), 65535))}
		if fields {
			ref.field = p.Field
		}
		c.parents = append(c.parents, ref)
	}
	if len(c.parents) == 0 {
		return
	}
	for _, h := range r.Paths {
		c.inherit = append(c.inherit, hostPath{path: h.Path, prefix: h.Prefix})
	}
}
