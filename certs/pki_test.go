package certs

import (
	"errors"
	"net"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

func mustCA(t *testing.T, now time.Time, validity time.Duration) *KeyPair {
	t.Helper()
	ca, err := NewCA("test-ca", now, validity)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

func mustServing(t *testing.T, ca *KeyPair, names []string, ips []net.IP, now time.Time, validity time.Duration) *KeyPair {
	t.Helper()
	kp, err := NewServingCert(ca, names, ips, now, validity)
	if err != nil {
		t.Fatalf("NewServingCert: %v", err)
	}
	return kp
}

func TestNewCA(t *testing.T) {
	ca := mustCA(t, t0, 100*day)
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Errorf("IsCA=%v BasicConstraintsValid=%v, want both true", c.IsCA, c.BasicConstraintsValid)
	}
	if c.Subject.CommonName != "test-ca" {
		t.Errorf("CommonName = %q", c.Subject.CommonName)
	}
	if !c.NotAfter.Equal(t0.Add(100 * day)) {
		t.Errorf("NotAfter = %s, want %s", c.NotAfter, t0.Add(100*day))
	}
	if !c.NotBefore.Before(t0) {
		t.Errorf("NotBefore = %s, want backdated before %s", c.NotBefore, t0)
	}
	if err := CheckCA(ca.CertPEM, ca.KeyPEM, t0, 0); err != nil {
		t.Errorf("CheckCA of new CA: %v", err)
	}
	if _, err := NewCA("x", t0, 0); err == nil {
		t.Error("NewCA with zero validity: want error")
	}
}

func TestNewServingCert(t *testing.T) {
	ca := mustCA(t, t0, 30*day)
	names := []string{"svc.ns.svc", "localhost"}
	ips := []net.IP{net.ParseIP("127.0.0.1")}

	t.Run("fields", func(t *testing.T) {
		kp := mustServing(t, ca, names, ips, t0, 10*day)
		if kp.Cert.IsCA {
			t.Error("serving certificate must not be a CA")
		}
		if kp.Cert.Subject.CommonName != names[0] {
			t.Errorf("CommonName = %q, want %q", kp.Cert.Subject.CommonName, names[0])
		}
		if !kp.Cert.NotAfter.Equal(t0.Add(10 * day)) {
			t.Errorf("NotAfter = %s", kp.Cert.NotAfter)
		}
		if err := checkServing(ca.CertPEM, kp.CertPEM, kp.KeyPEM, names, ips, t0, 0); err != nil {
			t.Errorf("check: %v", err)
		}
	})
	t.Run("clamped to CA expiry", func(t *testing.T) {
		kp := mustServing(t, ca, names, nil, t0.Add(25*day), 10*day)
		if !kp.Cert.NotAfter.Equal(ca.Cert.NotAfter) {
			t.Errorf("NotAfter = %s, want CA NotAfter %s", kp.Cert.NotAfter, ca.Cert.NotAfter)
		}
	})
	errCases := []struct {
		name  string
		ca    *KeyPair
		names []string
		ips   []net.IP
		now   time.Time
	}{
		{name: "no CA", ca: nil, names: names, now: t0},
		{name: "no names", ca: ca, now: t0},
		{name: "CA expired", ca: ca, names: names, now: t0.Add(31 * day)},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewServingCert(tc.ca, tc.names, tc.ips, tc.now, day); err == nil {
				t.Error("want error")
			}
		})
	}
}

