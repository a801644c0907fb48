package main

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

// mountedDir writes files as the kubelet mounts a ConfigMap: a timestamped
// folder, the ..data symlink to it (swapped atomically) and a symlink per file.
type mountedDir struct {
	dir string
	n   int
}

func (m *mountedDir) set(t *testing.T, files map[string]string) {
	t.Helper()
	m.n++
	version := fmt.Sprintf("..v%d", m.n)
	if err := os.Mkdir(filepath.Join(m.dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(m.dir, version, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(m.dir, name)
		if _, err := os.Lstat(link); err != nil {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(m.dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(m.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func TestReadPolicyDir(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"a.rego": "package a\n", "a_test.rego": "package a_test\n", ".hidden.rego": "package h\n",
		"README.md": "hi", "sub/b.rego": "package b\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "d.rego"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := readPolicyDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[filepath.Join(dir, "a.rego")] != "package a\n" {
		t.Fatalf("modules %v", got)
	}
	// A mounted ConfigMap is read through ..data, named by the mount folder.
	m := &mountedDir{dir: t.TempDir()}
	m.set(t, map[string]string{"x.rego": "package x\n"})
	m.set(t, map[string]string{"x.rego": "package x2\n", "y.rego": "package y\n"})
	got, err = readPolicyDir(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[filepath.Join(m.dir, "x.rego")] != "package x2\n" || got[filepath.Join(m.dir, "y.rego")] == "" {
		t.Fatalf("modules %v", got)
	}
	if _, err := readPolicyDir(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing folder is no error")
	}
}

const teamLabelRule = `package portreeve.rules.team_label

deny contains {"msg": "pods need a team label"} if {
	input.kind.kind == "Pod"
	not input.object.metadata.labels.team
}
`

func ruleIDsOf(e *policies.Engine) []string {
	var ids []string
	for _, r := range e.Rules() {
		ids = append(ids, r.ID)
	}
	return ids
}

func TestConfigWatcherReloadsPolicies(t *testing.T) {
	m := &mountedDir{dir: t.TempDir()}
	m.set(t, map[string]string{})
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig := func(extra string) {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte("apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\n"+extra), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("")
	w, r, _ := startWatcher(t, cfgPath, m.dir)
	ready := func(path string) error {
		return w.PoliciesReadyCheck(httptest.NewRequest("GET", path, nil))
	}

	// A new rule is loaded.
	m.set(t, map[string]string{"team_label.rego": teamLabelRule})
	w.check(t.Context())
	if !slices.Contains(ruleIDsOf(r.Engine()), "team-label") {
		t.Fatalf("rule not loaded: %v", ruleIDsOf(r.Engine()))
	}
	if testutil.ToFloat64(w.policyReloads.WithLabelValues("success")) != 1 || testutil.ToFloat64(w.customModules) != 1 {
		t.Error("success not counted")
	}

	// A broken module (and a config naming a rule only it declares) changes nothing.
	good := r.Engine()
	m.set(t, map[string]string{"team_label.rego": teamLabelRule, "broken.rego": "package portreeve.rules.broken\n\ndeny contains if {\n"})
	writeConfig("rules: {broken: {mode: warn}}\n")
	w.check(t.Context())
	if r.Engine() != good {
		t.Fatal("a broken module replaced the engine")
	}
	if err := ready("/"); err != nil {
		t.Errorf("/readyz fails while the last good set serves: %v", err)
	}
	err := ready("/policies")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(m.dir, "broken.rego")+":4: rego_parse_error") ||
		!strings.Contains(err.Error(), "the last good set keeps serving") {
		t.Errorf("/readyz/policies: %v", err)
	}
	if err := w.ReadyCheck(httptest.NewRequest("GET", "/config", nil)); err == nil || !strings.Contains(err.Error(), `unknown rule`) {
		t.Errorf("/readyz/config: %v", err)
	}
	if testutil.ToFloat64(w.policyOK) != 0 || testutil.ToFloat64(w.policyReloads.WithLabelValues("failure")) != 1 {
		t.Error("failure not counted")
	}
	w.check(t.Context()) // unchanged files are not judged again
	if testutil.ToFloat64(w.policyReloads.WithLabelValues("failure")) != 1 {
		t.Error("an unchanged rejected set was counted again")
	}

	// Fixing the module applies it, and the configuration that waited for it.
	m.set(t, map[string]string{"team_label.rego": teamLabelRule, "broken.rego": "package portreeve.rules.broken\n\ndeny contains {\"msg\": \"no\"} if false\n"})
	w.check(t.Context())
	e := r.Engine()
	if e == good || !slices.Contains(ruleIDsOf(e), "broken") || e.Config().Mode("broken") != policies.ModeWarn {
		t.Fatalf("fix not applied: %v", ruleIDsOf(e))
	}
	if err := ready("/policies"); err != nil {
		t.Errorf("/readyz/policies after the fix: %v", err)
	}
	if err := w.ReadyCheck(httptest.NewRequest("GET", "/config", nil)); err != nil {
		t.Errorf("/readyz/config after the fix: %v", err)
	}
	if testutil.ToFloat64(w.policyOK) != 1 || testutil.ToFloat64(w.customModules) != 2 {
		t.Error("recovery not shown in the metrics")
	}

	// A module that shadows a built-in rule is rejected too; removing the
	// rule the configuration names is a policy error.
	m.set(t, map[string]string{"team_label.rego": teamLabelRule, "broken.rego": "package portreeve.rules.host_ports\n"})
	w.check(t.Context())
	if err := ready("/policies"); err == nil || !strings.Contains(err.Error(), "shadows the built-in rule") {
		t.Errorf("/readyz/policies: %v", err)
	}
	m.set(t, map[string]string{"team_label.rego": teamLabelRule})
	w.check(t.Context())
	if err := ready("/policies"); err == nil || !strings.Contains(err.Error(), `unknown rule (known:`) {
		t.Errorf("dropping a configured rule: %v", err)
	}
	if r.Engine() != e {
		t.Error("the engine changed")
	}
}

func TestRuleErrorReporter(t *testing.T) {
	reg := prometheus.NewRegistry()
	r, err := newRuleErrorReporter(reg)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r.Report(policies.RuleError{Rule: "slow", FailurePolicy: policies.FailIgnore, Err: policies.ErrBudget, Timeout: true})
	}
	r.Report(policies.RuleError{Rule: "slow", FailurePolicy: policies.FailIgnore, Err: errors.New("conflict")})
	if v := testutil.ToFloat64(r.errors.WithLabelValues("slow", "ignore")); v != 4 {
		t.Errorf("counted %v", v)
	}
	if v := testutil.ToFloat64(r.timeouts.WithLabelValues("slow")); v != 3 {
		t.Errorf("timeouts counted %v, want 3", v)
	}
	if len(r.logged) != 1 {
		t.Errorf("logged %v", r.logged)
	}
}

func TestConfigWatcherUnreadableDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "team_label.rego"), []byte(teamLabelRule), 0o644); err != nil {
		t.Fatal(err)
	}
	o := newServeOptions()
	o.PolicyDir = dir
	set, err := loadPolicySet("", dir)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := o.newEngine(t.Context(), set, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := review.NewReviewer(engine)
	w, err := newConfigWatcher(o, set, r, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	moved := dir + ".moved"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	w.check(t.Context())
	if err := w.PoliciesReadyCheck(httptest.NewRequest("GET", "/policies", nil)); err == nil || testutil.ToFloat64(w.policyOK) != 0 {
		t.Fatalf("an unreadable folder is not reported: %v", err)
	}
	if r.Engine() != engine {
		t.Fatal("the engine changed")
	}
	if err := os.Rename(moved, dir); err != nil {
		t.Fatal(err)
	}
	w.check(t.Context())
	if err := w.PoliciesReadyCheck(httptest.NewRequest("GET", "/policies", nil)); err != nil || testutil.ToFloat64(w.policyOK) != 1 {
		t.Fatalf("recovery not reported: %v", err)
	}
}

// startWatcher loads the policy set of configPath and policyDir as serve
// does at start-up, and returns a config watcher on it, the reviewer it
// serves and the engine it started with.
func startWatcher(t *testing.T, configPath, policyDir string) (*configWatcher, *review.Reviewer, *policies.Engine) {
	t.Helper()
	o := newServeOptions()
	o.ConfigPath, o.PolicyDir = configPath, policyDir
	set, err := loadPolicySet(o.ConfigPath, o.PolicyDir)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := o.newEngine(t.Context(), set, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := review.NewReviewer(engine)
	w, err := newConfigWatcher(o, set, r, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return w, r, engine
}
