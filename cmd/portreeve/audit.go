package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/portreeve/portreeve/policies"
	portreevewebhook "github.com/portreeve/portreeve/webhook"
	"github.com/portreeve/portreeve/webhook/policytest"
	"github.com/portreeve/portreeve/webhook/review"
)

// auditUser judges existing objects: who created them is not stored, so
// grants by user or group do not apply (grants by namespace and service
// account do).
var auditUser = policies.User{Username: "portreeve:audit", Groups: []string{"system:authenticated"}}

// auditKind is a kind the audit lists.
type auditKind struct {
	gvk      policies.GroupVersionKind
	resource string
}

func (k auditKind) gvr() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: k.gvk.Group, Version: k.gvk.Version, Resource: k.resource}
}

// auditKinds are the kinds Portreeve reviews (review.SupportedKinds).
var auditKinds = []auditKind{
	{policies.GroupVersionKind{Version: "v1", Kind: "Pod"}, "pods"},
	{policies.GroupVersionKind{Version: "v1", Kind: "PodTemplate"}, "podtemplates"},
	{policies.GroupVersionKind{Version: "v1", Kind: "ReplicationController"}, "replicationcontrollers"},
	{policies.GroupVersionKind{Version: "v1", Kind: "Service"}, "services"},
	{policies.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, "deployments"},
	{policies.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}, "statefulsets"},
	{policies.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"}, "daemonsets"},
	{policies.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}, "replicasets"},
	{policies.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"}, "jobs"},
	{policies.GroupVersionKind{Group: "batch", Version: "v1", Kind: "CronJob"}, "cronjobs"},
	{policies.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}, "ingresses"},
}

// auditResults are the kinds of finding an audit reports, worst first.
var auditResults = []string{"deny", "rewrite", "dryrun", "warn", "error"}

// AuditFinding is one existing object that one rule would not let through unchanged.
type AuditFinding struct {
	Rule      string `json:"rule"`
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	// Result: deny, rewrite, dryrun (would deny once the rule denies), warn or error.
	Result   string   `json:"result"`
	Messages []string `json:"messages"`
}

// auditor lists the reviewed kinds page by page and reviews each object as a
// CREATE. It keeps no object beyond the page it reviews.
type auditor struct {
	client   dynamic.Interface
	pageSize int64
	reviewer *review.Reviewer
	// labels returns a namespace's labels.
	labels func(ctx context.Context, ns string) (map[string]string, error)
	// skipNamespace reports namespaces never reviewed (exempt or opted out).
	skipNamespace func(ns string, labels map[string]string) bool
	// includeOwned also reports objects whose controller is a reviewed kind
	// (the Pods of a Deployment's ReplicaSet); off, only the owner is.
	includeOwned bool
}

// auditSummary is what one audit run found.
type auditSummary struct {
	Scanned int `json:"scanned"`
	// Counts are objects per rule and result.
	Counts map[string]map[string]int `json:"counts"`
	// Errors are kinds or objects that could not be listed or reviewed.
	Errors []string `json:"errors,omitempty"`
}

// run audits every object and calls found for each finding.
func (a *auditor) run(ctx context.Context, found func(AuditFinding)) (*auditSummary, error) {
	sum := &auditSummary{Counts: map[string]map[string]int{}}
	reviewed := map[string]bool{}
	for _, k := range auditKinds {
		reviewed[k.gvk.Kind] = true
	}
	for _, k := range auditKinds {
		err := a.list(ctx, k, func(obj map[string]any) error {
			return a.one(ctx, k, obj, reviewed, sum, found)
		})
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return sum, ctx.Err()
		case apierrors.IsNotFound(err):
			// The cluster does not serve this kind.
		default:
			sum.Errors = append(sum.Errors, fmt.Sprintf("list %s: %v", k.resource, err))
		}
	}
	return sum, nil
}