func TestCheck(t *testing.T) {
	ca := mustCA(t, t0, 365*day)
	otherCA := mustCA(t, t0, 365*day)
	names := []string{"portreeve.system.svc"}
	serving := mustServing(t, ca, names, nil, t0, 90*day)
	byOther := mustServing(t, otherCA, names, nil, t0, 90*day)
	bundle := append(append([]byte{}, otherCA.CertPEM...), ca.CertPEM...)

	tests := []struct {
		name        string
		caPEMs      []byte
		cert, key   []byte
		dnsNames    []string
		now         time.Time
		renewBefore time.Duration
		want        error
	}{
		{name: "valid", caPEMs: ca.CertPEM, cert: serving.CertPEM, key: serving.KeyPEM, dnsNames: names, now: t0.Add(day), renewBefore: 30 * day},
		{name: "valid against second CA of a bundle", caPEMs: bundle, cert: serving.CertPEM, key: serving.KeyPEM, dnsNames: names, now: t0.Add(day)},
		{name: "valid with no names required", caPEMs: ca.CertPEM, cert: serving.CertPEM, key: serving.KeyPEM, now: t0},
		{name: "in renewal window", caPEMs: ca.CertPEM, cert: serving.CertPEM, key: serving.KeyPEM, dnsNames: names, now: t0.Add(61 * day), renewBefore: 30 * day, want: ErrExpiringSoon},
		{name: "exactly at window start", caPEMs: ca.CertPEM, cert: serving.CertPEM, key: serving.KeyPEM, now: t0.Add(60 * day), renewBefore: 30 * day, want: ErrExpiringSoon},
		{name: "expired", caPEMs: ca.CertPEM, cert: serving.CertPEM, key: serving.KeyPEM, now: t0.Add(90 * day), want: ErrExpired},
		{name: "not yet valid", caPEMs: ca.CertPEM, cert: serving.CertPEM, key: serving.KeyPEM, now: t0.Add(-2 * time.Hour), want: ErrNotYetValid},
		{name: "signed by another CA", caPEMs: ca.CertPEM, cert: byOther.CertPEM, key: byOther.KeyPEM, now: t0, want: ErrUntrusted},
		{name: "key of another certificate", caPEMs: ca.CertPEM, cert: serving.CertPEM, key: byOther.KeyPEM, now: t0, want: ErrKeyMismatch},
		{name: "name not covered", caPEMs: ca.CertPEM, cert: serving.CertPEM, key: serving.KeyPEM, dnsNames: []string{"other.system.svc"}, now: t0, want: ErrNameMismatch},
		{name: "garbage certificate", caPEMs: ca.CertPEM, cert: []byte("nope"), key: serving.KeyPEM, now: t0, want: ErrInvalid},
		{name: "missing key", caPEMs: ca.CertPEM, cert: serving.CertPEM, now: t0, want: ErrInvalid},
		{name: "empty CA bundle", cert: serving.CertPEM, key: serving.KeyPEM, now: t0, want: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.caPEMs, tc.cert, tc.key, tc.dnsNames, tc.now, tc.renewBefore)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Check() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Check() = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCheckIPs(t *testing.T) {
	ca := mustCA(t, t0, 365*day)
	kp := mustServing(t, ca, nil, []net.IP{net.ParseIP("127.0.0.1")}, t0, 90*day)
	if err := checkServing(ca.CertPEM, kp.CertPEM, kp.KeyPEM, nil, []net.IP{net.ParseIP("127.0.0.1")}, t0, 0); err != nil {
		t.Errorf("covered IP: %v", err)
	}
	err := checkServing(ca.CertPEM, kp.CertPEM, kp.KeyPEM, nil, []net.IP{net.ParseIP("::1")}, t0, 0)
	if !errors.Is(err, ErrNameMismatch) {
		t.Errorf("uncovered IP: got %v, want ErrNameMismatch", err)
	}
}

func TestCheckCA(t *testing.T) {
	ca := mustCA(t, t0, 100*day)
	other := mustCA(t, t0, 100*day)
	serving := mustServing(t, ca, []string{"a"}, nil, t0, 10*day)
	tests := []struct {
		name        string
		cert, key   []byte
		now         time.Time
		renewBefore time.Duration
		want        error
	}{
		{name: "valid", cert: ca.CertPEM, key: ca.KeyPEM, now: t0, renewBefore: 30 * day},
		{name: "in renewal window", cert: ca.CertPEM, key: ca.KeyPEM, now: t0.Add(80 * day), renewBefore: 30 * day, want: ErrExpiringSoon},
		{name: "expired", cert: ca.CertPEM, key: ca.KeyPEM, now: t0.Add(100 * day), want: ErrExpired},
		{name: "key of another CA", cert: ca.CertPEM, key: other.KeyPEM, now: t0, want: ErrKeyMismatch},
		{name: "not a CA", cert: serving.CertPEM, key: serving.KeyPEM, now: t0, want: ErrNotCA},
		{name: "empty", now: t0, want: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCA(tc.cert, tc.key, tc.now, tc.renewBefore)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("CheckCA() = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseCertificatesKeepsOrderAndSkipsOtherBlocks(t *testing.T) {
	a := mustCA(t, t0, day)
	b := mustCA(t, t0, day)
	data := append(append(append([]byte{}, a.CertPEM...), a.KeyPEM...), b.CertPEM...)
	certs, err := ParseCertificates(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !certs[0].Equal(a.Cert) || !certs[1].Equal(b.Cert) {
		t.Fatalf("got %d certificates in the wrong order", len(certs))
	}
	if got := EncodeCertificates(certs...); string(got) != string(a.CertPEM)+string(b.CertPEM) {
		t.Error("EncodeCertificates does not round-trip")
	}
}
