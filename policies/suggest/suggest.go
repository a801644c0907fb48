// Package suggest turns the exposure that exists today (objects read from a
// cluster or from manifests: workloads, Services, Ingresses and Gateway API
// objects) into grants: a policy configuration under which the rules admit
// every one of those objects, and nothing wider. What no grant can fix (two
// holders of one hostPort, two namespaces claiming one Ingress or route
// host, ...) is reported instead of granted.
//
// Whether an object is covered already is decided by the engine itself: each
// object is reviewed as `portreeve eval` reviews it (a CREATE by a user with
// no grants of its own) under the configuration being added to, and only what
// the rules deny is granted. The package does no I/O.
package suggest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/offline"
	"github.com/portreeve/portreeve/webhook/review"
)

// Object is one object to suggest grants for, as JSON.
type Object struct {
	// Source says where the object was read, for messages ("deploy.yaml#2", "cluster").
	Source string
	JSON   []byte
}

// Options configure Suggest.
type Options struct {
	// Base is the configuration the suggestion adds to: its rule modes,
	// grants and exemptions are kept unchanged. DefaultConfig when nil.
	Base *policies.Config
	// Modules are custom Rego modules (serve --policy-dir) whose rule ids Base may name.
	Modules map[string]string
	// Namespace is the namespace of objects that name none ("default" when empty).
	Namespace string
	// SkipNamespaces maps the namespaces the webhooks never review to why
	// ("Portreeve's own namespace", ...; may be ""). Their objects are skipped.
	SkipNamespaces map[string]string
	// NodePortRange is the cluster's Service NodePort range (DefaultNodePortRange when zero).
	NodePortRange policies.PortSpan
	// Widen grants ranges instead of exact ports: hostPorts from the lowest to
	// the highest port in use per grant and protocol, nodePorts the whole
	// NodePort range (which also grants Services that name no nodePort).
	Widen bool
	// WildcardDomains grants *.parent for Ingress, listener and route hosts
	// of three labels or more.
	WildcardDomains bool
	// Expires sets expires on every new grant: a date (2027-06-30) or an RFC 3339 time.
	Expires string
	// Now is the clock that --expires is checked against (time.Now when nil).
	Now func() time.Time
}

// Ref names an object.
type Ref struct {
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
}

// String renders the reference as namespace/Kind/name.
func (r Ref) String() string { return r.Namespace + "/" + r.Kind + "/" + r.Name }

func compareRefs(a, b Ref) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
}

// Problem is exposure that was not granted, and why.
type Problem struct {
	Message string `json:"message"`
	// Objects are the objects concerned, sorted.
	Objects []Ref `json:"objects"`
}

// Skipped is an object that was not reviewed, and why.
type Skipped struct {
	Object Ref    `json:"object"`
	Source string `json:"source"`
	Reason string `json:"reason"`
}

// Refusal is an object the suggested configuration still refuses.
type Refusal struct {
	Object Ref `json:"object"`
	// Messages are the rules' findings (rule: message (field); fix: ...).
	Messages []string `json:"messages"`
}

// Result is a suggestion.
type Result struct {
	// Config is Base with the new grants appended.
	Config *policies.Config `json:"-"`
	// Added are the new grants, in the order they were appended.
	Added []policies.Grant `json:"-"`
	// Reviewed counts the objects reviewed.
	Reviewed int `json:"reviewed"`
	// Skipped are the objects not reviewed.
	Skipped []Skipped `json:"skipped"`
	// Conflicts are what no grant can fix: a hostPort two workloads hold on
	// shared nodes, a hostPort in the NodePort range, a nodePort two Services
	// hold, an Ingress or route host and path two namespaces claim.
	Conflicts []Problem `json:"conflicts"`
	// Inexact is exposure that cannot be granted exactly (a node port the
	// apiserver has not allocated yet, an address that is not an IP, the
	// hostnames a route inherits from a parent not read).
	Inexact []Problem `json:"inexact"`
	// Refused are the objects the suggested configuration still refuses.
	Refused []Refusal `json:"refused"`
}

