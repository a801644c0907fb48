package policies

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"
)

// Validate checks every value and returns all problems at once (each a
// *ConfigError, joined one per line, sorted by key path).
func (c *Config) Validate(knownRules []string) error {
	return joinConfigErrors(c.validate(knownRules))
}

func (c *Config) validate(knownRules []string) []*ConfigError {
	var problems []*ConfigError
	bad := func(key, format string, args ...any) {
		problems = append(problems, &ConfigError{Path: key, Message: fmt.Sprintf(format, args...)})
	}
	if c.APIVersion != "portreeve.io/v1alpha1" {
		bad("apiVersion", "must be portreeve.io/v1alpha1, got %q", c.APIVersion)
	}
	if c.Kind != "PolicyConfig" {
		bad("kind", "must be PolicyConfig, got %q", c.Kind)
	}
	known := RuleIDs()
	for _, id := range knownRules {
		if !slices.Contains(known, id) {
			known = append(known, id)
		}
	}
	for _, id := range sortedKeys(c.Rules) {
		if !slices.Contains(known, id) {
			bad(keyPath("rules", id), "unknown rule%s (known: %s)", didYouMean(id, known), strings.Join(known, ", "))
		}
		if !slices.Contains(modes, c.Rules[id].Mode) {
			bad(keyPath("rules", id)+".mode", "must be one of deny, warn, dryrun, rewrite, off; got %q", c.Rules[id].Mode)
		}
	}
	if c.GatewayAPI != nil {
		for i, class := range c.GatewayAPI.InternalClasses {
			if class == "" {
				bad(fmt.Sprintf("gatewayAPI.internalClasses[%d]", i), "must be a GatewayClass name, got an empty string")
			}
		}
	}
	names := map[string]bool{}
	for i, g := range c.Grants {
		key := fmt.Sprintf("grants[%d]", i)
		if g.Name == "" {
			bad(key+".name", "is required")
		} else if names["grant/"+g.Name] {
			bad(key+".name", "duplicate grant name %q", g.Name)
		}
		names["grant/"+g.Name] = true
		validateSubjects(key, g.Subjects, bad)
		validateExpires(key, g.Expires, bad)
		for j, p := range g.HostPorts {
			if _, err := ParsePortRange(p, true); err != nil {
				bad(fmt.Sprintf("%s.hostPorts[%d]", key, j), "%v", err)
			}
		}
		for j, p := range g.NodePorts {
			if _, err := ParsePortRange(p, false); err != nil {
				bad(fmt.Sprintf("%s.nodePorts[%d]", key, j), "%v", err)
			}
		}
		for j, cidr := range g.ExternalIPs {
			if _, err := netip.ParsePrefix(cidr); err != nil {
				bad(fmt.Sprintf("%s.externalIPs[%d]", key, j), "not a CIDR such as 203.0.113.0/24 or 2001:db8::/64: %q", cidr)
			}
		}
		for j, d := range g.IngressDomains {
			if err := validateDomain(d); err != nil {
				bad(fmt.Sprintf("%s.ingressDomains[%d]", key, j), "%v", err)
			}
		}
	}
	if o := c.NamespaceOptOut; o != nil {
		for j, sa := range o.ServiceAccounts {
			ns, name, ok := strings.Cut(sa, "/")
			if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
				bad(fmt.Sprintf("namespaceOptOut.serviceAccounts[%d]", j), "must be namespace/name, got %q", sa)
			}
		}
	}
	for i, e := range c.Exemptions {
		key := fmt.Sprintf("exemptions[%d]", i)
		if e.Name == "" {
			bad(key+".name", "is required")
		} else if names["exemption/"+e.Name] {
			bad(key+".name", "duplicate exemption name %q", e.Name)
		}
		names["exemption/"+e.Name] = true
		validateSubjects(key, e.Subjects, bad)
		validateExpires(key, e.Expires, bad)
		if e.Reason == "" {
			bad(key+".reason", "is required: say why the exemption exists")
		}
		for j, id := range e.Rules {
			if !slices.Contains(known, id) {
				bad(fmt.Sprintf("%s.rules[%d]", key, j), "unknown rule %q%s", id, didYouMean(id, known))
			}
		}
	}
	return problems
}

func validateSubjects(key string, s Subjects, bad func(key, format string, args ...any)) {
	if len(s.Namespaces)+len(s.ServiceAccounts)+len(s.Users)+len(s.Groups) == 0 {
		bad(key, "names no subject: set namespaces, serviceAccounts, users or groups")
	}
	for j, ns := range s.Namespaces {
		if _, err := path.Match(ns, ""); err != nil || ns == "" {
			bad(fmt.Sprintf("%s.namespaces[%d]", key, j), "not a namespace name or glob: %q", ns)
		}
	}
	for j, sa := range s.ServiceAccounts {
		ns, name, ok := strings.Cut(sa, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			bad(fmt.Sprintf("%s.serviceAccounts[%d]", key, j), "must be namespace/name, got %q", sa)
		}
	}
}

func validateExpires(key, expires string, bad func(key, format string, args ...any)) {
	if expires == "" {
		return
	}
	if _, err := parseExpires(expires); err != nil {
		bad(key+".expires", "must be a date (2027-06-30) or an RFC 3339 time, got %q", expires)
	}
}

// parseExpires reads a date (valid through the end of that day, UTC) or an RFC 3339 time.
func parseExpires(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.Add(24*time.Hour - time.Nanosecond), nil
	}
	return time.Parse(time.RFC3339, s)
}

func validateDomain(d string) error {
	if d == "*" { // every host
		return nil
	}
	rest := strings.TrimPrefix(d, "*.")
	if rest == "" || strings.ContainsAny(rest, "*/: ") || strings.HasPrefix(rest, ".") || strings.HasSuffix(rest, ".") {
		return fmt.Errorf("not a domain such as example.com or *.example.com: %q", d)
	}
	return nil
}
