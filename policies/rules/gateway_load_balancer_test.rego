package portreeve.rules.gateway_load_balancer_test

import data.portreeve.lib.testing
import data.portreeve.rules.gateway_load_balancer

denials(req, grants) := denials_in(req, testing.config(grants))

denials_in(req, cfg) := d if {
	d := gateway_load_balancer.deny with input as testing.resolve(req, cfg)
		with data.portreeve.config as cfg
		with time.now_ns as testing.now_ns
}

gateway(class) := testing.gateway({
	"gatewayClassName": class,
	"listeners": [{"name": "web", "hostname": "a.team-a.example.com", "port": 443, "protocol": "HTTPS"}],
})

lb_grant(lb) := testing.grant({"name": "lb", "namespaces": ["team-a"], "loadBalancer": lb})

allowed_lb := {"allowed": true, "classes": [], "sourceRangesRequired": false}

test_gateway_without_grant_denied if {
	d := denials(gateway("shared"), [])
	testing.fields_of(d) == {"spec.gatewayClassName"}
	testing.messages_of(d) == {`a Gateway of class "shared" provisions a load balancer, which is not granted to namespace "team-a"`}
}

test_gateway_with_load_balancer_grant if {
	count(denials(gateway("shared"), [lb_grant(allowed_lb)])) == 0
}

test_grant_for_another_namespace if {
	other := testing.grant({"name": "lb", "namespaces": ["infra"], "loadBalancer": allowed_lb})
	count(denials(gateway("shared"), [other])) == 1
	count(denials(testing.in_namespace(gateway("shared"), "infra"), [other])) == 0
}

test_conditional_grant_does_not_cover_gateways if {
	some lb in [
		{"allowed": true, "classes": ["internal-nlb"], "sourceRangesRequired": false},
		{"allowed": true, "classes": [], "sourceRangesRequired": true},
	]
	d := denials(gateway("shared"), [lb_grant(lb)])
	testing.any_message_contains(d, `grants lb allow LoadBalancers only with a loadBalancerClass or loadBalancerSourceRanges`)
}

test_internal_class_not_judged if {
	cfg := testing.with_internal_classes(testing.config([]), ["cluster-local"])
	count(denials_in(gateway("cluster-local"), cfg)) == 0
	count(denials_in(gateway("shared"), cfg)) == 1
}

test_expired_grant_named if {
	expired := testing.grant({"name": "old", "namespaces": ["team-a"], "loadBalancer": allowed_lb, "expiresNs": testing.past_ns})
	testing.any_message_contains(denials(gateway("shared"), [expired]), "old")
}

test_listener_sets_and_routes_not_judged if {
	ls := testing.route("ListenerSet", {"parentRef": {"name": "gw"}, "listeners": [{"name": "x", "port": 80, "protocol": "HTTP"}]})
	count(denials(ls, [])) == 0
	count(denials(testing.route("HTTPRoute", {"hostnames": ["a.example.com"]}), [])) == 0
	count(denials(testing.service({"type": "LoadBalancer"}), [])) == 0
}
