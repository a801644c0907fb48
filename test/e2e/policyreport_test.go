package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
)

var policyReports = schema.GroupVersionResource{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "policyreports"}

// reportRows reads a PolicyReport's results as "rule result Kind/name" and
// checks the summary counts them.
func reportRows(t *testing.T, u *unstructured.Unstructured) []string {
	t.Helper()
	results, _, _ := unstructured.NestedSlice(u.Object, "results")
	var rows []string
	counts := map[string]int64{}
	for _, r := range results {
		m := r.(map[string]any)
		refs, _ := m["resources"].([]any)
		if len(refs) != 1 || m["policy"] != "portreeve" || m["source"] != "portreeve" {
			t.Errorf("result %v: want one resource, policy and source portreeve", m)
			continue
		}
		ref := refs[0].(map[string]any)
		rows = append(rows, fmt.Sprintf("%s %s %s/%s", m["rule"], m["result"], ref["kind"], ref["name"]))
		counts[m["result"].(string)]++
	}
	for _, res := range []string{"pass", "fail", "warn", "error", "skip"} {
		if n, _, _ := unstructured.NestedInt64(u.Object, "summary", res); n != counts[res] {
			t.Errorf("%s/%s: summary.%s = %d, results %d", u.GetNamespace(), u.GetName(), res, n, counts[res])
		}
	}
	slices.Sort(rows)
	return rows
}

