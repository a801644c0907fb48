package certs

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the cert label of portreeve_cert_expiry_timestamp_seconds.
const (
	metricCertCA      = "ca"
	metricCertServing = "serving"
)

var certExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "portreeve_cert_expiry_timestamp_seconds",
	Help: "Expiry (NotAfter, Unix seconds) of the newest webhook CA and of the serving certificate written to the cert dir.",
}, []string{"cert"})

// RegisterMetrics registers the certificate metrics on reg (serve: controller-runtime's
// metrics.Registry). Calling it more than once is harmless.
func RegisterMetrics(reg prometheus.Registerer) error {
	return registerMetrics(reg)
}

func registerMetrics(reg prometheus.Registerer) error {
	if err := reg.Register(certExpiry); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			return err
		}
	}
	return nil
}

func setExpiry(cert string, notAfter time.Time) {
	certExpiry.WithLabelValues(cert).Set(float64(notAfter.Unix()))
}
