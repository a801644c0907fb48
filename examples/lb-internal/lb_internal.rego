# METADATA
# title: LoadBalancers in team namespaces are internal
# description: |
#   A Service of type LoadBalancer in a namespace labelled team=<name> must carry
#   the annotation that makes its cloud provision an internal load balancer, so
#   that team services are never exposed to the internet by accident.
# custom:
#   mode: dryrun
#   failurePolicy: deny
package portreeve.rules.lb_internal

import data.portreeve.lib.k8s

# internal_annotations are the annotations (and values) that make a LoadBalancer
# internal on the clouds this cluster may run on.
internal_annotations := {
	"networking.gke.io/load-balancer-type": "Internal",
	"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
	"service.beta.kubernetes.io/azure-load-balancer-internal": "true",
}

deny contains v if {
	k8s.is_service
	k8s.service_type == "LoadBalancer"
	team := input.namespaceLabels.team
	not internal
	v := {
		"msg": sprintf("a LoadBalancer in team %q's namespace must be internal", [team]),
		"field": "metadata.annotations",
		"fix": sprintf("add one of these annotations: %s", [concat(", ", sort([sprintf("%s: %q", [k, v]) |
			some k, v in internal_annotations
		]))]),
	}
}

internal if {
	some key, value in internal_annotations
	object.get(input.object, ["metadata", "annotations", key], "") == value
}
