package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
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
	evalLoadBalancer = `apiVersion: v1
kind: Service
metadata: {name: lb}
spec:
  type: LoadBalancer
  ports: [{port: 80}]
`
	evalJSONList = `{"apiVersion": "v1", "kind": "ServiceList", "items": [
  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
]}`
	evalRewriteConfig = `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  load-balancer: {mode: rewrite}
  node-ports: {mode: rewrite}
`
	evalRemovedIngress = `apiVersion: extensions/v1beta1
kind: Ingress
metadata: {name: old}
spec:
  rules: [{host: a.example.com}]
`
)

func evalHostPortPod(port int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: hp}
spec:
  containers: [{name: c, image: x, ports: [{containerPort: 80, hostPort: %d}]}]
`, port)
}

func TestEval(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"a-plain.yaml": evalPlainPod, "b-hn.yaml": evalHostNetworkPod, "c-list.yaml": evalList,
		"sub/d-lb.json": evalJSONList, ".hidden/x.yaml": evalHostNetworkPod, "notes.txt": "not a manifest", "empty/README": "nothing"} {
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
	grantBob := writeTemp(t, "bob.yaml", `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - name: bob-hn
    users: [bob]
    hostNetwork: true
  - name: ops-hn
    groups: [ops]
    hostNetwork: true
  - name: host-ports
    namespaces: [default]
    hostPorts: ["1-65535"]
