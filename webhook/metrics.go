package webhook

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Recorder records requests, decisions and evaluation time. Labels are
// bounded: never names or namespaces.
type Recorder interface {
	// Request counts one request, once, by the decision of its answer.
	Request(webhook, kind, operation, decision string)
	// Decision counts a decision once per rule of its findings (rule ""
	// when it has none).
	Decision(webhook, kind, operation, decision, rule string)
	// Conflicts counts n conflicts with what the cluster holds that a
	// conflict rule found.
	Conflicts(rule string, n int)
	Observe(webhook string, d time.Duration)
}

// PrometheusRecorder exports the decisions as Prometheus metrics.
type PrometheusRecorder struct {
	requests  *prometheus.CounterVec
	decisions *prometheus.CounterVec
	conflicts *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

// NewPrometheusRecorder creates the metrics and registers them on reg.
func NewPrometheusRecorder(reg prometheus.Registerer) (*PrometheusRecorder, error) {
	r := &PrometheusRecorder{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portreeve_admission_requests_total",
			Help: "Admission requests, each counted once, by webhook, kind, operation and the decision of the answer " +
				"(allowed, denied, warned, would_deny, rewritten, unchanged, skipped, error, rewrite_rejected).",
		}, []string{"webhook", "kind", "operation", "decision"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portreeve_admission_decisions_total",
			Help: "Admission decisions by webhook, kind, operation, decision " +
				"(allowed, denied, warned, dryrun, would_deny, rewritten, unchanged, skipped, error, rewrite_rejected) and rule: " +
				"a request counts once per rule of its findings (once with rule=\"\" when it has none); " +
				"portreeve_admission_requests_total counts each request once.",
		}, []string{"webhook", "kind", "operation", "decision", "rule"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portreeve_conflicts_total",
			Help: "Conflicts with what the cluster holds that the conflict rules found at admission, by rule: one per finding " +
				"(a hostPort, nodePort or Ingress host and path already held; a hostPort inside the NodePort range), " +
				"whatever the rule's mode, and one per nodePort the mutating webhook moved off a taken one.",
		}, []string{"rule"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portreeve_admission_review_duration_seconds",
			Help:    "Time to review one admission request, by webhook.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5},
		}, []string{"webhook"}),
	}
	for _, c := range []prometheus.Collector{r.requests, r.decisions, r.conflicts, r.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Request counts one request.
func (r *PrometheusRecorder) Request(webhook, kind, operation, decision string) {
	r.requests.WithLabelValues(webhook, kind, operation, decision).Inc()
}

// Conflicts counts conflicts a rule found.
func (r *PrometheusRecorder) Conflicts(rule string, n int) {
	r.conflicts.WithLabelValues(rule).Add(float64(n))
}

// Decision counts one decision.
func (r *PrometheusRecorder) Decision(webhook, kind, operation, decision, rule string) {
	r.decisions.WithLabelValues(webhook, kind, operation, decision, rule).Inc()
}

// Observe records the review time.
func (r *PrometheusRecorder) Observe(webhook string, d time.Duration) {
	r.duration.WithLabelValues(webhook).Observe(d.Seconds())
}
