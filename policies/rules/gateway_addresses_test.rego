package portreeve.rules.gateway_addresses_test

import data.portreeve.lib.testing
import data.portreeve.rules.gateway_addresses

denials(req, grants) := d if {
	d := gateway_addresses.deny with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

cidr_grant(cidrs) := testing.grant({"name": "ips", "namespaces": ["team-a"], "externalIPs": cidrs})

gateway(addresses) := testing.gateway({"gatewayClassName": "shared", "addresses": addresses, "listeners": []})

test_no_addresses_allowed if {
	count(denials(testing.gateway({"gatewayClassName": "shared", "listeners": []}), [])) == 0
	count(denials(gateway([]), [])) == 0
}

test_address_inside_granted_cidr if {
	count(denials(gateway([{"value": "203.0.113.7"}]), [cidr_grant(["203.0.113.0/24"])])) == 0
	count(denials(gateway([{"type": "IPAddress", "value": "203.0.113.7"}]), [cidr_grant(["203.0.113.0/24"])])) == 0
}

test_address_outside_denied if {
	d := denials(gateway([{"value": "203.0.113.7"}, {"value": "198.51.100.1"}]), [cidr_grant(["203.0.113.0/24"])])
	testing.fields_of(d) == {"spec.addresses[1].value"}
	some v in d
	v.msg == `address "198.51.100.1" (IPAddress) is not inside a CIDR granted to namespace "team-a" (granted: 203.0.113.0/24)`
}

test_no_grant_denies if {
	some v in denials(gateway([{"value": "203.0.113.7"}]), [])
	contains(v.msg, "(granted: none)")
}

test_other_address_types_need_every_address if {
	hostname := gateway([{"type": "Hostname", "value": "lb.example.com"}])
	count(denials(hostname, [cidr_grant(["203.0.113.0/24"])])) == 1
	count(denials(hostname, [cidr_grant(["0.0.0.0/0"])])) == 0
}

test_routes_not_judged if {
	req := testing.route("HTTPRoute", {"addresses": [{"value": "198.51.100.1"}]})
	count(denials(req, [])) == 0
}
