# METADATA
# title: hostPorts only in granted ranges
# description: |
#   Every hostPort of every container (init, regular, ephemeral) must lie in a granted
#   range for its protocol. On hostNetwork pods every containerPort is a hostPort.
#   Rewrite mode removes a forbidden hostPort and keeps the containerPort.
# custom:
#   appliesTo: [pods]
#   id: host-ports
package portreeve.rules.host_ports

import data.portreeve.lib.grants
import data.portreeve.lib.k8s

# The rule runs on every request with a hostPort, so it is written for the
# interpreter: it reads the input (k8s.host_ports, grants.active) directly,
# spells grants.subject out, and computes the message parts only for a denial.
deny contains v if {
	some p in input.pod.hostPorts
	not allowed(p)
	v := {
		"msg": sprintf("hostPort %d/%s of container %q is not in a range granted to namespace %q (granted: %s)%s", [
			p.port, p.protocol, p.container, input.namespace, granted_text, expiry_note(p),
		]),
		"field": p.field,
		"fix": "drop the hostPort and expose the pod through a Service, or ask a cluster admin for a grant of this port",
	}
}

# On a hostNetwork pod the port cannot be removed: the pod binds it anyway.
rewrite contains op if {
	not k8s.host_network
	some p in input.pod.hostPorts
	not allowed(p)
	op := {
		"op": "remove",
		"path": p.pointer,
		"reason": sprintf("hostPort %d/%s is not granted; the containerPort stays reachable inside the cluster", [
			p.port, p.protocol,
		]),
	}
}

allowed(p) if {
	some g in input.grants.active
	some r in g.hostPorts
	r.from <= p.port
	p.port <= r.to
	r.protocol in {"", p.protocol}
}

# granted_text lists the granted ranges for a message (k8s.ranges_text, spelled
# out so that a request without grants needs no comprehension).
granted_text := concat(", ", [r.text | some g in input.grants.active; some r in g.hostPorts]) if {
	some g in input.grants.active
	count(g.hostPorts) > 0
} else := "none"

# expiry_note names the expired grants that would have allowed the port.
expiry_note(p) := "" if {
	count(input.grants.expired) == 0
} else := grants.expiry_note([g.name | some g in input.grants.expired; k8s.in_ranges(p.port, p.protocol, g.hostPorts)])