// list calls fn for every object of kind k, one page (limit/continue) at a time.
func (a *auditor) list(ctx context.Context, k auditKind, fn func(map[string]any) error) error {
	opts := metav1.ListOptions{Limit: a.pageSize}
	for {
		page, err := a.client.Resource(k.gvr()).List(ctx, opts)
		if err != nil {
			return err
		}
		for i := range page.Items {
			obj := page.Items[i].Object
			obj["apiVersion"], obj["kind"] = page.Items[i].GetAPIVersion(), k.gvk.Kind
			if err := fn(obj); err != nil {
				return err
			}
		}
		next := page.GetContinue()
		if next == "" {
			return nil
		}
		if next == opts.Continue {
			return fmt.Errorf("list %s: the server repeated the continue token", k.resource)
		}
		opts.Continue = next
	}
}

func (a *auditor) one(ctx context.Context, k auditKind, obj map[string]any, reviewed map[string]bool, sum *auditSummary, found func(AuditFinding)) error {
	md, _ := obj["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	name, _ := md["name"].(string)
	if !a.includeOwned && ownedByReviewedKind(md, reviewed) || terminalPod(k, obj) {
		return nil
	}
	labels, err := a.labels(ctx, ns)
	if err != nil {
		sum.Errors = append(sum.Errors, fmt.Sprintf("namespace %s: %v", ns, err))
		return nil
	}
	if a.skipNamespace(ns, labels) {
		return nil
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	req, err := policytest.ObjectRequest(raw, nil, ns, auditUser)
	if err != nil {
		return err
	}
	req.NamespaceLabels = labels
	out, err := policytest.Review(ctx, a.reviewer, req)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		sum.Errors = append(sum.Errors, fmt.Sprintf("%s %s/%s: %v", k.gvk.Kind, ns, name, err))
		return nil
	}
	sum.Scanned++
	for _, f := range auditFindings(out) {
		if sum.Counts[f.Rule] == nil {
			sum.Counts[f.Rule] = map[string]int{}
		}
		sum.Counts[f.Rule][f.Result]++
		found(f)
	}
	return nil
}

// auditFindings turns an outcome into one finding per rule and result.
func auditFindings(o *policytest.Outcome) []AuditFinding {
	byKey := map[string]*AuditFinding{}
	var keys []string
	add := func(rule, result, msg string) {
		key := rule + "\x00" + result
		f := byKey[key]
		if f == nil {
			f = &AuditFinding{Rule: rule, Namespace: o.Namespace, Kind: o.Kind, Name: o.Name, Result: result}
			byKey[key] = f
			keys = append(keys, key)
		}
		f.Messages = append(f.Messages, msg)
	}
	for _, c := range o.Changes {
		add(c.Rule, "rewrite", fmt.Sprintf("%s: %s -> %s (%s)", c.Path, jsonText(c.Before), jsonText(c.After), c.Reason))
	}
	if d := o.Decision; d != nil {
		for _, f := range d.Violations {
			add(f.Rule, "deny", strings.TrimPrefix(f.String(), f.Rule+": "))
		}
		for _, f := range d.DryRun {
			add(f.Rule, "dryrun", strings.TrimPrefix(f.String(), f.Rule+": "))
		}
		for _, f := range d.Warnings {
			add(f.Rule, "warn", strings.TrimPrefix(f.String(), f.Rule+": "))
		}
		for _, e := range d.Errors {
			add(e.Rule, "error", e.Err.Error())
		}
	}
	out := make([]AuditFinding, 0, len(keys))
	for _, k := range keys {
		out = append(out, *byKey[k])
	}
	return out
}

// ownedByReviewedKind reports whether the object's controller is of a kind
// the audit reviews itself (a Deployment's ReplicaSets, their Pods).
func ownedByReviewedKind(md map[string]any, reviewed map[string]bool) bool {
	refs, _ := md["ownerReferences"].([]any)
	for _, r := range refs {
		ref, _ := r.(map[string]any)
		if c, _ := ref["controller"].(bool); c {
			kind, _ := ref["kind"].(string)
			return reviewed[kind]
		}
	}
	return false
}

// terminalPod reports a Pod that has finished: it holds no port any more.
func terminalPod(k auditKind, obj map[string]any) bool {
	if k.gvk.Kind != "Pod" {
		return false
	}
	status, _ := obj["status"].(map[string]any)
	phase, _ := status["phase"].(string)
	return phase == "Succeeded" || phase == "Failed"
}

// skipNamespaces returns the namespace filter: exempt names, and namespaces
// carrying the opt-out label (as the chart's webhook configurations skip them).
func skipNamespaces(exempt []string, ignoreLabel string) func(string, map[string]string) bool {
	return func(ns string, labels map[string]string) bool {
		if slices.Contains(exempt, ns) {
			return true
		}
		_, ignored := labels[ignoreLabel]
		return ignoreLabel != "" && ignored
	}
}

func newAuditCommand() *cobra.Command {
	var (
		kubeconfig, configPath, policyDir, output, ignoreLabel string
		exempt                                                 []string
		pageSize                                               int64
		maxFindings                                            int
		includeOwned                                           bool
	)
	cmd := &cobra.Command{
		Use:   "audit [flags]",
		Short: "List the existing objects of a cluster that the current rules would deny or rewrite",
		Long: "Lists every object of the reviewed kinds (page by page) and reviews each as a CREATE by a user with no\n" +
			"grants of its own (grants by namespace and service account apply), through the mutating and then the\n" +
			"validating review. Findings are grouped by rule and namespace: deny, rewrite, dryrun (what a rule in\n" +
			"dryrun mode would deny), warn, and error (the rule failed). Roll a new rule out as dryrun, audit until\n" +
			"clean, then switch it to deny.\n" +
			"Exit status: 0 when nothing was found, 1 when something was, 2 on bad input or cluster errors.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return &exitError{code: 2, err: fmt.Errorf("-o must be text or json, got %q", output)}
			}
			set, err := loadPolicySet(configPath, policyDir)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			engine, err := policies.New(cmd.Context(), policies.Options{Config: set.config, Modules: set.modules})
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			restCfg, err := restConfig(kubeconfig)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("kubeconfig: %w", err)}
			}
			restCfg.UserAgent = "portreeve-audit/" + version
			client, err := dynamic.NewForConfig(restCfg)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			labels, err := listNamespaceLabels(cmd.Context(), client, pageSize)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("list namespaces: %w", err)}
			}
			a := &auditor{
				client:        client,
				pageSize:      pageSize,
				reviewer:      review.NewReviewer(engine),
				labels:        func(_ context.Context, ns string) (map[string]string, error) { return labels[ns], nil },
				skipNamespace: skipNamespaces(exempt, ignoreLabel),
				includeOwned:  includeOwned,
			}
			rep := &auditReport{Findings: []AuditFinding{}}
			sum, err := a.run(cmd.Context(), func(f AuditFinding) {
				if len(rep.Findings) < maxFindings {
					rep.Findings = append(rep.Findings, f)
				} else {
					rep.Omitted++
				}
			})
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			rep.auditSummary = *sum
			if err := rep.print(cmd.OutOrStdout(), output); err != nil {
				return &exitError{code: 2, err: err}
			}
			switch {
			case len(sum.Errors) > 0:
				return &exitError{code: 2, err: errors.New("the audit is incomplete (see errors)")}
			case len(sum.Counts) > 0:
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then in-cluster)")
	cmd.Flags().StringVar(&configPath, "config", "", "policy configuration file (default: the built-in configuration)")
	cmd.Flags().StringVar(&policyDir, "policy-dir", "", "folder of custom Rego rules, as for serve")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringSliceVar(&exempt, "exempt-namespaces", []string{"kube-system"}, "namespaces never reviewed")
	cmd.Flags().StringVar(&ignoreLabel, "ignore-label", "portreeve.io/ignore", "namespaces with this label are never reviewed (empty: none)")
	cmd.Flags().Int64Var(&pageSize, "page-size", 500, "objects per list call")
	cmd.Flags().IntVar(&maxFindings, "max-findings", 10000, "findings listed at most (all are counted)")
	cmd.Flags().BoolVar(&includeOwned, "include-owned", false, "also report objects whose controller is a reviewed kind (the Pods of a Deployment), not only the controller")
	return cmd
}

