package policies

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Config is the policy configuration a cluster admin writes (docs/configuration.md).
// It reaches Rego as data.portreeve.config in its normalised form (see Data).
type Config struct {
	APIVersion string                `json:"apiVersion"`
	Kind       string                `json:"kind"`
	Rules      map[string]RuleConfig `json:"rules,omitempty"`
	Grants     []Grant               `json:"grants,omitempty"`
	Exemptions []Exemption           `json:"exemptions,omitempty"`
	// NamespaceOptOut names who may switch Portreeve off for a namespace (see
	// NamespaceOptOut); DefaultNamespaceOptOut when unset.
	NamespaceOptOut *NamespaceOptOut `json:"namespaceOptOut,omitempty"`
}

// NamespaceOptOut names the subjects who may set the opt-out label on a
// namespace (the chart's webhook.ignoreLabel): the webhooks never see such a
// namespace again, so setting it is a cluster admin's act, whoever may create
// or update namespaces. Any entry of any list matches.
type NamespaceOptOut struct {
	Users           []string `json:"users,omitempty"`
	Groups          []string `json:"groups,omitempty"`
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
}

// DefaultNamespaceOptOut lets the cluster's superusers (system:masters) opt
// a namespace out, and nobody else.
var DefaultNamespaceOptOut = NamespaceOptOut{Groups: []string{"system:masters"}}

// OptOut returns who may opt a namespace out.
func (c *Config) OptOut() NamespaceOptOut {
	if c.NamespaceOptOut == nil {
		return DefaultNamespaceOptOut
	}
	return *c.NamespaceOptOut
}

// Allows reports whether u may set the opt-out label.
func (o NamespaceOptOut) Allows(u User) bool {
	if slices.Contains(o.Users, u.Username) {
		return true
	}
	for _, g := range u.Groups {
		if slices.Contains(o.Groups, g) {
			return true
		}
	}
	a, ok := serviceAccountOf(u.Username)
	return ok && slices.Contains(o.ServiceAccounts, a.namespace+"/"+a.name)
}

// String says who may, for messages: "users alice; groups system:masters".
func (o NamespaceOptOut) String() string {
	var parts []string
	for _, l := range []struct {
		what  string
		names []string
	}{{"users", o.Users}, {"groups", o.Groups}, {"service accounts", o.ServiceAccounts}} {
		if len(l.names) > 0 {
			parts = append(parts, l.what+" "+strings.Join(l.names, ", "))
		}
	}
	if len(parts) == 0 {
		return "nobody"
	}
	return strings.Join(parts, "; ")
}

// RuleConfig holds the settings of one rule.
type RuleConfig struct {
	Mode Mode `json:"mode"`
}

// Mode says what a rule's findings do to a request.
type Mode string

// The modes a rule can be in.
const (
	ModeDeny    Mode = "deny"
	ModeWarn    Mode = "warn"
	ModeDryRun  Mode = "dryrun"
	ModeRewrite Mode = "rewrite"
	ModeOff     Mode = "off"
)

var modes = []Mode{ModeDeny, ModeWarn, ModeDryRun, ModeRewrite, ModeOff}

// UnmarshalJSON reads a mode. YAML 1.1 reads a bare `off` as the boolean
// false (which sigs.k8s.io/yaml hands a string field as "false"), so false
// is off: `mode: off` means what it says unquoted.
func (m *Mode) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		if string(bytes.TrimSpace(b)) != "false" {
			return fmt.Errorf("must be one of deny, warn, dryrun, rewrite, off; got %s", b)
		}
		s = "false"
	}
	if s == "false" {
		s = string(ModeOff)
	}
	*m = Mode(s)
	return nil
}

// Subjects names who a grant or an exemption applies to. Within a list any
// entry matches; across the lists that are set, all must match.
type Subjects struct {
	Namespaces      []string `json:"namespaces,omitempty"`
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
	Users           []string `json:"users,omitempty"`
	Groups          []string `json:"groups,omitempty"`
}

