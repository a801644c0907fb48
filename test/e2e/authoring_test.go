package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
)

// authoringConfig grants team-a LoadBalancers and node ports; team-b nothing.
const authoringConfig = `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - name: system
    namespaces: [kube-system]
    hostNetwork: true
    hostPorts: ["1-65535"]
    nodePorts: ["30000-32767"]
    loadBalancer: true
  - name: team-a
    namespaces: [team-a]
    loadBalancer: true
    nodePorts: ["30000-32767"]
`

// authoringSeed exists before Portreeve's webhooks are registered. The
// objects marked "violates" are what the audit must report, and only they.
const authoringSeed = `apiVersion: v1
kind: Service
metadata: {name: legacy-shop, namespace: team-a}   # violates lb-internal (once loaded)
spec: {type: LoadBalancer, selector: {app: shop}, ports: [{port: 443}]}
---
apiVersion: v1
kind: Service
metadata:
  name: shop-internal
  namespace: team-a
  annotations: {networking.gke.io/load-balancer-type: Internal}
spec: {type: LoadBalancer, selector: {app: shop}, ports: [{port: 443}]}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: team-a}         # violates host-network
spec: {hostNetwork: true, containers: [{name: agent, image: registry.example/agent:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: team-a}
spec: {containers: [{name: app, image: registry.example/app:1, ports: [{containerPort: 8080}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: team-a}           # violates host-ports
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: registry.example/web:1, ports: [{containerPort: 8080, hostPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: np, namespace: team-b}            # violates node-ports
spec: {type: NodePort, selector: {app: np}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: team-b}
spec: {selector: {app: internal}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: cni, namespace: kube-system}      # exempt namespace
spec: {hostNetwork: true, containers: [{name: cni, image: registry.example/cni:1}]}
---
apiVersion: v1
kind: Service
metadata: {name: np, namespace: opted-out}         # namespace labelled portreeve.io/ignore
spec: {type: NodePort, selector: {app: np}, ports: [{port: 80}]}
`

// The probes need no node ports (allocateLoadBalancerNodePorts: false), so that
// only the LoadBalancer rules judge them.
const authoringPublicLB = `apiVersion: v1
kind: Service
metadata: {name: shop, namespace: team-a}
spec: {type: LoadBalancer, allocateLoadBalancerNodePorts: false, selector: {app: shop}, ports: [{port: 443}]}
`

const authoringInternalLB = `apiVersion: v1
kind: Service
metadata:
  name: shop2
  namespace: team-a
  annotations: {networking.gke.io/load-balancer-type: Internal}
spec: {type: LoadBalancer, allocateLoadBalancerNodePorts: false, selector: {app: shop}, ports: [{port: 443}]}
`

// authoringBroken does not parse: the file ends (line 4) inside a rule.
const authoringBroken = "package portreeve.rules.team_owner\n\ndeny contains v if {\n"

// authoringTeamOwner is authoringBroken fixed: Services in team namespaces need an owner label.
const authoringTeamOwner = `package portreeve.rules.team_owner

import data.portreeve.lib.k8s

deny contains {"msg": "Services in team namespaces need an owner label", "field": "metadata.labels.owner"} if {
	k8s.is_service
	input.namespaceLabels.team
	not input.object.metadata.labels.owner
}
`

// authoringPolicyDir writes a folder the way the kubelet writes a mounted
// ConfigMap: the files live in a timestamped folder, the symlink ..data
// points to it and is swapped atomically, and each file is a symlink
// through ..data.
type authoringPolicyDir struct {
	dir string
	n   int
}