// listNamespaceLabels reads every namespace's labels, page by page.
func listNamespaceLabels(ctx context.Context, client dynamic.Interface, pageSize int64) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	opts := metav1.ListOptions{Limit: pageSize}
	for {
		page, err := client.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, ns := range page.Items {
			out[ns.GetName()] = ns.GetLabels()
		}
		if opts.Continue = page.GetContinue(); opts.Continue == "" {
			return out, nil
		}
	}
}

// auditReport is the output of portreeve audit.
type auditReport struct {
	auditSummary
	Findings []AuditFinding `json:"findings"`
	// Omitted counts findings beyond --max-findings.
	Omitted int `json:"omitted,omitempty"`
}

func (r *auditReport) print(w io.Writer, output string) error {
	slices.SortFunc(r.Findings, func(a, b AuditFinding) int {
		for _, c := range []int{
			strings.Compare(a.Rule, b.Rule), strings.Compare(a.Namespace, b.Namespace),
			slices.Index(auditResults, a.Result) - slices.Index(auditResults, b.Result),
			strings.Compare(a.Kind, b.Kind), strings.Compare(a.Name, b.Name),
		} {
			if c != 0 {
				return c
			}
		}
		return 0
	})
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	var b strings.Builder
	objects := map[string]bool{}
	for _, f := range r.Findings {
		objects[f.Kind+"/"+f.Namespace+"/"+f.Name] = true
	}
	fmt.Fprintf(&b, "audited %d objects: %d with findings\n", r.Scanned, len(objects))
	rule, ns := "", ""
	for _, f := range r.Findings {
		if f.Rule != rule {
			rule, ns = f.Rule, ""
			var counts []string
			for _, res := range auditResults {
				if n := r.Counts[rule][res]; n > 0 {
					counts = append(counts, fmt.Sprintf("%d %s", n, res))
				}
			}
			fmt.Fprintf(&b, "\n%s (%s)\n", rule, strings.Join(counts, ", "))
		}
		if f.Namespace != ns {
			ns = f.Namespace
			fmt.Fprintf(&b, "  %s\n", ns)
		}
		fmt.Fprintf(&b, "    %-7s %s/%s\n", strings.ToUpper(f.Result), f.Kind, f.Name)
		for _, m := range f.Messages {
			fmt.Fprintf(&b, "            %s\n", m)
		}
	}
	if r.Omitted > 0 {
		fmt.Fprintf(&b, "\n... and %d more findings (raise --max-findings)\n", r.Omitted)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "error: %s\n", e)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// auditLoop runs the audit in serve every interval and exports the counts.
type auditLoop struct {
	interval time.Duration
	auditor  *auditor
	// engine returns the engine serving now (reloads apply to the next run).
	engine func() *policies.Engine
	facts  review.FactsSource
	// synced waits for the caches the audit reads (namespace labels, facts).
	synced func(context.Context) bool
	m      *auditMetrics
}

// NeedLeaderElection is true: one replica audits, the holder of the Lease
// (every replica when serve elects none), so the API load does not grow with
// the replicas.
func (l *auditLoop) NeedLeaderElection() bool { return true }

// Start audits once the caches have synced, then every interval.
func (l *auditLoop) Start(ctx context.Context) error {
	ctrl.Log.WithName("audit").Info("this replica audits", "interval", l.interval.String())
	l.m.leader.Set(1)
	defer l.m.leader.Set(0)
	if !l.synced(ctx) {
		return nil
	}
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		l.once(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (l *auditLoop) once(ctx context.Context) {
	start := time.Now()
	r := review.NewReviewer(l.engine())
	if l.facts != nil {
		r.UseFacts(policytest.ReadOnlyFacts{Source: l.facts})
	}
	l.auditor.reviewer = r
	sum, err := l.auditor.run(ctx, func(AuditFinding) {})
	if ctx.Err() != nil {
		return
	}
	l.m.record(sum, err, l.engine().Rules(), time.Since(start))
	// A run lists whole pages of full objects; hand that memory back so the
	// process between runs holds no more than the inventory.
	debug.FreeOSMemory()
}

// auditMetrics are the background audit's metrics. Labels stay bounded: rule
// and result only, never namespaces or names (portreeve audit lists those).
// Only portreeve_audit_leader is exported from the start; the others once
// this replica has run an audit, so a replica that does not audit shows no
// results, rather than zero findings and a last run in 1970.
type auditMetrics struct {
	leader   prometheus.Gauge
	findings *prometheus.GaugeVec
	objects  prometheus.Gauge
	lastRun  prometheus.Gauge
	duration prometheus.Gauge
	runs     *prometheus.CounterVec
	results  *afterFirstRun
}

// afterFirstRun collects its collectors once open.
type afterFirstRun struct {
	open       atomic.Bool
	collectors []prometheus.Collector
}

func (a *afterFirstRun) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range a.collectors {
		c.Describe(ch)
	}
}

func (a *afterFirstRun) Collect(ch chan<- prometheus.Metric) {
	if !a.open.Load() {
		return
	}
	for _, c := range a.collectors {
		c.Collect(ch)
	}
}

func newAuditMetrics(reg prometheus.Registerer) (*auditMetrics, error) {
	m := &auditMetrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portreeve_audit_leader",
			Help: "1 on the replica that runs the background audit (the holder of the audit's Lease, or every replica " +
				"with --leader-elect=false), 0 on the others. The other portreeve_audit_* metrics exist only where an audit ran.",
		}),
		findings: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portreeve_audit_violations",
			Help: "Existing objects that a rule would deny, rewrite, flag in dryrun or warn mode, or fail on (result), " +
				"as of the last audit.",
		}, []string{"rule", "result"}),
		objects: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portreeve_audit_objects",
			Help: "Objects reviewed by the last audit.",
		}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portreeve_audit_last_run_timestamp_seconds",
			Help: "When the last audit ended (Unix time).",
		}),
		duration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portreeve_audit_duration_seconds",
			Help: "How long the last audit took.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portreeve_audit_runs_total",
			Help: "Audit runs by result: success, partial (some kinds or objects could not be listed or reviewed), failure.",
		}, []string{"result"}),
	}
	m.results = &afterFirstRun{collectors: []prometheus.Collector{m.findings, m.objects, m.lastRun, m.duration, m.runs}}
	for _, c := range []prometheus.Collector{m.leader, m.results} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *auditMetrics) record(sum *auditSummary, err error, rules []policies.RuleInfo, took time.Duration) {
	log := ctrl.Log.WithName("audit")
	m.results.open.Store(true)
	if err != nil {
		m.runs.WithLabelValues("failure").Inc()
		log.Error(err, "audit failed")
		return
	}
	m.findings.Reset()
	for _, r := range rules {
		for _, res := range auditResults {
			m.findings.WithLabelValues(r.ID, res).Set(float64(sum.Counts[r.ID][res]))
		}
	}
	m.objects.Set(float64(sum.Scanned))
	m.lastRun.Set(float64(time.Now().Unix()))
	m.duration.Set(took.Seconds())
	result := "success"
	if len(sum.Errors) > 0 {
		result = "partial"
		log.Error(errors.New(strings.Join(sum.Errors, "; ")), "audit incomplete")
	}
	m.runs.WithLabelValues(result).Inc()
	total := 0
	for _, byResult := range sum.Counts {
		for _, n := range byResult {
			total += n
		}
	}
	log.Info("audit done", "objects", sum.Scanned, "findings", total, "took", took.Round(time.Millisecond).String())
}

// setupAudit adds the periodic audit to serve (unless --audit-interval is 0).
// It lists objects page by page through the API (the manager's informer
// caches keep only what the inventory needs, so they cannot show rules the
// whole object), and reuses the caches for namespace labels and facts.
func setupAudit(mgr manager.Manager, o *serveOptions, reviewer *review.Reviewer, facts review.FactsSource, namespaces portreevewebhook.NamespaceLabeler) error {
	if o.AuditInterval == 0 {
		return nil
	}
	client, err := dynamic.NewForConfig(mgr.GetConfig())
	if err != nil {
		return err
	}
	m, err := newAuditMetrics(ctrlmetrics.Registry)
	if err != nil {
		return err
	}
	return mgr.Add(&auditLoop{
		interval: o.AuditInterval,
		auditor: &auditor{
			client:        client,
			pageSize:      o.AuditPageSize,
			labels:        namespaces.NamespaceLabels,
			skipNamespace: skipNamespaces(o.exempt(), o.AuditIgnoreLabel),
		},
		engine: reviewer.Engine,
		facts:  facts,
		synced: mgr.GetCache().WaitForCacheSync,
		m:      m,
	})
}
