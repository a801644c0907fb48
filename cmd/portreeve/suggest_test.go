package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portreeve/portreeve/policies"
)

// runSplit runs the command line and returns its standard output, standard
// error and exit code apart.
func runSplit(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCommand()
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	code := 0
	if err := root.ExecuteContext(t.Context()); err != nil {
		code = 2
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		if ee == nil || ee.err != nil {
			stderr.WriteString("error: " + err.Error() + "\n")
		}
	}
	return stdout.String(), stderr.String(), code
}

const suggestWorkloads = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-exporter, namespace: monitoring}
spec:
  selector: {matchLabels: {app: node-exporter}}
  template:
    metadata: {labels: {app: node-exporter}}
    spec:
      serviceAccountName: node-exporter
      hostNetwork: true
      containers: [{name: node-exporter, image: x, ports: [{containerPort: 9100, hostPort: 9100}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
spec:
  selector: {matchLabels: {app: ingress-nginx}}
  template:
    metadata: {labels: {app: ingress-nginx}}
    spec:
      serviceAccountName: ingress-nginx
      containers: [{name: controller, image: x, ports: [{containerPort: 80, hostPort: 80}, {containerPort: 443, hostPort: 443}]}]
`

const suggestServices = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-a}
spec:
  type: NodePort
  ports: [{port: 80, nodePort: 30080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: team-a}
spec:
  ingressClassName: nginx
  rules: [{host: web.team-a.example.com}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
`

func TestSuggestCommand(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"workloads.yaml": suggestWorkloads, "services.yaml": suggestServices} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, report, code := runSplit(t, "", "suggest", "-f", dir)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, report)
	}
	if _, err := policies.ParseConfig([]byte(out), nil); err != nil {
		t.Fatalf("standard output is not a configuration: %v\n%s", err, out)
	}
	for _, want := range []string{"name: system\n", "name: sa-monitoring-node-exporter\n", `hostPorts: ["80/TCP", "443/TCP"]`, `nodePorts: ["30080"]`} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the configuration:\n%s", want, out)
		}
	}
	for _, want := range []string{
		"portreeve suggest: reviewed 4 objects, skipped 1; 3 new grants\n",
		"  + sa-monitoring-node-exporter: DaemonSet/node-exporter\n",
		"  1 kind v1 ConfigMap is not reviewed\n",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("no %q in the report:\n%s", want, report)
		}
	}
	if strings.Contains(out, "portreeve suggest: reviewed") || strings.Contains(report, "apiVersion") {
		t.Errorf("the report and the configuration are mixed up:\nstdout:\n%s\nstderr:\n%s", out, report)
	}

	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if evalOut, _, code := runSplit(t, "", "eval", "--config", config, "-f", dir); code != 0 {
		t.Errorf("eval --config with the suggestion exits %d:\n%s", code, evalOut)
	}
	if evalOut, _, code := runSplit(t, "", "eval", "-f", dir); code != 1 {
		t.Errorf("eval without the suggestion exits %d, want 1:\n%s", code, evalOut)
	}

	// The same objects on standard input: the same configuration.
	stdinOut, _, code := runSplit(t, suggestWorkloads+"---\n"+suggestServices, "suggest", "-f", "-")
	if code != 0 || stdinOut != out {
		t.Errorf("from stdin (exit %d):\n%s\nwant:\n%s", code, stdinOut, out)
	}

	// --output writes the file; --merge with it adds nothing.
	file := filepath.Join(t.TempDir(), "suggested.yaml")
	if stdout, report, code := runSplit(t, "", "suggest", "-f", dir, "--output", file); code != 0 || stdout != "" {
		t.Fatalf("--output: exit %d, stdout %q\n%s", code, stdout, report)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != out {
		t.Errorf("--output wrote %q (%v)", b, err)
	}
	merged, report, code := runSplit(t, "", "suggest", "-f", dir, "--merge", file, "--expires", "2099-12-31")
	if code != 0 || merged != out || !strings.Contains(report, "; 0 new grants\n") {
		t.Errorf("--merge of its own suggestion (exit %d) changes it:\n%s\n%s", code, merged, report)
	}
}

func TestSuggestCommandConflictsAndErrors(t *testing.T) {
	conflict := `apiVersion: v1
kind: Pod
metadata: {name: a, namespace: team-a}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 1, hostPort: 9100}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: team-b}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 1, hostPort: 9100}]}]}
`
	out, report, code := runSplit(t, conflict, "suggest", "-f", "-")
	if code != 0 || !strings.Contains(report, "conflicts no grant can fix") || !strings.Contains(out, "kind: PolicyConfig") {
		t.Errorf("a conflict without --fail-on-conflict: exit %d\n%s\n%s", code, out, report)
	}
	out, report, code = runSplit(t, conflict, "suggest", "-f", "-", "--fail-on-conflict")
	if code != 1 || !strings.Contains(out, "kind: PolicyConfig") || !strings.Contains(report, "--fail-on-conflict") {
		t.Errorf("--fail-on-conflict: exit %d, want 1, with the configuration still written\n%s\n%s", code, out, report)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--expires", "next week"}, "--expires: must be a date"},
		{[]string{"--expires", "2001-01-01"}, "lies in the past"},
		{[]string{"--node-port-range", "30000"}, "--node-port-range"},
		{[]string{"--merge", "/does/not/exist"}, "no such file"},
		{[]string{"-f", "/does/not/exist"}, "no such file"},
	} {
		args := append([]string{"suggest", "-f", "-"}, tc.args...)
		out, report, code := runSplit(t, conflict, args...)
		if code != 2 || out != "" || !strings.Contains(report, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, report, tc.want)
		}
	}
}

// TestSuggestCommandGatewayAPI: a shared Gateway with an address and a
// listener hostname, and a route attached to it; eval --config admits both
// under the suggestion, and refuses the Gateway without it.
func TestSuggestCommandGatewayAPI(t *testing.T) {
	manifests := `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: infra}
spec:
  gatewayClassName: cloud
  addresses: [{type: IPAddress, value: 203.0.113.10}]
  listeners:
  - {name: web, port: 443, protocol: HTTPS, hostname: "*.shop.example.com"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: team-a}
spec:
  parentRefs: [{name: shared, namespace: infra}]
  hostnames: [a.shop.example.com]
  rules: [{backendRefs: [{name: web, port: 80}]}]
`
	file := filepath.Join(t.TempDir(), "gw.yaml")
	if err := os.WriteFile(file, []byte(manifests), 0o644); err != nil {
		t.Fatal(err)
	}
	out, report, code := runSplit(t, "", "suggest", "-f", file, "--fail-on-conflict")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, report)
	}
	for _, want := range []string{
		"  - name: ns-infra\n    namespaces: [infra]\n    loadBalancer: true\n    externalIPs: [\"203.0.113.10/32\"]\n    ingressDomains: [\"*.shop.example.com\"]\n",
		"  - name: ns-team-a\n    namespaces: [team-a]\n    ingressDomains: [a.shop.example.com]\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the configuration:\n%s", want, out)
		}
	}
	if !strings.Contains(report, "  + ns-infra: Gateway/shared\n  + ns-team-a: HTTPRoute/shop\n") {
		t.Errorf("report:\n%s", report)
	}
	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if evalOut, _, code := runSplit(t, "", "eval", "--config", config, "-f", file); code != 0 {
		t.Errorf("eval --config with the suggestion exits %d:\n%s", code, evalOut)
	}
	if evalOut, _, code := runSplit(t, "", "eval", "-f", file); code != 1 {
		t.Errorf("eval without the suggestion exits %d, want 1:\n%s", code, evalOut)
	}
}
