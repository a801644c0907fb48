package portreeve.rules.host_port_conflicts_test

import data.portreeve.lib.testing
import data.portreeve.rules.host_port_conflicts

denials(req, grants) := d if {
	d := host_port_conflicts.deny with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

hp_grant(name, ranges) := testing.grant({"name": name, "namespaces": ["team-a"], "hostPorts": testing.port_ranges(ranges)})

pod_with(port) := testing.pod({"containers": [testing.container("app", [testing.host_port(port, "TCP")])]})

field := "spec.containers[0].ports[0].hostPort"

daemon_set := testing.holder("monitoring", "DaemonSet", "node-exporter", "hostPort 9100/TCP")

conflict(port, holders) := {"port": port, "protocol": "TCP", "hostIP": "", "field": field, "holders": holders}

test_no_conflict_allowed if {
	count(denials(testing.with_facts(pod_with(9100), {"hostPortConflicts": []}), [])) == 0
	count(denials(pod_with(9100), [])) == 0
}

test_conflict_denied_naming_the_holder if {
	req := testing.with_facts(pod_with(9100), {"hostPortConflicts": [conflict(9100, [daemon_set])]})
	d := denials(req, [])
	count(d) == 1
	some v in d
	v.field == field
	v.msg == "hostPort 9100/TCP is already held by monitoring/DaemonSet/node-exporter (hostPort 9100/TCP), on nodes this pod can run on"
}

test_several_holders_and_pending if {
	pending := object.union(testing.holder("team-b", "Pod", "web", "hostPort 9100/TCP"), {"pending": true})
	req := testing.with_facts(pod_with(9100), {"hostPortConflicts": [conflict(9100, [daemon_set, pending])]})
	some v in denials(req, [])
	contains(v.msg, "monitoring/DaemonSet/node-exporter (hostPort 9100/TCP), team-b/Pod/web (hostPort 9100/TCP, admitted moments ago)")
}

test_fix_suggests_free_ports_of_active_grants_only if {
	req := testing.with_facts(pod_with(9100), {
		"hostPortConflicts": [conflict(9100, [daemon_set])],
		"freeHostPorts": {"a": [9102, 9101], "other": [9999]},
	})
	some v in denials(req, [hp_grant("a", ["9100-9110"])])
	v.fix == "pick a free hostPort (free in the granted ranges: 9101, 9102), or select other nodes with a nodeSelector"
	some w in denials(req, [])
	contains(w.fix, "pick another hostPort outside the NodePort range 30000-32767")
}

test_node_port_range_denied_without_inventory if {
	d := denials(pod_with(30080), [])
	count(d) == 1
	some v in d
	v.field == field
	contains(v.msg, "hostPort 30080/TCP lies in the cluster's NodePort range 30000-32767")
	count(denials(pod_with(29999), [])) == 0
}

test_node_port_range_from_facts if {
	req := testing.with_facts(pod_with(31000), {"nodePortRange": {"from": 31000, "to": 31999}})
	some v in denials(req, [])
	contains(v.msg, "NodePort range 31000-31999")
	count(denials(testing.with_facts(pod_with(30080), {"nodePortRange": {"from": 31000, "to": 31999}}), [])) == 0
}

test_service_holder_named_once_with_range_note if {
	svc := testing.holder("team-a", "Service", "web", "nodePort 30080/TCP on every node")
	d := denials(testing.with_facts(pod_with(30080), {"hostPortConflicts": [conflict(30080, [svc])]}), [])
	count(d) == 1
	some v in d
	v.msg == "hostPort 30080/TCP is already held by team-a/Service/web (nodePort 30080/TCP on every node), on nodes this pod can run on, and it lies in the cluster's NodePort range 30000-32767"
}

test_not_ready if {
	unready := testing.with_facts(pod_with(9100), {"ready": false, "notReady": "deny"})
	d := denials(unready, [])
	count(d) == 1
	some v in d
	contains(v.msg, "inventory of host ports has not synced yet")
	v.field == field
	v.fix == "retry in a few seconds"
	count(denials(testing.with_facts(pod_with(9100), {"ready": false, "notReady": "allow"}), [])) == 0
	count(denials(testing.with_facts(pod_with(9100), {"ready": false}), [])) == 0
	count(denials(testing.with_facts(testing.pod({"containers": []}), {"ready": false, "notReady": "deny"}), [])) == 0
}

test_templates_and_host_network if {
	spec := {"hostNetwork": true, "containers": [testing.container("app", [{"containerPort": 30500, "hostPort": 30500}])]}
	some v in denials(testing.deployment(spec), [])
	v.field == "spec.template.spec.containers[0].ports[0].hostPort"
}

test_holders_beyond_those_listed_are_counted if {
	listed := [testing.holder("team-b", "Pod", sprintf("p%d", [i]), "hostPort 9100/TCP") | some i in numbers.range(1, 6)]
	c := object.union(conflict(9100, listed), {"holderCount": 2000})
	some v in denials(testing.with_facts(pod_with(9100), {"hostPortConflicts": [c]}), [])
	contains(v.msg, "team-b/Pod/p5 (hostPort 9100/TCP) and 1995 more")
	not contains(v.msg, "team-b/Pod/p6")
}
