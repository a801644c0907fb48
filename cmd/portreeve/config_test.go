package main

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

const configHead = "apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\n"

// runValidate runs portreeve config validate and returns stdout, stderr and the exit code.
func runValidate(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCommand()
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"config", "validate"}, args...))
	err := root.ExecuteContext(t.Context())
	code := 0
	if err != nil {
		var ee *exitError
		if !errors.As(err, &ee) {
			t.Fatalf("not an exitError: %v", err)
		}
		code = ee.code
		if ee.err != nil {
			stderr.WriteString("portreeve: " + ee.err.Error() + "\n")
		}
	}
	return stdout.String(), stderr.String(), code
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", configHead+"rules: {host-ports: {mode: warn}}\n"+
		"grants: [{name: a, namespaces: [a], hostPorts: [80]}, {name: b, users: [bob], loadBalancer: true}]\n"+
		"exemptions: [{name: e, users: [alice], reason: debugging}]\n")
	bad := writeFile(t, dir, "bad.yaml", configHead+"rules: {host-ports: {mode: block}, team-label: {mode: warn}}\n"+
		"grants:\n  - name: a\n    namespace: [a]\n  - name: b\n    namespaces: [b]\n    hostPorts: \"80-70\"\n    nodePorts: [\"80-70\"]\n")
	modules := t.TempDir()
	writeFile(t, modules, "team_label.rego", teamLabelRule)
	broken := t.TempDir()
	writeFile(t, broken, "broken.rego", "package portreeve.rules.broken\n\ndeny contains if {\n")

	tests := []struct {
		name           string
		stdin          string
		args           []string
		stdout, stderr string
		code           int
	}{
		{name: "valid", args: []string{"-f", good},
			stdout: good + ": valid (2 grants, 1 exemption, 1 rule mode)\n"},
		{name: "stdin", stdin: configHead, args: []string{"-f", "-"},
			stdout: "<stdin>: valid (0 grants, 0 exemptions, 0 rule modes)\n"},
		{name: "custom rule", stdin: configHead + "rules: {team-label: {mode: warn}}\n", args: []string{"-f", "-", "--policy-dir", modules},
			stdout: "<stdin>: valid (0 grants, 0 exemptions, 1 rule mode, 1 custom rule)\n"},
		{name: "every problem with its path", args: []string{"-f", bad}, code: 2, stderr: strings.Join([]string{
			bad + ": grants[0]: names no subject: set namespaces, serviceAccounts, users or groups",
			bad + ": grants[0].namespace: unknown field, did you mean namespaces? (known: name, namespaces, serviceAccounts, users, groups, hostNetwork, hostPorts, nodePorts, loadBalancer, externalIPs, ingressDomains, ingressClasses, expires, reason)",
			bad + `: grants[1].hostPorts: must be a list of strings, got the string "80-70"`,
			bad + `: grants[1].nodePorts[0]: "80-70": ports must lie in 1-65535 with the lower bound first`,
			bad + `: rules.host-ports.mode: must be one of deny, warn, dryrun, rewrite, off; got "block"`,
			bad + ": rules.team-label: unknown rule (known: external-ips, gateway-addresses, gateway-hosts, gateway-load-balancer, host-network, host-port-conflicts, host-ports, ingress-host-conflicts, ingress-hosts, load-balancer, node-port-conflicts, node-ports)",
			"note: the ids of custom rules are known only with --policy-dir",
			bad + ": invalid (6 problems)",
		}, "\n") + "\n"},
		{name: "custom rules known", args: []string{"-f", bad, "--policy-dir", modules}, code: 2,
			stderr: "invalid (5 problems)\n"},
		{name: "broken module", stdin: configHead, args: []string{"-f", "-", "--policy-dir", broken}, code: 2,
			stderr: filepath.Join(broken, "broken.rego") + ":4: rego_parse_error: unexpected eof token\n<stdin>: invalid (3 problems)\n"},
		{name: "missing policy dir", stdin: configHead, args: []string{"-f", "-", "--policy-dir", filepath.Join(dir, "none")}, code: 2,
			stderr: "policy dir: open " + filepath.Join(dir, "none") + ": no such file or directory\n<stdin>: invalid (1 problem)\n"},
		{name: "not YAML", stdin: "{", args: []string{"-f", "-"}, code: 2,
			stderr: "<stdin>: yaml: line 1: did not find expected node content\n<stdin>: invalid (1 problem)\n"},
		{name: "no file", args: []string{"-f", filepath.Join(dir, "none.yaml")}, code: 2,
			stderr: "portreeve: open " + filepath.Join(dir, "none.yaml") + ": no such file or directory\n"},
		{name: "no -f", code: 2, stderr: "portreeve: no input: pass -f FILE or -f - for stdin\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runValidate(t, tc.stdin, tc.args...)
			if code != tc.code || stdout != tc.stdout || !strings.HasSuffix(stderr, tc.stderr) || tc.stderr == "" && stderr != "" {
				t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d, stdout:\n%s\nstderr ending in:\n%s", code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}

// readyz serves the checks as the manager does: /readyz aggregates them,
// /readyz/<name> answers one.
func readyz(checks map[string]healthz.Checker) func(path string) int {
	mux := http.NewServeMux()
	h := http.StripPrefix("/readyz", &healthz.Handler{Checks: checks})
	mux.Handle("/readyz", h)
	mux.Handle("/readyz/", h)
	return func(path string) int {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code
	}
}

// A configuration that fails to load never replaces the last good one and
// never makes the pod unready: the gauge, the counter, the log and
// /readyz/config say so.
func TestConfigWatcherKeepsTheLastGoodConfig(t *testing.T) {
	dir := t.TempDir()
	goodConfig := configHead + "grants: [{name: a, namespaces: [a], hostPorts: [\"80\"]}]\n"
	path := writeFile(t, dir, "config.yaml", goodConfig)
	w, r, engine := startWatcher(t, path, "")
	get := readyz(map[string]healthz.Checker{"config": w.ReadyCheck, "policies": w.PoliciesReadyCheck})
	state := func(step string, ok float64, successes, failures float64, configReady int) {
		t.Helper()
		if v := testutil.ToFloat64(w.configOK); v != ok {
			t.Errorf("%s: portreeve_config_last_reload_successful = %v, want %v", step, v, ok)
		}
		if s, f := testutil.ToFloat64(w.configReloads.WithLabelValues("success")), testutil.ToFloat64(w.configReloads.WithLabelValues("failure")); s != successes || f != failures {
			t.Errorf("%s: reloads success %v failure %v, want %v %v", step, s, f, successes, failures)
		}
		if code := get("/readyz"); code != http.StatusOK {
			t.Errorf("%s: /readyz answers %d: the pod must stay ready", step, code)
		}
		if code := get("/readyz/config"); code != configReady {
			t.Errorf("%s: /readyz/config answers %d, want %d", step, code, configReady)
		}
	}
	state("start", 1, 0, 0, http.StatusOK)

	// A bad file is rejected; the last good configuration serves.
	writeFile(t, dir, "config.yaml", configHead+"grants: [{name: a, namespace: [a], hostPorts: \"80\"}]\n")
	w.check(t.Context())
	if r.Engine() != engine {
		t.Fatal("a rejected configuration replaced the engine")
	}
	state("rejected", 0, 0, 1, http.StatusInternalServerError)
	err := w.ReadyCheck(httptest.NewRequest("GET", "/config", nil))
	if err == nil || !strings.Contains(err.Error(), "grants[0].namespace: unknown field") || !strings.Contains(err.Error(), "grants[0].hostPorts: must be a list of strings") {
		t.Errorf("/readyz/config does not name every problem: %v", err)
	}
	w.check(t.Context()) // an unchanged file is not judged again
	state("unchanged", 0, 0, 1, http.StatusInternalServerError)

	// Restoring the good file clears the failure, though the engine stays.
	writeFile(t, dir, "config.yaml", goodConfig)
	w.check(t.Context())
	if r.Engine() != engine {
		t.Error("restoring the served configuration rebuilt the engine")
	}
	state("restored", 1, 1, 1, http.StatusOK)

	// A good change is applied.
	writeFile(t, dir, "config.yaml", goodConfig+"rules: {host-ports: {mode: warn}}\n")
	w.check(t.Context())
	if r.Engine() == engine || r.Engine().Config().Mode("host-ports") != "warn" {
		t.Fatal("a good configuration was not applied")
	}
	state("applied", 1, 2, 1, http.StatusOK)

	// An unreadable file fails the load too, and reading it again recovers.
	if err := os.Rename(path, path+".moved"); err != nil {
		t.Fatal(err)
	}
	w.check(t.Context())
	state("unreadable", 0, 2, 2, http.StatusInternalServerError)
	if err := os.Rename(path+".moved", path); err != nil {
		t.Fatal(err)
	}
	w.check(t.Context())
	state("readable", 1, 2, 2, http.StatusOK)

	// At start-up there is no last good configuration: serve refuses to start.
	writeFile(t, dir, "config.yaml", configHead+"grants: [{name: a}]\n")
	if _, err := loadPolicySet(path, ""); err == nil || !strings.Contains(err.Error(), "policy config: grants[0]: names no subject") {
		t.Fatalf("start-up with a bad configuration: %v", err)
	}
}

// The example of docs/configuration.md is what config validate prints.
func TestConfigValidateDocumentedExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(doc), "## Every problem at once\n")
	_, rest, _ := strings.Cut(section, "```yaml\n")
	config, rest, _ := strings.Cut(rest, "```\n")
	_, rest, _ = strings.Cut(rest, "```console\n$ portreeve config validate -f config.yaml\n")
	want, _, found := strings.Cut(rest, "```\n")
	if !found {
		t.Fatal("no example in docs/configuration.md")
	}
	path := writeFile(t, t.TempDir(), "config.yaml", config)
	_, stderr, code := runValidate(t, "", "-f", path)
	if got := strings.ReplaceAll(stderr, path, "config.yaml"); code != 2 || got != want {
		t.Fatalf("exit %d, stderr:\n%s\nthe documentation says:\n%s", code, got, want)
	}
}
