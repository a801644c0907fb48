package portreeve.rules.ingress_host_conflicts_test

import data.portreeve.lib.testing
import data.portreeve.rules.ingress_host_conflicts

denials(req) := d if {
	d := ingress_host_conflicts.deny with input as testing.resolve(req, testing.config([]))
		with data.portreeve.config as testing.config([])
		with time.now_ns as testing.now_ns
}

ingress := testing.in_namespace(
	testing.ingress({"rules": [{"host": "app.team-a.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix"}]}}]}),
	"team-b",
)

app_a := testing.holder("team-a", "Ingress", "app", "host app.team-a.example.com path /")

claimed := {"ingressConflicts": [{
	"host": "app.team-a.example.com",
	"path": "/",
	"field": "spec.rules[0].host",
	"holders": [app_a],
}]}

test_no_conflict_allowed if {
	count(denials(testing.with_facts(ingress, {"ingressConflicts": []}))) == 0
	count(denials(ingress)) == 0
}

test_claimed_host_denied_naming_the_owner if {
	d := denials(testing.with_facts(ingress, claimed))
	count(d) == 1
	some v in d
	v.field == "spec.rules[0].host"
	v.msg == `host "app.team-a.example.com" path "/" is already claimed in another namespace by team-a/Ingress/app (host app.team-a.example.com path /)`
	contains(v.fix, "another host")
}

test_several_holders if {
	wildcard := testing.holder("team-c", "Ingress", "all", "host *.team-a.example.com path /")
	facts := {"ingressConflicts": [object.union(claimed.ingressConflicts[0], {"holders": [app_a, wildcard]})]}
	some v in denials(testing.with_facts(ingress, facts))
	endswith(v.msg, "team-a/Ingress/app (host app.team-a.example.com path /), team-c/Ingress/all (host *.team-a.example.com path /)")
}

test_not_ready if {
	d := denials(testing.with_facts(ingress, {"ready": false, "notReady": "deny"}))
	count(d) == 1
	some v in d
	contains(v.msg, "inventory of Ingress hosts has not synced yet")
	no_host := testing.ingress({"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}})
	count(denials(testing.with_facts(no_host, {"ready": false, "notReady": "deny"}))) == 0
	count(denials(testing.with_facts(ingress, {"ready": false, "notReady": "allow"}))) == 0
}

test_other_kinds_not_judged if {
	count(denials(testing.with_facts(testing.service({}), claimed))) == 0
}

test_many_holders_are_counted if {
	holders := [testing.holder("team-a", "Ingress", sprintf("app-%d", [i]), "host x path /") | some i in numbers.range(1, 7)]
	facts := {"ingressConflicts": [object.union(claimed.ingressConflicts[0], {"holders": holders})]}
	some v in denials(testing.with_facts(ingress, facts))
	endswith(v.msg, "team-a/Ingress/app-5 (host x path /) and 2 more")
}

route := testing.in_namespace(testing.route("HTTPRoute", {"hostnames": ["app.team-a.example.com"]}), "team-b")

route_claimed := {"ingressConflicts": [{
	"host": "app.team-a.example.com",
	"path": "/",
	"field": "spec.hostnames[0]",
	"holders": [testing.holder("team-a", "HTTPRoute", "app", "host app.team-a.example.com path /")],
}]}

test_route_claimed_host_denied_naming_the_owner if {
	d := denials(testing.with_facts(route, route_claimed))
	count(d) == 1
	some v in d
	v.field == "spec.hostnames[0]"
	startswith(v.msg, `host "app.team-a.example.com" path "/" is already claimed in another namespace by team-a/HTTPRoute/app`)
	count(denials(testing.with_facts(route, {"ingressConflicts": []}))) == 0
}

test_route_not_ready if {
	d := denials(testing.with_facts(route, {"ready": false, "notReady": "deny"}))
	testing.fields_of(d) == {"spec.hostnames[0]"}
	no_hosts := testing.route("HTTPRoute", {"parentRefs": [{"name": "gw"}]})
	count(denials(testing.with_facts(no_hosts, {"ready": false, "notReady": "deny"}))) == 0
}

test_inherited_hostname_names_its_listener if {
	no_hosts := testing.in_namespace(testing.route("HTTPRoute", {"parentRefs": [{"name": "gw", "namespace": "infra"}]}), "team-b")
	facts := {"ingressConflicts": [object.union(route_claimed.ingressConflicts[0], {
		"field": "spec.parentRefs[0]",
		"via": "listener web of infra/Gateway/gw",
	})]}
	d := denials(testing.with_facts(no_hosts, facts))
	testing.fields_of(d) == {"spec.parentRefs[0]"}
	some v in d
	startswith(v.msg, `host "app.team-a.example.com" path "/" (inherited from listener web of infra/Gateway/gw) is already claimed in another namespace by team-a/HTTPRoute/app`)
}
