package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

func pod(ns, name string, hostNetwork bool, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{HostNetwork: hostNetwork, Containers: []corev1.Container{{Name: "c", Image: "x"}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

// fakeCluster serves lists as the apiserver does (JSON, items without
// apiVersion and kind): pods page by page (limit and continue), recording
// the calls, and objects of the other reviewed kinds in one page.
func fakeCluster(t *testing.T, pods []*corev1.Pod, objects ...runtime.Object) (rest.Interface, *pagingPods) {
	t.Helper()
	byPath := map[string][]any{}
	for _, o := range objects {
		gvk := o.GetObjectKind().GroupVersionKind()
		for _, k := range Kinds {
			if k.GVK.Group == gvk.Group && k.GVK.Version == gvk.Version && k.GVK.Kind == gvk.Kind {
				byPath[listPath(k.GVR())] = append(byPath[listPath(k.GVR())], listItem(t, o))
			}
		}
	}
	pp := &pagingPods{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		items, cont := byPath[r.URL.Path], ""
		if r.URL.Path == "/api/v1/pods" {
			items, cont = pp.page(t, pods, r.URL.Query())
		}
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(map[string]any{
			"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"continue": cont}, "items": items,
		}); err != nil {
			t.Error(err)
		}
	}))
	t.Cleanup(srv.Close)
	client, err := NewClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return client, pp
}

// listItem is o as a list item: no apiVersion, no kind.
func listItem(t *testing.T, o runtime.Object) map[string]any {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		t.Fatal(err)
	}
	delete(m, "apiVersion")
	delete(m, "kind")
	return m
}

// pagingPods serves pods limit at a time and records the calls.
type pagingPods struct {
	mu    sync.Mutex
	calls []metav1.ListOptions
}

func (pp *pagingPods) page(t *testing.T, pods []*corev1.Pod, q url.Values) (items []any, cont string) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	limit, _ := strconv.ParseInt(q.Get("limit"), 10, 64)
	pp.calls = append(pp.calls, metav1.ListOptions{Limit: limit, Continue: q.Get("continue")})
	if len(pp.calls) > 100 {
		t.Error("too many pages")
		return nil, ""
	}
	from, _ := strconv.Atoi(q.Get("continue"))
	to := len(pods)
	if limit > 0 {
		to = min(to, from+int(limit))
	}
	for _, p := range pods[from:to] {
		items = append(items, listItem(t, p))
	}
	if to < len(pods) {
		cont = strconv.Itoa(to)
	}
	return items, cont
}

func TestAuditFindsViolationsPageByPage(t *testing.T) {
	owned := func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-1", Controller: new(true)}}
	}
	done := func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }
	pods := []*corev1.Pod{
		pod("team-a", "agent", true),
		pod("team-a", "plain", false),
		pod("kube-system", "cni", true),
		pod("team-a", "web-1-abc", true, owned),
		pod("team-a", "job-done", true, done),
		pod("quiet", "agent", true),
	}
	np := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-b", Name: "np"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	dep := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "web"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: "x", Ports: []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 8080}},
		}}}}},
	}
	labels := map[string]map[string]string{"quiet": {"portreeve.io/ignore": ""}}
	engine, err := policies.New(t.Context(), policies.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, includeOwned := range []bool{false, true} {
		client, pp := fakeCluster(t, pods, np, dep)
		a := &Auditor{
			Client: client, PageSize: 2, Reviewer: review.NewReviewer(engine),
			Labels:        func(_ context.Context, ns string) (map[string]string, error) { return labels[ns], nil },
			SkipNamespace: SkipNamespaces([]string{"kube-system"}, "portreeve.io/ignore"),
			IncludeOwned:  includeOwned,
		}
		var found []string
		sum, err := a.Run(t.Context(), func(f Finding) {
			found = append(found, strings.Join([]string{f.Rule, f.Result, f.Namespace, f.Kind, f.Name}, " "))
		})
		if err != nil || len(sum.Errors) > 0 {
			t.Fatalf("run: %v %v", err, sum.Errors)
		}
		// In the order of the table of kinds: Pods, workloads, Services.
		want := []string{
			"host-network deny team-a Pod agent",
			"host-ports deny team-a Deployment web",
			"node-ports deny team-b Service np",
		}
		if includeOwned {
			want = slices.Insert(want, 1, "host-network deny team-a Pod web-1-abc")
		}
		if !slices.Equal(found, want) {
			t.Errorf("includeOwned=%t: found\n%s\nwant\n%s", includeOwned, strings.Join(found, "\n"), strings.Join(want, "\n"))
		}
		if len(pp.calls) != 3 || pp.calls[0].Limit != 2 || pp.calls[1].Continue != "2" || pp.calls[2].Continue != "4" {
			t.Errorf("pod list calls %+v, want 3 pages of 2", pp.calls)
		}
		if sum.Counts["host-network"]["deny"] != len(want)-2 || sum.Counts["node-ports"]["deny"] != 1 {
			t.Errorf("counts %v", sum.Counts)
		}
	}
}

