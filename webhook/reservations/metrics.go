package reservations

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of one Reserve call, as counted by portreeve_reservations_total.
const (
	resultReserved    = "reserved"
	resultJudgedAgain = "judged-again"
	resultFailed      = "failed"
)

// Metrics count the reservations and their cost.
type Metrics struct {
	calls    *prometheus.CounterVec
	duration prometheus.Histogram
}

// NewMetrics registers the reservations' metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portreeve_reservations_total",
			Help: "Reservations of the contested keys of admitted requests, by result: reserved (published), judged-again (another replica had reserved something that may conflict: the request was judged again with it), failed (the apiserver refused or did not answer; the request was refused).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "portreeve_reservation_duration_seconds",
			Help:    "Time one reservation of a request's keys took, apiserver round trips included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	for _, c := range []prometheus.Collector{m.calls, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{resultReserved, resultJudgedAgain, resultFailed} {
		m.calls.WithLabelValues(r)
	}
	return m, nil
}

func (m *Metrics) observe(learned bool, err error, took time.Duration) {
	if m == nil {
		return
	}
	result := resultReserved
	switch {
	case err != nil:
		result = resultFailed
	case learned:
		result = resultJudgedAgain
	}
	m.calls.WithLabelValues(result).Inc()
	m.duration.Observe(took.Seconds())
}
