package portreeve.lib.grants_test

import data.portreeve.lib.grants
import data.portreeve.lib.testing

pod_as(username, sa) := testing.as_user(
	testing.pod({"serviceAccountName": sa, "containers": []}),
	username,
	["system:authenticated"],
)

test_requester_service_account if {
	grants.requester_service_account == "ci/deployer" with input as pod_as("system:serviceaccount:ci:deployer", "web")
	not grants.requester_service_account with input as pod_as("alice", "web")
	not grants.requester_service_account with input as pod_as("system:serviceaccount:ci", "web")
	not grants.requester_service_account with input as pod_as("system:node:ci:deployer", "web")
}

test_service_accounts_hold_pod_and_requester if {
	by_sa := pod_as("system:serviceaccount:ci:deployer", "web")
	grants.service_accounts == {"ci/deployer", "team-a/web"} with input as by_sa
	grants.service_accounts == {"team-a/web"} with input as pod_as("alice", "web")
	grants.service_accounts == set() with input as testing.service({})
}

test_pod_service_account_defaults if {
	req := json.remove(testing.pod({"containers": []}), ["pod/serviceAccount"])
	grants.pod_service_account == "team-a/default" with input as req
}

test_empty_subject_lists_match_everyone if {
	grants.matches(testing.grant({})) with input as testing.pod({})
}

test_every_set_list_must_match if {
	g := testing.grant({"namespaces": ["team-a"], "users": ["alice"], "groups": ["dev"]})
	grants.matches(g) with input as testing.pod({})
	not grants.matches(g) with input as testing.as_user(testing.pod({}), "alice", ["ops"])
	not grants.matches(g) with input as testing.in_namespace(testing.pod({}), "team-b")
}

test_namespace_globs if {
	req := testing.in_namespace(testing.service({}), "team-a-prod")
	grants.matches(testing.grant({"namespaces": ["team-a-*"]})) with input as req
	grants.matches(testing.grant({"namespaces": ["other", "*-prod"]})) with input as req
	not grants.matches(testing.grant({"namespaces": ["team-a"]})) with input as req
	not grants.matches(testing.grant({"namespaces": ["team-b-*"]})) with input as req
}

test_missing_input_fields_do_not_match if {
	not grants.matches(testing.grant({"namespaces": ["*"]})) with input as json.remove(testing.pod({}), ["namespace"])
	not grants.matches(testing.grant({"users": ["alice"]})) with input as json.remove(testing.pod({}), ["user"])
	not grants.matches(testing.grant({"groups": ["dev"]})) with input as json.remove(testing.pod({}), ["user/groups"])
}

test_expired if {
	grants.expired({"expiresNs": testing.past_ns}) with time.now_ns as testing.now_ns
	not grants.expired({"expiresNs": testing.future_ns}) with time.now_ns as testing.now_ns
	not grants.expired({"expiresNs": 0}) with time.now_ns as testing.now_ns

	# The clock is the one under test: the same grant expires later.
	not grants.expired({"expiresNs": testing.future_ns}) with time.now_ns as testing.past_ns
	grants.expired({"expiresNs": testing.now_ns}) with time.now_ns as testing.future_ns
}

test_active_and_expired_matching if {
	live := testing.grant({"name": "live", "namespaces": ["team-a"]})
	old := testing.grant({"name": "old", "namespaces": ["team-a"], "expiresNs": testing.past_ns})
	other := testing.grant({"name": "other", "namespaces": ["team-b"]})
	cfg := testing.config([live, old, other])
	resolved := grants.resolve(testing.pod({}), cfg, testing.now_ns)
	[g.name | some g in resolved.active] == ["live"]
	[g.name | some g in resolved.expired] == ["old"]

	# The rules read what the engine resolved.
	req := testing.resolve(testing.pod({}), cfg)
	[g.name | some g in grants.active] == ["live"] with input as req
	[g.name | some g in grants.expired_matching] == ["old"] with input as req
}

test_expiry_note if {
	grants.expiry_note([]) == ""
	grants.expiry_note(["a"]) == ` (grant "a" expired)`
	grants.expiry_note(["a", "b"]) == ` (grant "a", "b" expired)`
}

exempt_with(id, e) if {
	grants.exempt(id) with input as testing.pod({})
		with data.portreeve.config as testing.config_with([], [e], {})
		with time.now_ns as testing.now_ns
}

test_exempt if {
	exempt_with("host-ports", testing.exemption({"namespaces": ["team-a"]}))
	exempt_with("host-ports", testing.exemption({"namespaces": ["team-a"], "rules": ["host-ports"]}))
	not exempt_with("host-network", testing.exemption({"namespaces": ["team-a"], "rules": ["host-ports"]}))
	not exempt_with("host-ports", testing.exemption({"namespaces": ["team-b"]}))
	not exempt_with("host-ports", testing.exemption({"namespaces": ["team-a"], "expiresNs": testing.past_ns}))
	exempt_with("host-ports", testing.exemption({"namespaces": ["team-a"], "expiresNs": testing.future_ns}))
}

test_explanation_says_why_each_grant_does_not_apply if {
	gs := [
		testing.grant({"name": "mine", "namespaces": ["team-a"]}),
		testing.grant({"name": "other-ns", "namespaces": ["kube-system"]}),
		testing.grant({"name": "other-sa", "serviceAccounts": ["team-a/agent"]}),
		testing.grant({"name": "other-user", "users": ["bob"], "groups": ["ops"]}),
		testing.grant({"name": "old", "namespaces": ["team-a"], "expires": "2020-01-01", "expiresNs": testing.past_ns}),
	]
	ex := [testing.exemption({"name": "e", "namespaces": ["team-*"]})]
	got := grants.explanation with input as testing.pod({"containers": []})
		with data.portreeve.config as object.union(testing.config(gs), {"exemptions": ex})
		with time.now_ns as testing.now_ns
	got.grants == [
		{"name": "mine", "applies": true, "reasons": []},
		{"name": "other-ns", "applies": false, "reasons": [`other namespace: "team-a" is not in kube-system`]},
		{"name": "other-sa", "applies": false, "reasons": ["other service account: team-a/default, not team-a/agent"]},
		{"name": "other-user", "applies": false, "reasons": [
			`other user: "alice" is not in bob`,
			"other groups: none of system:authenticated, dev is in ops",
		]},
		{"name": "old", "applies": false, "reasons": ["expired: 2020-01-01"]},
	]
	got.exemptions == [{"name": "e", "applies": true, "reasons": []}]
}
