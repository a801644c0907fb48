package portreeve.rules.lb_internal_test

import data.portreeve.lib.testing
import data.portreeve.rules.lb_internal

# lb is the input for a LoadBalancer Service with these annotations, created in
# team-a, a namespace with these labels.
lb(labels, annotations) := json.patch(testing.service({"type": "LoadBalancer", "ports": [{"port": 443}]}), [
	{"op": "add", "path": "/namespaceLabels", "value": labels},
	{"op": "add", "path": "/object/metadata/annotations", "value": annotations},
])

team_a := {"team": "a"}

test_public_load_balancer_denied if {
	some v in lb_internal.deny with input as lb(team_a, {})
	v.msg == `a LoadBalancer in team "a"'s namespace must be internal`
	v.field == "metadata.annotations"
}

test_internal_load_balancer_allowed if {
	count(lb_internal.deny) == 0 with input as lb(team_a, {"networking.gke.io/load-balancer-type": "Internal"})
	aws := {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}
	count(lb_internal.deny) == 0 with input as lb(team_a, aws)
}

test_wrong_value_denied if {
	count(lb_internal.deny) == 1 with input as lb(team_a, {"networking.gke.io/load-balancer-type": "External"})
}

test_namespaces_without_team_label_ignored if {
	count(lb_internal.deny) == 0 with input as lb({}, {})
}

test_other_service_types_ignored if {
	cluster_ip := json.patch(lb(team_a, {}), [{"op": "replace", "path": "/object/spec/type", "value": "ClusterIP"}])
	count(lb_internal.deny) == 0 with input as cluster_ip
}
