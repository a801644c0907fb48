package e2e

import (
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
)

// TestNamespaceOptOutIsAnAdminsAct: through the real apiserver, a user who
// may create and update namespaces cannot give one the opt-out label (the
// webhooks would never see it again), a user named in namespaceOptOut and a
// cluster admin can, and kube-system stays out of Portreeve's way.
func TestNamespaceOptOutIsAnAdminsAct(t *testing.T) {
	cp := controlplane.StartForTest(t, controlplane.Options{})
	ctx := t.Context()
	for _, ns := range []string{"default", harness.Namespace} {
		if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := cp.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	// bob and carol may create and update namespaces, nothing more.
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "namespace-creator"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"create", "get", "update", "patch"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "namespace-creators"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "namespace-creator"},
		Subjects: []rbacv1.Subject{
			{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "bob"},
			{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "carol"},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	config := grantsConfig + "namespaceOptOut:\n  users: [carol]\n  groups: [system:masters]\n"
	e := &env{cp: cp, p: harness.StartForTest(t, cp, harness.Options{Config: config}, "--set", "enforcement=enforce")}

	labelled := func(name string) string {
		return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + name + "\n  labels: {portreeve.io/ignore: \"\"}\n"
	}
	as := func(user string, stdin string, args ...string) result {
		t.Helper()
		out, stderr, err := cp.KubectlStdin(ctx, strings.NewReader(stdin), append([]string{"--as", user}, args...)...)
		return result{out, stderr, err}
	}
	denied := "namespace-opt-out: the label portreeve.io/ignore switches Portreeve off for a namespace, and only users carol; groups system:masters may set it"

	mustDeny(t, as("bob", labelled("bobs-escape"), "create", "-f", "-"), denied)
	mustAdmit(t, as("bob", "apiVersion: v1\nkind: Namespace\nmetadata: {name: bobs-team}\n", "create", "-f", "-"))
	mustDeny(t, as("bob", "", "label", "namespace", "bobs-team", "portreeve.io/ignore="), denied)
	mustAdmit(t, as("bob", "", "label", "namespace", "bobs-team", "team=bob"))
	mustAdmit(t, as("carol", labelled("carols-sandbox"), "create", "-f", "-"))
	mustAdmit(t, e.kubectl(t, "label", "namespace", "bobs-team", "portreeve.io/ignore="))
	// Once an admin set it, other updates of the namespace go on.
	mustAdmit(t, as("bob", "", "label", "--overwrite", "namespace", "bobs-team", "team=bobs"))
	// kube-system is never sent to Portreeve.
	mustAdmit(t, as("bob", "", "label", "namespace", "kube-system", "portreeve.io/ignore="))
}
