# METADATA
# title: externalIPs and loadBalancerIP only inside granted CIDRs
# description: |
#   spec.externalIPs (and spec.loadBalancerIP) can hijack traffic for any address
#   (CVE-2020-8554): every address must lie in a CIDR granted to the namespace.
#   Rewrite mode drops the addresses that are not granted.
# custom:
#   appliesTo: [services]
#   id: external-ips
package portreeve.rules.external_ips

import data.portreeve.lib.grants
import data.portreeve.lib.k8s

external_ips := object.get(k8s.spec, "externalIPs", [])

forbidden := [i |
	some i, ip in external_ips
	not allowed(ip)
]

deny contains v if {
	input.object.spec.externalIPs # read directly first: this runs on every Service
	k8s.is_service
	some i in forbidden
	v := {
		"msg": sprintf("externalIP %q is not inside a CIDR granted to %s (granted: %s)%s", [
			external_ips[i], grants.subject, granted_text, expiry_note(external_ips[i]),
		]),
		"field": sprintf("spec.externalIPs[%d]", [i]),
		"fix": "remove the address, or ask a cluster admin for an externalIPs grant covering it",
	}
}

deny contains v if {
	input.object.spec.type == "LoadBalancer" # k8s.service_type, read directly: this runs on every Service
	k8s.is_service
	ip := object.get(k8s.spec, "loadBalancerIP", "")
	ip != ""
	not allowed(ip)
	v := {
		"msg": sprintf("loadBalancerIP %q is not inside a CIDR granted to %s (granted: %s)%s", [
			ip, grants.subject, granted_text, expiry_note(ip),
		]),
		"field": "spec.loadBalancerIP",
		"fix": "remove loadBalancerIP, or ask a cluster admin for an externalIPs grant covering it",
	}
}

rewrite contains op if {
	input.object.spec.externalIPs
	k8s.is_service
	count(forbidden) > 0
	kept := [ip | some i, ip in external_ips; not i in forbidden]
	op := object.union(replace_or_remove(kept), {"reason": sprintf("externalIPs %s are not granted to %s", [
		concat(", ", [external_ips[i] | some i in forbidden]), grants.subject,
	])})
}

rewrite contains op if {
	input.object.spec.type == "LoadBalancer" # k8s.service_type, read directly: this runs on every Service
	k8s.is_service
	ip := object.get(k8s.spec, "loadBalancerIP", "")
	ip != ""
	not allowed(ip)
	op := {"op": "remove", "path": "/spec/loadBalancerIP", "reason": sprintf("loadBalancerIP %q is not granted", [ip])}
}

replace_or_remove(kept) := {"op": "remove", "path": "/spec/externalIPs"} if count(kept) == 0

replace_or_remove(kept) := {"op": "replace", "path": "/spec/externalIPs", "value": kept} if count(kept) > 0

allowed(ip) if {
	some g in input.grants.active
	some cidr in g.externalIPs
	net.cidr_contains(cidr, ip)
}

granted_text := "none" if count(cidrs) == 0

granted_text := concat(", ", cidrs) if count(cidrs) > 0

cidrs := [c | some g in input.grants.active; some c in g.externalIPs]

expiry_note(ip) := grants.expiry_note([g.name |
	some g in input.grants.expired
	some cidr in g.externalIPs
	net.cidr_contains(cidr, ip)
])