// Unresolved reports whether anything was left ungranted: conflicts,
// inexact exposure or objects the suggestion still refuses.
func (r *Result) Unresolved() bool {
	return len(r.Conflicts)+len(r.Inexact)+len(r.Refused) > 0
}

// User is the requester of the reviews: a user with no grants of its own,
// so that only grants by namespace and service account apply, as they do to
// an existing workload whatever its creator.
var User = policies.User{Username: "portreeve:suggest", Groups: []string{"system:authenticated"}}

// Suggest reviews the objects under opts.Base and returns the grants that
// make the rules admit them.
func Suggest(ctx context.Context, objects []Object, opts Options) (*Result, error) {
	if opts.Base == nil {
		opts.Base = policies.DefaultConfig()
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.NodePortRange.From == 0 {
		opts.NodePortRange = policies.DefaultNodePortRange
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	known := policies.CustomRuleIDs(opts.Modules)
	if err := opts.Base.Validate(known); err != nil {
		return nil, err
	}
	if err := CheckExpires(opts.Expires, opts.Now()); err != nil {
		return nil, err
	}
	res := &Result{Skipped: []Skipped{}, Conflicts: []Problem{}, Inexact: []Problem{}, Refused: []Refusal{}}
	records, listeners, err := readObjects(objects, opts, res)
	if err != nil {
		return nil, err
	}
	res.Reviewed = len(records)
	unknownParents := inheritHosts(records, listeners)
	res.Conflicts = findConflicts(records, opts.NodePortRange, listeners)

	// The rules see the cluster's NodePort range, a route's parents among the
	// objects read, and no inventory: conflicts are found here, across the
	// objects read, not by the rules.
	facts := newSuggestFacts(opts.NodePortRange, records)
	judge, err := newReviewer(ctx, judgingConfig(opts.Base, known, true), opts.Modules, facts)
	if err != nil {
		return nil, err
	}
	for _, r := range records {
		rep, err := reviewObject(ctx, judge, r)
		if err != nil {
			return nil, err
		}
		r.markNeeded(rep.Violations)
	}
	res.Inexact = append(inexact(records, opts.Widen), unknownParents...)

	added := buildGrants(records, opts, grantNames(opts.Base))
	out := cloneConfig(opts.Base)
	out.Grants = append(out.Grants, added...)
	if _, err := Marshal(out, known); err != nil {
		return nil, fmt.Errorf("the suggested configuration does not validate (a bug): %w", err)
	}
	res.Config, res.Added = out, added

	verify, err := newReviewer(ctx, judgingConfig(out, known, false), opts.Modules, facts)
	if err != nil {
		return nil, err
	}
	for _, r := range records {
		rep, err := reviewObject(ctx, verify, r)
		if err != nil {
			return nil, err
		}
		if len(rep.Violations) > 0 {
			ref := Refusal{Object: r.ref}
			for _, v := range rep.Violations {
				ref.Messages = append(ref.Messages, v.Message)
			}
			res.Refused = append(res.Refused, ref)
		}
	}
	return res, nil
}

// CheckExpires validates an --expires value as the configuration does (a
// date such as 2027-06-30, valid through that day, or an RFC 3339 time) and
// refuses one in the past: grants that expired grant nothing.
func CheckExpires(s string, now time.Time) error {
	if s == "" {
		return nil
	}
	probe := policies.Config{
		APIVersion: "portreeve.io/v1alpha1", Kind: "PolicyConfig",
		Grants: []policies.Grant{{Name: "probe", Subjects: policies.Subjects{Namespaces: []string{"probe"}}, Expires: s}},
	}
	if err := probe.Validate(nil); err != nil {
		return fmt.Errorf("--expires: must be a date (2027-06-30) or an RFC 3339 time, got %q", s)
	}
	end, err := time.Parse(time.DateOnly, s)
	if err == nil {
		end = end.Add(24*time.Hour - time.Nanosecond)
	} else if end, err = time.Parse(time.RFC3339, s); err != nil {
		return fmt.Errorf("--expires: must be a date (2027-06-30) or an RFC 3339 time, got %q", s)
	}
	if !end.After(now) {
		return fmt.Errorf("--expires: %s lies in the past: the grants would grant nothing", s)
	}
	return nil
}

// grantableRules are the rules whose denials a grant can lift.
var grantableRules = []string{
	"external-ips", "gateway-addresses", "gateway-hosts", "gateway-load-balancer", "host-network", "host-ports",
	"ingress-hosts", "load-balancer", "node-ports",
}

// probeDomain is granted, in the judging configuration only, to a user that
// never makes a request: it makes the ingress-hosts and gateway-hosts rules
// judge every host, as they will once the suggestion names ingressDomains.
const probeDomain = "portreeve-suggest.invalid"

// judgingConfig is cfg as the objects are judged: every rule denies (a rule
// in warn, dryrun or rewrite mode will deny once enforced; off stays off),
// and with probe, Ingress and Gateway API hosts are restricted.
func judgingConfig(cfg *policies.Config, known []string, probe bool) *policies.Config {
	out := cloneConfig(cfg)
	out.Rules = map[string]policies.RuleConfig{}
	for _, id := range append(policies.RuleIDs(), known...) {
		mode := policies.ModeDeny
		if cfg.Mode(id) == policies.ModeOff {
			mode = policies.ModeOff
		}
		out.Rules[id] = policies.RuleConfig{Mode: mode}
	}
	if probe {
		name := uniqueName("portreeve-suggest-probe", grantNames(cfg))
		out.Grants = append(out.Grants, policies.Grant{
			Name:           name,
			Subjects:       policies.Subjects{Users: []string{"portreeve:suggest:nobody"}},
			IngressDomains: []string{probeDomain},
		})
	}
	return out
}

func newReviewer(ctx context.Context, cfg *policies.Config, modules map[string]string, facts review.FactsSource) (*review.Reviewer, error) {
	engine, err := policies.New(ctx, policies.Options{Config: cfg, Modules: modules})
	if err != nil {
		return nil, err
	}
	r := review.NewReviewer(engine)
	r.UseFacts(facts)
	return r, nil
}

// reviewObject reviews the object of r as `portreeve eval` does (a CREATE
// by User, through the offline review) and returns eval's report.
func reviewObject(ctx context.Context, rv *review.Reviewer, r *record) (*offline.Report, error) {
	req, err := offline.NewRequest(r.raw, nil, r.ref.Namespace, User)
	if err == nil {
		var out *offline.Outcome
		if out, err = offline.Review(ctx, rv, req); err == nil {
			return out.Report(r.source)
		}
	}
	return nil, fmt.Errorf("%s (%s): %w", r.ref, r.source, err)
}

func cloneConfig(c *policies.Config) *policies.Config {
	out := *c
	out.Grants = slices.Clone(c.Grants)
	out.Exemptions = slices.Clone(c.Exemptions)
	if c.Rules != nil {
		out.Rules = make(map[string]policies.RuleConfig, len(c.Rules))
		for k, v := range c.Rules {
			out.Rules[k] = v
		}
	}
	return &out
}

func grantNames(c *policies.Config) map[string]bool {
	names := map[string]bool{}
	for _, g := range c.Grants {
		names[g.Name] = true
	}
	return names
}

// uniqueName returns name, or name-2, name-3, ... whichever is not taken yet.
func uniqueName(name string, taken map[string]bool) string {
	out := name
	for i := 2; taken[out]; i++ {
		out = fmt.Sprintf("%s-%d", name, i)
	}
	return out
}
