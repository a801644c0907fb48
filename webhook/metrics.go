package webhook

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Recorder records decisions and evaluation time. Labels are bounded: never
// names or namespaces.
type Recorder interface {
	Decision(webhook, kind, operation, decision, rule string)
	Observe(webhook string, d time.Duration)
}

// PrometheusRecorder exports the decisions as Prometheus metrics.
type PrometheusRecorder struct {
	decisions *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

// NewPrometheusRecorder creates the metrics and registers them on reg.
func NewPrometheusRecorder(reg prometheus.Registerer) (*PrometheusRecorder, error) {
	r := &PrometheusRecorder{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portreeve_admission_decisions_total",
			Help: "Admission decisions by webhook, kind, operation, decision " +
				"(allowed, denied, warned, dryrun, would_deny, rewritten, unchanged, skipped, error, rewrite_rejected) and rule.",
		}, []string{"webhook", "kind", "operation", "decision", "rule"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portreeve_admission_review_duration_seconds",
			Help:    "Time to review one admission request, by webhook.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5},
		}, []string{"webhook"}),
	}
	for _, c := range []prometheus.Collector{r.decisions, r.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Decision counts one decision.
func (r *PrometheusRecorder) Decision(webhook, kind, operation, decision, rule string) {
	r.decisions.WithLabelValues(webhook, kind, operation, decision, rule).Inc()
}

// Observe records the review time.
func (r *PrometheusRecorder) Observe(webhook string, d time.Duration) {
	r.duration.WithLabelValues(webhook).Observe(d.Seconds())
}
