# METADATA
# title: Ingress and route hosts not already claimed by another namespace
# description: |
#   A host and path that an Ingress or a Gateway API route (HTTPRoute, GRPCRoute,
#   TLSRoute) in another namespace already claims (the same host,
#   or a wildcard covering it either way: *.example.com covers a.example.com; the same
#   path, or a Prefix path covering the other) is denied, naming that Ingress: two
#   namespaces sharing a host steal each other's traffic. Routes and Ingresses claim
#   hosts alike (they often share one proxy): a route hostname claims the paths of its
#   Exact and PathPrefix matches, else "/" as a prefix; a route without hostnames claims
#   the hostnames of its parents' listeners. Two routes meet only where they can attach
#   to one listener (the same Gateway and sectionName, or none on either side), or where
#   either's parent is not known (every listener then); a route and an Ingress always
#   meet. Needs the inventory (input.facts).
# custom:
#   appliesTo: [ingresses, routes]
#   id: ingress-host-conflicts
package portreeve.rules.ingress_host_conflicts

import data.portreeve.lib.facts
import data.portreeve.lib.k8s

deny contains v if {
	input.facts.ingressConflicts # read directly first: this runs on every Ingress
	k8s.claims_hosts
	some c in facts.ingress_conflicts
	v := {
		"msg": sprintf("host %q path %q%s is already claimed in another namespace by %s", [
			c.host, c.path, via_text(c), facts.conflict_holders_text(c),
		]),
		"field": c.field,
		"fix": "use another host, or ask the owner's namespace to release it (two namespaces sharing a host steal each other's traffic)",
	}
}

deny contains v if {
	input.facts.notReady == "deny" # read directly first: this runs on every Ingress
	k8s.is_ingress
	facts.deny_not_ready
	some i, rule in object.get(k8s.spec, "rules", [])
	object.get(rule, "host", "") != ""
	v := {
		"msg": facts.not_ready_msg("Ingress hosts"),
		"field": sprintf("spec.rules[%d].host", [i]),
		"fix": facts.not_ready_fix,
	}
}

deny contains v if {
	input.facts.notReady == "deny"
	k8s.is_route
	facts.deny_not_ready
	some i, _ in object.get(k8s.spec, "hostnames", [])
	v := {
		"msg": facts.not_ready_msg("route hostnames"),
		"field": sprintf("spec.hostnames[%d]", [i]),
		"fix": facts.not_ready_fix,
	}
}

# via_text names the listener a hostname a route inherits comes from.
via_text(c) := sprintf(" (inherited from %s)", [c.via]) if c.via

via_text(c) := "" if not c.via
