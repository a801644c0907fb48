# METADATA
# title: Ingress hosts only inside the namespace's granted domains
# description: |
#   Every host of an Ingress (rules and TLS) must lie in a domain granted to the
#   namespace; "*.example.com" covers every name below example.com, and "*" every host
#   (a rule or default backend without a host needs it). A grant may also
#   restrict the ingress classes. With no ingressDomains configured in any grant, hosts
#   are not restricted, so a fresh install does not break Ingress.
# custom:
#   appliesTo: [ingresses]
#   id: ingress-hosts
package portreeve.rules.ingress_hosts

import data.portreeve.lib.domains
import data.portreeve.lib.grants
import data.portreeve.lib.k8s

rule_hosts := array.concat(
	[h |
		some i, rule in object.get(k8s.spec, "rules", [])
		h := {"host": object.get(rule, "host", ""), "field": sprintf("spec.rules[%d].host", [i])}
	],
	[h |
		some i, tls in object.get(k8s.spec, "tls", [])
		some j, host in object.get(tls, "hosts", [])
		h := {"host": host, "field": sprintf("spec.tls[%d].hosts[%d]", [i, j])}
	],
)

# A default backend serves every host the controller sees.
hosts := array.concat(rule_hosts, default_backend)

default_backend := [h | k8s.has_field(k8s.spec, "defaultBackend"); h := {"host": "", "field": "spec.defaultBackend"}]

deny contains v if {
	data.portreeve.config.ingressDomainsConfigured # first: without domains, no host is judged
	k8s.is_ingress
	some h in hosts
	h.host != ""
	not host_allowed(h.host)
	expired := [g.name | some g in input.grants.expired; some d in g.ingressDomains; domains.covers(d, h.host)]
	v := {
		"msg": sprintf("host %q is not inside a domain granted to %s (granted: %s)%s", [
			h.host, grants.subject, domains_text, grants.expiry_note(expired),
		]),
		"field": h.field,
		"fix": "use a host inside the granted domains, or ask a cluster admin for an ingressDomains grant",
	}
}

deny contains v if {
	data.portreeve.config.ingressDomainsConfigured # first: without domains, no host is judged
	k8s.is_ingress
	some h in hosts
	h.host == ""
	not domains.every_host_granted(input.grants)
	v := {
		"msg": sprintf("%s without a host claims every host, which is not granted to %s", [
			claim_what(h.field), grants.subject,
		]),
		"field": h.field,
		"fix": "set a host inside the granted domains",
	}
}

deny contains v if {
	k8s.is_ingress
	count(classes) > 0
	not class in classes
	v := {
		"msg": sprintf("ingress class %q is not granted to %s (granted: %s)", [class, grants.subject, concat(", ", sort(classes))]),
		"field": "spec.ingressClassName",
		"fix": "set spec.ingressClassName to a granted class",
	}
}

host_allowed(host) if domains.host_granted(host, input.grants)

granted_domains := [d | some g in input.grants.active; some d in g.ingressDomains]

domains_text := "none" if count(granted_domains) == 0

domains_text := concat(", ", granted_domains) if count(granted_domains) > 0

classes := {c | some g in input.grants.active; some c in g.ingressClasses}

class := object.get(k8s.spec, "ingressClassName", annotation_class)

annotation_class := object.get(input.object, ["metadata", "annotations", "kubernetes.io/ingress.class"], "")

claim_what(field) := "a default backend" if field == "spec.defaultBackend"

claim_what(field) := "a rule" if field != "spec.defaultBackend"
