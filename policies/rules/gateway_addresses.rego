# METADATA
# title: Gateway addresses only inside granted CIDRs
# description: |
#   A Gateway's spec.addresses ask its implementation for addresses, which can take
#   traffic meant for others as a Service's externalIPs can: they follow the same
#   externalIPs grants. An IPAddress (the default type) must lie in a CIDR granted to
#   the namespace; an address of another type (Hostname, an implementation's own)
#   cannot be checked against CIDRs and is denied unless a grant has "0.0.0.0/0" or "::/0".
# custom:
#   appliesTo: [gateways]
#   id: gateway-addresses
package portreeve.rules.gateway_addresses

import data.portreeve.lib.grants
import data.portreeve.lib.k8s

deny contains v if {
	input.object.spec.addresses # read directly first: most Gateways set none
	k8s.is_gateway
	some i, a in input.object.spec.addresses
	not allowed(a)
	v := {
		"msg": sprintf("address %q (%s) is not inside a CIDR granted to %s (granted: %s)", [
			object.get(a, "value", ""), address_type(a), grants.subject, granted_text,
		]),
		"field": sprintf("spec.addresses[%d].value", [i]),
		"fix": "remove the address and let the implementation assign one, or ask a cluster admin for an externalIPs grant covering it",
	}
}

address_type(a) := object.get(a, "type", "IPAddress")

allowed(a) if {
	address_type(a) == "IPAddress"
	some g in input.grants.active
	some cidr in g.externalIPs
	net.cidr_contains(cidr, a.value)
}

allowed(a) if {
	address_type(a) != "IPAddress"
	some g in input.grants.active
	some cidr in g.externalIPs
	cidr in {"0.0.0.0/0", "::/0"}
}

cidrs := [c | some g in input.grants.active; some c in g.externalIPs]

granted_text := concat(", ", cidrs) if count(cidrs) > 0

granted_text := "none" if count(cidrs) == 0
