# METADATA
# title: LoadBalancer Services only where granted
# description: |
#   type LoadBalancer needs a grant with loadBalancer; a grant may restrict the
#   loadBalancerClass values and require loadBalancerSourceRanges. Rewrite mode turns
#   an ungranted LoadBalancer into NodePort where node ports are granted, else into
#   ClusterIP, and removes every field the new type forbids.
# custom:
#   appliesTo: [services]
#   id: load-balancer
package portreeve.rules.load_balancer

import data.portreeve.lib.grants
import data.portreeve.lib.k8s

deny contains v if {
	input.object.spec.type == "LoadBalancer" # k8s.service_type, read directly: this runs on every Service
	k8s.is_service
	not allowed
	count(problems) == 0
	expired := [g.name | some g in input.grants.expired; g.loadBalancer.allowed]
	v := {
		"msg": sprintf("type LoadBalancer is not granted to %s%s", [grants.subject, grants.expiry_note(expired)]),
		"field": "spec.type",
		"fix": "use type ClusterIP with an Ingress, or ask a cluster admin for a loadBalancer grant",
	}
}

deny contains v if {
	input.object.spec.type == "LoadBalancer" # k8s.service_type, read directly: this runs on every Service
	k8s.is_service
	not allowed
	count(problems) > 0
	v := {
		"msg": sprintf("type LoadBalancer does not meet its grant: %s", [concat("; ", sort(problems))]),
		"field": problem_field,
		"fix": "set the loadBalancerClass and loadBalancerSourceRanges the grant asks for",
	}
}

rewrite contains object.union(op, {"reason": reason}) if {
	input.object.spec.type == "LoadBalancer" # k8s.service_type, read directly: this runs on every Service
	k8s.is_service
	not allowed
	reason := sprintf("type LoadBalancer is not granted to %s; changed to %s", [grants.subject, target])
	some op in array.concat(
		[{"op": "replace", "path": "/spec/type", "value": target}],
		array.concat(k8s.remove_fields(forbidden_fields[target]), node_port_ops),
	)
}

allowed if {
	some g in input.grants.active
	g.loadBalancer.allowed
	count(grant_problems(g)) == 0
}

# problems lists why grants that allow LoadBalancers still do not allow this one.
problems contains p if {
	some g in input.grants.active
	g.loadBalancer.allowed
	some p in grant_problems(g)
}

grant_problems(g) := {p |
	count(g.loadBalancer.classes) > 0
	class := object.get(k8s.spec, "loadBalancerClass", "")
	not class in g.loadBalancer.classes
	p := sprintf("grant %q allows loadBalancerClass %s, not %q", [g.name, concat(", ", g.loadBalancer.classes), class])
} | {p |
	g.loadBalancer.sourceRangesRequired
	count(object.get(k8s.spec, "loadBalancerSourceRanges", [])) == 0
	p := sprintf("grant %q requires loadBalancerSourceRanges", [g.name])
}

problem_field := "spec.loadBalancerClass" if {
	some p in problems
	contains(p, "loadBalancerClass")
} else := "spec.loadBalancerSourceRanges"

node_ports_granted if {
	some g in input.grants.active
	count(g.nodePorts) > 0
}

target := "NodePort" if node_ports_granted

target := "ClusterIP" if not node_ports_granted

lb_fields := [
	"allocateLoadBalancerNodePorts", "loadBalancerClass", "loadBalancerSourceRanges",
	"loadBalancerIP", "healthCheckNodePort",
]

forbidden_fields := {
	"NodePort": lb_fields,
	"ClusterIP": array.concat(lb_fields, ["externalTrafficPolicy"]),
}

# A ClusterIP Service has no node ports. A NodePort keeps its nodePorts: the
# node-ports rule judges (and allocates or moves) them.
node_port_ops := k8s.remove_node_ports(k8s.node_ports) if target == "ClusterIP"

node_port_ops := [] if target == "NodePort"
