package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portreeve/portreeve/webhook/explain"
)

const explainConfig = `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  load-balancer: {mode: rewrite}
grants:
  - name: system
    namespaces: [kube-system]
    hostNetwork: true
  - name: team-a
    namespaces: [team-a]
    nodePorts: ["30100-30199"]
  - name: edge
    serviceAccounts: [team-a/edge]
    hostPorts: ["80"]
    expires: "2024-01-01"
  - name: dns
    users: [bob]
    hostPorts: ["53/UDP"]
exemptions:
  - name: break-glass
    users: [alice]
    rules: [host-network]
    reason: incident 42
`

const explainObjects = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-a}
spec:
  type: LoadBalancer
  loadBalancerSourceRanges: ["10.0.0.0/8"]
  ports: [{port: 80, nodePort: 30150}]
---
apiVersion: v1
kind: Pod
metadata: {name: edge, namespace: team-a}
spec:
  serviceAccountName: edge
  hostNetwork: true
  containers: [{name: c, image: x, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
`

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExplain(t *testing.T) {
	cfg := writeTemp(t, "config.yaml", explainConfig)
	out, code := runCLI(t, explainObjects, "explain", "-f", "-", "--config", cfg, "--as", "alice", "--as-group", "dev")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{
		// The LoadBalancer is rewritten; node ports are allowed by team-a's grant.
		"Service team-a/web (CREATE by alice; groups: dev, system:authenticated)\n  verdict: REWRITTEN\n",
		"  load-balancer (mode rewrite): rewritten\n",
		"  node-ports (mode deny): allowed by grant team-a\n",
		`    /spec/type: "LoadBalancer" -> "NodePort" (load-balancer: type LoadBalancer is not granted to namespace "team-a"; changed to NodePort)`,
		"    --- before\n    +++ after\n",
		"    -   loadBalancerSourceRanges:\n    -   - 10.0.0.0/8\n",
		"    -   type: LoadBalancer\n    +   type: NodePort\n",
		// The pod: hostNetwork lifted by alice's exemption, its port denied with every grant's reason.
		"Pod team-a/edge (CREATE by alice; groups: dev, system:authenticated)\n  verdict: DENIED\n",
		"  host-network (mode deny): exempted by exemption break-glass\n",
		"  host-ports (mode deny): denied\n",
		`      hostPort 80/TCP of container "c" is not in a range granted to namespace "team-a"`,
		"      system: does not apply: other namespace: \"team-a\" is not in kube-system\n",
		"      team-a: applies to this request, but does not allow this\n",
		"      edge: does not apply: expired: 2024-01-01\n",
		"      dns: does not apply: other user: \"alice\" is not in bob\n",
		"ConfigMap default/x (CREATE by alice; groups: dev, system:authenticated)\n  verdict: SKIPPED (kind v1/ConfigMap is not reviewed)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}

	out, code = runCLI(t, explainObjects, "explain", "-f", "-", "--config", cfg, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	var ex []explain.Explanation
	if err := json.Unmarshal([]byte(out), &ex); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(ex) != 3 || ex[1].Verdict != "DENIED" || len(ex[1].Grants) != 4 || ex[1].Grants[2].Applies ||
		ex[1].Grants[2].Reasons[0] != "expired: 2024-01-01" {
		t.Fatalf("json %+v", ex)
	}
	// Without alice's exemption the pod's hostNetwork is denied too.
	if r := ex[1].Rules[0]; r.Rule != "host-network" || r.Result != "denied" {
		t.Errorf("as portreeve:eval, host-network %+v", r)
	}
}

func TestExplainCustomRule(t *testing.T) {
	out, code := runCLI(t, "", "explain", "-f", filepath.Join(workedExample, "public-service.yaml"),
		"--config", filepath.Join(workedExample, "config.yaml"), "--policy-dir", workedExample)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{
		"Namespace team-a (CREATE by portreeve:eval; groups: system:authenticated)\n  verdict: SKIPPED (a Namespace is not reviewed",
		"  verdict: DENIED\n",
		"  lb-internal (mode deny): denied\n",
		`      a LoadBalancer in team "a"'s namespace must be internal (metadata.annotations)`,
		"  load-balancer (mode deny): allowed by grant team-a\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, code := runCLI(t, "", "explain"); code != 2 {
		t.Errorf("no -f: exit %d", code)
	}
}
