package certs

import (
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

const year = 365 * day

func testPolicy() Policy {
	return Policy{
		CACommonName:    "test-ca",
		DNSNames:        []string{"portreeve.system.svc"},
		IPs:             []net.IP{net.ParseIP("127.0.0.1")},
		CAValidity:      5 * year,
		CARenewBefore:   5 * year / 3,
		CertValidity:    year,
		CertRenewBefore: year / 3,
	}
}

// bundleOf builds a Bundle from a CA chain (newest first, key of the first)
// and a serving pair.
func bundleOf(serving *KeyPair, cas ...*KeyPair) Bundle {
	var b Bundle
	for _, ca := range cas {
		b.CACerts = append(b.CACerts, ca.CertPEM...)
	}
	if len(cas) > 0 {
		b.CAKey = cas[0].KeyPEM
	}
	if serving != nil {
		b.TLSCert, b.TLSKey = serving.CertPEM, serving.KeyPEM
	}
	return b
}

func TestPlan(t *testing.T) {
	p := testPolicy()
	ca := mustCA(t, t0, p.CAValidity)
	oldCA := mustCA(t, t0.Add(-4*year), p.CAValidity) // expires t0+1y
	deadCA := mustCA(t, t0.Add(-6*year), p.CAValidity)
	serving := mustServing(t, ca, p.DNSNames, p.IPs, t0, p.CertValidity)
	byOld := mustServing(t, oldCA, p.DNSNames, p.IPs, t0, p.CertValidity)
	wrongNames := mustServing(t, ca, []string{"other.svc"}, p.IPs, t0, p.CertValidity)
	noIP := mustServing(t, ca, p.DNSNames, nil, t0, p.CertValidity)
	stranger := mustServing(t, mustCA(t, t0, p.CAValidity), p.DNSNames, p.IPs, t0, p.CertValidity)

	tests := []struct {
		name   string
		bundle Bundle
		now    time.Time
		want   Action
	}{
		{name: "empty Secret", bundle: Bundle{}, now: t0, want: ActionBootstrap},
		{name: "garbage CA", bundle: Bundle{CACerts: []byte("x"), CAKey: ca.KeyPEM}, now: t0, want: ActionBootstrap},
		{name: "CA key lost", bundle: Bundle{CACerts: ca.CertPEM, TLSCert: serving.CertPEM, TLSKey: serving.KeyPEM}, now: t0, want: ActionBootstrap},
		{name: "CA key of another CA", bundle: func() Bundle { b := bundleOf(serving, ca); b.CAKey = oldCA.KeyPEM; return b }(), now: t0, want: ActionBootstrap},
		{name: "CA expired", bundle: bundleOf(serving, ca), now: t0.Add(5 * year), want: ActionBootstrap},
		{name: "all valid", bundle: bundleOf(serving, ca), now: t0.Add(day), want: ActionNone},
		{name: "CA in renewal window", bundle: bundleOf(serving, ca), now: t0.Add(4 * year), want: ActionRotateCA},
		{name: "serving missing", bundle: bundleOf(nil, ca), now: t0, want: ActionRenewServing},
		{name: "serving in renewal window", bundle: bundleOf(serving, ca), now: t0.Add(year - 100*day), want: ActionRenewServing},
		{name: "serving lacks a DNS name", bundle: bundleOf(wrongNames, ca), now: t0, want: ActionRenewServing},
		{name: "serving lacks an IP", bundle: bundleOf(noIP, ca), now: t0, want: ActionRenewServing},
		{name: "serving signed by a CA not in the bundle", bundle: bundleOf(stranger, ca), now: t0, want: ActionRenewServing},
		{name: "serving signed by the older CA still in the bundle", bundle: bundleOf(byOld, ca, oldCA), now: t0.Add(day), want: ActionNone},
		{name: "serving signed by the older CA near its expiry", bundle: bundleOf(byOld, ca, oldCA), now: t0.Add(year - day), want: ActionRenewServing},
		{name: "older CA expired", bundle: bundleOf(serving, ca, deadCA), now: t0.Add(day), want: ActionPruneCA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Plan(tc.bundle, p, tc.now)
			if got.Action != tc.want {
				t.Fatalf("Plan() = %s (%s), want %s", got.Action, got.Reason, tc.want)
			}
			if got.Reason == "" {
				t.Error("Plan() gave no reason")
			}
			next, err := Apply(tc.bundle, got.Action, p, tc.now)
			if err != nil {
				t.Fatalf("Apply(%s): %v", got.Action, err)
			}
			// One action may leave work for the next check (a CA rotation
			// defers the serving renewal), but never a broken CA.
			if after := Plan(next, p, tc.now); after.Action == ActionBootstrap {
				t.Errorf("after %s, Plan() = %s (%s)", got.Action, after.Action, after.Reason)
			}
		})
	}
}

