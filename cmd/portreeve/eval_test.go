package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	evalHostNetworkPod = `apiVersion: v1
kind: Pod
metadata: {name: hn}
spec:
  hostNetwork: true
  containers: [{name: c, image: x}]
`
	evalPlainPod = `apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  containers: [{name: c, image: x}]
`
	evalList = `apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: cm}}
  - {apiVersion: v1, kind: Service, metadata: {name: np}, spec: {type: NodePort, ports: [{port: 80}]}}
`
	evalRemovedIngress = `apiVersion: extensions/v1beta1
kind: Ingress
metadata: {name: old}
spec:
  rules: [{host: a.example.com}]
`
)

func TestEval(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"a-plain.yaml": evalPlainPod, "b-hn.yaml": evalHostNetworkPod, "c-list.yaml": evalList, ".hidden/x.yaml": evalHostNetworkPod, "notes.txt": "not a manifest"} {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	grantHN := writeTemp(t, "config.yaml", `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - name: default-hn
    namespaces: [default]
    hostNetwork: true
`)
	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout []string // substrings, in order
		stderr string
	}{
		{
			name:  "allowed object from stdin",
			stdin: evalPlainPod, args: []string{"-f", "-"}, code: 0,
			stdout: []string{"ALLOWED   Pod default/plain (<stdin>#1)\n", "1 objects: 1 allowed, 0 rewritten, 0 denied, 0 skipped\n"},
		},
		{
			name:  "a denial exits 1 and names the rule",
			stdin: evalPlainPod + "---\n" + evalHostNetworkPod, args: []string{"-f", "-"}, code: 1,
			stdout: []string{"ALLOWED   Pod default/plain (<stdin>#1)", "DENIED    Pod default/hn (<stdin>#2)\n  denied:  host-network: ", "2 objects: 1 allowed, 0 rewritten, 1 denied, 0 skipped"},
		},
		{
			name: "a directory: its manifests in order, Lists expanded, hidden folders and other files left out",
			args: []string{"-f", dir}, code: 1,
			stdout: []string{
				"ALLOWED   Pod default/plain (" + filepath.Join(dir, "a-plain.yaml") + "#1)",
				"DENIED    Pod default/hn (" + filepath.Join(dir, "b-hn.yaml") + "#1)",
				"SKIPPED   ConfigMap default/cm (" + filepath.Join(dir, "c-list.yaml") + "#1)",
				"DENIED    Service default/np",
				"4 objects: 1 allowed, 0 rewritten, 2 denied, 1 skipped",
			},
		},
		{
			name:  "the configuration decides",
			stdin: evalHostNetworkPod, args: []string{"-f", "-", "--config", grantHN}, code: 0,
			stdout: []string{"ALLOWED   Pod default/hn"},
		},
		{
			name:  "--namespace places objects that name none",
			stdin: evalHostNetworkPod, args: []string{"-f", "-", "--config", grantHN, "-n", "team-a"}, code: 1,
			stdout: []string{"DENIED    Pod team-a/hn"},
		},
		{
			name: "custom rules from --policy-dir, judged with the namespace's labels",
			args: []string{"-f", filepath.Join(workedExample, "public-service.yaml"), "--policy-dir", workedExample,
				"--config", filepath.Join(workedExample, "config.yaml"), "--namespace-labels", "team=a"},
			code:   0,
			stdout: []string{"ALLOWED   Service team-a/shop", "  dryrun:  lb-internal: a LoadBalancer in team \"a\"'s namespace must be internal"},
		},
		{
			name:  "a removed API is named with what replaces it",
			stdin: evalRemovedIngress, args: []string{"-f", "-"}, code: 0,
			stdout: []string{"SKIPPED   Ingress default/old", "the extensions/v1beta1/Ingress API was removed from Kubernetes", "use networking.k8s.io/v1/Ingress"},
		},
		{name: "empty input", stdin: "---\n", args: []string{"-f", "-"}, code: 2, stderr: "no objects in -"},
		{name: "no input", args: nil, code: 2, stderr: "no input"},
		{name: "not YAML", stdin: "a: [", args: []string{"-f", "-"}, code: 2, stderr: "<stdin>: document 1"},
		{name: "a configuration that does not load", stdin: evalPlainPod, args: []string{"-f", "-", "--config", writeTemp(t, "bad.yaml", "kind: Nope\n")}, code: 2, stderr: "policy config: "},
		{name: "a missing file", args: []string{"-f", filepath.Join(dir, "missing.yaml")}, code: 2, stderr: "missing.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runSplit(t, tc.stdin, append([]string{"eval"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			rest := stdout
			for _, want := range tc.stdout {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in order):\n%s", want, stdout)
				}
				rest = rest[i+len(want):]
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, stderr)
			}
		})
	}
}

func TestEvalJSON(t *testing.T) {
	stdout, _, code := runSplit(t, evalPlainPod+"---\n"+evalHostNetworkPod, "eval", "-f", "-", "-o", "json")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	var reports []struct {
		Source     string `json:"source"`
		Kind       string `json:"kind"`
		Namespace  string `json:"namespace"`
		Name       string `json:"name"`
		Allowed    bool   `json:"allowed"`
		Violations []struct {
			Rule, Message, Field string
		} `json:"violations"`
		Warnings []string `json:"warnings"`
		Patch    []any    `json:"patch"`
	}
	if err := json.Unmarshal([]byte(stdout), &reports); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if len(reports) != 2 || reports[0].Source != "<stdin>#1" || !reports[0].Allowed || reports[1].Allowed ||
		reports[1].Name != "hn" || len(reports[1].Violations) != 1 || reports[1].Violations[0].Rule != "host-network" ||
		reports[1].Violations[0].Field != "spec.hostNetwork" || reports[0].Warnings == nil || reports[0].Patch == nil {
		t.Fatalf("reports %+v", reports)
	}
}
