package portreeve.rules.node_ports_test

import data.portreeve.lib.testing
import data.portreeve.rules.node_ports

denials(req, grants) := d if {
	d := node_ports.deny with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

rewrites(req, grants) := r if {
	r := node_ports.rewrite with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

np_grant(ranges, fields) := testing.grant(object.union(
	{"name": "np", "namespaces": ["team-a"], "nodePorts": testing.port_ranges(ranges)},
	fields,
))

lb_grant := testing.grant({"name": "lb", "namespaces": ["team-a"], "loadBalancer": {"allowed": true}})

node_port_service := testing.service({"type": "NodePort", "ports": [{"port": 80}]})

test_cluster_ip_allowed if {
	count(denials(testing.service({"ports": [{"port": 80}]}), [])) == 0
	count(denials(testing.service({"type": "ClusterIP", "ports": [{"port": 80}]}), [])) == 0
	count(denials(testing.service({}), [])) == 0
}

test_node_port_denied_without_grant if {
	d := denials(node_port_service, [])
	count(d) == 1
	some v in d
	v.msg == `type NodePort opens node ports, which are not granted to namespace "team-a"`
	v.field == "spec.type"
	contains(v.fix, "ClusterIP")
}

test_node_port_allowed_with_grant if {
	count(denials(node_port_service, [np_grant(["30100-30199"], {})])) == 0
}

test_explicit_node_port_inside_range_allowed if {
	req := testing.service({"type": "NodePort", "ports": [
		{"port": 80, "nodePort": 30100},
		{"port": 81, "nodePort": 30199},
	]})
	count(denials(req, [np_grant(["30100-30199"], {})])) == 0
}

test_explicit_node_port_outside_range_denied if {
	req := testing.service({"type": "NodePort", "ports": [
		{"port": 80, "nodePort": 30150},
		{"port": 81, "nodePort": 30200},
	]})
	d := denials(req, [np_grant(["30100-30199"], {})])
	count(d) == 1
	some v in d
	v.field == "spec.ports[1].nodePort"
	v.msg == `nodePort 30200 is outside the ranges granted to namespace "team-a" (30100-30199)`
}

test_load_balancer_allocating_node_ports_denied if {
	d := denials(testing.service({"type": "LoadBalancer", "ports": [{"port": 443}]}), [lb_grant])
	count(d) == 1
	some v in d
	contains(v.msg, "type LoadBalancer with allocateLoadBalancerNodePorts opens node ports")
	contains(v.fix, "allocateLoadBalancerNodePorts: false")
	req := testing.service({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": true, "ports": [{"port": 443}]})
	count(denials(req, [lb_grant])) == 1
}

test_load_balancer_without_node_ports_allowed if {
	req := testing.service({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 443}]})
	count(denials(req, [lb_grant])) == 0
	count(denials(req, [])) == 0
}

test_load_balancer_with_node_port_grant_allowed if {
	req := testing.service({"type": "LoadBalancer", "ports": [{"port": 443, "nodePort": 30443}]})
	count(denials(req, [lb_grant, np_grant(["30400-30499"], {})])) == 0
	count(denials(req, [lb_grant, np_grant(["30000-30099"], {})])) == 1
}

# BUG (lib/k8s.rego opens_node_ports, lines 61-69; node_ports.rego deny): with
# allocateLoadBalancerNodePorts: false the apiserver still allocates every nodePort
# the Service asks for explicitly ("If the caller requests specific NodePorts (by
# specifying a value), those requests will be respected, regardless of this field"),
# so this Service opens node port 30080 on every node, yet no rule denies it.
test_load_balancer_without_allocation_but_explicit_node_port_denied if {
	req := testing.service({
		"type": "LoadBalancer",
		"allocateLoadBalancerNodePorts": false,
		"ports": [{"port": 443, "nodePort": 30080}],
	})
	count(denials(req, [lb_grant])) == 1
}

test_other_kinds_not_judged if {
	req := object.union(node_port_service, {"kind": {"group": "apps", "kind": "Service"}})
	count(denials(req, [])) == 0
	count(denials(testing.pod({"containers": []}), [])) == 0
}

# undefined must not allow: a grant without the nodePorts key grants nothing.
test_grant_missing_node_ports_key_denied if {
	g := json.remove(np_grant(["30000-32767"], {}), ["nodePorts"])
	count(denials(node_port_service, [g])) == 1
}

test_granted_by_namespace_glob if {
	count(denials(node_port_service, [np_grant(["30000-32767"], {"namespaces": ["team-*"]})])) == 0
}

test_grant_for_other_namespace_denied if {
	count(denials(node_port_service, [np_grant(["30000-32767"], {"namespaces": ["team-b"]})])) == 1
}

# A Service has no pod, so a grant to a pod service account never applies to it.
test_pod_service_account_grant_does_not_apply_to_service if {
	grants := [np_grant(["30000-32767"], {"namespaces": [], "serviceAccounts": ["team-a/default"]})]
	count(denials(node_port_service, grants)) == 1
}

test_granted_by_requester_service_account if {
	grants := [np_grant(["30000-32767"], {"namespaces": [], "serviceAccounts": ["flux-system/kustomize-controller"]})]
	req := testing.as_user(node_port_service, "system:serviceaccount:flux-system:kustomize-controller", [])
	count(denials(req, grants)) == 0
	count(denials(node_port_service, grants)) == 1
}

test_granted_by_user_and_group if {
	count(denials(node_port_service, [np_grant(["30000-32767"], {"namespaces": [], "users": ["alice"]})])) == 0
	count(denials(node_port_service, [np_grant(["30000-32767"], {"namespaces": [], "groups": ["dev"]})])) == 0
	count(denials(node_port_service, [np_grant(["30000-32767"], {"namespaces": [], "groups": ["ops"]})])) == 1
}

test_expired_grant_denied_and_named if {
	d := denials(node_port_service, [np_grant(["30000-32767"], {"name": "old", "expiresNs": testing.past_ns})])
	count(d) == 1
	some v in d
	contains(v.msg, "expired")
	contains(v.msg, `"old"`)
}

test_unexpired_grant_allows if {
	count(denials(node_port_service, [np_grant(["30000-32767"], {"expiresNs": testing.future_ns})])) == 0
}

test_rewrite_node_port_to_cluster_ip if {
	req := testing.service({
		"type": "NodePort",
		"externalTrafficPolicy": "Local",
		"ports": [{"port": 80, "nodePort": 30080}, {"port": 443}],
	})
	reason := `node ports are not granted to namespace "team-a"; the Service stays reachable inside the cluster`
	rewrites(req, []) == {
		{"op": "replace", "path": "/spec/type", "value": "ClusterIP", "reason": reason},
		{"op": "remove", "path": "/spec/ports/0/nodePort", "reason": reason},
		{"op": "remove", "path": "/spec/externalTrafficPolicy", "reason": reason},
	}
}

test_rewrite_granted_load_balancer_switches_node_ports_off if {
	req := testing.service({"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443, "nodePort": 30443}]})
	reason := `the LoadBalancer is granted but node ports are not granted to namespace "team-a"`
	rewrites(req, [lb_grant]) == {
		{"op": "add", "path": "/spec/allocateLoadBalancerNodePorts", "value": false, "reason": reason},
		{"op": "remove", "path": "/spec/ports/1/nodePort", "reason": reason},
	}
}

# An ungranted LoadBalancer is the load-balancer rule's to rewrite.
test_no_rewrite_for_ungranted_load_balancer if {
	count(rewrites(testing.service({"type": "LoadBalancer", "ports": [{"port": 80}]}), [])) == 0
}

test_rewrite_moves_out_of_range_node_ports_into_the_range if {
	req := testing.service({"type": "NodePort", "ports": [
		{"port": 80, "nodePort": 30080},
		{"port": 81, "nodePort": 31000},
	]})
	ops := rewrites(req, [np_grant(["30000-30099"], {})])
	count(ops) == 1
	some op in ops
	op.op == "replace"
	op.path == "/spec/ports/1/nodePort"
	op.value >= 30000
	op.value <= 30099
}

test_rewrite_takes_free_ports_from_the_inventory if {
	req := object.union(
		testing.service({"type": "NodePort", "ports": [{"port": 80, "nodePort": 31000}]}),
		{"facts": {"freeNodePorts": {"np": [30042]}}},
	)
	ops := rewrites(req, [np_grant(["30000-30099"], {})])
	{op.value | some op in ops} == {30042}
}

test_allocate_from_a_narrow_range_in_deny_mode if {
	req := testing.service({"type": "NodePort", "ports": [{"port": 80}, {"port": 81, "nodePort": 30001}]})
	ops := node_ports.allocate with input as testing.resolve(req, testing.config([np_grant(["30000-30099"], {})]))
		with data.portreeve.config as testing.config([np_grant(["30000-30099"], {})])
	count(ops) == 1
	some op in ops
	op.path == "/spec/ports/0/nodePort"
	op.value >= 30000
	op.value <= 30099
}

test_no_allocation_when_the_grant_covers_the_cluster_range if {
	req := testing.service({"type": "NodePort", "ports": [{"port": 80}]})
	count(node_ports.allocate) == 0 with input as testing.resolve(req, testing.config([np_grant(["30000-32767"], {})]))
		with data.portreeve.config as testing.config([np_grant(["30000-32767"], {})])
}

test_no_rewrite_when_granted if {
	req := testing.service({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]})
	count(rewrites(req, [np_grant(["30000-30099"], {})])) == 0
	count(rewrites(testing.service({"ports": [{"port": 80}]}), [])) == 0
}

test_dry_run_placeholder_outside_the_cluster_range_is_not_judged if {
	req := object.union(
		testing.service({"type": "NodePort", "ports": [{"port": 80, "nodePort": 32769}]}),
		{"dryRun": true},
	)
	count(node_ports.deny) == 0 with input as testing.resolve(req, testing.config([np_grant(["30000-30099"], {})]))
		with data.portreeve.config as testing.config([np_grant(["30000-30099"], {})])
}

test_health_check_node_port_needs_a_grant if {
	req := testing.service({
		"type": "LoadBalancer",
		"allocateLoadBalancerNodePorts": false,
		"externalTrafficPolicy": "Local",
		"ports": [{"port": 443}],
	})
	d := denials(req, [lb_grant])
	count(d) == 1
	some v in d
	v.msg == `type LoadBalancer with externalTrafficPolicy: Local (its healthCheckNodePort) opens node ports, which are not granted to namespace "team-a"`
	contains(v.fix, "externalTrafficPolicy: Cluster")
	count(denials(req, [lb_grant, np_grant(["30000-32767"], {})])) == 0
}

test_load_balancer_without_node_ports_and_cluster_policy_allowed if {
	req := testing.service({
		"type": "LoadBalancer",
		"allocateLoadBalancerNodePorts": false,
		"externalTrafficPolicy": "Cluster",
		"ports": [{"port": 443}],
	})
	count(denials(req, [lb_grant])) == 0
}
