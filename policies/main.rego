# METADATA
# title: Portreeve entry points
# description: |
#   Collects the findings of every rule package portreeve.rules.<id> whose mode is not
#   off and that no active exemption lifts. The engine evaluates findings (deny and warn)
#   and rewrites (the rewrite set of rules in rewrite mode) of all rules at once, and
#   rule_findings and rule_rewrites of one rule at a time only to isolate a rule that fails.
package portreeve.main

import data.portreeve.lib.grants

# findings are {"rule", "type" ("deny"|"warn"), "msg", "field", "fix"} objects.
findings contains object.union(v, {"rule": id, "type": "deny"}) if {
	some id, cfg in data.portreeve.config.rules
	cfg.mode != "off"
	not grants.exempt(id)
	some v in data.portreeve.rules[package_name(id)].deny
}

findings contains object.union(v, {"rule": id, "type": "warn"}) if {
	some id, cfg in data.portreeve.config.rules
	cfg.mode != "off"
	not grants.exempt(id)
	some v in data.portreeve.rules[package_name(id)].warn
}

# rewrites are JSON Patch operations {"rule", "op", "path", "value", "reason"}:
# the rewrite set of rules in rewrite mode, and the allocate set of rules in any
# mode but off (allocations such as a nodePort from the namespace's own range).
rewrites contains object.union(op, {"rule": id}) if {
	some id, cfg in data.portreeve.config.rules
	cfg.mode == "rewrite"
	not grants.exempt(id)
	some op in data.portreeve.rules[package_name(id)].rewrite
}

rewrites contains object.union(op, {"rule": id}) if {
	some id, cfg in data.portreeve.config.rules
	cfg.mode != "off"
	not grants.exempt(id)
	some op in data.portreeve.rules[package_name(id)].allocate
}

# rule_findings are the findings of the rule with this id alone.
rule_findings(id) := {object.union(v, {"rule": id, "type": type}) |
	data.portreeve.config.rules[id].mode != "off"
	not grants.exempt(id)
	some type in ["deny", "warn"]
	some v in data.portreeve.rules[package_name(id)][type]
}

# rule_rewrites are the rewrites (and allocations) of the rule with this id alone.
rule_rewrites(id) := {object.union(op, {"rule": id}) |
	mode := data.portreeve.config.rules[id].mode
	mode != "off"
	not grants.exempt(id)
	some set in sets_for(mode)
	some op in data.portreeve.rules[package_name(id)][set]
}

sets_for(mode) := ["rewrite", "allocate"] if mode == "rewrite"

sets_for(mode) := ["allocate"] if mode != "rewrite"

package_name(id) := replace(id, "-", "_")
