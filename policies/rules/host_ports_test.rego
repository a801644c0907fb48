package portreeve.rules.host_ports_test

import data.portreeve.lib.testing
import data.portreeve.rules.host_ports

denials(req, grants) := d if {
	d := host_ports.deny with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

rewrites(req, grants) := r if {
	r := host_ports.rewrite with input as testing.resolve(req, testing.config(grants))
		with data.portreeve.config as testing.config(grants)
		with time.now_ns as testing.now_ns
}

# pod_with_ports is a pod with one container "app" with these ports.
pod_with_ports(ports) := testing.pod({"containers": [testing.container("app", ports)]})

tcp(port) := testing.host_port(port, "TCP")

udp(port) := testing.host_port(port, "UDP")

hp_grant(ranges, fields) := testing.grant(object.union(
	{"name": "ports", "namespaces": ["team-a"], "hostPorts": testing.port_ranges(ranges)},
	fields,
))

test_container_ports_without_host_port_allowed if {
	count(denials(pod_with_ports([{"containerPort": 8080, "protocol": "TCP"}]), [])) == 0
	count(denials(pod_with_ports([{"containerPort": 8080, "hostPort": 0}]), [])) == 0
	count(denials(testing.pod({"containers": [{"name": "app"}]}), [])) == 0
}

test_denied_without_grant if {
	d := denials(pod_with_ports([tcp(8080)]), [])
	count(d) == 1
	some v in d
	v.msg == `hostPort 8080/TCP of container "app" is not in a range granted to namespace "team-a" (granted: none)`
	v.field == "spec.containers[0].ports[0].hostPort"
	v.fix != ""
}

test_field_in_pod_template if {
	req := testing.deployment({"containers": [testing.container("app", [tcp(8080)])]})
	testing.fields_of(denials(req, [])) == {"spec.template.spec.containers[0].ports[0].hostPort"}
}

test_allowed_in_granted_range if {
	req := pod_with_ports([tcp(8000), tcp(8050), tcp(8100)])
	count(denials(req, [hp_grant(["8000-8100"], {})])) == 0
}

test_range_bounds_are_inclusive_and_exact if {
	d := denials(pod_with_ports([tcp(7999), tcp(8000), tcp(8100), tcp(8101)]), [hp_grant(["8000-8100"], {})])
	testing.fields_of(d) == {"spec.containers[0].ports[0].hostPort", "spec.containers[0].ports[3].hostPort"}
}

test_granted_text_lists_ranges if {
	d := denials(pod_with_ports([tcp(9090)]), [hp_grant(["80", "8000-8100", "53/UDP"], {})])
	some v in d
	contains(v.msg, "(granted: 80, 8000-8100, 53/UDP)")
}

# Gatekeeper's CEL host-ports check passed a container when any one of its ports
# was allowed; every port must be checked on its own.
test_one_allowed_one_forbidden_port_in_one_container_denied if {
	d := denials(pod_with_ports([tcp(8080), tcp(9090)]), [hp_grant(["8080"], {})])
	count(d) == 1
	testing.fields_of(d) == {"spec.containers[0].ports[1].hostPort"}
	some v in d
	contains(v.msg, "hostPort 9090/TCP")
}

test_every_container_is_checked if {
	req := testing.pod({"containers": [testing.container("a", [tcp(8080)]), testing.container("b", [tcp(9090)])]})
	d := denials(req, [hp_grant(["8080"], {})])
	testing.fields_of(d) == {"spec.containers[1].ports[0].hostPort"}
	some v in d
	contains(v.msg, `container "b"`)
}

test_init_containers_count if {
	req := testing.pod({
		"initContainers": [testing.container("init", [tcp(9090)])],
		"containers": [testing.container("app", [])],
	})
	testing.fields_of(denials(req, [])) == {"spec.initContainers[0].ports[0].hostPort"}
}

test_ephemeral_containers_count if {
	req := testing.pod({
		"containers": [testing.container("app", [])],
		"ephemeralContainers": [{}, testing.container("debug", [tcp(2222)])],
	})
	testing.fields_of(denials(req, [])) == {"spec.ephemeralContainers[1].ports[0].hostPort"}
}

test_protocol_specific_range if {
	grants := [hp_grant(["53/UDP"], {})]
	count(denials(pod_with_ports([udp(53)]), grants)) == 0
	d := denials(pod_with_ports([tcp(53)]), grants)
	count(d) == 1
	some v in d
	contains(v.msg, "53/TCP")
}

# undefined must not allow: a port without protocol is TCP, not covered by a UDP range.
test_missing_protocol_is_tcp if {
	req := pod_with_ports([{"containerPort": 53, "hostPort": 53}])
	count(denials(req, [hp_grant(["53/UDP"], {})])) == 1
	count(denials(req, [hp_grant(["53/TCP"], {})])) == 0
}

test_range_without_protocol_covers_every_protocol if {
	req := pod_with_ports([tcp(53), udp(53), testing.host_port(53, "SCTP")])
	count(denials(req, [hp_grant(["53"], {})])) == 0
	count(denials(req, [hp_grant(["53/SCTP"], {})])) == 2
}

test_ranges_of_several_grants_add_up if {
	grants := [hp_grant(["80"], {"name": "web"}), hp_grant(["443"], {"name": "tls"})]
	count(denials(pod_with_ports([tcp(80), tcp(443)]), grants)) == 0
}

test_host_network_pod_ports_are_judged if {
	# The Go side defaults hostPort to containerPort on hostNetwork pods.
	req := testing.pod({"hostNetwork": true, "containers": [testing.container("app", [tcp(9100)])]})
	count(denials(req, [])) == 1
}

test_missing_container_name_still_denied if {
	req := testing.pod({"containers": [{"ports": [tcp(8080)]}]})
	d := denials(req, [])
	count(d) == 1
	some v in d
	contains(v.msg, `container ""`)
}

test_granted_by_namespace_glob if {
	count(denials(pod_with_ports([tcp(80)]), [hp_grant(["80"], {"namespaces": ["team-?"]})])) == 0
}

test_grant_for_other_namespace_denied if {
	count(denials(pod_with_ports([tcp(80)]), [hp_grant(["80"], {"namespaces": ["team-b", "kube-*"]})])) == 1
}

test_granted_by_pod_service_account if {
	req := testing.pod({"serviceAccountName": "ingress", "containers": [testing.container("app", [tcp(80)])]})
	grants := [hp_grant(["80"], {"namespaces": [], "serviceAccounts": ["team-a/ingress"]})]
	count(denials(req, grants)) == 0
	count(denials(pod_with_ports([tcp(80)]), grants)) == 1
}

test_granted_by_requester_service_account if {
	grants := [hp_grant(["80"], {"namespaces": [], "serviceAccounts": ["argocd/application-controller"]})]
	req := pod_with_ports([tcp(80)])
	by_sa := testing.as_user(req, "system:serviceaccount:argocd:application-controller", [])
	count(denials(by_sa, grants)) == 0
	count(denials(req, grants)) == 1
}

test_granted_by_user if {
	req := pod_with_ports([tcp(80)])
	count(denials(req, [hp_grant(["80"], {"namespaces": [], "users": ["alice"]})])) == 0
	count(denials(testing.as_user(req, "bob", []), [hp_grant(["80"], {"namespaces": [], "users": ["alice"]})])) == 1
}

test_granted_by_group if {
	req := pod_with_ports([tcp(80)])
	count(denials(req, [hp_grant(["80"], {"namespaces": [], "groups": ["dev"]})])) == 0
	count(denials(req, [hp_grant(["80"], {"namespaces": [], "groups": ["admins"]})])) == 1
}

test_expired_grant_denied_and_named if {
	d := denials(pod_with_ports([tcp(80)]), [hp_grant(["80"], {"name": "old", "expiresNs": testing.past_ns})])
	count(d) == 1
	some v in d
	contains(v.msg, "expired")
	contains(v.msg, `"old"`)
	contains(v.msg, "(granted: none)")
}

test_expired_grant_for_other_ports_not_mentioned if {
	d := denials(pod_with_ports([tcp(80)]), [hp_grant(["443"], {"name": "old", "expiresNs": testing.past_ns})])
	count(d) == 1
	not testing.any_message_contains(d, "expired")
}

test_unexpired_grant_allows if {
	count(denials(pod_with_ports([tcp(80)]), [hp_grant(["80"], {"expiresNs": testing.future_ns})])) == 0
}

test_rewrite_removes_exactly_the_forbidden_host_ports if {
	req := testing.pod({
		"initContainers": [testing.container("init", [udp(5353)])],
		"containers": [testing.container("app", [tcp(8080), tcp(9090)])],
	})
	rewrites(req, [hp_grant(["8080"], {})]) == {
		{
			"op": "remove",
			"path": "/spec/containers/0/ports/1/hostPort",
			"reason": "hostPort 9090/TCP is not granted; the containerPort stays reachable inside the cluster",
		},
		{
			"op": "remove",
			"path": "/spec/initContainers/0/ports/0/hostPort",
			"reason": "hostPort 5353/UDP is not granted; the containerPort stays reachable inside the cluster",
		},
	}
}

test_rewrite_pointer_in_pod_template if {
	req := testing.deployment({"containers": [testing.container("app", [tcp(9090)])]})
	{op.path | some op in rewrites(req, [])} == {"/spec/template/spec/containers/0/ports/0/hostPort"}
}

test_no_rewrite_when_granted if {
	count(rewrites(pod_with_ports([tcp(8080)]), [hp_grant(["8080"], {})])) == 0
}

test_no_rewrite_on_host_network_pod if {
	req := testing.pod({"hostNetwork": true, "containers": [testing.container("app", [tcp(9090)])]})
	count(rewrites(req, [])) == 0
	count(denials(req, [])) == 1
}

# BUG (lib/k8s.rego host_ports, lines 50-51 and 56): a hostPort entry is built with
# "field": pod_field(...) and "pointer" from input.pod.path / input.pod.pointer;
# when those are absent the entry is undefined and the port is silently allowed
# (undefined allows). The Go input always sets both, so this is defence in depth.
test_host_port_denied_without_pod_path if {
	req := json.remove(pod_with_ports([tcp(9090)]), ["pod/path", "pod/pointer"])
	count(denials(req, [])) == 1
}