// Grant allows some kinds of exposure to some subjects.
type Grant struct {
	Name string `json:"name"`
	Subjects
	HostNetwork    bool          `json:"hostNetwork,omitempty"`
	HostPorts      []string      `json:"hostPorts,omitempty"`
	NodePorts      []string      `json:"nodePorts,omitempty"`
	LoadBalancer   *LoadBalancer `json:"loadBalancer,omitempty"`
	ExternalIPs    []string      `json:"externalIPs,omitempty"`
	IngressDomains []string      `json:"ingressDomains,omitempty"`
	IngressClasses []string      `json:"ingressClasses,omitempty"`
	Expires        string        `json:"expires,omitempty"`
	Reason         string        `json:"reason,omitempty"`
}

// LoadBalancer is `true`, `false` or an object with conditions.
type LoadBalancer struct {
	Allowed              bool     `json:"-"`
	Classes              []string `json:"classes,omitempty"`
	SourceRangesRequired bool     `json:"sourceRangesRequired,omitempty"`
}

// MarshalJSON writes what UnmarshalJSON reads back as the same value: false,
// true, or the object of conditions (which means allowed).
func (lb LoadBalancer) MarshalJSON() ([]byte, error) {
	switch {
	case !lb.Allowed:
		return []byte("false"), nil
	case len(lb.Classes) == 0 && !lb.SourceRangesRequired:
		return []byte("true"), nil
	}
	type plain LoadBalancer
	return json.Marshal(plain(lb))
}

// UnmarshalJSON accepts a boolean or an object.
func (lb *LoadBalancer) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch string(b) {
	case "true":
		*lb = LoadBalancer{Allowed: true}
		return nil
	case "false", "null":
		*lb = LoadBalancer{}
		return nil
	}
	type plain LoadBalancer
	var p plain
	if err := strictUnmarshal(b, &p); err != nil {
		return err
	}
	*lb = LoadBalancer(p)
	lb.Allowed = true
	return nil
}

// Exemption lifts some or all rules for some subjects, for a while and a reason.
type Exemption struct {
	Name string `json:"name"`
	Subjects
	Rules   []string `json:"rules,omitempty"`
	Expires string   `json:"expires,omitempty"`
	Reason  string   `json:"reason,omitempty"`
}

//go:embed default-config.yaml
var defaultConfigYAML []byte

// DefaultConfig is the built-in configuration: everything granted to
// kube-system, nothing elsewhere, every rule in deny mode.
func DefaultConfig() *Config {
	c, err := ParseConfig(defaultConfigYAML, nil)
	if err != nil {
		panic(fmt.Sprintf("built-in default config is invalid: %v", err))
	}
	return c
}

// ParseConfig decodes and validates a configuration. It reports every
// problem at once, each naming its key path (*ConfigError, joined one per
// line, sorted by path): unknown keys, values of the wrong type, then the
// checks of Validate on whatever could be read. knownRules adds rule ids
// beyond the built-in ones (custom rules).
func ParseConfig(data []byte, knownRules []string) (*Config, error) {
	tree, problems, ok := readTree(data)
	if !ok {
		return nil, joinConfigErrors(problems)
	}
	var tc typeChecker
	clean := tc.check("", tree, configType)
	problems = append(problems, tc.problems...)
	// What passed the check decodes: every key is known, every value fits.
	var c Config
	b, err := json.Marshal(clean)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil {
		return nil, joinConfigErrors(append(problems, &ConfigError{Message: err.Error()}))
	}
	for _, p := range c.validate(knownRules) {
		if !tc.covers(p.Path) { // a value already rejected is not judged again
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		return nil, joinConfigErrors(problems)
	}
	return &c, nil
}

func strictUnmarshal(data []byte, v any) error {
	return yaml.UnmarshalStrict(data, v)
}

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
	rest := strings.TrimPrefix(d, "*.")
	if rest == "" || strings.ContainsAny(rest, "*/: ") || strings.HasPrefix(rest, ".") || strings.HasSuffix(rest, ".") {
		return fmt.Errorf("not a domain such as example.com or *.example.com: %q", d)
	}
	return nil
}

// PortRange is an inclusive range of ports, for one protocol or all ("").
type PortRange struct {
	From     int    `json:"from"`
	To       int    `json:"to"`
	Protocol string `json:"protocol,omitempty"`
}

