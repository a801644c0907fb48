package portreeve.rules.gateway_hosts_test

import data.portreeve.lib.testing
import data.portreeve.rules.gateway_hosts

denials(req, grants) := d if {
	d := gateway_hosts.deny with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

domain_grant(domains) := testing.grant({"name": "web", "namespaces": ["team-a"], "ingressDomains": domains})

wildcard_grant := domain_grant(["*.team-a.example.com"])

other_team := testing.grant({"name": "team-b", "namespaces": ["team-b"], "ingressDomains": ["*.team-b.example.com"]})

listener(name, host) := {"name": name, "hostname": host, "port": 443, "protocol": "HTTPS"}

gateway(listeners) := testing.gateway({"gatewayClassName": "shared", "listeners": listeners})

http_route(hosts) := testing.route("HTTPRoute", {"parentRefs": [{"name": "gw", "namespace": "infra"}], "hostnames": hosts})

test_no_domains_configured_allows_everything if {
	count(denials(gateway([{"name": "all", "port": 80, "protocol": "HTTP"}]), [])) == 0
	count(denials(http_route(["www.example.org"]), [])) == 0
}

test_listener_hostname_outside_denied if {
	d := denials(gateway([listener("a", "a.team-a.example.com"), listener("b", "bank.example.com")]), [wildcard_grant])
	count(d) == 1
	some v in d
	v.field == "spec.listeners[1].hostname"
	v.msg == `hostname "bank.example.com" is not inside a domain granted to namespace "team-a" (granted: *.team-a.example.com)`
}

test_wildcard_listener_hostname if {
	count(denials(gateway([listener("a", "*.team-a.example.com")]), [wildcard_grant])) == 0
	count(denials(gateway([listener("a", "*.example.com")]), [wildcard_grant])) == 1
}

test_listener_without_hostname_needs_every_host if {
	gw := gateway([{"name": "all", "port": 80, "protocol": "HTTP"}])
	d := denials(gw, [wildcard_grant])
	testing.fields_of(d) == {"spec.listeners[0].hostname"}
	some v in d
	contains(v.msg, `listener "all" without a hostname accepts every host`)
	count(denials(gw, [domain_grant(["*"])])) == 0
}

test_every_host_grant_covers_any_hostname if {
	count(denials(gateway([listener("a", "bank.example.com")]), [domain_grant(["*"])])) == 0
	count(denials(http_route(["bank.example.com"]), [domain_grant(["*"])])) == 0
}

test_listener_set if {
	ls := testing.route("ListenerSet", {"parentRef": {"name": "gw"}, "listeners": [listener("x", "x.example.org")]})
	testing.fields_of(denials(ls, [wildcard_grant])) == {"spec.listeners[0].hostname"}
}

test_route_hostnames if {
	count(denials(http_route(["a.team-a.example.com", "*.team-a.example.com"]), [wildcard_grant])) == 0
	d := denials(http_route(["a.team-a.example.com", "a.team-b.example.com"]), [wildcard_grant])
	testing.fields_of(d) == {"spec.hostnames[1]"}
}

test_every_route_kind if {
	some kind in ["HTTPRoute", "GRPCRoute", "TLSRoute"]
	count(denials(testing.route(kind, {"hostnames": ["x.example.org"]}), [wildcard_grant])) == 1
}

test_route_without_hostnames_not_judged if {
	count(denials(http_route([]), [wildcard_grant])) == 0
	count(denials(testing.route("HTTPRoute", {"parentRefs": [{"name": "gw"}]}), [wildcard_grant])) == 0
}

test_grant_for_other_namespace if {
	count(denials(http_route(["a.team-b.example.com"]), [other_team])) == 1
	count(denials(testing.in_namespace(http_route(["a.team-b.example.com"]), "team-b"), [other_team])) == 0
}

test_expired_grant_named if {
	expired := testing.grant({
		"name": "old", "namespaces": ["team-a"], "ingressDomains": ["*.team-a.example.com"],
		"expiresNs": testing.past_ns,
	})
	some v in denials(http_route(["a.team-a.example.com"]), [expired, other_team])
	contains(v.msg, "old")
}

test_other_kinds_not_judged if {
	count(denials(testing.service({"type": "LoadBalancer"}), [wildcard_grant])) == 0
	req := testing.ingress({"rules": [{"host": "x.example.org"}]})
	count(denials(req, [wildcard_grant])) == 0
}

warnings(req, grants) := w if {
	w := gateway_hosts.warn with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

shared_gw := {
	"field": "spec.parentRefs[0]", "kind": "Gateway", "namespace": "infra", "name": "gw", "sectionName": "", "known": true,
	"listeners": [{"name": "web", "hostname": "a.team-a.example.com"}, {"name": "bank", "hostname": "bank.example.com"}],
}

inheriting(parents) := testing.with_facts(
	testing.route("HTTPRoute", {"parentRefs": [{"name": "gw", "namespace": "infra"}]}),
	{"routeParents": parents},
)

test_inherited_hostnames_judged if {
	d := denials(inheriting([shared_gw]), [wildcard_grant])
	testing.fields_of(d) == {"spec.parentRefs[0]"}
	testing.messages_of(d) == {`hostname "bank.example.com" (inherited from listener "bank" of infra/Gateway/gw) is not inside a domain granted to namespace "team-a" (granted: *.team-a.example.com)`}
	count(warnings(inheriting([shared_gw]), [wildcard_grant])) == 0
}

test_inherited_every_host_needs_star if {
	catch_all := object.union(shared_gw, {"listeners": [{"name": "all", "hostname": ""}]})
	some v in denials(inheriting([catch_all]), [wildcard_grant])
	startswith(v.msg, `hostname "*" (inherited from listener "all" of infra/Gateway/gw)`)
	count(denials(inheriting([catch_all]), [domain_grant(["*"])])) == 0
}

test_route_with_hostnames_does_not_inherit if {
	req := testing.with_facts(http_route(["a.team-a.example.com"]), {"routeParents": [shared_gw]})
	count(denials(req, [wildcard_grant])) == 0
}

test_unknown_parent_warns_and_is_not_judged if {
	unknown := {
		"field": "spec.parentRefs[1]", "kind": "Gateway", "namespace": "infra", "name": "later", "sectionName": "",
		"known": false, "listeners": [],
	}
	req := inheriting([shared_gw, unknown])
	testing.fields_of(denials(req, [wildcard_grant])) == {"spec.parentRefs[0]"}
	w := warnings(req, [wildcard_grant])
	testing.fields_of(w) == {"spec.parentRefs[1]"}
	testing.any_message_contains(w, "its parent infra/Gateway/later is not known to Portreeve")

	# Without an inventory (offline) nothing is known and nothing is said.
	offline := testing.route("HTTPRoute", {"parentRefs": [{"name": "gw"}]})
	count(warnings(offline, [wildcard_grant])) == 0
	count(warnings(req, [])) == 0
}
