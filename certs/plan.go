package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"
)

// Bundle is what the Secret stores: the CA bundle that is injected into the
// webhook configurations (newest CA first, older CAs kept until they expire),
// the newest CA's key, and the serving certificate and key.
type Bundle struct {
	CACerts []byte // ca.crt
	CAKey   []byte // ca.key
	TLSCert []byte // tls.crt
	TLSKey  []byte // tls.key
}

// Equal reports whether b and o hold the same bytes.
func (b Bundle) Equal(o Bundle) bool {
	return string(b.CACerts) == string(o.CACerts) && string(b.CAKey) == string(o.CAKey) &&
		string(b.TLSCert) == string(o.TLSCert) && string(b.TLSKey) == string(o.TLSKey)
}

// Policy is what Plan and Apply need to know about the certificates to keep.
type Policy struct {
	CACommonName    string
	DNSNames        []string
	IPs             []net.IP
	CAValidity      time.Duration
	CARenewBefore   time.Duration
	CertValidity    time.Duration
	CertRenewBefore time.Duration
}

// Validate returns an error when the durations cannot give a stable
// rotation: every renewal window must be shorter than the lifetime it
// belongs to, and the serving window shorter than the CA's lifetime (a
// serving certificate never outlives its CA).
func (p Policy) Validate() error {
	var errs []error
	if len(p.DNSNames) == 0 && len(p.IPs) == 0 {
		errs = append(errs, errors.New("at least one DNS name or IP is required"))
	}
	if p.CAValidity <= 0 || p.CertValidity <= 0 {
		errs = append(errs, errors.New("CA and certificate validity must be positive"))
	}
	if p.CARenewBefore < 0 || p.CertRenewBefore < 0 {
		errs = append(errs, errors.New("renewal windows must not be negative"))
	}
	if p.CARenewBefore >= p.CAValidity {
		errs = append(errs, fmt.Errorf("CA renewal window %s must be shorter than CA validity %s", p.CARenewBefore, p.CAValidity))
	}
	if p.CertRenewBefore >= p.CertValidity {
		errs = append(errs, fmt.Errorf("renewal window %s must be shorter than certificate validity %s", p.CertRenewBefore, p.CertValidity))
	}
	if p.CertRenewBefore >= p.CAValidity {
		errs = append(errs, fmt.Errorf("renewal window %s must be shorter than CA validity %s", p.CertRenewBefore, p.CAValidity))
	}
	return errors.Join(errs...)
}

// caWindow is how long before its expiry the newest CA is replaced. It is at
// least the serving window: a serving certificate is cut off at its CA's
// NotAfter, so a CA closer to expiry than that would make every new serving
// certificate due for renewal at once.
func (p Policy) caWindow() time.Duration {
	return max(p.CARenewBefore, p.CertRenewBefore)
}

// Action is the next step Plan asks for.
type Action string

// Actions, in the order Plan considers them.
const (
	// ActionNone: the bundle is fine.
	ActionNone Action = "none"
	// ActionBootstrap: there is no usable CA; create a CA and a serving certificate.
	ActionBootstrap Action = "bootstrap"
	// ActionRotateCA: the newest CA is in its renewal window; create a new CA and
	// put it in front of the bundle. The serving certificate is kept if it is
	// still valid, so the new CA reaches every client before anything it
	// signed is served.
	ActionRotateCA Action = "rotate-ca"
	// ActionRenewServing: the serving certificate is missing, invalid or in its
	// renewal window; sign a new one with the newest CA.
	ActionRenewServing Action = "renew-serving"
	// ActionPruneCA: an older CA in the bundle has expired; drop it.
	ActionPruneCA Action = "prune-ca"
)

// Decision is the result of Plan: what to do and why.
type Decision struct {
	Action Action
	Reason string
}

