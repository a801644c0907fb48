# METADATA
# title: Gateway listener and route hostnames only inside the namespace's granted domains
# description: |
#   The Gateway API counterpart of ingress-hosts, under the same ingressDomains grants:
#   every listener hostname of a Gateway or ListenerSet, and every hostname of an
#   HTTPRoute, GRPCRoute or TLSRoute, must lie in a domain granted to the object's
#   namespace. A listener without a hostname accepts every host and needs a grant
#   with "*" in ingressDomains. A route without hostnames attaches with the
#   hostnames of its parents' listeners (the inventory's input.facts.routeParents;
#   a listener without a hostname gives "*"): those are judged as its own. Where a
#   parent is not known to the inventory, its hostnames cannot be judged: the rule
#   warns, and judges what it knows. With no ingressDomains configured in any grant,
#   hostnames are not restricted.
# custom:
#   appliesTo: [gateways, routes]
#   id: gateway-hosts
package portreeve.rules.gateway_hosts

import data.portreeve.lib.domains
import data.portreeve.lib.grants
import data.portreeve.lib.k8s

deny contains v if {
	data.portreeve.config.ingressDomainsConfigured # first: without domains, no hostname is judged
	some h in hostnames
	not domains.host_granted(h.host, input.grants)
	v := {
		"msg": sprintf("hostname %q%s is not inside a domain granted to %s (granted: %s)%s", [
			h.host, object.get(h, "via", ""), grants.subject, domains.granted_text(input.grants),
			grants.expiry_note(domains.expired_for(h.host, input.grants)),
		]),
		"field": h.field,
		"fix": "use a hostname inside the granted domains, or ask a cluster admin for an ingressDomains grant",
	}
}

deny contains v if {
	data.portreeve.config.ingressDomainsConfigured
	k8s.is_gateway
	some i, l in object.get(k8s.spec, "listeners", [])
	object.get(l, "hostname", "") == ""
	not domains.every_host_granted(input.grants)
	v := {
		"msg": sprintf("listener %q without a hostname accepts every host, which is not granted to %s", [
			object.get(l, "name", ""), grants.subject,
		]),
		"field": sprintf("spec.listeners[%d].hostname", [i]),
		"fix": "set a hostname inside the granted domains (or ask a cluster admin for a grant with ingressDomains [\"*\"])",
	}
}

# The hostnames a route without hostnames inherits from a parent the inventory
# does not hold cannot be judged: say so, whatever the rule's mode.
warn contains v if {
	data.portreeve.config.ingressDomainsConfigured
	input.facts.ready == true
	inherits
	some p in object.get(input.facts, "routeParents", [])
	p.known == false
	v := {
		"msg": sprintf("the route has no hostnames and its parent %s/%s/%s is not known to Portreeve (not created yet, or not seen yet), so the hostnames it inherits from its listeners are not judged", [
			p.namespace, p.kind, p.name,
		]),
		"field": p.field,
		"fix": "set spec.hostnames inside the granted domains, or create the parent first",
	}
}

# inherits is true for a route without hostnames: it takes its listeners'.
inherits if {
	k8s.is_route
	count([h | some h in object.get(k8s.spec, "hostnames", []); h != ""]) == 0
}

# hostnames are the object's listener hostnames (Gateway, ListenerSet) or route
# hostnames, or the hostnames a route without hostnames inherits from its known
# parents' listeners ("*" for a listener without a hostname).
hostnames := [h |
	some i, l in object.get(k8s.spec, "listeners", [])
	host := object.get(l, "hostname", "")
	host != ""
	h := {"host": host, "field": sprintf("spec.listeners[%d].hostname", [i])}
] if k8s.is_gateway

hostnames := [h |
	some i, host in object.get(k8s.spec, "hostnames", [])
	h := {"host": host, "field": sprintf("spec.hostnames[%d]", [i])}
] if {
	k8s.is_route
	not inherits
}

hostnames := [h |
	some p in object.get(input.facts, "routeParents", [])
	p.known == true
	some l in p.listeners
	host := inherited_host(l)
	h := {"host": host, "field": p.field, "via": sprintf(" (inherited from listener %q of %s/%s/%s)", [l.name, p.namespace, p.kind, p.name])}
] if inherits

inherited_host(l) := l.hostname if l.hostname != ""

inherited_host(l) := "*" if l.hostname == ""
