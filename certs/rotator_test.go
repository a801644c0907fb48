package certs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestRotatorFirstRun(t *testing.T) {
	clock := newFakeClock(t0)
	c := newClient(validatingConfig(), mutatingConfig()).Build()
	r := newTestRotator(t, c, testOptions(t, clock))

	if err := r.ReadyCheck(nil); err == nil {
		t.Fatal("ReadyCheck before the first sync: want error")
	}
	if err := r.Sync(testCtx(t)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := r.ReadyCheck(nil); err != nil {
		t.Fatalf("ReadyCheck after sync: %v", err)
	}
	secret := getSecret(t, c)
	if secret.Type != corev1.SecretTypeOpaque {
		t.Errorf("Secret type = %q, want Opaque", secret.Type)
	}
	for _, k := range []string{SecretCACertKey, SecretCAKeyKey, SecretTLSCertKey, SecretTLSKeyKey} {
		if len(secret.Data[k]) == 0 {
			t.Errorf("Secret key %s empty", k)
		}
	}
	assertInSync(t, c, r, clock.Now())
	info, err := os.Stat(filepath.Join(r.opts.CertDir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("tls.key mode = %o, want 600", info.Mode().Perm())
	}

	// A second pass changes nothing: no Secret update, no patch.
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	_ = c.Get(t.Context(), client.ObjectKey{Name: testConfig}, v)
	if err := r.Sync(testCtx(t)); err != nil {
		t.Fatalf("second Sync: %v", err)
	}
	if got := getSecret(t, c).ResourceVersion; got != secret.ResourceVersion {
		t.Errorf("Secret rewritten without need: resourceVersion %s -> %s", secret.ResourceVersion, got)
	}
	v2 := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	_ = c.Get(t.Context(), client.ObjectKey{Name: testConfig}, v2)
	if v2.ResourceVersion != v.ResourceVersion {
		t.Errorf("webhook configuration patched without need")
	}
}

func TestRotatorSecondReplicaReusesSecret(t *testing.T) {
	clock := newFakeClock(t0)
	c := newClient(validatingConfig(), mutatingConfig()).Build()
	r1 := newTestRotator(t, c, testOptions(t, clock))
	if err := r1.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	before := getSecret(t, c)

	clock.Set(t0.Add(time.Hour))
	r2 := newTestRotator(t, c, testOptions(t, clock))
	if err := r2.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	after := getSecret(t, c)
	if after.ResourceVersion != before.ResourceVersion {
		t.Fatal("second replica rewrote the Secret")
	}
	assertInSync(t, c, r2, clock.Now())
	if err := r2.ReadyCheck(nil); err != nil {
		t.Errorf("second replica not ready: %v", err)
	}
}

func TestRotatorRenewsAndRotates(t *testing.T) {
	clock := newFakeClock(t0)
	c := newClient(validatingConfig(), mutatingConfig()).Build()
	r1 := newTestRotator(t, c, testOptions(t, clock))
	r2 := newTestRotator(t, c, testOptions(t, clock))
	syncBoth := func() {
		t.Helper()
		for _, r := range []*Rotator{r1, r2} {
			if err := r.Sync(testCtx(t)); err != nil {
				t.Fatalf("%s: Sync: %v", clock.Now(), err)
			}
		}
		assertInSync(t, c, r1, clock.Now())
		assertInSync(t, c, r2, clock.Now())
	}
	syncBoth()
	first := bundleFromSecret(getSecret(t, c))
	firstServing := mustParse(t, first.TLSCert)[0]
	firstCA := mustParse(t, first.CACerts)[0]

	// Into the serving renewal window: new serving certificate, same CA.
	clock.Set(firstServing.NotAfter.Add(-r1.opts.RenewBefore + time.Hour))
	syncBoth()
	renewed := bundleFromSecret(getSecret(t, c))
	if string(renewed.TLSCert) == string(first.TLSCert) {
		t.Fatal("serving certificate not renewed inside its renewal window")
	}
	if string(renewed.CACerts) != string(first.CACerts) || string(renewed.CAKey) != string(first.CAKey) {
		t.Fatal("CA changed on a serving renewal")
	}

	// Walk monthly into the CA window and past the old CA's expiry.
	sawTwoCAs := false
	for now := clock.Now(); now.Before(firstCA.NotAfter.Add(60 * day)); now = now.Add(30 * day) {
		clock.Set(now)
		syncBoth()
		cas := mustParse(t, bundleFromSecret(getSecret(t, c)).CACerts)
		if len(cas) == 2 {
			sawTwoCAs = true
			if !cas[1].Equal(firstCA) {
				t.Fatal("the second CA of the bundle is not the previous CA")
			}
		}
	}
	if !sawTwoCAs {
		t.Fatal("never saw a caBundle with two CAs")
	}
	final := bundleFromSecret(getSecret(t, c))
	cas := mustParse(t, final.CACerts)
	if len(cas) != 1 || cas[0].Equal(firstCA) {
		t.Fatalf("after the old CA expired: %d CAs, want only the new one", len(cas))
	}
	if err := Check(EncodeCertificates(cas[0]), final.TLSCert, final.TLSKey, nil, clock.Now(), 0); err != nil {
		t.Fatalf("serving certificate not signed by the new CA: %v", err)
	}
}

// TestRotatorCARotationIsTwoPhase checks that entering the CA window first
// publishes the new CA alongside the old one and keeps serving the old
// certificate; only a later check serves a certificate of the new CA.
func TestRotatorCARotationIsTwoPhase(t *testing.T) {
	clock := newFakeClock(t0)
	c := newClient(validatingConfig(), mutatingConfig()).Build()
	opts := testOptions(t, clock)
	opts.CAValidity, opts.CARenewBefore = 30*day, 10*day
	opts.CertValidity, opts.RenewBefore = 9*day, 3*day
	r := newTestRotator(t, c, opts)
	if err := r.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	firstCA := mustParse(t, bundleFromSecret(getSecret(t, c)).CACerts)[0]

	// Renew the serving certificate just before the CA window opens so it is
	// still valid when the CA rotates.
	clock.Set(firstCA.NotAfter.Add(-10*day - time.Hour))
	if err := r.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	beforeRotation := assertInSync(t, c, r, clock.Now())

	clock.Set(firstCA.NotAfter.Add(-10*day + time.Minute))
	if err := r.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	rotated := assertInSync(t, c, r, clock.Now())
	cas := mustParse(t, rotated.CACerts)
	if len(cas) != 2 || !cas[1].Equal(firstCA) {
		t.Fatalf("caBundle has %d CAs, want the new one and the first", len(cas))
	}
	if string(rotated.TLSCert) != string(beforeRotation.TLSCert) {
		t.Fatal("serving certificate replaced in the same check that added the new CA")
	}

	// The next checks keep it until its own renewal window, then sign with
	// the new CA only.
	clock.Set(clock.Now().Add(time.Minute))
	if err := r.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := assertInSync(t, c, r, clock.Now()); string(got.TLSCert) != string(beforeRotation.TLSCert) {
		t.Fatal("serving certificate renewed outside its renewal window")
	}
	served := mustParse(t, beforeRotation.TLSCert)[0]
	clock.Set(served.NotAfter.Add(-opts.RenewBefore + time.Minute))
	if err := r.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	renewed := assertInSync(t, c, r, clock.Now())
	if err := Check(EncodeCertificates(cas[0]), renewed.TLSCert, renewed.TLSKey, nil, clock.Now(), 0); err != nil {
		t.Fatalf("renewed serving certificate not signed by the new CA: %v", err)
	}
}

func TestRotatorWaitsForWebhookConfigurations(t *testing.T) {
	clock := newFakeClock(t0)
	c := newClient().Build()
	r := newTestRotator(t, c, testOptions(t, clock))

	err := r.Sync(testCtx(t))
	if err == nil {
		t.Fatal("Sync without webhook configurations: want error")
	}
	if rerr := r.ReadyCheck(nil); rerr == nil || !strings.Contains(rerr.Error(), "not found") {
		t.Fatalf("ReadyCheck = %v, want not ready with the cause", rerr)
	}
	// Nothing was served yet, so the files are written anyway.
	if _, err := os.Stat(filepath.Join(r.opts.CertDir, CertFileName)); err != nil {
		t.Fatalf("serving certificate not written: %v", err)
	}

	if err := c.Create(t.Context(), validatingConfig()); err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(testCtx(t)); err == nil || r.ReadyCheck(nil) == nil {
		t.Fatal("ready with only the validating configuration")
	}
	if err := c.Create(t.Context(), mutatingConfig()); err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := r.ReadyCheck(nil); err != nil {
		t.Fatal(err)
	}
	assertInSync(t, c, r, clock.Now())
}

// TestRotatorWithoutMutatingWebhook: an installation that registers no
// mutating webhook (no rule needs one) is ready once the validating
// configuration has the CA.
func TestRotatorWithoutMutatingWebhook(t *testing.T) {
	clock := newFakeClock(t0)
	c := newClient(validatingConfig()).Build()
	opts := testOptions(t, clock)
	opts.NoMutatingWebhook = true
	r := newTestRotator(t, c, opts)
	if err := r.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := r.ReadyCheck(nil); err != nil {
		t.Fatal(err)
	}
	var v admissionregistrationv1.ValidatingWebhookConfiguration
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(validatingConfig()), &v); err != nil {
		t.Fatal(err)
	}
	for _, w := range v.Webhooks {
		if len(w.ClientConfig.CABundle) == 0 {
			t.Errorf("webhook %s has no caBundle", w.Name)
		}
	}
}

// TestRotatorKeepsServedCertWhileInjectionFails: a renewed certificate is
// not served before the bundle that trusts it has been injected.
func TestRotatorKeepsServedCertWhileInjectionFails(t *testing.T) {
	clock := newFakeClock(t0)
	c := newClient(validatingConfig(), mutatingConfig()).Build()
	r := newTestRotator(t, c, testOptions(t, clock))
	if err := r.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	served := readFile(t, r.opts.CertDir, CertFileName)
	if err := c.Delete(t.Context(), mutatingConfig()); err != nil {
		t.Fatal(err)
	}
	clock.Set(t0.Add(300 * day))
	if err := r.Sync(testCtx(t)); err == nil {
		t.Fatal("want error while the mutating configuration is missing")
	}
	if string(getSecret(t, c).Data[SecretTLSCertKey]) == string(served) {
		t.Fatal("Secret not renewed")
	}
	if string(readFile(t, r.opts.CertDir, CertFileName)) != string(served) {
		t.Fatal("served certificate replaced while injection failed")
	}
	if err := r.ReadyCheck(nil); err != nil {
		t.Errorf("readiness is kept once reached: %v", err)
	}
	if err := c.Create(t.Context(), mutatingConfig()); err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	assertInSync(t, c, r, clock.Now())
}

func TestRotatorBootstrap(t *testing.T) {
	clock := newFakeClock(t0)
	c := newClient().Build()
	r := newTestRotator(t, c, testOptions(t, clock))
	ctx, cancel := context.WithTimeout(testCtx(t), 30*time.Second)
	defer cancel()
	if err := r.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	b := bundleFromSecret(getSecret(t, c))
	if string(readFile(t, r.opts.CertDir, CertFileName)) != string(b.TLSCert) {
		t.Fatal("Bootstrap did not write the serving certificate")
	}
	if r.ReadyCheck(nil) == nil {
		t.Fatal("ready before the CA bundle was injected")
	}
}

func TestRotatorStart(t *testing.T) {
	clock := newFakeClock(t0)
	c := newClient().Build()
	opts := testOptions(t, clock)
	opts.CheckInterval = 20 * time.Millisecond
	r := newTestRotator(t, c, opts)
	if r.NeedLeaderElection() {
		t.Error("NeedLeaderElection() = true, want false")
	}

	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()

	time.Sleep(100 * time.Millisecond)
	if r.ReadyCheck(nil) == nil {
		t.Fatal("ready without webhook configurations")
	}
	for _, o := range []client.Object{validatingConfig(), mutatingConfig()} {
		if err := c.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for r.ReadyCheck(nil) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready in time: %v", r.ReadyCheck(nil))
		}
		time.Sleep(10 * time.Millisecond)
	}
	assertInSync(t, c, r, clock.Now())

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Start returned %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not return after cancel")
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr []string
	}{
		{name: "valid with defaults", mutate: func(*Options) {}},
		{name: "missing required fields", mutate: func(o *Options) {
			o.Namespace, o.SecretName, o.WebhookConfigName, o.CertDir = "", "", "", ""
		}, wantErr: []string{"Namespace", "SecretName", "WebhookConfigName", "CertDir"}},
		{name: "no names", mutate: func(o *Options) { o.ServiceName, o.DNSNames, o.IPs = "", nil, nil }, wantErr: []string{"DNS name or IP"}},
		{name: "check interval longer than renewal window", mutate: func(o *Options) {
			o.CertValidity, o.RenewBefore, o.CheckInterval = time.Hour, time.Minute, time.Minute
		}, wantErr: []string{"CheckInterval"}},
		{name: "renew window longer than validity", mutate: func(o *Options) {
			o.CertValidity, o.RenewBefore = time.Hour, 2*time.Hour
		}, wantErr: []string{"renewal window"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t, newFakeClock(t0))
			tc.mutate(&o)
			err := o.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil, want error")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %v, want it to mention %q", err, want)
				}
			}
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{Namespace: "ns", ServiceName: "svc", DNSNames: []string{"svc.ns.svc", "extra"}}.withDefaults()
	if o.CAValidity != DefaultCAValidity || o.CARenewBefore != DefaultCAValidity/3 ||
		o.CertValidity != DefaultCertValidity || o.RenewBefore != DefaultCertValidity/3 ||
		o.CheckInterval != DefaultCheckInterval || o.Clock == nil || o.CACommonName != DefaultCACommonName {
		t.Errorf("unexpected defaults: %+v", o)
	}
	if got := o.dnsNames(); strings.Join(got, ",") != "svc.ns.svc,extra" {
		t.Errorf("dnsNames() = %v", got)
	}
}
