# METADATA
# title: hostPorts not already held on the same nodes
# description: |
#   A hostPort that another workload already holds on a node this pod can run on
#   (same protocol and port, overlapping hostIP; pods, pod templates such as a
#   DaemonSet's, and NodePort Services, which kube-proxy opens on every node) is denied,
#   naming the holder and suggesting free ports in the granted ranges. A hostPort inside
#   the cluster's NodePort range is denied too: kube-proxy opens every allocated
#   NodePort on every node. Needs the inventory (input.facts).
# custom:
#   appliesTo: [pods]
#   id: host-port-conflicts
package portreeve.rules.host_port_conflicts

import data.portreeve.lib.facts
import data.portreeve.lib.k8s

# The rule runs on every request with a hostPort, so each body starts with a
# direct test of the input that fails at once in the common case.
deny contains v if {
	some c in input.facts.hostPortConflicts
	v := {
		"msg": sprintf("hostPort %d/%s is already held by %s, on nodes this pod can run on%s", [
			c.port, c.protocol, facts.conflict_holders_text(c), range_note(c.port),
		]),
		"field": c.field,
		"fix": fix,
	}
}

deny contains v if {
	some p in input.pod.hostPorts
	input.facts.nodePortRange.from <= p.port # facts.node_port_range, which the engine always sets
	p.port <= input.facts.nodePortRange.to
	not conflicted(p.field)
	v := {
		"msg": sprintf(
			"hostPort %d/%s lies in the cluster's NodePort range %s: kube-proxy opens every allocated NodePort on every node, so it collides with the Service that gets this port",
			[p.port, p.protocol, facts.node_port_range_text],
		),
		"field": p.field,
		"fix": fix,
	}
}

deny contains v if {
	input.facts.notReady == "deny"
	facts.deny_not_ready
	count(k8s.host_ports) > 0
	v := {
		"msg": facts.not_ready_msg("host ports"),
		"field": k8s.host_ports[0].field,
		"fix": facts.not_ready_fix,
	}
}

conflicted(field) if {
	some c in facts.host_port_conflicts
	c.field == field
}

range_note(port) := sprintf(", and it lies in the cluster's NodePort range %s", [facts.node_port_range_text]) if {
	facts.in_node_port_range(port)
}

range_note(port) := "" if not facts.in_node_port_range(port)

fix := sprintf("pick a free hostPort (free in the granted ranges: %s), or select other nodes with a nodeSelector", [
	facts.ports_text(facts.free_host_ports),
]) if {
	count(facts.free_host_ports) > 0
}

fix := sprintf("pick another hostPort outside the NodePort range %s, or select other nodes with a nodeSelector", [
	facts.node_port_range_text,
]) if {
	count(facts.free_host_ports) == 0
}