func TestAuditReportOutput(t *testing.T) {
	rep := &Report{
		Summary: Summary{Scanned: 7, Counts: map[string]map[string]int{
			"host-network": {"deny": 2}, "lb-internal": {"dryrun": 1},
		}},
		Findings: []Finding{
			{Rule: "lb-internal", Namespace: "team-a", Kind: "Service", Name: "shop", Result: "dryrun", Messages: []string{"must be internal"}},
			{Rule: "host-network", Namespace: "team-b", Kind: "Pod", Name: "b", Result: "deny", Messages: []string{"not granted"}},
			{Rule: "host-network", Namespace: "team-a", Kind: "Pod", Name: "a", Result: "deny", Messages: []string{"not granted"}},
		},
	}
	var out bytes.Buffer
	if err := rep.Write(&out, "text"); err != nil {
		t.Fatal(err)
	}
	want := `audited 7 objects: 3 with findings

host-network (2 deny)
  team-a
    DENY    Pod/a
            not granted
  team-b
    DENY    Pod/b
            not granted

lb-internal (1 dryrun)
  team-a
    DRYRUN  Service/shop
            must be internal
`
	if out.String() != want {
		t.Errorf("text:\n%s\nwant:\n%s", out.String(), want)
	}
	out.Reset()
	if err := rep.Write(&out, "json"); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back.Scanned != 7 || len(back.Findings) != 3 || back.Counts["lb-internal"]["dryrun"] != 1 {
		t.Fatalf("json %v:\n%s", err, out.String())
	}
}

func TestAuditMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// Before its first run a replica exports only whether it audits.
	if got := metricNames(t, reg); !slices.Equal(got, []string{"portreeve_audit_leader"}) {
		t.Errorf("before the first run: %v", got)
	}
	rules := []policies.RuleInfo{{ID: "host-network"}, {ID: "lb-internal"}}
	m.Record(&Summary{Scanned: 5, Counts: map[string]map[string]int{"lb-internal": {"dryrun": 3}}}, nil, rules, time.Second)
	if v := testutil.ToFloat64(m.findings.WithLabelValues("lb-internal", "dryrun")); v != 3 {
		t.Errorf("lb-internal dryrun = %v", v)
	}
	want := []string{"portreeve_audit_duration_seconds", "portreeve_audit_last_run_timestamp_seconds", "portreeve_audit_leader",
		"portreeve_audit_objects", "portreeve_audit_runs_total", "portreeve_audit_violations"}
	if got := metricNames(t, reg); !slices.Equal(got, want) {
		t.Errorf("after a run: %v, want %v", got, want)
	}
	if v := testutil.ToFloat64(m.findings.WithLabelValues("host-network", "deny")); v != 0 {
		t.Errorf("host-network deny = %v", v)
	}
	if n := testutil.CollectAndCount(m.findings); n != len(rules)*len(Results) {
		t.Errorf("%d series, want one per rule and result", n)
	}
	// A rule that is gone disappears; a failed run keeps the last counts.
	m.Record(&Summary{Scanned: 5, Counts: map[string]map[string]int{}}, nil, rules[:1], time.Second)
	if n := testutil.CollectAndCount(m.findings); n != len(Results) {
		t.Errorf("%d series after lb-internal was removed", n)
	}
	m.Record(nil, context.Canceled, rules, time.Second)
	if v := testutil.ToFloat64(m.runs.WithLabelValues("failure")); v != 1 {
		t.Errorf("failed runs = %v", v)
	}
	if v := testutil.ToFloat64(m.objects); v != 5 {
		t.Errorf("objects = %v", v)
	}
}

// metricNames lists the metric families reg exports, sorted.
func metricNames(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	return names
}

// TestAuditLoopMarksTheLeader: the loop, started only on the elected
// replica, sets portreeve_audit_leader while it runs.
func TestAuditLoopMarksTheLeader(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	synced := make(chan struct{})
	l := &Loop{Metrics: m, Interval: time.Minute, Synced: func(ctx context.Context) bool {
		close(synced)
		<-ctx.Done()
		return false
	}}
	if !l.NeedLeaderElection() {
		t.Error("the audit runs on every replica")
	}
	if v := testutil.ToFloat64(m.leader); v != 0 {
		t.Errorf("leader = %v before the loop started", v)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- l.Start(ctx) }()
	<-synced
	if v := testutil.ToFloat64(m.leader); v != 1 {
		t.Errorf("leader = %v while the loop runs", v)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(m.leader); v != 0 {
		t.Errorf("leader = %v after the loop stopped", v)
	}
}

// TestAuditUser: the audit reviews as User unless told another user
// (portreeve audit --as), so grants by user apply only then.
func TestAuditUser(t *testing.T) {
	cfg, err := policies.ParseConfig([]byte("apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\ngrants:\n  - {name: bob, users: [bob], hostNetwork: true}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := policies.New(t.Context(), policies.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user policies.User
		want int
	}{
		{policies.User{}, 1},
		{policies.User{Username: "bob", Groups: []string{"system:authenticated"}}, 0},
	} {
		client, _ := fakeCluster(t, []*corev1.Pod{pod("team-a", "agent", true)})
		a := &Auditor{Client: client, PageSize: 10, Reviewer: review.NewReviewer(engine), User: tc.user,
			Labels:        func(context.Context, string) (map[string]string, error) { return nil, nil },
			SkipNamespace: SkipNamespaces(nil, ""),
		}
		rep := &Report{}
		sum, err := a.Run(t.Context(), rep.Collect(10))
		if err != nil || sum.Scanned != 1 {
			t.Fatalf("run: %v, %d scanned", err, sum.Scanned)
		}
		if len(rep.Findings) != tc.want {
			t.Errorf("as %q: findings %+v", tc.user.Username, rep.Findings)
		}
	}
}

func TestReportCollect(t *testing.T) {
	rep := &Report{}
	collect := rep.Collect(2)
	for range 5 {
		collect(Finding{Rule: "r", Result: "deny"})
	}
	if len(rep.Findings) != 2 || rep.Omitted != 3 {
		t.Fatalf("%d findings, %d omitted", len(rep.Findings), rep.Omitted)
	}
	var out bytes.Buffer
	if err := rep.Write(&out, "text"); err != nil || !strings.Contains(out.String(), "... and 3 more findings (raise --max-findings)") {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if empty := (&Report{}); empty.Collect(1) == nil || empty.Findings == nil {
		t.Fatal("an empty report lists no findings as [], not null")
	}
}
