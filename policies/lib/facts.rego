# METADATA
# title: Cluster facts
# description: |
#   Accessors for input.facts, which the Go side computes from Portreeve's inventory
#   of the cluster (policies/facts.go documents every field): conflicts with what other
#   objects hold, and free ports per grant. Every accessor tolerates missing keys, so a
#   rule judged without an inventory (facts {"ready": false}) sees no conflicts.
package portreeve.lib.facts

import data.portreeve.lib.grants

facts := object.get(input, "facts", {})

# ready is true when the inventory has synced.
ready if facts.ready == true

# deny_not_ready is true when the inventory has not synced yet and serve was told
# (--inventory-not-ready=deny) to refuse what needs it.
deny_not_ready if {
	not ready
	facts.notReady == "deny"
}

# not_ready_msg is the message of a rule that needs the inventory before it synced.
not_ready_msg(what) := sprintf(
	"Portreeve's inventory of %s has not synced yet (it started moments ago), so conflicts cannot be checked",
	[what],
)

not_ready_fix := "retry in a few seconds"

# node_port_range is the cluster's NodePort range (the default one when unknown).
node_port_range := object.get(facts, "nodePortRange", defaults.nodePortRange)

# defaults are the facts the engine sets without an inventory.
defaults := {"ready": false, "nodePortRange": {"from": 30000, "to": 32767}}

in_node_port_range(port) if {
	node_port_range.from <= port
	port <= node_port_range.to
}

node_port_range_text := sprintf("%d-%d", [node_port_range.from, node_port_range.to])

host_port_conflicts := object.get(facts, "hostPortConflicts", [])

node_port_conflicts := object.get(facts, "nodePortConflicts", [])

ingress_conflicts := object.get(facts, "ingressConflicts", [])

# holder_text renders a holder for a message: team-a/Service/web (nodePort 30080/TCP).
holder_text(h) := sprintf("%s/%s/%s (%s%s)", [h.namespace, h.kind, h.name, h.claim, pending_note(h)])

pending_note(h) := ", admitted moments ago" if object.get(h, "pending", false) == true

pending_note(h) := "" if object.get(h, "pending", false) != true

# holders_text lists the first holders_shown holders, and how many more there are.
holders_text(hs) := holders_text_n(hs, count(hs))

# conflict_holders_text is holders_text of a conflict of input.facts, whose
# holders list only the first few of holderCount: the holdersText the engine
# renders the same way, once, or else rendered here.
conflict_holders_text(c) := c.holdersText if is_string(c.holdersText)

conflict_holders_text(c) := holders_text_n(c.holders, max([count(c.holders), object.get(c, "holderCount", 0)])) if {
	not is_string(object.get(c, "holdersText", null))
}

holders_text_n(hs, n) := concat(", ", [holder_text(h) | some h in array.slice(hs, 0, holders_shown)]) if n <= holders_shown

holders_text_n(hs, n) := sprintf("%s and %d more", [
	concat(", ", [holder_text(h) | some h in array.slice(hs, 0, holders_shown)]),
	n - holders_shown,
]) if {
	n > holders_shown
}

holders_shown := 5

# ports_text renders ports for a message: "9101, 9102".
ports_text(ports) := concat(", ", [format_int(p, 10) | some p in ports])

# free_host_ports are the suggested free hostPorts in the ranges of the active grants.
free_host_ports := sort({p |
	some g in grants.active
	some p in object.get(object.get(facts, "freeHostPorts", {}), g.name, [])
})

# node_port_grant is the name of the grant whose range nodePorts are chosen from:
# the first active grant with nodePorts, by name (as the node-ports rule chooses).
node_port_grant := sort([g.name | some g in grants.active; count(g.nodePorts) > 0])[0]

# free_node_ports are the first free ports in node_port_grant's ranges, one for
# each port of the Service: port i of the Service takes free_node_ports[i], so no
# two rules choosing for different ports pick the same one.
default free_node_ports := []

free_node_ports := object.get(object.get(facts, "freeNodePorts", {}), node_port_grant, [])

# free_node_port is the nodePort chosen for the Service's port index i.
free_node_port(i) := free_node_ports[i] if {
	ready
	i < count(free_node_ports)
}
