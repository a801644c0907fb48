package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDecisionFlagsOnEveryOfflineCommand: eval, explain, test and audit take
// the same flags for what shapes a decision; audit takes namespaces and
// their labels from the cluster.
func TestDecisionFlagsOnEveryOfflineCommand(t *testing.T) {
	root := newRootCommand()
	shared := []string{"config", "policy-dir", "node-port-range", "as", "as-group"}
	for _, name := range []string{"eval", "explain", "test", "audit"} {
		cmd, _, err := root.Find([]string{name})
		if err != nil || cmd.Name() != name {
			t.Fatalf("%s: %v", name, err)
		}
		want := shared
		if name != "audit" {
			want = append(want, "namespace", "namespace-labels")
		}
		for _, f := range want {
			if cmd.Flags().Lookup(f) == nil {
				t.Errorf("%s has no --%s", name, f)
			}
		}
		if name == "audit" && cmd.Flags().Lookup("namespace-labels") != nil {
			t.Errorf("audit takes --namespace-labels, but reads the labels from the cluster")
		}
		if def := cmd.Flags().Lookup("node-port-range").DefValue; def != "30000-32767" {
			t.Errorf("%s --node-port-range defaults to %q", name, def)
		}
	}
}

func TestDecisionFlagErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	for _, args := range [][]string{
		{"eval", "-f", "-", "--node-port-range", "3-1"},
		{"explain", "-f", "-", "--node-port-range", "x"},
		{"test", "--node-port-range", "3-1", workedExample},
		{"audit", "--node-port-range", "3-1"},
		{"test", "--config", missing, workedExample},
		{"audit", "--config", missing},
		{"audit", "--policy-dir", missing},
	} {
		out, code := runCLI(t, evalPlainPod, args...)
		if code != 2 || !strings.Contains(out, "error: ") {
			t.Errorf("%v: exit %d, want 2 with the error:\n%s", args, code, out)
		}
	}
}

// TestTestCommandDecisionFlags: the flags apply to the cases that do not
// say; --policy-dir loads rules kept apart from their case files.
func TestTestCommandDecisionFlags(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"public-service.yaml", "internal-service.yaml"} {
		copyFile(t, filepath.Join(workedExample, name), filepath.Join(dir, name))
	}
	// Cases that name no namespace labels, user or configuration.
	cases := `apiVersion: portreeve.io/v1alpha1
kind: PolicyTest
cases:
  - name: public
    file: public-service.yaml
    expect: {denied: [lb-internal]}
  - name: internal
    file: internal-service.yaml
    expect: {allowed: true}
  - name: a hostPort in the NodePort range
    object: {apiVersion: v1, kind: Pod, metadata: {name: hp, namespace: team-a}, spec: {containers: [{name: c, ports: [{containerPort: 80, hostPort: 20080}]}]}}
    expect: {denied: [host-port-conflicts]}
`
	writeFile(t, dir, "cases.yaml", cases)
	config := writeTemp(t, "config.yaml", `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  lb-internal: {mode: deny}
grants:
  - {name: team-a, namespaces: [team-a], loadBalancer: true, nodePorts: ["30000-32767"]}
  - {name: bob, users: [bob], hostPorts: ["1-65535"]}
`)
	args := []string{"test", "--policy-dir", workedExample, "--config", config, "--namespace-labels", "team=a", "--as", "bob",
		"--node-port-range", "20000-22767", dir}
	if out, code := runCLI(t, "", args...); code != 0 || !strings.Contains(out, "ok  \t"+dir) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// Without --policy-dir the cases' rule is unknown to the configuration.
	if out, code := runCLI(t, "", "test", "--config", config, dir); code != 1 || !strings.Contains(out, "config: policy config: rules.lb-internal: unknown rule") {
		t.Errorf("without --policy-dir: exit %d:\n%s", code, out)
	}
	// The folder's own rules and the same rules through --policy-dir load once.
	if out, code := runCLI(t, "", "test", "--policy-dir", workedExample, workedExample); code != 0 {
		t.Errorf("--policy-dir of the tested folder: exit %d:\n%s", code, out)
	}
}

func TestExplainNodePortRange(t *testing.T) {
	cfg := writeTemp(t, "config.yaml", "apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\ngrants:\n  - {name: ports, namespaces: [default], hostPorts: [\"1-65535\"]}\n")
	pod := evalHostPortPod(20080)
	out, code := runCLI(t, pod, "explain", "-f", "-", "--config", cfg)
	if code != 0 || !strings.Contains(out, "verdict: ALLOWED") {
		t.Fatalf("default range: exit %d:\n%s", code, out)
	}
	out, code = runCLI(t, pod, "explain", "-f", "-", "--config", cfg, "--node-port-range", "20000-22767")
	if code != 0 || !strings.Contains(out, "verdict: DENIED") || !strings.Contains(out, "  host-port-conflicts (mode deny): denied\n") ||
		!strings.Contains(out, "lies in the cluster's NodePort range 20000-22767") {
		t.Fatalf("--node-port-range: exit %d:\n%s", code, out)
	}
}

func TestRulesListsCustomRules(t *testing.T) {
	out, code := runCLI(t, "", "rules", "--policy-dir", workedExample, "--config", filepath.Join(workedExample, "config.yaml"))
	if code != 0 || !regexp.MustCompile(`(?m)^lb-internal +deny +LoadBalancers in team namespaces are internal$`).MatchString(out) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
