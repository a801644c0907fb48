package audit

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	discoveryfake "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"
)

var (
	t0 = time.Unix(1_700_000_000, 0)
	t1 = t0.Add(time.Hour)
)

func hostNetworkPod(ns, name string) Finding {
	return Finding{Rule: "host-network", Namespace: ns, Kind: "Pod", Name: name, Result: "deny",
		Messages: []string{"hostNetwork is not granted (spec.hostNetwork)"}}
}

// summaryOf and resultsOf read a built report.
func summaryOf(t *testing.T, u *unstructured.Unstructured) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	s, _, _ := unstructured.NestedMap(u.Object, "summary")
	for k, v := range s {
		out[k] = v.(int64)
	}
	return out
}

type resultRow struct{ Rule, Result, Severity, Kind, APIVersion, Namespace, Name, Message, Mode string }

func resultsOf(t *testing.T, u *unstructured.Unstructured) []resultRow {
	t.Helper()
	rs, _, err := unstructured.NestedSlice(u.Object, "results")
	if err != nil {
		t.Fatal(err)
	}
	var out []resultRow
	for _, r := range rs {
		m := r.(map[string]any)
		if m["policy"] != ReportPolicy || m["source"] != ReportSource {
			t.Errorf("result %v: policy and source must be portreeve", m)
		}
		if _, ok, _ := unstructured.NestedInt64(m, "timestamp", "seconds"); !ok {
			t.Errorf("result %v has no timestamp", m)
		}
		ref := m["resources"].([]any)[0].(map[string]any)
		ns, _ := ref["namespace"].(string)
		sev, _ := m["severity"].(string)
		mode, _, _ := unstructured.NestedString(m, "properties", "portreeve.io/result")
		out = append(out, resultRow{m["rule"].(string), m["result"].(string), sev, ref["kind"].(string),
			ref["apiVersion"].(string), ns, ref["name"].(string), m["message"].(string), mode})
	}
	return out
}

