# METADATA
# title: Grants and exemptions
# description: |
#   Which grants and exemptions of data.portreeve.config apply to the request under
#   review. A grant applies when every subject list it sets matches: namespaces
#   (names or globs), serviceAccounts (the pod's own or the requester's, as
#   namespace/name), users and groups (the requester). Expired grants grant nothing.
package portreeve.lib.grants

config := data.portreeve.config

# requester_service_account is namespace/name when a service account makes the request.
requester_service_account := concat("/", [parts[2], parts[3]]) if {
	parts := split(input.user.username, ":")
	count(parts) == 4
	parts[0] == "system"
	parts[1] == "serviceaccount"
}

# pod_service_account is the service account a pod (or pod template) runs as.
pod_service_account := concat("/", [input.namespace, object.get(input.pod, "serviceAccount", "default")]) if input.pod

service_accounts contains requester_service_account

service_accounts contains pod_service_account

# matches is true when the subjects of a grant or exemption cover the request.
matches(s) if {
	namespaces_match(s.namespaces)
	service_accounts_match(s.serviceAccounts)
	users_match(s.users)
	groups_match(s.groups)
}

namespaces_match(patterns) if count(patterns) == 0

namespaces_match(patterns) if {
	some p in patterns
	glob.match(p, [], input.namespace)
}

service_accounts_match(names) if count(names) == 0

service_accounts_match(names) if {
	some n in names
	n in service_accounts
}

users_match(names) if count(names) == 0

users_match(names) if input.user.username in names

groups_match(names) if count(names) == 0

groups_match(names) if {
	some g in object.get(input.user, "groups", [])
	g in names
}

# expired is true for a grant or exemption whose expiry lies in the past.
expired(g) if {
	g.expiresNs > 0
	time.now_ns() > g.expiresNs
}

# active lists the grants that apply to the request and have not expired.
active := [g |
	some g in config.grants
	matches(g)
	not expired(g)
]

# expired_matching lists grants that would apply but have expired.
expired_matching := [g |
	some g in config.grants
	matches(g)
	expired(g)
]

# expiry_note tells, for a message, which expired grants would have allowed
# something: pass the names of the expired grants that would have.
expiry_note(names) := "" if count(names) == 0

expiry_note(names) := sprintf(" (grant %s expired)", [concat(", ", [sprintf("%q", [n]) | some n in names])]) if {
	count(names) > 0
}

# exempt is true when an active exemption lifts the rule with this id.
exempt(id) if {
	some e in config.exemptions
	matches(e)
	not expired(e)
	rule_listed(e.rules, id)
}

rule_listed(rules, _) if count(rules) == 0

rule_listed(rules, id) if id in rules

# subject describes the request's subject for messages.
subject := sprintf("namespace %q", [input.namespace])
