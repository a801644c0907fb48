package audit

import (
	"context"
	"errors"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

// Loop runs the audit in serve every Interval and exports the counts. It is
// a controller-runtime Runnable that needs leader election.
type Loop struct {
	Interval time.Duration
	Auditor  *Auditor
	// Engine returns the engine serving now (reloads apply to the next run).
	Engine func() *policies.Engine
	// Facts are the inventory's facts (nil: none); the audit records no claims.
	Facts review.FactsSource
	// Synced waits for the caches the audit reads (namespace labels, facts).
	Synced  func(context.Context) bool
	Metrics *Metrics
	// Reports, when set, writes the findings of each complete run as
	// PolicyReports; the run then keeps its findings (rule, object name and
	// messages each, never the objects) until it has written them.
	Reports *ReportWriter
}

// NeedLeaderElection is true: one replica audits, the holder of the Lease
// (every replica when serve elects none), so the API load does not grow with
// the replicas.
func (l *Loop) NeedLeaderElection() bool { return true }

// Start audits once the caches have synced, then every interval.
func (l *Loop) Start(ctx context.Context) error {
	ctrl.Log.WithName("audit").Info("this replica audits", "interval", l.Interval.String())
	l.Metrics.leader.Set(1)
	defer l.Metrics.leader.Set(0)
	if !l.Synced(ctx) {
		return nil
	}
	t := time.NewTicker(l.Interval)
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

func (l *Loop) once(ctx context.Context) {
	start := time.Now()
	r := review.NewReviewer(l.Engine())
	if l.Facts != nil {
		r.UseFacts(ReadOnlyFacts{Source: l.Facts})
	}
	l.Auditor.Reviewer = r
	var findings []Finding
	collect := func(Finding) {}
	if l.Reports != nil {
		collect = func(f Finding) { findings = append(findings, f) }
	}
	sum, err := l.Auditor.Run(ctx, collect)
	if ctx.Err() != nil {
		return
	}
	l.Metrics.Record(sum, err, l.Engine().Rules(), time.Since(start))
	if l.Reports != nil {
		l.syncReports(ctx, sum, err, findings)
	}
	// A run holds one object at a time, but its reviews leave garbage that
	// grows the heap up to the GC's goal; hand that memory back so the
	// process between runs holds no more than the inventory.
	debug.FreeOSMemory()
}

// Metrics are the background audit's metrics. Labels stay bounded: rule
// and result only, never namespaces or names (portreeve audit lists those).
// Only portreeve_audit_leader is exported from the start; the others once
// this replica has run an audit, so a replica that does not audit shows no
// results, rather than zero findings and a last run in 1970.
type Metrics struct {
	leader   prometheus.Gauge
	findings *prometheus.GaugeVec
	objects  prometheus.Gauge
	lastRun  prometheus.Gauge
	duration prometheus.Gauge
	runs     *prometheus.CounterVec
	results  *afterFirstRun
	// The PolicyReports' metrics, exported once a run has tried to write them.
	reportCRDs  prometheus.Gauge
	reportSyncs *prometheus.CounterVec
	reports     *afterFirstRun
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

// NewMetrics registers the audit's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
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
	m.reportCRDs = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "portreeve_audit_policy_report_crds",
		Help: "With --policy-reports: 1 when the cluster serves the wgpolicyk8s.io/v1alpha2 PolicyReport and " +
			"ClusterPolicyReport kinds, 0 when it does not (then no report is written), as of the last audit.",
	})
	m.reportSyncs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portreeve_audit_policy_report_syncs_total",
		Help: "With --policy-reports: writes of the audit's PolicyReports by result: success, failure, no_crds " +
			"(the kinds are not served), skipped (the audit was incomplete; the reports were left as they were).",
	}, []string{"result"})
	m.reports = &afterFirstRun{collectors: []prometheus.Collector{m.reportCRDs, m.reportSyncs}}
	for _, c := range []prometheus.Collector{m.leader, m.results, m.reports} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Record exports the result of one run over rules.
func (m *Metrics) Record(sum *Summary, err error, rules []policies.RuleInfo, took time.Duration) {
	log := ctrl.Log.WithName("audit")
	m.results.open.Store(true)
	if err != nil {
		m.runs.WithLabelValues("failure").Inc()
		log.Error(err, "audit failed")
		return
	}
	m.findings.Reset()
	for _, r := range rules {
		for _, res := range Results {
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
