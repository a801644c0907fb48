package certs

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := registerMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := registerMetrics(reg); err != nil {
		t.Fatalf("second registration: %v", err)
	}

	clock := newFakeClock(t0)
	c := newClient(validatingConfig(), mutatingConfig()).Build()
	r := newTestRotator(t, c, testOptions(t, clock))
	if err := r.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	b := bundleFromSecret(getSecret(t, c))
	want := map[string]time.Time{
		metricCertCA:      mustParse(t, b.CACerts)[0].NotAfter,
		metricCertServing: mustParse(t, b.TLSCert)[0].NotAfter,
	}
	for label, notAfter := range want {
		m := &dto.Metric{}
		if err := certExpiry.WithLabelValues(label).Write(m); err != nil {
			t.Fatal(err)
		}
		if got := int64(m.GetGauge().GetValue()); got != notAfter.Unix() {
			t.Errorf("%s expiry = %d, want %d", label, got, notAfter.Unix())
		}
	}
}
