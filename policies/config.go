package policies

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

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
	// GatewayAPI holds the settings of the Gateway API rules.
	GatewayAPI *GatewayAPI `json:"gatewayAPI,omitempty"`
}

// GatewayAPI holds the settings of the Gateway API rules.
type GatewayAPI struct {
	// InternalClasses names the GatewayClasses whose Gateways expose nothing
	// outside the cluster (their implementation provisions no load
	// balancer): gateway-load-balancer does not judge them.
	InternalClasses []string `json:"internalClasses,omitempty"`
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
	var internal []string
	if c.GatewayAPI != nil {
		internal = c.GatewayAPI.InternalClasses
	}
	return map[string]any{
		"rules":                    rules,
		"grants":                   grants,
		"exemptions":               exemptions,
		"ingressDomainsConfigured": domains,
		"gatewayAPI":               map[string]any{"internalClasses": strSlice(internal)},
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
