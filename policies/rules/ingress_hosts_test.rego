package portreeve.rules.ingress_hosts_test

import data.portreeve.lib.testing
import data.portreeve.rules.ingress_hosts

denials(req, grants) := d if {
	d := ingress_hosts.deny with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

domain_grant(domains, fields) := testing.grant(object.union(
	{"name": "web", "namespaces": ["team-a"], "ingressDomains": domains},
	fields,
))

wildcard_grant := domain_grant(["*.team-a.example.com"], {})

class_grant(classes) := testing.grant({"name": "classes", "namespaces": ["team-a"], "ingressClasses": classes})

# A grant naming ingressDomains for another namespace turns host checks on.
other_team := domain_grant(["*.team-b.example.com"], {"name": "team-b", "namespaces": ["team-b"]})

backend := {"service": {"name": "web", "port": {"number": 80}}}

rule(host) := {"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}

# annotated is an Ingress naming its class in the legacy annotation.
annotated(class) := object.union(
	testing.ingress({}),
	{"object": {"metadata": {"annotations": {"kubernetes.io/ingress.class": class}}}},
)

with_hosts(hosts) := testing.ingress({"ingressClassName": "nginx", "rules": [rule(h) | some h in hosts]})

test_no_domains_configured_allows_everything if {
	grants := [testing.grant({"namespaces": ["team-a"], "hostNetwork": true})]
	req := testing.ingress({
		"rules": [rule("www.example.org"), {"http": {"paths": []}}],
		"tls": [{"hosts": ["bank.example"]}],
	})
	count(denials(req, grants)) == 0
	count(denials(req, [])) == 0
}

test_host_outside_granted_domains_denied if {
	d := denials(with_hosts(["www.example.org"]), [wildcard_grant])
	count(d) == 1
	some v in d
	v.field == "spec.rules[0].host"
	v.msg == concat("", [
		`host "www.example.org" is not inside a domain granted to namespace "team-a"`,
		" (granted: *.team-a.example.com)",
	])
	v.fix != ""
}

test_exact_domain if {
	grants := [domain_grant(["app.team-a.example.com"], {})]
	count(denials(with_hosts(["app.team-a.example.com"]), grants)) == 0
	count(denials(with_hosts(["x.app.team-a.example.com"]), grants)) == 1
	count(denials(with_hosts(["team-a.example.com"]), grants)) == 1
}

test_wildcard_covers_names_below if {
	count(denials(with_hosts(["a.team-a.example.com", "x.y.team-a.example.com"]), [wildcard_grant])) == 0
}

test_wildcard_does_not_cover_the_domain_itself if {
	count(denials(with_hosts(["team-a.example.com"]), [wildcard_grant])) == 1
}

test_wildcard_does_not_cover_lookalikes if {
	d := denials(
		with_hosts(["evilteam-a.example.com", "team-a.example.com.evil.example", "a.team-a.example.org"]),
		[wildcard_grant],
	)
	testing.fields_of(d) == {"spec.rules[0].host", "spec.rules[1].host", "spec.rules[2].host"}
}

test_wildcard_ingress_host if {
	count(denials(with_hosts(["*.team-a.example.com"]), [wildcard_grant])) == 0
	count(denials(with_hosts(["*.example.com"]), [wildcard_grant])) == 1
	count(denials(with_hosts(["*.team-a.example.com"]), [domain_grant(["team-a.example.com"], {})])) == 1
}

test_tls_hosts_checked if {
	req := testing.ingress({
		"rules": [rule("a.team-a.example.com")],
		"tls": [{"hosts": ["a.team-a.example.com", "bank.example.com"], "secretName": "tls"}],
	})
	d := denials(req, [wildcard_grant])
	testing.fields_of(d) == {"spec.tls[0].hosts[1]"}
	some v in d
	contains(v.msg, `"bank.example.com"`)
}

test_empty_host_denied_when_domains_configured if {
	req := testing.ingress({"rules": [{"http": {"paths": []}}, rule("")]})
	d := denials(req, [wildcard_grant])
	testing.fields_of(d) == {"spec.rules[0].host", "spec.rules[1].host"}
	some v in d
	contains(v.msg, "claims every host")
}

test_domains_of_other_namespaces_turn_checks_on if {
	d := denials(with_hosts(["a.team-a.example.com"]), [other_team])
	count(d) == 1
	some v in d
	contains(v.msg, "(granted: none)")
}

test_granted_by_namespace_glob if {
	grants := [domain_grant(["*.team-a.example.com"], {"namespaces": ["team-*"]})]
	count(denials(with_hosts(["a.team-a.example.com"]), grants)) == 0
}

test_grant_for_other_namespace_denied if {
	count(denials(with_hosts(["a.team-b.example.com"]), [other_team])) == 1
	count(denials(testing.in_namespace(with_hosts(["a.team-b.example.com"]), "team-b"), [other_team])) == 0
}

test_pod_service_account_grant_does_not_apply_to_ingress if {
	grants := [domain_grant(["*.team-a.example.com"], {"namespaces": [], "serviceAccounts": ["team-a/default"]})]
	count(denials(with_hosts(["a.team-a.example.com"]), grants)) == 1
}

test_granted_by_requester_service_account if {
	grants := [domain_grant(["*.team-a.example.com"], {"namespaces": [], "serviceAccounts": ["team-a/deployer"]})]
	req := with_hosts(["a.team-a.example.com"])
	count(denials(testing.as_user(req, "system:serviceaccount:team-a:deployer", []), grants)) == 0
	count(denials(req, grants)) == 1
}

test_granted_by_user_and_group if {
	req := with_hosts(["a.team-a.example.com"])
	count(denials(req, [domain_grant(["*.team-a.example.com"], {"namespaces": [], "users": ["alice"]})])) == 0
	count(denials(req, [domain_grant(["*.team-a.example.com"], {"namespaces": [], "groups": ["dev"]})])) == 0
	count(denials(req, [domain_grant(["*.team-a.example.com"], {"namespaces": [], "users": ["bob"]})])) == 1
	count(denials(req, [domain_grant(["*.team-a.example.com"], {"namespaces": [], "groups": ["ops"]})])) == 1
}

test_expired_grant_denied if {
	grants := [domain_grant(["*.team-a.example.com"], {"expiresNs": testing.past_ns})]
	d := denials(with_hosts(["a.team-a.example.com"]), grants)
	count(d) == 1
	some v in d
	contains(v.msg, "(granted: none)")
}

test_unexpired_grant_allows if {
	grants := [domain_grant(["*.team-a.example.com"], {"expiresNs": testing.future_ns})]
	count(denials(with_hosts(["a.team-a.example.com"]), grants)) == 0
}

# BUG (ingress_hosts.rego deny, lines 27-38): the message never says that a grant
# which would have covered the host has expired (no grants.expiry_note), unlike
# host-network, host-ports, node-ports and load-balancer.
test_expired_grant_message_mentions_expired if {
	grants := [domain_grant(["*.team-a.example.com"], {"name": "old", "expiresNs": testing.past_ns})]
	some v in denials(with_hosts(["a.team-a.example.com"]), grants)
	contains(v.msg, "expired")
}

test_ingress_class_restriction if {
	grants := [class_grant(["internal", "nginx"])]
	count(denials(testing.ingress({"ingressClassName": "internal"}), grants)) == 0
	d := denials(testing.ingress({"ingressClassName": "public"}), grants)
	count(d) == 1
	some v in d
	v.field == "spec.ingressClassName"
	v.msg == `ingress class "public" is not granted to namespace "team-a" (granted: internal, nginx)`
}

test_ingress_class_from_annotation if {
	grants := [class_grant(["internal"])]
	count(denials(annotated("internal"), grants)) == 0
	count(denials(annotated("public"), grants)) == 1
}

test_ingress_class_name_wins_over_annotation if {
	req := object.union(
		testing.ingress({"ingressClassName": "public"}),
		{"object": {"metadata": {"annotations": {"kubernetes.io/ingress.class": "internal"}}}},
	)
	count(denials(req, [class_grant(["internal"])])) == 1
}

test_missing_ingress_class_denied_when_restricted if {
	d := denials(testing.ingress({}), [class_grant(["internal"])])
	count(d) == 1
	some v in d
	contains(v.msg, `ingress class ""`)
}

test_no_class_restriction_allows_any_class if {
	count(denials(testing.ingress({"ingressClassName": "anything"}), [wildcard_grant])) == 0
}

test_class_grant_for_other_namespace_does_not_restrict if {
	grants := [testing.grant({"namespaces": ["team-b"], "ingressClasses": ["internal"]})]
	count(denials(testing.ingress({"ingressClassName": "public"}), grants)) == 0
}

test_other_kinds_not_judged if {
	req := object.union(with_hosts(["www.example.org"]), {"kind": {"group": "extensions", "version": "v1beta1"}})
	count(denials(req, [wildcard_grant, class_grant(["internal"])])) == 0
	count(denials(testing.service({"rules": [rule("www.example.org")]}), [wildcard_grant])) == 0
}

# BUG (ingress_hosts.rego hosts, lines 15-25): spec.defaultBackend is not looked
# at. An Ingress with only a defaultBackend claims every host just as a rule
# without host does (ingress controllers make it the catch-all backend), yet it
# is allowed while ingressDomains are configured.
test_default_backend_claims_every_host if {
	req := testing.ingress({"ingressClassName": "nginx", "defaultBackend": backend})
	count(denials(req, [wildcard_grant])) == 1
}

# BUG (ingress_hosts.rego line 87): annotation_class reads input.object.metadata
# without a default, so when metadata is absent `class` is undefined and the
# class deny is silently skipped, even for a set ingressClassName (undefined
# allows). The apiserver always sends metadata, so this is defence in depth.
test_class_checked_without_metadata if {
	req := json.remove(testing.ingress({"ingressClassName": "public"}), ["object/metadata"])
	count(denials(req, [class_grant(["internal"])])) == 1
}

test_every_host_grant_allows_an_empty_host if {
	req := testing.ingress({"rules": [rule("")], "defaultBackend": backend})
	count(denials(req, [domain_grant(["*"], {})])) == 0
	count(denials(with_hosts(["anything.example.org"]), [domain_grant(["*"], {})])) == 0
}