// Plan decides, without side effects, what the bundle needs at now. It asks
// for one action at a time; the caller applies it, stores the result and
// plans again on its next check. Because CA rotation keeps a valid serving
// certificate, a certificate signed by a new CA is only issued on a later
// check, after the bundle holding that CA has been published.
func Plan(b Bundle, p Policy, now time.Time) Decision {
	cas, err := ParseCertificates(b.CACerts)
	if err != nil {
		return Decision{ActionBootstrap, fmt.Sprintf("CA bundle: %v", err)}
	}
	if err := CheckCA(EncodeCertificates(cas[0]), b.CAKey, now, 0); err != nil {
		return Decision{ActionBootstrap, fmt.Sprintf("current CA: %v", err)}
	}
	if err := checkRenewal(cas[0], now, p.caWindow()); err != nil {
		return Decision{ActionRotateCA, fmt.Sprintf("current CA: %v", err)}
	}
	if err := checkServing(b.CACerts, b.TLSCert, b.TLSKey, p.DNSNames, p.IPs, now, p.CertRenewBefore); err != nil {
		return Decision{ActionRenewServing, fmt.Sprintf("serving certificate: %v", err)}
	}
	if len(unexpired(cas[1:], now)) != len(cas)-1 {
		return Decision{ActionPruneCA, "an older CA has expired"}
	}
	return Decision{ActionNone, "certificates valid"}
}

// Apply performs action on b and returns the new bundle. It creates keys, so
// it is not deterministic, but it only depends on its arguments. Expired
// older CAs are dropped by every action.
func Apply(b Bundle, action Action, p Policy, now time.Time) (Bundle, error) {
	switch action {
	case ActionNone:
		return b, nil
	case ActionBootstrap, ActionRotateCA:
		ca, err := NewCA(p.CACommonName, now, p.CAValidity)
		if err != nil {
			return Bundle{}, err
		}
		var older []*x509.Certificate
		if cas, err := ParseCertificates(b.CACerts); err == nil {
			older = unexpired(cas, now)
		}
		out := Bundle{
			CACerts: append(EncodeCertificates(ca.Cert), EncodeCertificates(older...)...),
			CAKey:   ca.KeyPEM,
			TLSCert: b.TLSCert,
			TLSKey:  b.TLSKey,
		}
		// On rotation keep a serving certificate that still works; it is
		// renewed with the new CA on a later check.
		if action == ActionRotateCA &&
			checkServing(out.CACerts, b.TLSCert, b.TLSKey, p.DNSNames, p.IPs, now, 0) == nil {
			return out, nil
		}
		return renewServing(out, ca, p, now)
	case ActionRenewServing, ActionPruneCA:
		cas, err := ParseCertificates(b.CACerts)
		if err != nil {
			return Bundle{}, fmt.Errorf("CA bundle: %w", err)
		}
		ca, err := ParseKeyPair(EncodeCertificates(cas[0]), b.CAKey)
		if err != nil {
			return Bundle{}, fmt.Errorf("current CA: %w", err)
		}
		out := b
		out.CACerts = append(EncodeCertificates(cas[0]), EncodeCertificates(unexpired(cas[1:], now)...)...)
		if action == ActionPruneCA {
			return out, nil
		}
		return renewServing(out, ca, p, now)
	default:
		return Bundle{}, fmt.Errorf("unknown action %q", action)
	}
}

func renewServing(b Bundle, ca *KeyPair, p Policy, now time.Time) (Bundle, error) {
	serving, err := NewServingCert(ca, p.DNSNames, p.IPs, now, p.CertValidity)
	if err != nil {
		return Bundle{}, err
	}
	b.TLSCert, b.TLSKey = serving.CertPEM, serving.KeyPEM
	return b, nil
}

// unexpired returns the CA certificates of cas that are still valid at now.
func unexpired(cas []*x509.Certificate, now time.Time) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range cas {
		if c.IsCA && now.Before(c.NotAfter) {
			out = append(out, c)
		}
	}
	return out
}
