package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/portreeve/portreeve/policies"
)

// authoringOptions are the serve flags for custom rules and the audit.
type authoringOptions struct {
	// PolicyDir holds custom Rego modules (*.rego; *_test.rego are skipped).
	PolicyDir string
	// EvalTimeout is the time budget of the whole evaluation of a request by the rules.
	EvalTimeout time.Duration
	// AuditInterval is the period of the background audit; 0 disables it.
	AuditInterval time.Duration
	// AuditPageSize is the limit of each list call of the audit.
	AuditPageSize int64
	// AuditIgnoreLabel marks namespaces the audit skips (as the webhooks do).
	AuditIgnoreLabel string
	// PolicyReports makes the audit write wgpolicyk8s.io PolicyReports.
	PolicyReports bool
}

func defaultAuthoringOptions() authoringOptions {
	return authoringOptions{
		EvalTimeout:      policies.DefaultEvalTimeout,
		AuditInterval:    10 * time.Minute,
		AuditPageSize:    500,
		AuditIgnoreLabel: "portreeve.io/ignore",
	}
}

func (o *authoringOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.PolicyDir, "policy-dir", o.PolicyDir, "folder of custom Rego rules (*.rego; *_test.rego skipped) that join the built-in ones; reloaded when it changes")
	fs.Int64Var(&maxPolicyBytes, "max-policy-bytes", maxPolicyBytes, "largest policy configuration, custom rule module, and policy folder in all that is read; larger ones are refused at start and on reload (the last good set stays)")
	fs.DurationVar(&o.EvalTimeout, "policy-eval-timeout", o.EvalTimeout, "time budget of the whole evaluation of a request by the rules, re-runs that isolate a failing rule included (keep it well below the webhook timeout); a rule still running then fails by its failure policy")
	fs.DurationVar(&o.AuditInterval, "audit-interval", o.AuditInterval, "how often existing objects are audited against the current rules (metrics portreeve_audit_*); 0 disables the audit")
	fs.Int64Var(&o.AuditPageSize, "audit-page-size", o.AuditPageSize, "objects per list call of the audit")
	fs.BoolVar(&o.PolicyReports, "policy-reports", o.PolicyReports, "the audit writes its findings as wgpolicyk8s.io/v1alpha2 PolicyReports (one per namespace with findings, named after --webhook-config-name, label app.kubernetes.io/managed-by=portreeve), updated each run and deleted when a namespace has none; needs the PolicyReport CRDs (without them it says so in the log and portreeve_audit_policy_report_crds, and writes nothing)")
	fs.StringVar(&o.AuditIgnoreLabel, "audit-ignore-label", o.AuditIgnoreLabel, "the namespace opt-out label: namespaces with it are not audited, as the webhook configurations skip them, and only the namespaceOptOut subjects of the configuration may set it (/namespaces) (empty: none)")
}

func (o *authoringOptions) validate() []error {
	var errs []error
	if o.EvalTimeout < time.Millisecond {
		errs = append(errs, errors.New("--policy-eval-timeout must be at least 1ms"))
	}
	if o.AuditInterval != 0 && o.AuditInterval < 10*time.Second {
		errs = append(errs, errors.New("--audit-interval must be 0 (off) or at least 10s"))
	}
	if o.PolicyReports && o.AuditInterval == 0 {
		errs = append(errs, errors.New("--policy-reports needs the audit (--audit-interval other than 0)"))
	}
	if o.AuditPageSize < 1 {
		errs = append(errs, errors.New("--audit-page-size must be positive"))
	}
	return errs
}

