package portreeve.rules.external_ips_test

import data.portreeve.lib.testing
import data.portreeve.rules.external_ips

denials(req, grants) := d if {
	d := external_ips.deny with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

rewrites(req, grants) := r if {
	r := external_ips.rewrite with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

ip_grant(cidrs, fields) := testing.grant(object.union(
	{"name": "ips", "namespaces": ["team-a"], "externalIPs": cidrs},
	fields,
))

with_ips(ips) := testing.service({"ports": [{"port": 80}], "externalIPs": ips})

v4_grant := ip_grant(["203.0.113.0/24"], {})

v6_grant := ip_grant(["2001:db8::/64"], {})

test_no_external_ips_allowed if {
	count(denials(testing.service({"ports": [{"port": 80}]}), [])) == 0
	count(denials(with_ips([]), [])) == 0
}

test_denied_without_grant if {
	d := denials(with_ips(["203.0.113.5"]), [])
	count(d) == 1
	some v in d
	v.msg == `externalIP "203.0.113.5" is not inside a CIDR granted to namespace "team-a" (granted: none)`
	v.field == "spec.externalIPs[0]"
	v.fix != ""
}

test_ipv4_inside_cidr_allowed if {
	count(denials(with_ips(["203.0.113.0", "203.0.113.5", "203.0.113.255"]), [v4_grant])) == 0
}

test_ipv4_outside_cidr_denied if {
	d := denials(with_ips(["203.0.113.5", "203.0.114.1", "198.51.100.1"]), [v4_grant])
	testing.fields_of(d) == {"spec.externalIPs[1]", "spec.externalIPs[2]"}
	some v in d
	contains(v.msg, "(granted: 203.0.113.0/24)")
}

test_ipv6_inside_cidr_allowed if {
	count(denials(with_ips(["2001:db8::1", "2001:db8:0:0:ffff::1"]), [v6_grant])) == 0
}

test_ipv6_outside_cidr_denied if {
	d := denials(with_ips(["2001:db8::1", "2001:db8:1::1", "fe80::1"]), [v6_grant])
	testing.fields_of(d) == {"spec.externalIPs[1]", "spec.externalIPs[2]"}
}

test_address_families_do_not_mix if {
	count(denials(with_ips(["2001:db8::1"]), [ip_grant(["0.0.0.0/0"], {})])) == 1
	count(denials(with_ips(["203.0.113.5"]), [ip_grant(["2001:db8::/32"], {})])) == 1
}

# An invalid address makes net.cidr_contains fail; that must deny, not allow.
test_invalid_ip_denied if {
	grants := [ip_grant(["0.0.0.0/0", "::/0"], {})]
	d := denials(with_ips(["not-an-ip", "203.0.113.5", "300.1.1.1", ""]), grants)
	testing.fields_of(d) == {"spec.externalIPs[0]", "spec.externalIPs[2]", "spec.externalIPs[3]"}
}

test_granted_cidrs_of_several_grants_add_up if {
	grants := [v4_grant, ip_grant(["2001:db8::/64"], {"name": "v6"})]
	count(denials(with_ips(["203.0.113.5", "2001:db8::5"]), grants)) == 0
}

test_load_balancer_ip_checked if {
	req := testing.service({"type": "LoadBalancer", "loadBalancerIP": "198.51.100.7", "ports": [{"port": 80}]})
	d := denials(req, [v4_grant])
	count(d) == 1
	some v in d
	v.field == "spec.loadBalancerIP"
	v.msg == concat("", [
		`loadBalancerIP "198.51.100.7" is not inside a CIDR granted to namespace "team-a"`,
		" (granted: 203.0.113.0/24)",
	])
	ok := testing.service({"type": "LoadBalancer", "loadBalancerIP": "203.0.113.7", "ports": [{"port": 80}]})
	count(denials(ok, [v4_grant])) == 0
}

test_invalid_load_balancer_ip_denied if {
	req := testing.service({"type": "LoadBalancer", "loadBalancerIP": "lb.example.com", "ports": [{"port": 80}]})
	count(denials(req, [ip_grant(["0.0.0.0/0", "::/0"], {})])) == 1
}

test_empty_load_balancer_ip_allowed if {
	req := testing.service({"type": "LoadBalancer", "loadBalancerIP": "", "ports": [{"port": 80}]})
	count(denials(req, [])) == 0
}

test_other_kinds_not_judged if {
	req := testing.ingress({"externalIPs": ["198.51.100.1"]})
	count(denials(req, [])) == 0
}

test_granted_by_namespace_glob if {
	count(denials(with_ips(["203.0.113.5"]), [ip_grant(["203.0.113.0/24"], {"namespaces": ["team-[ab]"]})])) == 0
}

test_grant_for_other_namespace_denied if {
	count(denials(with_ips(["203.0.113.5"]), [ip_grant(["203.0.113.0/24"], {"namespaces": ["team-b"]})])) == 1
}

test_pod_service_account_grant_does_not_apply_to_service if {
	grants := [ip_grant(["203.0.113.0/24"], {"namespaces": [], "serviceAccounts": ["team-a/default"]})]
	count(denials(with_ips(["203.0.113.5"]), grants)) == 1
}

test_granted_by_requester_service_account if {
	grants := [ip_grant(["203.0.113.0/24"], {"namespaces": [], "serviceAccounts": ["team-a/deployer"]})]
	req := testing.as_user(with_ips(["203.0.113.5"]), "system:serviceaccount:team-a:deployer", [])
	count(denials(req, grants)) == 0
	count(denials(with_ips(["203.0.113.5"]), grants)) == 1
}

test_granted_by_user_and_group if {
	req := with_ips(["203.0.113.5"])
	count(denials(req, [ip_grant(["203.0.113.0/24"], {"namespaces": [], "users": ["alice"]})])) == 0
	count(denials(req, [ip_grant(["203.0.113.0/24"], {"namespaces": [], "groups": ["dev"]})])) == 0
	count(denials(req, [ip_grant(["203.0.113.0/24"], {"namespaces": [], "users": ["bob"]})])) == 1
	count(denials(req, [ip_grant(["203.0.113.0/24"], {"namespaces": [], "groups": ["ops"]})])) == 1
}

test_expired_grant_denied if {
	d := denials(with_ips(["203.0.113.5"]), [ip_grant(["203.0.113.0/24"], {"expiresNs": testing.past_ns})])
	count(d) == 1
	some v in d
	contains(v.msg, "(granted: none)")
}

test_unexpired_grant_allows if {
	count(denials(with_ips(["203.0.113.5"]), [ip_grant(["203.0.113.0/24"], {"expiresNs": testing.future_ns})])) == 0
}

# BUG (external_ips.rego deny, lines 21-46): unlike host-network, host-ports,
# node-ports and load-balancer, the message never says that a grant which would
# have allowed the address has expired (no grants.expiry_note).
test_expired_grant_message_mentions_expired if {
	grants := [ip_grant(["203.0.113.0/24"], {"name": "old", "expiresNs": testing.past_ns})]
	d := denials(with_ips(["203.0.113.5"]), grants)
	some v in d
	contains(v.msg, "expired")
}

test_rewrite_keeps_granted_addresses if {
	rewrites(with_ips(["203.0.113.5", "198.51.100.1", "2001:db8::1"]), [v4_grant]) == {{
		"op": "replace",
		"path": "/spec/externalIPs",
		"value": ["203.0.113.5"],
		"reason": `externalIPs 198.51.100.1, 2001:db8::1 are not granted to namespace "team-a"`,
	}}
}

test_rewrite_removes_all_when_none_granted if {
	rewrites(with_ips(["198.51.100.1"]), [v4_grant]) == {{
		"op": "remove",
		"path": "/spec/externalIPs",
		"reason": `externalIPs 198.51.100.1 are not granted to namespace "team-a"`,
	}}
}

test_rewrite_removes_load_balancer_ip if {
	req := testing.service({"type": "LoadBalancer", "loadBalancerIP": "198.51.100.7", "ports": [{"port": 80}]})
	rewrites(req, [v4_grant]) == {{
		"op": "remove",
		"path": "/spec/loadBalancerIP",
		"reason": `loadBalancerIP "198.51.100.7" is not granted`,
	}}
}

test_no_rewrite_when_granted if {
	count(rewrites(with_ips(["203.0.113.5"]), [v4_grant])) == 0
	count(rewrites(testing.service({"ports": [{"port": 80}]}), [])) == 0
}
