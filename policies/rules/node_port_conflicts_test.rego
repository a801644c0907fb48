package portreeve.rules.node_port_conflicts_test

import data.portreeve.lib.testing
import data.portreeve.rules.node_port_conflicts

denials(req, grants) := d if {
	d := node_port_conflicts.deny with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

rewrites(req, grants) := r if {
	r := node_port_conflicts.rewrite with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

np_grant(name) := testing.grant({"name": name, "namespaces": ["team-a"], "nodePorts": testing.port_ranges(["30100-30199"])})

service := testing.service({"type": "NodePort", "ports": [{"port": 80}, {"port": 81, "nodePort": 30150}]})

web_b := testing.holder("team-b", "Service", "web", "nodePort 30150")

taken := {
	"nodePortConflicts": [{"port": 30150, "field": "spec.ports[1].nodePort", "holder": web_b}],
	"freeNodePorts": {"a": [30100, 30101], "b": [30190, 30191]},
}

test_no_conflict_allowed if {
	count(denials(testing.with_facts(service, {"nodePortConflicts": []}), [np_grant("a")])) == 0
	count(denials(service, [np_grant("a")])) == 0
	count(rewrites(service, [np_grant("a")])) == 0
}

test_taken_node_port_denied_naming_the_owner if {
	d := denials(testing.with_facts(service, taken), [np_grant("a")])
	count(d) == 1
	some v in d
	v.field == "spec.ports[1].nodePort"
	v.msg == "nodePort 30150 is already allocated to team-b/Service/web (nodePort 30150)"
	v.fix == "leave nodePort empty so one is allocated, or pick a free one (free in your range: 30100, 30101)"
	some w in denials(testing.with_facts(service, taken), [])
	w.fix == "leave nodePort empty so one is allocated, or pick a free one"
}

test_rewrite_moves_taken_port_to_the_free_port_of_its_index if {
	rewrites(testing.with_facts(service, taken), [np_grant("b"), np_grant("a")]) == {{
		"op": "replace",
		"path": "/spec/ports/1/nodePort",
		"value": 30101,
		"reason": `nodePort 30150 is already allocated to team-b/Service/web (nodePort 30150); 30101 is free in the range of grant "a"`,
	}}
}

test_no_rewrite_without_free_ports if {
	count(rewrites(testing.with_facts(service, {"nodePortConflicts": taken.nodePortConflicts}), [np_grant("a")])) == 0
	count(rewrites(testing.with_facts(service, taken), [])) == 0
	not_ready := object.union(taken, {"ready": false})
	count(rewrites(testing.with_facts(service, not_ready), [np_grant("a")])) == 0
}

test_not_ready if {
	d := denials(testing.with_facts(service, {"ready": false, "notReady": "deny"}), [np_grant("a")])
	count(d) == 1
	some v in d
	contains(v.msg, "inventory of node ports has not synced yet")
	cluster_ip := testing.service({"ports": [{"port": 80}]})
	count(denials(testing.with_facts(cluster_ip, {"ready": false, "notReady": "deny"}), [])) == 0
	count(denials(testing.with_facts(service, {"ready": false, "notReady": "allow"}), [])) == 0
}

test_other_kinds_not_judged if {
	count(denials(testing.with_facts(testing.pod({"containers": []}), taken), [np_grant("a")])) == 0
}
