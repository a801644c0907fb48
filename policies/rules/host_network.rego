# METADATA
# title: hostNetwork only where granted
# description: A pod (or pod template) with hostNetwork true needs a grant with hostNetwork.
# custom:
#   appliesTo: [pods]
#   id: host-network
package portreeve.rules.host_network

import data.portreeve.lib.grants
import data.portreeve.lib.k8s

deny contains v if {
	input.pod.spec.hostNetwork == true # k8s.host_network, read directly: this runs on every pod
	not granted
	expired := [g.name | some g in input.grants.expired; g.hostNetwork]
	v := {
		"msg": sprintf("hostNetwork is not granted to namespace %q%s", [input.namespace, grants.expiry_note(expired)]),
		"field": k8s.pod_field("hostNetwork"),
		"fix": "remove hostNetwork, or ask a cluster admin for a grant with hostNetwork: true",
	}
}

granted if {
	some g in input.grants.active
	g.hostNetwork
}