// TestPolicyReports runs serve with --policy-reports against a real
// kube-apiserver. Without the PolicyReport CRDs it says so (log, metric) and
// keeps serving; once they are applied the next audit writes one report per
// namespace with findings, with a result per finding; a fixed violation's
// result disappears from its report (updated in place), and a namespace with
// no findings left loses its report. `portreeve audit -o policyreport` prints
// the same reports, and the apiserver accepts them against the CRDs' schema.
func TestPolicyReports(t *testing.T) {
	cp := controlplane.StartForTest(t, controlplane.Options{})
	ctx := t.Context()
	for _, ns := range []string{"default", "kube-system", "team-a", "team-b", harness.Namespace} {
		if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := cp.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	// Violations (no webhook is registered: they are admitted): hostNetwork
	// pods in default and team-b, a NodePort Service in team-b (not granted
	// there). team-a's NodePort Service is granted: no finding, no report.
	hostNetworkPod := func(ns, name string) {
		t.Helper()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "agent", Image: "registry.example.com/agent:1"}}},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	nodePortService := func(ns, name string, port int32) {
		t.Helper()
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": name},
				Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: port}}},
		}
		if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	hostNetworkPod("default", "agent")
	hostNetworkPod("team-b", "agent")
	nodePortService("team-b", "web", 30500)
	nodePortService("team-a", "web", 30501)

	p, err := harness.Start(ctx, harness.Options{Kubeconfig: cp.KubeconfigPath, Config: grantsConfig,
		ExtraArgs: []string{"--audit-interval=10s", "--policy-reports"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve:%s", p.LogTail())
		}
		if err := p.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	metric := func(series string) (float64, bool) {
		page, err := p.Metrics()
		if err != nil {
			return 0, false
		}
		return seriesValue(page, series)
	}

	// 1. No CRDs: serve says so and serves on.
	waitElection(t, 30*time.Second, "an audit without the CRDs", func() error {
		if n, _ := metric(`portreeve_audit_policy_report_syncs_total{result="no_crds"}`); n < 1 {
			return fmt.Errorf("no sync without CRDs yet")
		}
		return nil
	})
	if v, ok := metric("portreeve_audit_policy_report_crds"); !ok || v != 0 {
		t.Errorf("portreeve_audit_policy_report_crds = %v (%t), want 0", v, ok)
	}
	if log, err := os.ReadFile(filepath.Join(p.Dir, "serve.log")); err != nil || !bytes.Contains(log, []byte("install the PolicyReport CRDs")) {
		t.Errorf("serve's log does not say the CRDs are missing (%v)", err)
	}

	// 2. With the CRDs, the next audit writes the reports.
	applyCRDs(ctx, t, cp, filepath.Join("..", "fixtures", "policyreport", "crds.yaml"))
	report := func(ns string) (*unstructured.Unstructured, error) {
		return dyn.Resource(policyReports).Namespace(ns).Get(ctx, "portreeve", metav1.GetOptions{})
	}
	// want checks the reports of default, team-a and team-b (nil: no report).
	want := func(byNS map[string][]string) func() error {
		return func() error {
			for _, ns := range []string{"default", "team-a", "team-b"} {
				u, err := report(ns)
				switch {
				case apierrors.IsNotFound(err) && byNS[ns] == nil:
					continue
				case err != nil:
					return fmt.Errorf("report %s: %w", ns, err)
				case byNS[ns] == nil:
					return fmt.Errorf("report %s still exists: %v", ns, reportRows(t, u))
				}
				if got := reportRows(t, u); !slices.Equal(got, byNS[ns]) {
					return fmt.Errorf("report %s: %q, want %q", ns, got, byNS[ns])
				}
				if u.GetLabels()["app.kubernetes.io/managed-by"] != "portreeve" {
					return fmt.Errorf("report %s labels %v", ns, u.GetLabels())
				}
			}
			return nil
		}
	}
	seeded := map[string][]string{
		"default": {"host-network fail Pod/agent"},
		"team-b":  {"host-network fail Pod/agent", "node-ports fail Service/web"},
	}
	waitElection(t, 40*time.Second, "the reports", want(seeded))
	if v, ok := metric("portreeve_audit_policy_report_crds"); !ok || v != 1 {
		t.Errorf("portreeve_audit_policy_report_crds = %v (%t), want 1", v, ok)
	}
	teamB, err := report("team-b")
	if err != nil {
		t.Fatal(err)
	}

	// 3. The offline audit prints the same reports; the apiserver accepts them.
	checkOfflineReports(t, cp, dyn, p.ConfigPath, seeded)

	// 4. Fixing the pod in team-b removes its result, in place; fixing
	// default's pod removes default's report.
	for _, ns := range []string{"team-b", "default"} {
		if err := cs.CoreV1().Pods(ns).Delete(ctx, "agent", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
	}
	waitElection(t, 40*time.Second, "the fixed results removed", want(map[string][]string{
		"team-b": {"node-ports fail Service/web"},
	}))
	if u, err := report("team-b"); err != nil || u.GetUID() != teamB.GetUID() {
		t.Errorf("team-b's report was replaced, not updated (%v)", err)
	}
	if n, _ := metric(`portreeve_audit_policy_report_syncs_total{result="failure"}`); n != 0 {
		t.Errorf("%v failed syncs", n)
	}
}

// checkOfflineReports runs `portreeve audit -o policyreport` and checks its
// documents: the reports serve wrote, and valid for the apiserver (a
// server-side dry run against the CRDs, with strict field validation).
func checkOfflineReports(t *testing.T, cp *controlplane.ControlPlane, dyn dynamic.Interface, configPath string, want map[string][]string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), authoringBinary(t), "audit", "--kubeconfig", cp.KubeconfigPath,
		"--config", configPath, "-o", "policyreport")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("portreeve audit -o policyreport: %v (want exit 1: findings)\n%s", err, out)
	}
	got := map[string][]string{}
	for doc := range strings.SplitSeq(string(out), "\n---\n") {
		u := &unstructured.Unstructured{}
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err == nil {
			err = u.UnmarshalJSON(j)
		}
		if err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		if u.GetKind() != "PolicyReport" || u.GetName() != "portreeve" {
			t.Errorf("offline report %s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
		}
		got[u.GetNamespace()] = reportRows(t, u)
		u.SetName("offline-check")
		_, err = dyn.Resource(policyReports).Namespace(u.GetNamespace()).Create(t.Context(), u,
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
		if err != nil {
			t.Errorf("the apiserver refuses the offline report of %s: %v", u.GetNamespace(), err)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("offline reports %v, want %v", got, want)
	}
}
