# METADATA
# title: NodePorts only where granted, inside the grant's ranges
# description: |
#   type NodePort needs a grant with nodePorts, and so does type LoadBalancer unless
#   allocateLoadBalancerNodePorts is false and externalTrafficPolicy is not Local (which
#   implies a healthCheckNodePort). Explicit nodePort values must lie in the
#   granted ranges. Rewrite mode turns a NodePort Service into ClusterIP, switches a
#   granted LoadBalancer's node ports off, and drops out-of-range nodePort values.
# custom:
#   appliesTo: [services]
#   id: node-ports
package portreeve.rules.node_ports

import data.portreeve.lib.grants
import data.portreeve.lib.k8s

deny contains v if {
	input.object.spec.type in {"NodePort", "LoadBalancer"} # read directly first: this runs on every Service
	k8s.is_service
	k8s.opens_node_ports
	not granted
	expired := [g.name | some g in input.grants.expired; count(g.nodePorts) > 0]
	v := {
		"msg": sprintf("%s opens node ports, which are not granted to namespace %q%s", [
			what, input.namespace, grants.expiry_note(expired),
		]),
		"field": "spec.type",
		"fix": fix,
	}
}

deny contains v if {
	input.object.spec.type in {"NodePort", "LoadBalancer"} # read directly first: this runs on every Service
	k8s.is_service
	k8s.opens_node_ports
	granted
	some p in out_of_range
	v := {
		"msg": sprintf("nodePort %d is outside the ranges granted to %s (%s)", [p.port, grants.subject, ranges_text]),
		"field": p.field,
		"fix": "leave nodePort empty so one is allocated, or pick one inside the granted ranges",
	}
}

rewrite contains object.union(op, {"reason": reason}) if {
	input.object.spec.type == "NodePort" # k8s.service_type, read directly
	k8s.is_service
	not granted
	reason := sprintf("node ports are not granted to %s; the Service stays reachable inside the cluster", [grants.subject])
	some op in array.concat(
		[{"op": "replace", "path": "/spec/type", "value": "ClusterIP"}],
		array.concat(k8s.remove_node_ports(k8s.node_ports), k8s.remove_fields(["externalTrafficPolicy", "healthCheckNodePort"])),
	)
}

rewrite contains object.union(op, {"reason": reason}) if {
	input.object.spec.type == "LoadBalancer" # k8s.service_type, read directly: this runs on every Service
	k8s.is_service
	k8s.service_type == "LoadBalancer"
	k8s.opens_node_ports
	not granted
	load_balancer_granted
	reason := sprintf("the LoadBalancer is granted but node ports are not granted to %s", [grants.subject])
	some op in array.concat(
		[{"op": "add", "path": "/spec/allocateLoadBalancerNodePorts", "value": false}],
		k8s.remove_node_ports(k8s.node_ports),
	)
}

rewrite contains op if {
	input.object.spec.type in {"NodePort", "LoadBalancer"} # read directly first: this runs on every Service
	k8s.is_service
	k8s.opens_node_ports
	granted
	some p in out_of_range
	op := {
		"op": "replace",
		"path": sprintf("/spec/ports/%d/nodePort", [p.index]),
		"value": pick(p.index),
		"reason": sprintf("nodePort %d is outside the ranges granted to %s (%s)", [p.port, grants.subject, ranges_text]),
	}
}

# allocate: where the granted ranges are narrower than the cluster's NodePort
# range, a port without nodePort gets one from the namespace's own range, in
# every mode but off (the apiserver would pick from the whole cluster range).
allocate contains op if {
	input.object.spec.type in {"NodePort", "LoadBalancer"} # read directly first: this runs on every Service
	k8s.is_service
	k8s.opens_node_ports
	granted
	not covers_cluster_range
	some i, port in object.get(k8s.spec, "ports", [])
	object.get(port, "nodePort", 0) == 0
	op := {
		"op": "add",
		"path": sprintf("/spec/ports/%d/nodePort", [i]),
		"value": pick(i),
		"reason": sprintf("nodePorts of %s come from its granted ranges (%s)", [grants.subject, ranges_text]),
	}
}

cluster_range := object.get(input, ["facts", "nodePortRange"], {"from": 30000, "to": 32767})

covers_cluster_range if {
	some g in input.grants.active
	some r in g.nodePorts
	r.from <= cluster_range.from
	cluster_range.to <= r.to
}

# assign_grant is the first active grant (by name) with node port ranges.
assign_grant := sort([g.name | some g in input.grants.active; count(g.nodePorts) > 0])[0]

assign_ranges := [r | some g in input.grants.active; g.name == assign_grant; some r in g.nodePorts]

# pick chooses the nodePort for port index i: the i-th free port the inventory
# reports for the grant, else a port derived from the Service's name (the
# apiserver's allocator refuses it if taken, and the user can retry).
pick(i) := free[i] if {
	free := object.get(input, ["facts", "freeNodePorts", assign_grant], [])
	count(free) > i
} else := port if {
	r := assign_ranges[0]
	digits := regex.replace(crypto.md5(sprintf("%s/%s/%d", [input.namespace, input.name, i])), "[a-f]", "")
	n := to_number(substring(concat("", [digits, "000000"]), 0, 6))
	port := r.from + ((n + i) % ((r.to - r.from) + 1))
}

granted if {
	some g in input.grants.active
	count(g.nodePorts) > 0
}

load_balancer_granted if {
	some g in input.grants.active
	g.loadBalancer.allowed
}

# A nodePort outside the cluster's range is not the user's choice: the
# allocator refuses those, and a server-side dry run shows a placeholder there.
out_of_range := [p |
	some p in k8s.node_ports
	cluster_range.from <= p.port
	p.port <= cluster_range.to
	not in_granted_range(p.port)
]

in_granted_range(port) if {
	some g in input.grants.active
	k8s.in_ranges(port, "TCP", g.nodePorts)
}

ranges_text := k8s.ranges_text([r | some g in input.grants.active; some r in g.nodePorts])

# health_check_only: a LoadBalancer whose only node port is the
# healthCheckNodePort that externalTrafficPolicy: Local implies.
health_check_only if {
	input.object.spec.type == "LoadBalancer"
	object.get(input.object.spec, "allocateLoadBalancerNodePorts", true) == false
	count(k8s.node_ports) == 0
}

what := "type LoadBalancer with externalTrafficPolicy: Local (its healthCheckNodePort)" if {
	health_check_only
} else := {
	"NodePort": "type NodePort",
	"LoadBalancer": "type LoadBalancer with allocateLoadBalancerNodePorts",
}[input.object.spec.type]

fix := "set externalTrafficPolicy: Cluster, or ask a cluster admin for a nodePorts grant" if {
	health_check_only
} else := {
	"NodePort": "use type ClusterIP (and an Ingress), or ask a cluster admin for a nodePorts grant",
	"LoadBalancer": "set allocateLoadBalancerNodePorts: false, or ask a cluster admin for a nodePorts grant",
}[input.object.spec.type]