func TestBuildReports(t *testing.T) {
	tests := []struct {
		name     string
		findings []Finding
		// want: per report (kind/namespace), its results and summary.
		want        map[string][]resultRow
		wantSummary map[string]map[string]int64
	}{
		{name: "no findings, no reports", want: map[string][]resultRow{}},
		{
			name: "one namespace, results by mode",
			findings: []Finding{
				{Rule: "node-port", Namespace: "a", Kind: "Service", Name: "web", Result: "dryrun", Messages: []string{"m1"}},
				hostNetworkPod("a", "agent"),
				{Rule: "host-port", Namespace: "a", Kind: "Deployment", Name: "d", Result: "rewrite", Messages: []string{"p1", "p2"}},
				{Rule: "custom", Namespace: "a", Kind: "Pod", Name: "agent", Result: "error", Messages: []string{"boom"}},
				{Rule: "ingress-host", Namespace: "a", Kind: "Ingress", Name: "i", Result: "warn", Messages: []string{"w"}},
			},
			want: map[string][]resultRow{"PolicyReport/a": {
				{"custom", "error", "", "Pod", "v1", "a", "agent", "boom", "error"},
				{"host-network", "fail", "high", "Pod", "v1", "a", "agent", "hostNetwork is not granted (spec.hostNetwork)", "deny"},
				{"host-port", "fail", "medium", "Deployment", "apps/v1", "a", "d", "p1; p2", "rewrite"},
				{"ingress-host", "warn", "low", "Ingress", "networking.k8s.io/v1", "a", "i", "w", "warn"},
				{"node-port", "warn", "low", "Service", "v1", "a", "web", "m1", "dryrun"},
			}},
			wantSummary: map[string]map[string]int64{"PolicyReport/a": {"pass": 0, "fail": 2, "warn": 2, "error": 1, "skip": 0}},
		},
		{
			name:     "one report per namespace, cluster-scoped objects in the ClusterPolicyReport",
			findings: []Finding{hostNetworkPod("b", "x"), hostNetworkPod("a", "y"), {Rule: "r", Kind: "Node", Name: "n", Result: "warn", Messages: []string{"m"}}},
			want: map[string][]resultRow{
				"ClusterPolicyReport/": {{"r", "warn", "low", "Node", "", "", "n", "m", "warn"}},
				"PolicyReport/a":       {{"host-network", "fail", "high", "Pod", "v1", "a", "y", "hostNetwork is not granted (spec.hostNetwork)", "deny"}},
				"PolicyReport/b":       {{"host-network", "fail", "high", "Pod", "v1", "b", "x", "hostNetwork is not granted (spec.hostNetwork)", "deny"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reports := BuildReports("portreeve", tt.findings, t0)
			got := map[string][]resultRow{}
			var order []string
			for _, u := range reports {
				k := u.GetKind() + "/" + u.GetNamespace()
				order = append(order, k)
				got[k] = resultsOf(t, u)
				if u.GetName() != "portreeve" || u.GetAPIVersion() != "wgpolicyk8s.io/v1alpha2" || u.GetLabels()[ManagedByLabel] != ManagedBy {
					t.Errorf("%s: name %q, apiVersion %q, labels %v", k, u.GetName(), u.GetAPIVersion(), u.GetLabels())
				}
				if want, ok := tt.wantSummary[k]; ok {
					if diff := diff(want, summaryOf(t, u)); diff != "" {
						t.Errorf("%s summary (-want +got):\n%s", k, diff)
					}
				}
			}
			if diff := diff(tt.want, got); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
			if !slices.IsSorted(order) {
				t.Errorf("reports not ordered by namespace: %v", order)
			}
		})
	}
}

// asListed is a built report as the API returns it: with a uid and a resourceVersion.
func asListed(u *unstructured.Unstructured) *unstructured.Unstructured {
	c := u.DeepCopy()
	c.SetUID(types.UID("uid-" + u.GetNamespace()))
	c.SetResourceVersion("7")
	return c
}

func TestPlan(t *testing.T) {
	a1 := []Finding{hostNetworkPod("a", "agent")}
	a2 := []Finding{hostNetworkPod("a", "agent"), hostNetworkPod("a", "agent2")}
	b1 := []Finding{hostNetworkPod("b", "x")}
	tests := []struct {
		name                     string
		existing, desired        []Finding
		create, update, delete   []string
		wantTimestamps           []int64 // of the updated report's results
		existingLabels           map[string]string
		existingNotManagedReport bool
	}{
		{name: "nothing", create: nil},
		{name: "new namespace is created", desired: a1, create: []string{"PolicyReport/a"}},
		{name: "unchanged findings, no write (timestamps kept)", existing: a1, desired: a1},
		{name: "a new finding updates in place, the old result keeps its time", existing: a1, desired: a2,
			update: []string{"PolicyReport/a"}, wantTimestamps: []int64{t0.Unix(), t1.Unix()}},
		{name: "a fixed finding is removed from the report", existing: a2, desired: a1,
			update: []string{"PolicyReport/a"}, wantTimestamps: []int64{t0.Unix()}},
		{name: "a namespace without findings loses its report", existing: append(slices.Clone(a1), b1...), desired: b1,
			delete: []string{"PolicyReport/a"}},
		{name: "all fixed: every report deleted", existing: append(slices.Clone(a1), b1...),
			delete: []string{"PolicyReport/a", "PolicyReport/b"}},
		{name: "a report that lost its label gets it back", existing: a1, desired: a1,
			existingLabels: map[string]string{"other": "x"}, update: []string{"PolicyReport/a"}, wantTimestamps: []int64{t0.Unix()}},
	}
	names := func(us []*unstructured.Unstructured) []string {
		var out []string
		for _, u := range us {
			out = append(out, u.GetKind()+"/"+u.GetNamespace())
		}
		return out
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var existing []*unstructured.Unstructured
			for _, u := range BuildReports("portreeve", tt.existing, t0) {
				u = asListed(u)
				if tt.existingLabels != nil {
					u.SetLabels(tt.existingLabels)
				}
				existing = append(existing, u)
			}
			c := Plan(BuildReports("portreeve", tt.desired, t1), existing)
			if diff := diff(tt.create, names(c.Create)); diff != "" {
				t.Errorf("create (-want +got):\n%s", diff)
			}
			if diff := diff(tt.update, names(c.Update)); diff != "" {
				t.Errorf("update (-want +got):\n%s", diff)
			}
			if diff := diff(tt.delete, names(c.Delete)); diff != "" {
				t.Errorf("delete (-want +got):\n%s", diff)
			}
			for _, u := range c.Update {
				if u.GetResourceVersion() != "7" || u.GetUID() == "" {
					t.Errorf("an update must start from the listed object (resourceVersion, uid): %v", u.Object["metadata"])
				}
				if u.GetLabels()[ManagedByLabel] != ManagedBy {
					t.Errorf("update without the managed-by label: %v", u.GetLabels())
				}
				var got []int64
				rs, _, _ := unstructured.NestedSlice(u.Object, "results")
				for _, r := range rs {
					s, _, _ := unstructured.NestedInt64(r.(map[string]any), "timestamp", "seconds")
					got = append(got, s)
				}
				if diff := diff(tt.wantTimestamps, got); diff != "" {
					t.Errorf("timestamps (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestBuildReportsBoundsResults(t *testing.T) {
	var fs []Finding
	for i := range MaxReportResults + 5 {
		fs = append(fs, hostNetworkPod("a", fmt.Sprintf("p%04d", i)))
	}
	u := BuildReports("portreeve", fs, t0)[0]
	if rows := resultsOf(t, u); len(rows) != MaxReportResults || rows[0].Name != "p0000" {
		t.Errorf("%d results, first %v", len(rows), rows[0])
	}
	if got := summaryOf(t, u)["fail"]; got != int64(MaxReportResults+5) {
		t.Errorf("summary.fail = %d, want every finding", got)
	}
}

func TestPlanToleratesFloatNumbers(t *testing.T) {
	// Numbers that come back as float64 (JSON decoded elsewhere) equal int64 ones.
	want := BuildReports("portreeve", []Finding{hostNetworkPod("a", "p")}, t0)
	listed := asListed(want[0])
	listed.Object["summary"].(map[string]any)["fail"] = float64(1)
	if c := Plan(BuildReports("portreeve", []Finding{hostNetworkPod("a", "p")}, t1), []*unstructured.Unstructured{listed}); !c.Empty() {
		t.Errorf("changes for an unchanged report: %+v", c)
	}
}

func reportsDiscovery(served bool) *discoveryfake.FakeDiscovery {
	d := &discoveryfake.FakeDiscovery{Fake: &clienttesting.Fake{}}
	if served {
		d.Resources = []*metav1.APIResourceList{{GroupVersion: "wgpolicyk8s.io/v1alpha2", APIResources: []metav1.APIResource{
			{Name: "policyreports", Namespaced: true, Kind: "PolicyReport"},
			{Name: "clusterpolicyreports", Kind: "ClusterPolicyReport"},
		}}}
	}
	return d
}

func TestReportWriterSync(t *testing.T) {
	ctx := t.Context()
	// Someone else's report in the namespace is left alone.
	other := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
		"metadata": map[string]any{"name": "kyverno", "namespace": "a", "labels": map[string]any{ManagedByLabel: "kyverno"}},
	}}
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		PolicyReportGVR: "PolicyReportList", ClusterPolicyReportGVR: "ClusterPolicyReportList",
	}, other)
	now := t0
	w := &ReportWriter{Client: client, Discovery: reportsDiscovery(true), Now: func() time.Time { return now }}
	get := func(ns string) *unstructured.Unstructured {
		u, err := client.Resource(PolicyReportGVR).Namespace(ns).Get(ctx, "portreeve", metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return u
	}

	c, err := w.Sync(ctx, []Finding{hostNetworkPod("a", "agent"), hostNetworkPod("b", "x")})
	if err != nil || len(c.Create) != 2 {
		t.Fatalf("first sync: %+v, %v", c, err)
	}
	if r := get("a"); r == nil || len(resultsOf(t, r)) != 1 {
		t.Fatalf("report a: %v", r)
	}
	now = t1
	if c, err := w.Sync(ctx, []Finding{hostNetworkPod("a", "agent"), hostNetworkPod("b", "x")}); err != nil || !c.Empty() {
		t.Errorf("unchanged: %+v, %v", c, err)
	}
	// b is fixed, a gains a finding.
	c, err = w.Sync(ctx, []Finding{hostNetworkPod("a", "agent"), hostNetworkPod("a", "agent2")})
	if err != nil || len(c.Update) != 1 || len(c.Delete) != 1 || len(c.Create) != 0 {
		t.Fatalf("third sync: %+v, %v", c, err)
	}
	if get("b") != nil {
		t.Error("report b is still there")
	}
	if rows := resultsOf(t, get("a")); len(rows) != 2 {
		t.Errorf("report a: %v", rows)
	}
	if _, err := client.Resource(PolicyReportGVR).Namespace("a").Get(ctx, "kyverno", metav1.GetOptions{}); err != nil {
		t.Errorf("another tool's report: %v", err)
	}

	// Without the CRDs it writes nothing and says why.
	w.Discovery = reportsDiscovery(false)
	if _, err := w.Sync(ctx, nil); err != ErrNoReportCRDs {
		t.Errorf("without CRDs: %v", err)
	}
	if get("a") == nil {
		t.Error("a report was deleted although the kinds are not served")
	}
}

func TestReportMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.RecordReports(syncNoCRDs, false)
	if v := testutil.ToFloat64(m.reportCRDs); v != 0 {
		t.Errorf("crds = %v", v)
	}
	m.RecordReports(syncSuccess, true)
	m.RecordReports(syncFailure, false)
	if v := testutil.ToFloat64(m.reportCRDs); v != 1 {
		t.Errorf("crds after a success = %v", v)
	}
	if got := metricNames(t, reg); !slices.Contains(got, "portreeve_audit_policy_report_syncs_total") ||
		!slices.Contains(got, "portreeve_audit_policy_report_crds") {
		t.Errorf("metrics: %v", got)
	}
}

// diff returns "" when want and got are equal, else both.
func diff(want, got any) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	return fmt.Sprintf("-%v\n+%v", want, got)
}
