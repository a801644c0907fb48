# METADATA
# title: Gateways only where LoadBalancers are granted
# description: |
#   A Gateway's implementation provisions infrastructure outside the namespace for it,
#   usually a cloud load balancer, as for a Service of type LoadBalancer: a Gateway
#   needs the same loadBalancer grant. A grant that restricts loadBalancerClass or
#   requires loadBalancerSourceRanges does not cover a Gateway, whose load balancer's
#   class and source ranges Portreeve cannot read. The GatewayClasses the configuration
#   names in gatewayAPI.internalClasses expose nothing outside the cluster: their
#   Gateways are not judged. A ListenerSet adds listeners to a Gateway and provisions
#   nothing of its own: not judged.
# custom:
#   appliesTo: [gateways]
#   id: gateway-load-balancer
package portreeve.rules.gateway_load_balancer

import data.portreeve.lib.grants
import data.portreeve.lib.k8s

deny contains v if {
	input.kind.kind == "Gateway"
	k8s.is_gateway
	not internal_class
	not allowed
	expired := [g.name | some g in input.grants.expired; g.loadBalancer.allowed]
	v := {
		"msg": sprintf("a Gateway of class %q provisions a load balancer, which is not granted to %s%s%s", [
			class, grants.subject, restricted_note, grants.expiry_note(expired),
		]),
		"field": "spec.gatewayClassName",
		"fix": "attach routes to a shared Gateway instead, or ask a cluster admin for a loadBalancer grant (or to list the class in gatewayAPI.internalClasses if it exposes nothing outside the cluster)",
	}
}

class := object.get(k8s.spec, "gatewayClassName", "")

internal_class if class in object.get(object.get(data.portreeve.config, "gatewayAPI", {}), "internalClasses", [])

# allowed: an active grant allows LoadBalancers without conditions a Gateway cannot show.
allowed if {
	some g in input.grants.active
	unconditional(g)
}

unconditional(g) if {
	g.loadBalancer.allowed
	count(g.loadBalancer.classes) == 0
	not g.loadBalancer.sourceRangesRequired
}

# restricted are the grants that allow LoadBalancers only with conditions.
restricted := [g.name |
	some g in input.grants.active
	g.loadBalancer.allowed
	not unconditional(g)
]

restricted_note := sprintf(
	" (grants %s allow LoadBalancers only with a loadBalancerClass or loadBalancerSourceRanges, which a Gateway does not show)",
	[concat(", ", restricted)],
) if {
	count(restricted) > 0
} else := ""
