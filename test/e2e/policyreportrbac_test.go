package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/webhook/audit"
)

// TestPolicyReportRBAC: the verbs the chart's ClusterRole grants on
// wgpolicyk8s.io with audit.policyReports.enabled are exactly what the
// audit's report writer needs on the real apiserver's RBAC: with them a
// user writes, updates and deletes its reports; without any one of them it
// fails.
func TestPolicyReportRBAC(t *testing.T) {
	cp := controlplane.StartForTest(t, controlplane.Options{})
	ctx := t.Context()
	for _, ns := range []string{"team-a", "team-b"} {
		if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	applyCRDs(ctx, t, cp, filepath.Join(root, "test", "fixtures", "policyreport", "crds.yaml"))
	out, stderr, err := cp.Helm(ctx, "template", "portreeve", filepath.Join(root, "charts", "portreeve"), "--namespace", "portreeve",
		"--kube-version", "1.37.2", "--set", "audit.policyReports.enabled=true", "--show-only", "templates/clusterrole.yaml")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr)
	}
	var chartRole rbacv1.ClusterRole
	if err := yaml.Unmarshal([]byte(out), &chartRole); err != nil {
		t.Fatal(err)
	}
	var granted rbacv1.PolicyRule
	for _, r := range chartRole.Rules {
		if slices.Contains(r.APIGroups, "wgpolicyk8s.io") {
			granted = r
		}
	}
	if len(granted.Verbs) == 0 {
		t.Fatalf("the chart's ClusterRole grants nothing on wgpolicyk8s.io:\n%s", out)
	}

	cs, err := cp.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	const user = "portreeve-reporter"
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := cp.RESTConfig()
	cfg.Impersonate.UserName = user
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// run creates reports in two namespaces, updates one and deletes the other.
	run := func(name string) error {
		w := &audit.ReportWriter{Client: dyn, Discovery: disc, Name: name}
		pod := func(ns, name string) audit.Finding {
			return audit.Finding{Rule: "host-network", Namespace: ns, Kind: "Pod", Name: name, Result: "deny", Messages: []string{"m"}}
		}
		for _, step := range [][]audit.Finding{
			{pod("team-a", "a"), pod("team-b", "b")},
			{pod("team-a", "a"), pod("team-a", "c")},
			nil,
		} {
			if _, err := w.Sync(ctx, step); err != nil {
				return err
			}
		}
		return nil
	}
	setVerbs := func(verbs []string) {
		t.Helper()
		rule := granted
		rule.Verbs = verbs
		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: []rbacv1.PolicyRule{rule}}
		_ = cs.RbacV1().ClusterRoles().Delete(ctx, user, metav1.DeleteOptions{})
		if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	setVerbs(granted.Verbs)
	waitElection(t, 20*time.Second, "the writer works with the chart's verbs", func() error {
		return run("with-all")
	})
	for i, verb := range granted.Verbs {
		t.Run("without "+verb, func(t *testing.T) {
			setVerbs(slices.Delete(slices.Clone(granted.Verbs), i, i+1))
			// RBAC changes reach the authorizer through an informer: wait until the run fails.
			waitElection(t, 20*time.Second, "the writer fails without "+verb, func() error {
				if err := run(fmt.Sprintf("without-%s", verb)); err != nil {
					t.Logf("without %s: %v", verb, err)
					return nil
				}
				return fmt.Errorf("the writer still works without %s", verb)
			})
		})
	}
}