// readPolicyDir reads the custom modules of dir, keyed by their path in dir.
// Only *.rego files directly in dir count; tests (*_test.rego) and hidden
// files are skipped. A mounted ConfigMap keeps its files under a
// timestamped folder that the symlink ..data points to and swaps atomically:
// the files are read from the folder ..data points to, so that one read never
// mixes two versions.
func readPolicyDir(dir string) (map[string]string, error) {
	if dir == "" {
		return nil, nil
	}
	from := dir
	if target, err := filepath.EvalSymlinks(filepath.Join(dir, "..data")); err == nil {
		from = target
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		return nil, fmt.Errorf("policy dir: %w", err)
	}
	out := map[string]string{}
	var total int64
	for _, e := range entries {
		name := e.Name()
		if !isModuleFile(name) {
			continue
		}
		p := filepath.Join(from, name)
		fi, err := os.Stat(p) // follows the ConfigMap's per-file symlinks
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed while we read
		}
		if err != nil {
			return nil, fmt.Errorf("policy dir: %w", err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		b, err := readPolicyFile(p)
		if err != nil {
			return nil, fmt.Errorf("policy dir: %w", err)
		}
		if total += int64(len(b)); total > maxPolicyBytes {
			return nil, fmt.Errorf("policy dir %s: its modules are larger than %d bytes in all, the most Portreeve reads (--max-policy-bytes)", dir, maxPolicyBytes)
		}
		out[filepath.Join(dir, name)] = string(b)
	}
	return out, nil
}

func isModuleFile(name string) bool {
	return strings.HasSuffix(name, ".rego") && !strings.HasSuffix(name, "_test.rego") && !strings.HasPrefix(name, ".")
}

// policySet is what serve evaluates: a configuration and custom modules.
type policySet struct {
	configBytes []byte
	config      *policies.Config
	modules     map[string]string
}

// parseConfig reads a configuration that may name the custom rules of modules.
func parseConfig(b []byte, modules map[string]string) (*policies.Config, error) {
	if b == nil {
		return policies.DefaultConfig(), nil
	}
	return policies.ParseConfig(b, policies.CustomRuleIDs(modules))
}

// loadPolicySet reads the configuration file and the policy dir at start-up
// (serve) or for an offline command. Unlike a reload, a bad file here stops
// serve: there is no last good set.
func loadPolicySet(configPath, policyDir string) (*policySet, error) {
	s, err := readPolicySet(configPath, policyDir)
	if err != nil {
		return nil, err
	}
	if s.config, err = parseConfig(s.configBytes, s.modules); err != nil {
		return nil, err
	}
	return s, nil
}

// readPolicySet reads the configuration file and the policy dir, leaving
// the configuration unparsed (config nil): `test` parses it per DIR, whose
// custom rules it may name.
func readPolicySet(configPath, policyDir string) (*policySet, error) {
	s := &policySet{}
	var err error
	if configPath != "" {
		if s.configBytes, err = readPolicyFile(configPath); err != nil {
			return nil, err
		}
	}
	if s.modules, err = readPolicyDir(policyDir); err != nil {
		return nil, err
	}
	return s, nil
}

// newEngine builds the engine of a policy set with serve's evaluation options.
func (o *authoringOptions) newEngine(ctx context.Context, s *policySet, onError func(policies.RuleError)) (*policies.Engine, error) {
	return policies.New(ctx, policies.Options{
		Config:      s.config,
		Modules:     s.modules,
		EvalTimeout: o.EvalTimeout,
		OnRuleError: onError,
	})
}

// ruleErrorReporter counts rules that fail at evaluation time, and among
// them those that ran out of the time budget, and logs each failing rule at
// most once a minute (a broken rule fails on every request).
type ruleErrorReporter struct {
	errors   *prometheus.CounterVec
	timeouts *prometheus.CounterVec
	mu       sync.Mutex
	logged   map[string]time.Time
}

func newRuleErrorReporter(reg prometheus.Registerer) (*ruleErrorReporter, error) {
	r := &ruleErrorReporter{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portreeve_rule_errors_total",
			Help: "Evaluations in which a rule failed (error or time budget), by rule and failure policy.",
		}, []string{"rule", "failure_policy"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portreeve_rule_timeouts_total",
			Help: "Evaluations in which a rule failed because the time budget (--policy-eval-timeout) ran out, by rule; also counted in portreeve_rule_errors_total.",
		}, []string{"rule"}),
		logged: map[string]time.Time{},
	}
	if err := reg.Register(r.errors); err != nil {
		return r, err
	}
	return r, reg.Register(r.timeouts)
}

// Report is the engine's OnRuleError hook.
func (r *ruleErrorReporter) Report(re policies.RuleError) {
	r.errors.WithLabelValues(re.Rule, string(re.FailurePolicy)).Inc()
	if re.Timeout {
		r.timeouts.WithLabelValues(re.Rule).Inc()
	}
	r.mu.Lock()
	now := time.Now()
	log := now.Sub(r.logged[re.Rule]) > time.Minute
	if log {
		r.logged[re.Rule] = now
	}
	r.mu.Unlock()
	if !log {
		return
	}
	msg := "rule failed to evaluate"
	if re.Timeout {
		msg = "rule ran out of the evaluation time budget"
	}
	ctrl.Log.WithName("policy").Error(re.Err, msg, "rule", re.Rule, "failurePolicy", re.FailurePolicy, "timeout", re.Timeout)
}
