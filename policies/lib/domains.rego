# METADATA
# title: Granted domains
# description: |
#   Which hosts the ingressDomains of the request's active grants cover, shared by
#   the rules on Ingress hosts and on Gateway API listener and route hostnames.
#   "example.com" covers that name, "*.example.com" every name below example.com,
#   and "*" every host: only a grant with "*" lets an object claim every host (an
#   Ingress rule or default backend without a host, a listener without a hostname).
package portreeve.lib.domains

# covers is true when domain d covers host (a name, or a wildcard *.name whose
# every match d covers).
covers(d, _) if d == "*"

covers(d, host) if d == host

covers(d, host) if {
	startswith(d, "*.")
	endswith(host, substring(d, 1, -1))
}

# host_granted is true when an active grant's ingressDomains cover host.
host_granted(host, grants) if {
	some g in grants.active
	some d in g.ingressDomains
	covers(d, host)
}

# every_host_granted is true when an active grant has "*" in its ingressDomains.
every_host_granted(grants) if {
	some g in grants.active
	"*" in g.ingressDomains
}

# expired_for lists the expired grants whose ingressDomains would cover host.
expired_for(host, grants) := [g.name | some g in grants.expired; some d in g.ingressDomains; covers(d, host)]

# granted_text renders the active grants' domains for a message.
granted_text(grants) := concat(", ", ds) if {
	ds := [d | some g in grants.active; some d in g.ingressDomains]
	count(ds) > 0
} else := "none"
