# METADATA
# title: Portreeve entry points
# description: |
#   Collects the findings of every rule package portreeve.rules.<id> whose mode is not
#   off and that no active exemption lifts. The engine evaluates findings (deny and warn)
#   and rewrites (the rewrite set of rules in rewrite mode).
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

# rewrites are JSON Patch operations {"rule", "op", "path", "value", "reason"}.
rewrites contains object.union(op, {"rule": id}) if {
	some id, cfg in data.portreeve.config.rules
	cfg.mode == "rewrite"
	not grants.exempt(id)
	some op in data.portreeve.rules[package_name(id)].rewrite
}

package_name(id) := replace(id, "-", "_")