// ParsePortRange reads "80", "8000-8100" or, when withProtocol, "53/UDP".
func ParsePortRange(s string, withProtocol bool) (PortRange, error) {
	var r PortRange
	spec := s
	if p, proto, ok := strings.Cut(s, "/"); ok {
		if !withProtocol {
			return r, fmt.Errorf("%q: a protocol is not allowed here", s)
		}
		switch proto {
		case "TCP", "UDP", "SCTP":
		default:
			return r, fmt.Errorf("%q: protocol must be TCP, UDP or SCTP", s)
		}
		spec, r.Protocol = p, proto
	}
	from, to, isRange := strings.Cut(spec, "-")
	var err error
	if r.From, err = strconv.Atoi(from); err != nil {
		return r, fmt.Errorf("%q: not a port or port range such as 80 or 8000-8100", s)
	}
	r.To = r.From
	if isRange {
		if r.To, err = strconv.Atoi(to); err != nil {
			return r, fmt.Errorf("%q: not a port or port range such as 80 or 8000-8100", s)
		}
	}
	if r.From < 1 || r.To > 65535 || r.From > r.To {
		return r, fmt.Errorf("%q: ports must lie in 1-65535 with the lower bound first", s)
	}
	return r, nil
}

// Mode returns the configured mode of a rule (deny when unset).
func (c *Config) Mode(id string) Mode {
	if rc, ok := c.Rules[id]; ok {
		return rc.Mode
	}
	return ModeDeny
}

// Data is the normalised form handed to Rego as data.portreeve.config:
// ranges parsed, expiry as Unix nanoseconds, every rule's mode present.
func (c *Config) Data(ruleIDs []string) map[string]any {
	rules := map[string]any{}
	for _, id := range ruleIDs {
		rules[id] = map[string]any{"mode": string(c.Mode(id))}
	}
	grants := make([]any, 0, len(c.Grants))
	domains := false
	for _, g := range c.Grants {
		m := subjectData(g.Name, g.Subjects, g.Expires, g.Reason)
		m["hostNetwork"] = g.HostNetwork
		m["hostPorts"] = rangesData(g.HostPorts, true)
		m["nodePorts"] = rangesData(g.NodePorts, false)
		lb := map[string]any{"allowed": false, "classes": []any{}, "sourceRangesRequired": false}
		if g.LoadBalancer != nil && g.LoadBalancer.Allowed {
			lb["allowed"] = true
			lb["classes"] = strSlice(g.LoadBalancer.Classes)
			lb["sourceRangesRequired"] = g.LoadBalancer.SourceRangesRequired
		}
		m["loadBalancer"] = lb
		m["externalIPs"] = strSlice(g.ExternalIPs)
		m["ingressDomains"] = strSlice(g.IngressDomains)
		m["ingressClasses"] = strSlice(g.IngressClasses)
		domains = domains || len(g.IngressDomains) > 0
		grants = append(grants, m)
	}
	exemptions := make([]any, 0, len(c.Exemptions))
	for _, e := range c.Exemptions {
		m := subjectData(e.Name, e.Subjects, e.Expires, e.Reason)
		m["rules"] = strSlice(e.Rules)
		exemptions = append(exemptions, m)
	}
	return map[string]any{
		"rules":                    rules,
		"grants":                   grants,
		"exemptions":               exemptions,
		"ingressDomainsConfigured": domains,
	}
}

func subjectData(name string, s Subjects, expires, reason string) map[string]any {
	m := map[string]any{
		"name":            name,
		"namespaces":      strSlice(s.Namespaces),
		"serviceAccounts": strSlice(s.ServiceAccounts),
		"users":           strSlice(s.Users),
		"groups":          strSlice(s.Groups),
		"reason":          reason,
		"expires":         expires,
		"expiresNs":       int64(0),
	}
	if t, err := parseExpires(expires); err == nil && expires != "" {
		m["expiresNs"] = t.UnixNano()
	}
	return m
}

func rangesData(specs []string, withProtocol bool) []any {
	out := make([]any, 0, len(specs))
	for _, s := range specs {
		r, err := ParsePortRange(s, withProtocol)
		if err != nil {
			continue // Validate reported it.
		}
		out = append(out, map[string]any{"from": r.From, "to": r.To, "protocol": r.Protocol, "text": s})
	}
	return out
}

func strSlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
