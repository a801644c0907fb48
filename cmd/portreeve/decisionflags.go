package main

import (
	"fmt"
	"slices"

	"github.com/spf13/pflag"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/inventory"
	"github.com/portreeve/portreeve/webhook/offline"
	"github.com/portreeve/portreeve/webhook/policytest"
)

// evalUser is the requester of offline reviews: a user with no grants of its own.
var evalUser = policies.User{Username: "portreeve:eval", Groups: []string{"system:authenticated"}}

// decisionScope says which of the decision flags a command takes, and what
// they mean to it.
type decisionScope int

const (
	// forManifests: eval and explain review the objects of manifests.
	forManifests decisionScope = iota
	// forCluster: audit reviews the objects of a cluster, whose namespaces
	// and their labels come from the cluster.
	forCluster
	// forCases: test runs case files, whose settings win over the flags.
	forCases
)

// decisionFlags are the flags of what shapes an offline decision, one set
// for eval, explain, test and audit: the policy set (--config,
// --policy-dir), the cluster's NodePort range, the namespace and namespace
// labels of the objects, and the user making the requests.
type decisionFlags struct {
	configPath    string
	policyDir     string
	nodePortRange string
	namespace     string
	user          string
	groups        []string
	nsLabels      map[string]string
	// defaultUser makes the requests when --as and --as-group name none.
	defaultUser policies.User
}

func (f *decisionFlags) addFlags(fs *pflag.FlagSet, scope decisionScope, defaultUser policies.User) {
	f.defaultUser = defaultUser
	usage := func(s string) string { return s }
	if scope == forCases {
		usage = func(s string) string { return "for the cases that set none: " + s }
	}
	fs.StringVar(&f.configPath, "config", "", usage("policy configuration file (default: the built-in configuration)"))
	policyDirUsage := "folder of custom Rego rules, as for serve --policy-dir: they are evaluated, and the configuration may name their rule ids"
	if scope == forCases {
		policyDirUsage = "folder of custom Rego rules, as for serve --policy-dir, loaded with the rules of each DIR"
	}
	fs.StringVar(&f.policyDir, "policy-dir", "", policyDirUsage)
	fs.StringVar(&f.nodePortRange, "node-port-range", fmt.Sprintf("%d-%d", policies.DefaultNodePortRange.From, policies.DefaultNodePortRange.To),
		usage("the cluster's Service NodePort range (kube-apiserver --service-node-port-range), input.facts.nodePortRange"))
	if scope != forCluster {
		fs.StringVarP(&f.namespace, "namespace", "n", "", usage("namespace of objects that name none (default \"default\")"))
		fs.StringToStringVar(&f.nsLabels, "namespace-labels", nil, usage("labels of the object's namespace, e.g. team=a,env=prod"))
	}
	userDefault := "default " + defaultUser.Username + ", who has no grants of its own"
	if scope == forCluster {
		userDefault += "; who created an object is not stored"
	}
	fs.StringVar(&f.user, "as", "", usage("user making the requests ("+userDefault+")"))
	fs.StringArrayVar(&f.groups, "as-group", nil, "group of the user (repeatable; system:authenticated is always added)")
}

// requester is the user the flags name (the default user when they name none).
func (f *decisionFlags) requester() policies.User {
	if !f.namesUser() {
		return f.defaultUser
	}
	u := policies.User{Username: f.user, Groups: append(slices.Clone(f.groups), "system:authenticated")}
	if u.Username == "" {
		u.Username = f.defaultUser.Username
	}
	return u
}

func (f *decisionFlags) namesUser() bool { return f.user != "" || len(f.groups) > 0 }

func (f *decisionFlags) span() (policies.PortSpan, error) {
	span, err := inventory.ParseNodePortRange(f.nodePortRange)
	if err != nil {
		return span, fmt.Errorf("--node-port-range: %w", err)
	}
	return span, nil
}

// settings loads the policy set as serve does (loadPolicySet) and returns
// the settings of an offline review.
func (f *decisionFlags) settings() (*offline.Settings, error) {
	span, err := f.span()
	if err != nil {
		return nil, err
	}
	set, err := loadPolicySet(f.configPath, f.policyDir)
	if err != nil {
		return nil, err
	}
	return &offline.Settings{
		Config:          set.config,
		Modules:         set.modules,
		NodePortRange:   span,
		Namespace:       f.namespace,
		NamespaceLabels: f.nsLabels,
		User:            f.requester(),
	}, nil
}

// caseDefaults reads the policy set as serve does, but leaves the
// configuration to each DIR's run (it may name the DIR's custom rules), and
// returns the test options the flags make.
func (f *decisionFlags) caseDefaults() (modules map[string]string, d policytest.Defaults, err error) {
	if d.NodePortRange, err = f.span(); err != nil {
		return nil, d, err
	}
	set, err := readPolicySet(f.configPath, f.policyDir)
	if err != nil {
		return nil, d, err
	}
	d.Config, d.Namespace, d.NamespaceLabels = set.configBytes, f.namespace, f.nsLabels
	if f.namesUser() {
		u := f.requester()
		d.User = &u
	}
	return set.modules, d, nil
}
