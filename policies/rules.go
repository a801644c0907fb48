package policies

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/portreeve/portreeve/policies/exposure"
)

// RuleInfo describes one rule package.
type RuleInfo struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Mode        Mode   `json:"mode"`
	Builtin     bool   `json:"builtin"`
	// DefaultMode is the mode from the METADATA annotation custom.mode, used
	// when the configuration names none ("" means deny).
	DefaultMode Mode `json:"defaultMode,omitempty"`
	// FailurePolicy (custom.failurePolicy: deny or ignore; default deny) says
	// what an evaluation error of this rule does to its decision.
	FailurePolicy FailurePolicy `json:"failurePolicy"`
	// File is the module that declares the rule package (the first, if several do).
	File string `json:"file,omitempty"`
	// AppliesTo lists the families of objects the rule judges (custom.appliesTo:
	// pods, services, ingresses); empty means every object. The engine does not
	// evaluate a rule for other objects at all.
	AppliesTo []string `json:"appliesTo,omitempty"`
}

// Families of objects: what has a pod spec, Services, Ingresses, Gateway API
// Gateways (and ListenerSets), Gateway API routes.
const (
	FamilyPods      = exposure.FamilyPods
	FamilyServices  = exposure.FamilyServices
	FamilyIngresses = exposure.FamilyIngresses
	FamilyGateways  = exposure.FamilyGateways
	FamilyRoutes    = exposure.FamilyRoutes
)

var families = []string{FamilyPods, FamilyServices, FamilyIngresses, FamilyGateways, FamilyRoutes}

// Family names the family of the input's object (FamilyPods, FamilyServices,
// FamilyIngresses, FamilyGateways, FamilyRoutes; "" for other kinds).
func (in *Input) Family() string {
	if in.Exposure != nil {
		return in.Exposure.Kind.Family
	}
	switch {
	case in.Pod != nil:
		return FamilyPods
	case in.Kind.Group == "" && in.Kind.Kind == "Service":
		return FamilyServices
	case in.Kind.Group == "networking.k8s.io" && in.Kind.Kind == "Ingress":
		return FamilyIngresses
	}
	if k := exposure.Lookup(in.Kind); k != nil {
		return k.Family
	}
	return ""
}

func (r RuleInfo) appliesTo(family string) bool {
	return len(r.AppliesTo) == 0 || family == "" || slices.Contains(r.AppliesTo, family)
}

// The conflict rules: they judge a request against what the cluster holds
// (input.facts), so the inventory, its reservations and the metrics name them.
const (
	RuleHostPortConflicts    = "host-port-conflicts"
	RuleNodePortConflicts    = "node-port-conflicts"
	RuleIngressHostConflicts = "ingress-host-conflicts"
)

// FailurePolicy says what a rule that fails to evaluate decides.
type FailurePolicy string

// The failure policies.
const (
	// FailDeny turns the error into a finding of the rule (a denial in deny mode).
	FailDeny FailurePolicy = "deny"
	// FailIgnore drops the rule's findings for that request.
	FailIgnore FailurePolicy = "ignore"
)

func discoverRules(c *ast.Compiler, builtinIDs []string) ([]RuleInfo, error) {
	byID := map[string]*RuleInfo{}
	var errs []error
	for _, name := range sortedKeys(c.Modules) {
		m := c.Modules[name]
		id, ok := ruleID(m)
		if !ok {
			continue
		}
		info := byID[id]
		if info == nil {
			info = &RuleInfo{ID: id, Builtin: slices.Contains(builtinIDs, id), FailurePolicy: FailDeny, File: name}
			byID[id] = info
		}
		for _, a := range m.Annotations {
			if a.Scope != "package" {
				continue
			}
			if a.Title != "" {
				info.Title = a.Title
			}
			if a.Description != "" {
				info.Description = strings.TrimSpace(a.Description)
			}
			if err := readCustom(info, a); err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: rule %s: %w", name, a.Location.Row, id, err))
			}
		}
	}
	out := make([]RuleInfo, 0, len(byID))
	for _, id := range sortedKeys(byID) {
		out = append(out, *byID[id])
	}
	return out, errors.Join(errs...)
}

// readCustom reads the METADATA custom keys Portreeve knows: mode and failurePolicy.
func readCustom(info *RuleInfo, a *ast.Annotations) error {
	if v, ok := a.Custom["appliesTo"]; ok {
		list, _ := v.([]any)
		if len(list) == 0 {
			return fmt.Errorf("custom.appliesTo must list some of %v; got %v", families, v)
		}
		for _, item := range list {
			f, _ := item.(string)
			if !slices.Contains(families, f) {
				return fmt.Errorf("custom.appliesTo must list some of %v; got %v", families, item)
			}
			info.AppliesTo = append(info.AppliesTo, f)
		}
	}
	if v, ok := a.Custom["mode"]; ok {
		m, _ := v.(string)
		if !slices.Contains(modes, Mode(m)) {
			return fmt.Errorf("custom.mode must be one of deny, warn, dryrun, rewrite, off; got %v", v)
		}
		info.DefaultMode = Mode(m)
	}
	if v, ok := a.Custom["failurePolicy"]; ok {
		p, _ := v.(string)
		if p != string(FailDeny) && p != string(FailIgnore) {
			return fmt.Errorf("custom.failurePolicy must be deny or ignore; got %v", v)
		}
		info.FailurePolicy = FailurePolicy(p)
	}
	return nil
}

// withDefaultModes returns cfg with each rule's default mode (from its
// metadata) filled in where cfg names no mode; cfg itself is not changed.
func withDefaultModes(cfg *Config, rules []RuleInfo) *Config {
	var out *Config
	for _, r := range rules {
		if r.DefaultMode == "" {
			continue
		}
		if _, set := cfg.Rules[r.ID]; set {
			continue
		}
		if out == nil {
			c := *cfg
			c.Rules = make(map[string]RuleConfig, len(cfg.Rules)+1)
			for k, v := range cfg.Rules {
				c.Rules[k] = v
			}
			out = &c
		}
		out.Rules[r.ID] = RuleConfig{Mode: r.DefaultMode}
	}
	if out == nil {
		return cfg
	}
	return out
}

// CustomRuleIDs lists the ids of the rule packages that modules declare,
// sorted (modules that do not parse are skipped: New reports them).
func CustomRuleIDs(modules map[string]string) []string {
	var ids []string
	for name, src := range modules {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			continue
		}
		if id, ok := ruleID(m); ok && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// RuleIDs lists the ids of the built-in rules.
func RuleIDs() []string { return slices.Clone(builtinRuleIDs()) }

// builtinRuleIDs parses the embedded modules once: they never change, and
// every configuration that is parsed or validated asks for them.
var builtinRuleIDs = sync.OnceValue(func() []string {
	src, err := BuiltinModules()
	if err != nil {
		return nil
	}
	var ids []string
	for name, s := range src {
		m, err := ast.ParseModuleWithOpts(name, s, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			continue
		}
		if id, ok := ruleID(m); ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
})