func TestApply(t *testing.T) {
	p := testPolicy()
	ca := mustCA(t, t0, p.CAValidity)
	deadCA := mustCA(t, t0.Add(-6*year), p.CAValidity)
	serving := mustServing(t, ca, p.DNSNames, p.IPs, t0, p.CertValidity)

	t.Run("rotate CA keeps a working serving certificate", func(t *testing.T) {
		now := t0.Add(4 * year)
		recent := mustServing(t, ca, p.DNSNames, p.IPs, now.Add(-day), p.CertValidity)
		next, err := Apply(bundleOf(recent, ca, deadCA), ActionRotateCA, p, now)
		if err != nil {
			t.Fatal(err)
		}
		cas := mustParse(t, next.CACerts)
		if len(cas) != 2 || !cas[1].Equal(ca.Cert) {
			t.Fatalf("bundle = %d CAs, want new + previous (expired one dropped)", len(cas))
		}
		if string(next.TLSCert) != string(recent.CertPEM) {
			t.Error("serving certificate replaced, want kept until a later check")
		}
		if err := CheckCA(EncodeCertificates(cas[0]), next.CAKey, now, p.caWindow()); err != nil {
			t.Errorf("new CA: %v", err)
		}
	})
	t.Run("rotate CA re-issues a broken serving certificate", func(t *testing.T) {
		now := t0.Add(4 * year)
		next, err := Apply(bundleOf(nil, ca), ActionRotateCA, p, now)
		if err != nil {
			t.Fatal(err)
		}
		cas := mustParse(t, next.CACerts)
		if err := Check(EncodeCertificates(cas[0]), next.TLSCert, next.TLSKey, p.DNSNames, now, p.CertRenewBefore); err != nil {
			t.Errorf("serving certificate not signed by the new CA: %v", err)
		}
	})
	t.Run("renew signs with the newest CA", func(t *testing.T) {
		older := mustCA(t, t0.Add(-year), p.CAValidity)
		now := t0.Add(day)
		next, err := Apply(bundleOf(nil, ca, older), ActionRenewServing, p, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(ca.CertPEM, next.TLSCert, next.TLSKey, p.DNSNames, now, p.CertRenewBefore); err != nil {
			t.Error(err)
		}
		if string(next.CACerts) != string(ca.CertPEM)+string(older.CertPEM) || string(next.CAKey) != string(ca.KeyPEM) {
			t.Error("renewal changed the CA bundle")
		}
	})
	t.Run("prune drops only expired CAs", func(t *testing.T) {
		next, err := Apply(bundleOf(serving, ca, deadCA), ActionPruneCA, p, t0.Add(day))
		if err != nil {
			t.Fatal(err)
		}
		want := bundleOf(serving, ca)
		if !next.Equal(want) {
			t.Error("prune: want the bundle without the expired CA and nothing else changed")
		}
	})
	t.Run("none changes nothing", func(t *testing.T) {
		b := bundleOf(serving, ca)
		next, err := Apply(b, ActionNone, p, t0)
		if err != nil || !next.Equal(b) {
			t.Errorf("Apply(none) = changed, %v", err)
		}
	})
	t.Run("unknown action", func(t *testing.T) {
		if _, err := Apply(Bundle{}, Action("explode"), p, t0); err == nil {
			t.Error("want error")
		}
	})
}

func mustParse(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	certs, err := ParseCertificates(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Policy)
		wantErr string
	}{
		{name: "defaults", mutate: func(*Policy) {}},
		{name: "no names", mutate: func(p *Policy) { p.DNSNames, p.IPs = nil, nil }, wantErr: "DNS name or IP"},
		{name: "zero validity", mutate: func(p *Policy) { p.CertValidity = 0 }, wantErr: "must be positive"},
		{name: "CA window too long", mutate: func(p *Policy) { p.CARenewBefore = p.CAValidity }, wantErr: "CA renewal window"},
		{name: "serving window too long", mutate: func(p *Policy) { p.CertRenewBefore = p.CertValidity }, wantErr: "shorter than certificate validity"},
		{name: "serving window longer than CA life", mutate: func(p *Policy) {
			p.CertValidity, p.CertRenewBefore, p.CAValidity, p.CARenewBefore = 10*day, 5*day, 4*day, day
		}, wantErr: "shorter than CA validity"},
		{name: "negative window", mutate: func(p *Policy) { p.CARenewBefore = -1 }, wantErr: "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy()
			tc.mutate(&p)
			err := p.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestLifecycle simulates years of operation with a fake clock, one check
// per step, as the Rotator does it: plan, apply, inject the CA bundle, then
// serve the certificate. At every step it asserts what the apiserver needs:
//   - the certificate served so far still verifies against the bundle just
//     injected (the server may reload after the apiserver switched bundles);
//   - the certificate now served verifies against that bundle;
//   - the certificate now served also verifies against the bundle injected at
//     the previous step (another replica may serve it before this bundle
//     reaches the apiserver), except at bootstrap when nothing was served;
//   - the bundle holds at most two CAs and no expired one.
func TestLifecycle(t *testing.T) {
	tests := []struct {
		name          string
		policy        Policy
		step          time.Duration
		span          time.Duration
		wantCARotates int
		wantRenewals  int
	}{
		{
			name: "defaults, checks every other day for 12 years", policy: testPolicy(),
			step: 2 * day, span: 12 * year, wantCARotates: 3, wantRenewals: 15,
		},
		{
			name: "short lifetimes, checks every minute for a day",
			policy: Policy{
				CACommonName: "test-ca", DNSNames: []string{"a.b.svc"},
				CAValidity: 3 * time.Hour, CARenewBefore: time.Hour,
				CertValidity: time.Hour, CertRenewBefore: 20 * time.Minute,
			},
			step: time.Minute, span: day, wantCARotates: 10, wantRenewals: 30,
		},
		{
			name: "serving lifetime close to the CA's, hourly checks for 90 days",
			policy: Policy{
				CACommonName: "test-ca", DNSNames: []string{"a.b.svc"},
				CAValidity: 10 * day, CARenewBefore: day,
				CertValidity: 7 * day, CertRenewBefore: 2 * day,
			},
			step: time.Hour, span: 90 * day, wantCARotates: 10, wantRenewals: 10,
		},
		{
			name: "serving outlives the CA, hourly checks for 60 days",
			policy: Policy{
				CACommonName: "test-ca", IPs: []net.IP{net.ParseIP("127.0.0.1")},
				CAValidity: 4 * day, CARenewBefore: day,
				CertValidity: 30 * day, CertRenewBefore: 2 * day,
			},
			step: time.Hour, span: 60 * day, wantCARotates: 20, wantRenewals: 20,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := tc.policy
			if err := p.Validate(); err != nil {
				t.Fatalf("policy: %v", err)
			}
			var (
				stored              Bundle
				injected            []byte
				servedCert, servedK []byte
				counts              = map[Action]int{}
			)
			for now := t0; now.Before(t0.Add(tc.span)); now = now.Add(tc.step) {
				d := Plan(stored, p, now)
				if d.Action != ActionNone {
					next, err := Apply(stored, d.Action, p, now)
					if err != nil {
						t.Fatalf("%s: Apply(%s): %v", now, d.Action, err)
					}
					stored = next
					counts[d.Action]++
				}
				previous := injected
				injected = stored.CACerts
				if servedCert != nil {
					if err := checkServing(injected, servedCert, servedK, p.DNSNames, p.IPs, now, 0); err != nil {
						t.Fatalf("%s after %s: served certificate fails against the new bundle: %v", now, d.Action, err)
					}
				}
				servedCert, servedK = stored.TLSCert, stored.TLSKey
				if err := checkServing(injected, servedCert, servedK, p.DNSNames, p.IPs, now, 0); err != nil {
					t.Fatalf("%s after %s: new certificate fails against the new bundle: %v", now, d.Action, err)
				}
				if d.Action != ActionBootstrap {
					if err := checkServing(previous, servedCert, servedK, p.DNSNames, p.IPs, now, 0); err != nil {
						t.Fatalf("%s after %s: new certificate fails against the previous bundle: %v", now, d.Action, err)
					}
				}
				cas := mustParse(t, injected)
				if len(cas) > 2 {
					t.Fatalf("%s: bundle holds %d CAs, want at most 2", now, len(cas))
				}
				if len(unexpired(cas, now)) != len(cas) {
					t.Fatalf("%s: bundle still holds an expired CA", now)
				}
			}
			if counts[ActionBootstrap] != 1 {
				t.Errorf("bootstraps = %d, want 1", counts[ActionBootstrap])
			}
			if counts[ActionRotateCA] < tc.wantCARotates || counts[ActionRenewServing] < tc.wantRenewals {
				t.Errorf("CA rotations = %d (want >= %d), renewals = %d (want >= %d)",
					counts[ActionRotateCA], tc.wantCARotates, counts[ActionRenewServing], tc.wantRenewals)
			}
			t.Logf("actions: %v", counts)
		})
	}
}