func (c *authoringPolicyDir) set(t *testing.T, files map[string]string) {
	t.Helper()
	c.n++
	version := fmt.Sprintf("..2026_01_01_00_00_%02d.%d", c.n, c.n)
	if err := os.Mkdir(filepath.Join(c.dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(c.dir, version, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, keep := files[e.Name()]; !strings.HasPrefix(e.Name(), "..") && !keep {
			_ = os.Remove(filepath.Join(c.dir, e.Name()))
		}
	}
	for name := range files {
		link := filepath.Join(c.dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			t.Fatal(err)
		}
	}
}

func authoringKubectl(t *testing.T, cp *controlplane.ControlPlane, stdin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	return cp.KubectlStdin(ctx, strings.NewReader(stdin), args...)
}

// authoringDryRun is a server-side dry run: it passes both webhooks and stores nothing.
func authoringDryRun(t *testing.T, cp *controlplane.ControlPlane, manifest string) (string, error) {
	t.Helper()
	_, stderr, err := authoringKubectl(t, cp, manifest, "apply", "--dry-run=server", "-f", "-")
	return stderr, err
}

// eventually retries check every 200ms until it returns nil or timeout ends.
func authoringEventually(t *testing.T, timeout time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		if err = check(); err == nil {
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
	return 0
}

func authoringMetric(t *testing.T, p *harness.Portreeve, series string) (float64, bool) {
	t.Helper()
	page, err := p.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(page)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

func authoringReadyz(t *testing.T, p *harness.Portreeve, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(p.HealthURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAuthoringCustomRuleLifecycle: a rule dropped into the policy dir of a
// running Portreeve denies within seconds through kubectl; the audit reports
// exactly the objects that existed before and violate the rules; a broken
// module is reported (log, metric, /readyz/policies) and changes nothing;
// fixing it applies it.
func TestAuthoringCustomRuleLifecycle(t *testing.T) {
	cp := controlplane.StartForTest(t, controlplane.Options{})
	ctx := t.Context()
	for ns, labels := range map[string]map[string]string{
		"default": nil, "kube-system": nil, harness.Namespace: nil,
		"team-a": {"team": "a"}, "team-b": nil, "opted-out": {"portreeve.io/ignore": "true"},
	} {
		if err := cp.EnsureNamespace(ctx, ns, labels); err != nil {
			t.Fatal(err)
		}
	}
	if _, stderr, err := authoringKubectl(t, cp, authoringSeed, "apply", "-f", "-"); err != nil {
		t.Fatalf("seed: %v\n%s", err, stderr)
	}

	policyDir := &authoringPolicyDir{dir: t.TempDir()}
	policyDir.set(t, map[string]string{})
	p := harness.StartForTest(t, cp, harness.Options{
		Config:    authoringConfig,
		ExtraArgs: []string{"--policy-dir", policyDir.dir, "--audit-interval", "10s"},
	})
	if stderr, err := authoringDryRun(t, cp, authoringPublicLB); err != nil {
		t.Fatalf("before the custom rule, a public LoadBalancer in team-a is admitted: %v\n%s", err, stderr)
	}

	// 1. The worked example's rule, in deny mode, dropped into the folder.
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "lb-internal", "lb_internal.rego"))
	if err != nil {
		t.Fatal(err)
	}
	lbInternal := strings.Replace(string(b), "#   mode: dryrun", "#   mode: deny", 1)
	policyDir.set(t, map[string]string{"lb_internal.rego": lbInternal})
	took := authoringEventually(t, 30*time.Second, "the new rule denies", func() error {
		stderr, err := authoringDryRun(t, cp, authoringPublicLB)
		if err == nil {
			return fmt.Errorf("admitted")
		}
		if !strings.Contains(stderr, `lb-internal: a LoadBalancer in team "a"'s namespace must be internal`) {
			return fmt.Errorf("denied for another reason: %s", stderr)
		}
		return nil
	})
	t.Logf("the new rule denied %s after it was written", took.Round(100*time.Millisecond))
	if took > 15*time.Second {
		t.Errorf("the new rule took %s to apply", took)
	}
	if stderr, err := authoringDryRun(t, cp, authoringInternalLB); err != nil {
		t.Fatalf("an internal LoadBalancer is denied: %s", stderr)
	}

	// 2. The audit reports exactly the seeded objects that violate the rules.
	audit := exec.CommandContext(ctx, authoringBinary(t), "audit", "--kubeconfig", cp.KubeconfigPath,
		"--config", p.ConfigPath, "--policy-dir", policyDir.dir, "-o", "json")
	out, err := audit.Output()
	var ee *exec.ExitError
	if !authoringExitError(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("portreeve audit: %v (want exit 1: findings)\n%s", err, out)
	}
	var rep struct {
		Scanned  int `json:"scanned"`
		Findings []struct {
			Rule, Namespace, Kind, Name, Result string
		} `json:"findings"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got []string
	for _, f := range rep.Findings {
		got = append(got, strings.Join([]string{f.Rule, f.Result, f.Namespace, f.Kind, f.Name}, " "))
	}
	want := []string{
		"host-network deny team-a Pod agent",
		"host-ports deny team-a Deployment web",
		"lb-internal deny team-a Service legacy-shop",
		"node-ports deny team-b Service np",
	}
	if !slices.Equal(got, want) || len(rep.Errors) > 0 {
		t.Fatalf("audit findings:\n%s\nwant:\n%s\nerrors: %v", strings.Join(got, "\n"), strings.Join(want, "\n"), rep.Errors)
	}
	// serve's own periodic audit counts them too.
	authoringEventually(t, 40*time.Second, "serve's audit metric", func() error {
		if v, ok := authoringMetric(t, p, `portreeve_audit_violations{result="deny",rule="lb-internal"}`); !ok || v != 1 {
			return fmt.Errorf("portreeve_audit_violations lb-internal deny = %v (%t)", v, ok)
		}
		return nil
	})

	// 3. A broken module is rejected and changes nothing.
	failuresBefore, _ := authoringMetric(t, p, `portreeve_policy_reloads_total{result="failure"}`)
	policyDir.set(t, map[string]string{"lb_internal.rego": lbInternal, "team_owner.rego": authoringBroken})
	authoringEventually(t, 30*time.Second, "the broken module is reported", func() error {
		if v, _ := authoringMetric(t, p, `portreeve_policy_reloads_total{result="failure"}`); v <= failuresBefore {
			return fmt.Errorf("no failed reload counted")
		}
		if v, ok := authoringMetric(t, p, "portreeve_policy_last_reload_successful"); !ok || v != 0 {
			return fmt.Errorf("portreeve_policy_last_reload_successful = %v", v)
		}
		return nil
	})
	code, body := authoringReadyz(t, p, "/readyz/policies")
	if code != http.StatusInternalServerError || !strings.Contains(body, "team_owner.rego:4: rego_parse_error") {
		t.Errorf("/readyz/policies: %d %s", code, body)
	}
	if code, body := authoringReadyz(t, p, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz is not ready while the last good set serves: %d %s", code, body)
	}
	if logs := p.LogTail(); !strings.Contains(logs, "custom rules rejected") || !strings.Contains(logs, "team_owner.rego:4: rego_parse_error") {
		t.Errorf("the log does not name the file, line and reason")
	}
	if stderr, err := authoringDryRun(t, cp, authoringPublicLB); err == nil || !strings.Contains(stderr, "lb-internal") {
		t.Errorf("the last good set no longer serves: %v %s", err, stderr)
	}
	if stderr, err := authoringDryRun(t, cp, authoringInternalLB); err != nil {
		t.Errorf("an internal LoadBalancer is denied while the broken module waits: %s", stderr)
	}

	// 4. Fixing it applies it.
	policyDir.set(t, map[string]string{"lb_internal.rego": lbInternal, "team_owner.rego": authoringTeamOwner})
	authoringEventually(t, 30*time.Second, "the fixed module applies", func() error {
		stderr, err := authoringDryRun(t, cp, authoringInternalLB)
		if err == nil || !strings.Contains(stderr, "team-owner: Services in team namespaces need an owner label") {
			return fmt.Errorf("%v %s", err, stderr)
		}
		return nil
	})
	if v, _ := authoringMetric(t, p, "portreeve_policy_last_reload_successful"); v != 1 {
		t.Errorf("portreeve_policy_last_reload_successful = %v after the fix", v)
	}
	if code, body := authoringReadyz(t, p, "/readyz/policies"); code != http.StatusOK {
		t.Errorf("/readyz/policies after the fix: %d %s", code, body)
	}
	if v, _ := authoringMetric(t, p, "portreeve_policy_custom_modules"); v != 2 {
		t.Errorf("portreeve_policy_custom_modules = %v", v)
	}
}

func authoringBinary(t *testing.T) string {
	t.Helper()
	bin, err := harness.Binary("")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func authoringExitError(err error, target **exec.ExitError) bool {
	return errors.As(err, target)
}
