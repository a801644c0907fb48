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
requester_service_account := requester_account(input)

requester_account(req) := concat("/", [parts[2], parts[3]]) if {
	parts := split(req.user.username, ":")
	count(parts) == 4
	parts[0] == "system"
	parts[1] == "serviceaccount"
}

# pod_service_account is the service account a pod (or pod template) runs as.
pod_service_account := pod_account(input)

pod_account(req) := concat("/", [req.namespace, object.get(req.pod, "serviceAccount", "default")]) if req.pod

service_accounts := accounts_of(input)

accounts_of(req) := {a | some a in [requester_account(req)]} | {a | some a in [pod_account(req)]}

# matches is true when the subjects of a grant or exemption cover the request.
matches(s) if applies(s, input)

# applies is true when the subjects of a grant or exemption cover the request req.
applies(s, req) if {
	namespaces_match(s.namespaces, req)
	service_accounts_match(s.serviceAccounts, req)
	users_match(s.users, req)
	groups_match(s.groups, req)
}

namespaces_match(patterns, _) if count(patterns) == 0

namespaces_match(patterns, req) if {
	some p in patterns
	glob.match(p, [], req.namespace)
}

service_accounts_match(names, _) if count(names) == 0

service_accounts_match(names, req) if {
	some n in names
	n in accounts_of(req)
}

users_match(names, _) if count(names) == 0

users_match(names, req) if req.user.username in names

groups_match(names, _) if count(names) == 0

groups_match(names, req) if {
	some g in object.get(req.user, "groups", [])
	g in names
}

# expired is true for a grant or exemption whose expiry lies in the past.
expired(g) if expired_at(g, time.now_ns())

expired_at(g, now) if {
	g.expiresNs > 0
	now > g.expiresNs
}

# active lists the grants that apply to the request and have not expired, and
# expired_matching those that would apply but have expired. The engine resolves
# them once per request, in Go, into input.grants (see resolve).
active := input.grants.active

expired_matching := input.grants.expired

# resolve states what the engine puts in input.grants for a request req under
# the configuration cfg at time now (Unix nanoseconds); tests of the engine
# hold its Go implementation to this one, and Rego tests build inputs with it.
resolve(req, cfg, now) := {
	"active": [g | some g in cfg.grants; applies(g, req); not expired_at(g, now)],
	"expired": [g | some g in cfg.grants; applies(g, req); expired_at(g, now)],
}

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

# explanation lists every grant and exemption of the configuration with
# whether it applies to the request and, when not, why (for portreeve explain).
explanation := {
	"grants": [explain(g) | some g in config.grants],
	"exemptions": [explain(e) | some e in config.exemptions],
}

explain(s) := {"name": s.name, "applies": count(reasons) == 0, "reasons": reasons} if {
	reasons := [r |
		some r in [
			namespace_reason(s.namespaces),
			service_account_reason(s.serviceAccounts),
			user_reason(s.users),
			group_reason(s.groups),
			expiry_reason(s),
		]
		r != ""
	]
}

namespace_reason(patterns) := "" if namespaces_match(patterns, input)

namespace_reason(patterns) := sprintf("other namespace: %q is not in %s", [input.namespace, concat(", ", patterns)]) if {
	not namespaces_match(patterns, input)
}

service_account_reason(names) := "" if service_accounts_match(names, input)

service_account_reason(names) := sprintf("other service account: %s, not %s", [
	accounts_text, concat(", ", names),
]) if {
	not service_accounts_match(names, input)
}

accounts_text := "none" if count(service_accounts) == 0

accounts_text := concat(", ", sort(service_accounts)) if count(service_accounts) > 0

user_reason(names) := "" if users_match(names, input)

user_reason(names) := sprintf("other user: %q is not in %s", [input.user.username, concat(", ", names)]) if {
	not users_match(names, input)
}

group_reason(names) := "" if groups_match(names, input)

group_reason(names) := sprintf("other groups: none of %s is in %s", [
	concat(", ", object.get(input.user, "groups", [])), concat(", ", names),
]) if {
	not groups_match(names, input)
}

expiry_reason(s) := "" if not expired(s)

expiry_reason(s) := sprintf("expired: %s", [s.expires]) if expired(s)