`)
	// The worked example's configuration enforces its rule; the roll-out
	// runs it in dryrun first.
	exampleDeny := filepath.Join(workedExample, "config.yaml")
	exampleDryrun := workedExampleDryrun(t)
	publicService := filepath.Join(workedExample, "public-service.yaml")
	publicServiceBody := "apiVersion: v1\nkind: Service\nmetadata: {name: shop, namespace: team-a}\nspec: {type: LoadBalancer, selector: {app: shop}, ports: [{port: 443}]}\n"
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
			name: "a directory: its manifests in order, subfolders, JSON, Lists expanded, hidden folders and other files left out",
			args: []string{"-f", dir}, code: 1,
			stdout: []string{
				"ALLOWED   Pod default/plain (" + filepath.Join(dir, "a-plain.yaml") + "#1)",
				"DENIED    Pod default/hn (" + filepath.Join(dir, "b-hn.yaml") + "#1)",
				"SKIPPED   ConfigMap default/cm (" + filepath.Join(dir, "c-list.yaml") + "#1)",
				"DENIED    Service default/np (" + filepath.Join(dir, "c-list.yaml") + "#1)",
				"DENIED    Service default/lb (" + filepath.Join(dir, "sub", "d-lb.json") + "#1)",
				"5 objects: 1 allowed, 0 rewritten, 3 denied, 1 skipped\n",
			},
		},
		{
			name:  "files in the order given, each result naming its file and document",
			args:  []string{"-f", filepath.Join(dir, "b-hn.yaml"), "-f", filepath.Join(dir, "a-plain.yaml"), "-f", "-"},
			stdin: evalPlainPod + "---\n# a comment\n---\n" + evalHostNetworkPod, code: 1,
			stdout: []string{
				"DENIED    Pod default/hn (" + filepath.Join(dir, "b-hn.yaml") + "#1)",
				"ALLOWED   Pod default/plain (" + filepath.Join(dir, "a-plain.yaml") + "#1)",
				"ALLOWED   Pod default/plain (<stdin>#1)",
				"DENIED    Pod default/hn (<stdin>#3)",
				"4 objects: 2 allowed, 0 rewritten, 2 denied, 0 skipped\n",
			},
		},
		{
			name:  "a rewrite exits 0",
			stdin: evalLoadBalancer, args: []string{"-f", "-", "--config", writeTemp(t, "rewrite.yaml", evalRewriteConfig)}, code: 0,
			stdout: []string{"REWRITTEN Service default/lb (<stdin>#1)\n  warning: portreeve rewrote /spec/type", "1 objects: 0 allowed, 1 rewritten, 0 denied, 0 skipped"},
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
			name:   "custom rules from --policy-dir, judged with the namespace's labels",
			stdin:  publicServiceBody,
			args:   []string{"-f", "-", "--policy-dir", workedExample, "--config", exampleDryrun, "--namespace-labels", "team=a"},
			code:   0,
			stdout: []string{"ALLOWED   Service team-a/shop", "  dryrun:  lb-internal: a LoadBalancer in team \"a\"'s namespace must be internal"},
		},
		{
			name:  "a Namespace manifest in the input gives the objects in it its labels (a GitOps render ships its Namespaces)",
			stdin: "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, labels: {team: a}}\n",
			args:  []string{"-f", "-", "-f", publicService, "--policy-dir", workedExample, "--config", exampleDeny},
			code:  1,
			stdout: []string{"SKIPPED   Namespace team-a (<stdin>#1)\n  a Namespace is not reviewed: its labels are those of the objects in it here",
				"DENIED    Service team-a/shop", "  denied:  lb-internal: a LoadBalancer in team \"a\"'s namespace must be internal"},
		},
		{
			name:   "a Namespace manifest's labels replace --namespace-labels for its namespace only",
			stdin:  "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n---\n" + publicServiceBody,
			args:   []string{"-f", "-", "--policy-dir", workedExample, "--config", exampleDeny, "--namespace-labels", "team=a"},
			code:   0,
			stdout: []string{"ALLOWED   Service team-a/shop"},
		},
		{
			name:  "--as names the user a grant is for",
			stdin: evalHostNetworkPod, args: []string{"-f", "-", "--config", grantBob, "--as", "bob"}, code: 0,
			stdout: []string{"ALLOWED   Pod default/hn"},
		},
		{
			name:  "--as-group names the groups a grant is for",
			stdin: evalHostNetworkPod, args: []string{"-f", "-", "--config", grantBob, "--as", "alice", "--as-group", "ops"}, code: 0,
			stdout: []string{"ALLOWED   Pod default/hn"},
		},
		{
			name:  "by default the user has no grants of its own",
			stdin: evalHostNetworkPod, args: []string{"-f", "-", "--config", grantBob}, code: 1,
			stdout: []string{"DENIED    Pod default/hn"},
		},
		{
			name:  "a hostPort in the default NodePort range is denied",
			stdin: evalHostPortPod(30080), args: []string{"-f", "-", "--config", grantBob}, code: 1,
			stdout: []string{"DENIED    Pod default/hp", "  denied:  host-port-conflicts: hostPort 30080/TCP lies in the cluster's NodePort range 30000-32767"},
		},
		{
			name:  "--node-port-range names the cluster's range",
			stdin: evalHostPortPod(30080), args: []string{"-f", "-", "--config", grantBob, "--node-port-range", "20000-22767"}, code: 0,
			stdout: []string{"ALLOWED   Pod default/hp"},
		},
		{
			name:  "a hostPort in the range --node-port-range names is denied",
			stdin: evalHostPortPod(20080), args: []string{"-f", "-", "--config", grantBob, "--node-port-range", "20000-22767"}, code: 1,
			stdout: []string{"DENIED    Pod default/hp", "lies in the cluster's NodePort range 20000-22767"},
		},
		{
			name: "the worked example as shipped: its render's Namespace labels team-a, and the enforced rule denies",
			args: []string{"--policy-dir", workedExample, "--config", filepath.Join(workedExample, "config.yaml"), "-f", publicService},
			code: 1,
			stdout: []string{"SKIPPED   Namespace team-a (" + publicService + "#1)\n",
				"DENIED    Service team-a/shop (" + publicService + "#2)\n  denied:  lb-internal: a LoadBalancer in team \"a\"'s namespace must be internal",
				"2 objects: 0 allowed, 0 rewritten, 1 denied, 1 skipped\n"},
		},
		{
			name:  "the worked example's rule denies a public LoadBalancer in a namespace --namespace-labels labels as a team's",
			stdin: publicServiceBody,
			args:  []string{"--policy-dir", workedExample, "--config", exampleDeny, "-f", "-", "--namespace-labels", "team=a"},
			code:  1,
			stdout: []string{"DENIED    Service team-a/shop (<stdin>#1)\n",
				"  denied:  lb-internal: a LoadBalancer in team \"a\"'s namespace must be internal (metadata.annotations); fix: add one of these annotations: ",
				"1 objects: 0 allowed, 0 rewritten, 1 denied, 0 skipped\n"},
		},
		{
			name: "the worked example's internal Service is allowed by the same rule",
			args: []string{"--policy-dir", workedExample, "--config", exampleDeny, "-f", filepath.Join(workedExample, "internal-service.yaml"), "--namespace-labels", "team=a"},
			code: 0, stdout: []string{"ALLOWED   Service team-a/shop-internal"},
		},
		{
			name:  "a removed API is named with what replaces it",
			stdin: evalRemovedIngress, args: []string{"-f", "-"}, code: 0,
			stdout: []string{"SKIPPED   Ingress default/old", "the extensions/v1beta1/Ingress API was removed from Kubernetes", "use networking.k8s.io/v1/Ingress"},
		},
		{name: "empty input", stdin: "---\n", args: []string{"-f", "-"}, code: 2, stderr: "no objects in -"},
		{name: "nothing on stdin", args: []string{"-f", "-"}, code: 2, stderr: "no objects in -"},
		{name: "comments only, as JSON output", stdin: "# nothing\n---\n# still nothing\n", args: []string{"-f", "-", "-o", "json"}, code: 2, stderr: "no objects in -"},
		{name: "a directory without manifests", args: []string{"-f", filepath.Join(dir, "empty")}, code: 2, stderr: "no objects in " + filepath.Join(dir, "empty")},
		{name: "an object without a kind", stdin: "apiVersion: v1\nmetadata: {name: x}\n", args: []string{"-f", "-"}, code: 2, stderr: "<stdin>#1: object has no apiVersion or kind"},
		{name: "an unknown output format", stdin: evalPlainPod, args: []string{"-f", "-", "-o", "yaml"}, code: 2, stderr: "-o must be text, json or junit"},
		{name: "a bad --node-port-range", stdin: evalPlainPod, args: []string{"-f", "-", "--node-port-range", "3-1"}, code: 2, stderr: "--node-port-range"},
		{name: "a --policy-dir that does not exist", stdin: evalPlainPod, args: []string{"-f", "-", "--policy-dir", filepath.Join(dir, "missing")}, code: 2, stderr: "policy dir"},
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
			if tc.code == 2 && stdout != "" {
				t.Errorf("bad input, yet stdout:\n%s", stdout)
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

// evalJSON runs eval -o json and returns its reports as generic values.
func evalJSON(t *testing.T, stdin string, wantCode int, args ...string) []map[string]any {
	t.Helper()
	stdout, stderr, code := runSplit(t, stdin, append([]string{"eval", "-o", "json"}, args...)...)
	if code != wantCode {
		t.Fatalf("exit %d, want %d\n%s%s", code, wantCode, stdout, stderr)
	}
	var reports []map[string]any
	if err := json.Unmarshal([]byte(stdout), &reports); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	return reports
}

// TestEvalJSONShape pins the documented JSON output: a list with one report
// per object, {source, kind, namespace, name, allowed, violations, warnings,
// patch} always (lists empty, never null), dryRun and skipped when there is
// something to say.
func TestEvalJSONShape(t *testing.T) {
	keys := func(m map[string]any) string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return strings.Join(ks, " ")
	}
	const always = "allowed kind name namespace patch source violations warnings"

	reports := evalJSON(t, evalPlainPod+"---\n"+evalHostNetworkPod+"---\n"+evalRemovedIngress+"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: x}\n", 1, "-f", "-")
	if len(reports) != 4 {
		t.Fatalf("%d reports", len(reports))
	}
	plain, hn, ingress, cm := reports[0], reports[1], reports[2], reports[3]
	const skipped = "allowed kind name namespace patch skipped source violations warnings"
	if keys(plain) != always || keys(hn) != always || keys(ingress) != skipped || keys(cm) != skipped {
		t.Errorf("keys: %q, %q, %q, %q", keys(plain), keys(hn), keys(ingress), keys(cm))
	}
	want := map[string]any{"source": "<stdin>#1", "kind": "Pod", "namespace": "default", "name": "plain", "allowed": true,
		"violations": []any{}, "warnings": []any{}, "patch": []any{}}
	if !reflect.DeepEqual(plain, want) {
		t.Errorf("allowed report %v, want %v", plain, want)
	}
	v, _ := hn["violations"].([]any)
	if len(v) != 1 || hn["allowed"] != false || hn["source"] != "<stdin>#2" {
		t.Fatalf("denied report %v", hn)
	}
	if f := v[0].(map[string]any); keys(f) != "field message rule" || f["rule"] != "host-network" || f["field"] != "spec.hostNetwork" ||
		!strings.HasPrefix(f["message"].(string), "host-network: hostNetwork is not granted") {
		t.Errorf("violation %v", f)
	}
	if ingress["allowed"] != true || !strings.Contains(ingress["skipped"].(string), "extensions/v1beta1/Ingress API was removed") {
		t.Errorf("removed API report %v", ingress)
	}
	if cm["namespace"] != "x" || cm["skipped"] != "kind v1/ConfigMap is not reviewed" {
		t.Errorf("skipped report %v", cm)
	}

	// A rewrite: the JSON Patch of the mutating webhook, a warning per change.
	file := writeTemp(t, "lb.yaml", evalLoadBalancer)
	reports = evalJSON(t, "", 0, "-f", file, "--config", writeTemp(t, "rewrite.yaml", evalRewriteConfig))
	if len(reports) != 1 || keys(reports[0]) != always || reports[0]["source"] != file+"#1" || reports[0]["allowed"] != true {
		t.Fatalf("rewrite report %v", reports)
	}
	patch, _ := reports[0]["patch"].([]any)
	warnings, _ := reports[0]["warnings"].([]any)
	if len(patch) == 0 || len(warnings) == 0 || !strings.HasPrefix(warnings[0].(string), "portreeve rewrote ") {
		t.Fatalf("rewrite report %v", reports[0])
	}
	var replaced bool
	for _, op := range patch {
		op := op.(map[string]any)
		replaced = replaced || op["op"] == "replace" && op["path"] == "/spec/type" && op["value"] == "ClusterIP"
	}
	if !replaced {
		t.Errorf("patch %v does not change the type to ClusterIP", patch)
	}

	// A rule in dryrun mode: its findings under dryRun, the object allowed;
	// the render's Namespace skipped, with why.
	reports = evalJSON(t, "", 0, "-f", filepath.Join(workedExample, "public-service.yaml"), "--policy-dir", workedExample,
		"--config", workedExampleDryrun(t))
	if len(reports) != 2 || reports[0]["kind"] != "Namespace" || reports[0]["skipped"] == nil {
		t.Fatalf("reports %v, want the Namespace skipped and the Service", reports)
	}
	dry, _ := reports[1]["dryRun"].([]any)
	if keys(reports[1]) != "allowed dryRun kind name namespace patch source violations warnings" || len(dry) != 1 ||
		dry[0].(map[string]any)["rule"] != "lb-internal" || dry[0].(map[string]any)["field"] != "metadata.annotations" {
		t.Errorf("dryrun report %v", reports[1])
	}
}

// workedExampleDryrun writes the worked example's configuration with its
// rule in dryrun, as during its roll-out.
func workedExampleDryrun(t *testing.T) string {
	t.Helper()
	example, err := os.ReadFile(filepath.Join(workedExample, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(example), "lb-internal: {mode: deny}") {
		t.Fatal("the worked example's configuration no longer enforces its rule")
	}
	return writeTemp(t, "config.yaml", strings.Replace(string(example), "lb-internal: {mode: deny}", "lb-internal: {mode: dryrun}", 1))
}
