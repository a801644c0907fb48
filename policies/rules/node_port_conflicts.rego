# METADATA
# title: nodePorts not already allocated to another Service
# description: |
#   An explicit nodePort (or healthCheckNodePort) that another Service holds is denied,
#   naming that Service; the apiserver would fail with "provided port is already
#   allocated". Rewrite mode moves it to a free port in the range of the first active
#   grant with nodePorts (by name). Ports that ask for no nodePort get one from that range
#   through the node-ports rule's allocate set. Needs the inventory (input.facts).
# custom:
#   appliesTo: [services]
#   id: node-port-conflicts
package portreeve.rules.node_port_conflicts

import data.portreeve.lib.facts
import data.portreeve.lib.k8s

deny contains v if {
	input.facts.nodePortConflicts # read directly first: this runs on every Service
	k8s.is_service
	some c in facts.node_port_conflicts
	v := {
		"msg": sprintf("nodePort %d is already allocated to %s", [c.port, facts.holder_text(c.holder)]),
		"field": c.field,
		"fix": fix,
	}
}

deny contains v if {
	input.facts.notReady == "deny" # read directly first: this runs on every Service
	k8s.is_service
	k8s.opens_node_ports
	facts.deny_not_ready
	v := {
		"msg": facts.not_ready_msg("node ports"),
		"field": "spec.ports",
		"fix": facts.not_ready_fix,
	}
}

# A taken nodePort moves to a free one in the namespace's range.
rewrite contains op if {
	input.facts.nodePortConflicts # read directly first: this runs on every Service
	k8s.is_service
	some c in facts.node_port_conflicts
	some p in k8s.node_ports
	p.field == c.field
	port := facts.free_node_port(p.index)
	op := {
		"op": "replace",
		"path": sprintf("/spec/ports/%d/nodePort", [p.index]),
		"value": port,
		"reason": sprintf("nodePort %d is already allocated to %s; %d is free in the range of grant %q", [
			c.port, facts.holder_text(c.holder), port, facts.node_port_grant,
		]),
	}
}

fix := sprintf("leave nodePort empty so one is allocated, or pick a free one (free in your range: %s)", [
	facts.ports_text(facts.free_node_ports),
]) if {
	count(facts.free_node_ports) > 0
}

fix := "leave nodePort empty so one is allocated, or pick a free one" if {
	count(facts.free_node_ports) == 0
}
