package portreeve.rules.load_balancer_test

import data.portreeve.lib.testing
import data.portreeve.rules.load_balancer

denials(req, grants) := d if {
	d := load_balancer.deny with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

rewrites(req, grants) := r if {
	r := load_balancer.rewrite with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

lb_grant(lb, fields) := testing.grant(object.union(
	{"name": "lb", "namespaces": ["team-a"], "loadBalancer": object.union({"allowed": true}, lb)},
	fields,
))

lb_service(fields) := testing.service(object.union({"type": "LoadBalancer", "ports": [{"port": 443}]}, fields))

test_other_service_types_allowed if {
	count(denials(testing.service({"ports": [{"port": 80}]}), [])) == 0
	count(denials(testing.service({"type": "NodePort", "ports": [{"port": 80}]}), [])) == 0
	count(denials(testing.service({"type": "ExternalName", "externalName": "db.example.com"}), [])) == 0
}

test_denied_without_grant if {
	d := denials(lb_service({}), [])
	count(d) == 1
	some v in d
	v.msg == `type LoadBalancer is not granted to namespace "team-a"`
	v.field == "spec.type"
	v.fix != ""
}

test_allowed_with_grant if {
	count(denials(lb_service({}), [lb_grant({}, {})])) == 0
}

test_grant_without_load_balancer_denied if {
	grants := [testing.grant({"namespaces": ["team-a"], "nodePorts": testing.port_ranges(["30000-32767"])})]
	count(denials(lb_service({}), grants)) == 1
}

# undefined must not allow: a grant without the loadBalancer key grants nothing.
test_grant_missing_load_balancer_key_denied if {
	g := json.remove(lb_grant({}, {}), ["loadBalancer"])
	count(denials(lb_service({}), [g])) == 1
	h := json.remove(lb_grant({}, {}), ["loadBalancer/allowed"])
	count(denials(lb_service({}), [h])) == 1
}

test_class_restriction if {
	grants := [lb_grant({"classes": ["example.com/internal"]}, {})]
	count(denials(lb_service({"loadBalancerClass": "example.com/internal"}), grants)) == 0
	d := denials(lb_service({"loadBalancerClass": "example.com/public"}), grants)
	count(d) == 1
	some v in d
	v.field == "spec.loadBalancerClass"
	v.msg == concat("", [
		"type LoadBalancer does not meet its grant: ",
		`grant "lb" allows loadBalancerClass example.com/internal, not "example.com/public"`,
	])
}

test_class_restriction_without_class_denied if {
	d := denials(lb_service({}), [lb_grant({"classes": ["example.com/internal"]}, {})])
	count(d) == 1
	some v in d
	contains(v.msg, `not ""`)
}

test_source_ranges_required if {
	grants := [lb_grant({"sourceRangesRequired": true}, {})]
	count(denials(lb_service({"loadBalancerSourceRanges": ["198.51.100.0/24"]}), grants)) == 0
	d := denials(lb_service({}), grants)
	count(d) == 1
	some v in d
	v.field == "spec.loadBalancerSourceRanges"
	v.msg == `type LoadBalancer does not meet its grant: grant "lb" requires loadBalancerSourceRanges`
	count(denials(lb_service({"loadBalancerSourceRanges": []}), grants)) == 1
}

test_all_problems_reported_together if {
	grants := [lb_grant({"classes": ["internal"], "sourceRangesRequired": true}, {})]
	d := denials(lb_service({"loadBalancerClass": "public"}), grants)
	count(d) == 1
	some v in d
	v.field == "spec.loadBalancerClass"
	contains(v.msg, `allows loadBalancerClass internal, not "public"; grant "lb" requires loadBalancerSourceRanges`)
}

test_any_grant_without_problems_allows if {
	grants := [lb_grant({"classes": ["internal"]}, {"name": "strict"}), lb_grant({}, {"name": "open"})]
	count(denials(lb_service({"loadBalancerClass": "public"}), grants)) == 0
}

test_granted_by_namespace_glob if {
	count(denials(lb_service({}), [lb_grant({}, {"namespaces": ["*-a"]})])) == 0
}

test_grant_for_other_namespace_denied if {
	count(denials(lb_service({}), [lb_grant({}, {"namespaces": ["team-b"]})])) == 1
}

# A Service has no pod, so a grant to a pod service account never applies to it.
test_pod_service_account_grant_does_not_apply_to_service if {
	count(denials(lb_service({}), [lb_grant({}, {"namespaces": [], "serviceAccounts": ["team-a/default"]})])) == 1
}

test_granted_by_requester_service_account if {
	grants := [lb_grant({}, {"namespaces": [], "serviceAccounts": ["team-a/deployer"]})]
	req := testing.as_user(lb_service({}), "system:serviceaccount:team-a:deployer", ["system:serviceaccounts"])
	count(denials(req, grants)) == 0
	count(denials(lb_service({}), grants)) == 1
}

test_granted_by_user_and_group if {
	count(denials(lb_service({}), [lb_grant({}, {"namespaces": [], "users": ["alice"]})])) == 0
	count(denials(lb_service({}), [lb_grant({}, {"namespaces": [], "groups": ["dev"]})])) == 0
	req := testing.as_user(lb_service({}), "mallory", ["team-b"])
	count(denials(req, [lb_grant({}, {"namespaces": [], "users": ["alice"]})])) == 1
	count(denials(req, [lb_grant({}, {"namespaces": [], "groups": ["dev"]})])) == 1
}

test_expired_grant_denied_and_named if {
	d := denials(lb_service({}), [lb_grant({}, {"name": "old", "expiresNs": testing.past_ns})])
	count(d) == 1
	some v in d
	contains(v.msg, "expired")
	contains(v.msg, `"old"`)
}

test_unexpired_grant_allows if {
	count(denials(lb_service({}), [lb_grant({}, {"expiresNs": testing.future_ns})])) == 0
}

test_rewrite_to_cluster_ip if {
	req := lb_service({
		"loadBalancerClass": "example.com/lb",
		"loadBalancerIP": "203.0.113.10",
		"externalTrafficPolicy": "Local",
		"healthCheckNodePort": 32000,
		"ports": [{"port": 443, "nodePort": 30443}],
	})
	reason := `type LoadBalancer is not granted to namespace "team-a"; changed to ClusterIP`
	rewrites(req, []) == {
		{"op": "replace", "path": "/spec/type", "value": "ClusterIP", "reason": reason},
		{"op": "remove", "path": "/spec/loadBalancerClass", "reason": reason},
		{"op": "remove", "path": "/spec/loadBalancerIP", "reason": reason},
		{"op": "remove", "path": "/spec/healthCheckNodePort", "reason": reason},
		{"op": "remove", "path": "/spec/externalTrafficPolicy", "reason": reason},
		{"op": "remove", "path": "/spec/ports/0/nodePort", "reason": reason},
	}
}

test_rewrite_to_node_port_where_node_ports_granted if {
	req := lb_service({
		"allocateLoadBalancerNodePorts": true,
		"loadBalancerSourceRanges": ["198.51.100.0/24"],
		"externalTrafficPolicy": "Local",
		"ports": [{"port": 80, "nodePort": 30080}, {"port": 443, "nodePort": 31443}],
	})
	grants := [testing.grant({"namespaces": ["team-a"], "nodePorts": testing.port_ranges(["30000-30999"])})]
	reason := `type LoadBalancer is not granted to namespace "team-a"; changed to NodePort`
	rewrites(req, grants) == {
		{"op": "replace", "path": "/spec/type", "value": "NodePort", "reason": reason},
		{"op": "remove", "path": "/spec/allocateLoadBalancerNodePorts", "reason": reason},
		{"op": "remove", "path": "/spec/loadBalancerSourceRanges", "reason": reason},
	}
}

test_rewrite_when_grant_conditions_unmet if {
	ops := rewrites(lb_service({"loadBalancerClass": "public"}), [lb_grant({"classes": ["internal"]}, {})])
	reason := `type LoadBalancer is not granted to namespace "team-a"; changed to ClusterIP`
	ops == {
		{"op": "replace", "path": "/spec/type", "value": "ClusterIP", "reason": reason},
		{"op": "remove", "path": "/spec/loadBalancerClass", "reason": reason},
	}
}

test_no_rewrite_when_granted if {
	count(rewrites(lb_service({}), [lb_grant({}, {})])) == 0
	count(rewrites(testing.service({"ports": [{"port": 80}]}), [])) == 0
}
