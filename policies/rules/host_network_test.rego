package portreeve.rules.host_network_test

import data.portreeve.lib.testing
import data.portreeve.rules.host_network

# denials evaluates the rule for a request under these grants at testing.now_ns.
denials(req, grants) := d if {
	d := host_network.deny with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

host_network_pod := testing.pod({"hostNetwork": true, "containers": [testing.container("app", [])]})

hn_grant(fields) := testing.grant(object.union({"name": "net", "hostNetwork": true}, fields))

test_plain_pod_allowed if {
	count(denials(testing.pod({"containers": [testing.container("app", [])]}), [])) == 0
}

test_host_network_false_allowed if {
	count(denials(testing.pod({"hostNetwork": false, "containers": []}), [])) == 0
}

test_denied_without_grant if {
	d := denials(host_network_pod, [])
	count(d) == 1
	some v in d
	v.msg == `hostNetwork is not granted to namespace "team-a"`
	v.field == "spec.hostNetwork"
	contains(v.fix, "hostNetwork: true")
}

test_denied_in_pod_template_with_template_field if {
	d := denials(testing.deployment({"hostNetwork": true, "containers": []}), [])
	testing.fields_of(d) == {"spec.template.spec.hostNetwork"}
}

test_service_is_not_judged if {
	count(denials(testing.service({"type": "ClusterIP", "hostNetwork": true}), [])) == 0
}

test_granted_by_namespace if {
	count(denials(host_network_pod, [hn_grant({"namespaces": ["team-a"]})])) == 0
}

test_granted_by_namespace_glob if {
	count(denials(host_network_pod, [hn_grant({"namespaces": ["team-*"]})])) == 0
	count(denials(host_network_pod, [hn_grant({"namespaces": ["*"]})])) == 0
}

test_namespace_glob_not_matching_denied if {
	count(denials(host_network_pod, [hn_grant({"namespaces": ["team-b*", "*-a-*"]})])) == 1
}

test_grant_for_other_namespace_denied if {
	count(denials(host_network_pod, [hn_grant({"namespaces": ["team-b"]})])) == 1
	count(denials(testing.in_namespace(host_network_pod, "team-b"), [hn_grant({"namespaces": ["team-b"]})])) == 0
}

test_grant_without_host_network_denied if {
	grants := [testing.grant({"namespaces": ["team-a"], "hostPorts": testing.port_ranges(["1-65535"])})]
	count(denials(host_network_pod, grants)) == 1
}

# undefined must not allow: a grant missing the hostNetwork key grants nothing.
test_grant_missing_host_network_key_denied if {
	g := json.remove(hn_grant({"namespaces": ["team-a"]}), ["hostNetwork"])
	count(denials(host_network_pod, [g])) == 1
}

test_granted_by_pod_service_account if {
	req := testing.pod({"hostNetwork": true, "serviceAccountName": "net-agent", "containers": []})
	count(denials(req, [hn_grant({"serviceAccounts": ["team-a/net-agent"]})])) == 0
}

test_pod_service_account_other_name_denied if {
	count(denials(host_network_pod, [hn_grant({"serviceAccounts": ["team-a/net-agent"]})])) == 1
}

test_pod_service_account_of_other_namespace_denied if {
	req := testing.pod({"hostNetwork": true, "serviceAccountName": "net-agent", "containers": []})
	count(denials(req, [hn_grant({"serviceAccounts": ["team-b/net-agent"]})])) == 1
}

test_granted_by_requester_service_account if {
	req := testing.as_user(host_network_pod, "system:serviceaccount:ci:deployer", ["system:serviceaccounts"])
	count(denials(req, [hn_grant({"serviceAccounts": ["ci/deployer"]})])) == 0
}

test_malformed_service_account_username_denied if {
	grants := [hn_grant({"serviceAccounts": ["ci/deployer"]})]
	count(denials(testing.as_user(host_network_pod, "system:serviceaccount:ci", []), grants)) == 1
	count(denials(testing.as_user(host_network_pod, "system:serviceaccount:ci:deployer:x", []), grants)) == 1
	count(denials(testing.as_user(host_network_pod, "ci/deployer", []), grants)) == 1
}

test_granted_by_user if {
	count(denials(host_network_pod, [hn_grant({"users": ["bob", "alice"]})])) == 0
	count(denials(host_network_pod, [hn_grant({"users": ["bob"]})])) == 1
}

test_granted_by_group if {
	count(denials(host_network_pod, [hn_grant({"groups": ["dev"]})])) == 0
	count(denials(host_network_pod, [hn_grant({"groups": ["ops"]})])) == 1
}

test_missing_user_denied if {
	req := json.remove(host_network_pod, ["user"])
	count(denials(req, [hn_grant({"users": ["alice"]})])) == 1
	count(denials(req, [hn_grant({"groups": ["dev"]})])) == 1
}

test_every_set_subject_list_must_match if {
	count(denials(host_network_pod, [hn_grant({"namespaces": ["team-a"], "users": ["bob"]})])) == 1
	count(denials(host_network_pod, [hn_grant({"namespaces": ["team-a"], "groups": ["dev"]})])) == 0
}

test_expired_grant_denied_and_named if {
	d := denials(host_network_pod, [hn_grant({"namespaces": ["team-a"], "expiresNs": testing.past_ns})])
	count(d) == 1
	some v in d
	contains(v.msg, "expired")
	contains(v.msg, `"net"`)
}

test_unexpired_grant_allows if {
	count(denials(host_network_pod, [hn_grant({"namespaces": ["team-a"], "expiresNs": testing.future_ns})])) == 0
}

test_expired_grant_without_host_network_not_mentioned if {
	g := testing.grant({"name": "ports", "namespaces": ["team-a"], "expiresNs": testing.past_ns})
	d := denials(host_network_pod, [g])
	count(d) == 1
	not testing.any_message_contains(d, "expired")
}
