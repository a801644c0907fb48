# METADATA
# title: Gateway listener and route hostnames only inside the namespace's granted domains
# description: |
#   The Gateway API counterpart of ingress-hosts, under the same ingressDomains grants:
#   every listener hostname of a Gateway or ListenerSet, and every hostname of an
#   HTTPRoute, GRPCRoute or TLSRoute, must lie in a domain granted to the object's
#   namespace. A listener without a hostname accepts every host and needs a grant
#   with "*" in ingressDomains. A route without hostnames takes its listeners'
#   (already judged on the Gateway) and is not judged here. With no ingressDomains
#   configured in any grant, hostnames are not restricted.
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
		"msg": sprintf("hostname %q is not inside a domain granted to %s (granted: %s)%s", [
			h.host, grants.subject, domains.granted_text(input.grants),
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

# hostnames are the object's listener hostnames (Gateway, ListenerSet) or route hostnames.
hostnames := [h |
	some i, l in object.get(k8s.spec, "listeners", [])
	host := object.get(l, "hostname", "")
	host != ""
	h := {"host": host, "field": sprintf("spec.listeners[%d].hostname", [i])}
] if k8s.is_gateway

hostnames := [h |
	some i, host in object.get(k8s.spec, "hostnames", [])
	h := {"host": host, "field": sprintf("spec.hostnames[%d]", [i])}
] if k8s.is_route
