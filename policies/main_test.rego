package portreeve.main_test

import data.portreeve.lib.testing
import data.portreeve.main

findings(req, grants, exemptions, modes) := f if {
	f := main.findings with input as testing.resolve(req, testing.config_with(grants, exemptions, modes))
		with data.portreeve.config as testing.config_with(grants, exemptions, modes)
		with time.now_ns as testing.now_ns
}

rewrites(req, grants, exemptions, modes) := r if {
	r := main.rewrites with input as testing.resolve(req, testing.config_with(grants, exemptions, modes))
		with data.portreeve.config as testing.config_with(grants, exemptions, modes)
		with time.now_ns as testing.now_ns
}

rules_of(xs) := {x.rule | some x in xs}

# exposed_pod breaks host-network and host-ports.
exposed_pod := testing.pod({
	"hostNetwork": true,
	"containers": [testing.container("app", [testing.host_port(9100, "TCP")])],
})

# exposed_service breaks node-ports and external-ips.
exposed_service := testing.service({"type": "NodePort", "externalIPs": ["198.51.100.1"], "ports": [{"port": 80}]})

exemption(fields) := testing.exemption(object.union({"namespaces": ["team-a"]}, fields))

test_findings_of_every_rule_with_rule_and_type if {
	f := findings(exposed_pod, [], [], {})
	rules_of(f) == {"host-network", "host-ports"}
	every x in f {
		x.type == "deny"
		x.msg != ""
		x.field != ""
		x.fix != ""
	}
	{
		"rule": "host-network",
		"type": "deny",
		"msg": `hostNetwork is not granted to namespace "team-a"`,
		"field": "spec.hostNetwork",
		"fix": "remove hostNetwork, or ask a cluster admin for a grant with hostNetwork: true",
	} in f
	rules_of(findings(exposed_service, [], [], {})) == {"node-ports", "external-ips"}
}

test_no_findings_for_granted_request if {
	g := testing.grant({
		"namespaces": ["team-a"],
		"hostNetwork": true,
		"hostPorts": testing.port_ranges(["9100"]),
	})
	count(findings(exposed_pod, [g], [], {})) == 0
}

test_mode_off_suppresses_findings if {
	rules_of(findings(exposed_pod, [], [], {"host-network": "off"})) == {"host-ports"}
	count(findings(exposed_pod, [], [], {"host-network": "off", "host-ports": "off"})) == 0
}

# The engine sorts findings by mode; main reports them for every mode but off.
test_other_modes_still_report if {
	every mode in ["deny", "warn", "dryrun", "rewrite"] {
		rules_of(findings(exposed_pod, [], [], {"host-network": mode})) == {"host-network", "host-ports"}
	}
}

# A rule missing from config.rules is not evaluated (Config.Data lists every rule).
test_rule_missing_from_config_not_evaluated if {
	f := main.findings with input as testing.resolve(exposed_pod, json.remove(testing.config([]), ["rules/host-network"]))
		with data.portreeve.config as json.remove(testing.config([]), ["rules/host-network"])
	rules_of(f) == {"host-ports"}
}

test_exemption_for_all_rules_suppresses_findings if {
	count(findings(exposed_pod, [], [exemption({})], {})) == 0
}

test_rule_scoped_exemption if {
	rules_of(findings(exposed_pod, [], [exemption({"rules": ["host-ports"]})], {})) == {"host-network"}
	rules_of(findings(exposed_pod, [], [exemption({"rules": ["node-ports"]})], {})) == {"host-network", "host-ports"}
}

test_expired_exemption_does_not_suppress if {
	e := exemption({"expiresNs": testing.past_ns})
	rules_of(findings(exposed_pod, [], [e], {})) == {"host-network", "host-ports"}
	count(findings(exposed_pod, [], [exemption({"expiresNs": testing.future_ns})], {})) == 0
}

test_exemption_for_other_subjects_does_not_suppress if {
	every e in [
		exemption({"namespaces": ["team-b"]}),
		exemption({"namespaces": [], "users": ["bob"]}),
		exemption({"namespaces": [], "groups": ["ops"]}),
		exemption({"namespaces": [], "serviceAccounts": ["team-a/other"]}),
		exemption({"users": ["bob"]}),
	] {
		rules_of(findings(exposed_pod, [], [e], {})) == {"host-network", "host-ports"}
	}
}

test_exemption_by_user_group_and_service_account if {
	every e in [
		exemption({"namespaces": ["team-*"]}),
		exemption({"namespaces": [], "users": ["alice"]}),
		exemption({"namespaces": [], "groups": ["dev"]}),
		exemption({"namespaces": [], "serviceAccounts": ["team-a/default"]}),
	] {
		count(findings(exposed_pod, [], [e], {})) == 0
	}
	by_sa := testing.as_user(exposed_service, "system:serviceaccount:ci:deployer", [])
	count(findings(by_sa, [], [exemption({"namespaces": [], "serviceAccounts": ["ci/deployer"]})], {})) == 0
}

test_rewrites_only_for_rules_in_rewrite_mode if {
	count(rewrites(exposed_service, [], [], {})) == 0
	r := rewrites(exposed_service, [], [], {"node-ports": "rewrite", "external-ips": "warn"})
	rules_of(r) == {"node-ports"}
	{
		"rule": "node-ports",
		"op": "replace",
		"path": "/spec/type",
		"value": "ClusterIP",
		"reason": `node ports are not granted to namespace "team-a"; the Service stays reachable inside the cluster`,
	} in r
	both := rewrites(exposed_service, [], [], {"node-ports": "rewrite", "external-ips": "rewrite"})
	rules_of(both) == {"node-ports", "external-ips"}
}

test_rewrite_mode_rule_still_reports_findings if {
	rules_of(findings(exposed_service, [], [], {"node-ports": "rewrite"})) == {"node-ports", "external-ips"}
}

test_exemption_suppresses_rewrites if {
	modes := {"host-ports": "rewrite"}
	req := testing.pod({"containers": [testing.container("app", [testing.host_port(9100, "TCP")])]})
	count(rewrites(req, [], [], modes)) == 1
	count(rewrites(req, [], [exemption({"rules": ["host-ports"]})], modes)) == 0
	count(rewrites(req, [], [exemption({"rules": ["host-ports"], "expiresNs": testing.past_ns})], modes)) == 1
}

test_mode_off_suppresses_rewrites if {
	count(rewrites(exposed_service, [], [], {"node-ports": "off"})) == 0
}

test_package_name if {
	main.package_name("host-network") == "host_network"
	main.package_name("my-custom-rule") == "my_custom_rule"
}
