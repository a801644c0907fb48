// Package certs provides the webhook's TLS in self-signed mode: pure PKI
// helpers (a CA, serving certificates, validity checks), a pure rotation plan
// (Plan/Apply) and a Rotator that keeps a Secret, the files in the webhook
// server's CertDir and the caBundle of the webhook configurations in step.
//
// Every function that depends on time takes it as an argument, so the whole
// life cycle can be tested with a fake clock.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// backdate is subtracted from NotBefore to tolerate clock skew between the
// replica that signs a certificate and the kube-apiserver that verifies it.
const backdate = time.Hour

const (
	pemTypeCertificate = "CERTIFICATE"
	pemTypePrivateKey  = "PRIVATE KEY"
)

// Errors returned (wrapped) by Check and CheckCA. Test with errors.Is.
var (
	// ErrInvalid means the PEM data could not be parsed into what was expected.
	ErrInvalid = errors.New("invalid certificate or key")
	// ErrKeyMismatch means the private key does not belong to the certificate.
	ErrKeyMismatch = errors.New("private key does not match certificate")
	// ErrNotYetValid means the certificate's NotBefore lies in the future.
	ErrNotYetValid = errors.New("certificate not yet valid")
	// ErrExpired means the certificate's NotAfter has passed.
	ErrExpired = errors.New("certificate expired")
	// ErrExpiringSoon means the certificate is valid but within its renewal window.
	ErrExpiringSoon = errors.New("certificate expires soon")
	// ErrUntrusted means the certificate does not chain to any of the given CAs.
	ErrUntrusted = errors.New("certificate not signed by a trusted CA")
	// ErrNameMismatch means the certificate does not cover a required DNS name or IP.
	ErrNameMismatch = errors.New("certificate does not cover required name")
	// ErrNotCA means a certificate used as a CA is not a CA certificate.
	ErrNotCA = errors.New("certificate is not a CA")
)

// KeyPair is a certificate with its private key, both in PEM and parsed.
type KeyPair struct {
	CertPEM []byte
	KeyPEM  []byte
	Cert    *x509.Certificate
	Key     crypto.Signer
}

// NewCA returns a self-signed ECDSA P-256 CA valid from now (backdated by an
// hour for clock skew) for validity.
func NewCA(commonName string, now time.Time, validity time.Duration) (*KeyPair, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("CA validity must be positive, got %s", validity)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return issue(tmpl, nil)
}

// NewServingCert returns an ECDSA P-256 server certificate for dnsNames and
// ips signed by ca. Its NotAfter is now+validity, but never after the CA's.
func NewServingCert(ca *KeyPair, dnsNames []string, ips []net.IP, now time.Time, validity time.Duration) (*KeyPair, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("signing CA with key is required")
	}
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, errors.New("at least one DNS name or IP is required")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("certificate validity must be positive, got %s", validity)
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("%w: signing CA expired at %s", ErrExpired, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	cn := ""
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	} else {
		cn = ips[0].String()
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    dnsNames,
		IPAddresses: ips,
		NotBefore:   now.Add(-backdate),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	return issue(tmpl, ca)
}

// issue creates a new key and a certificate from tmpl signed by parent, or
// self-signed when parent is nil.
func issue(tmpl *x509.Certificate, parent *KeyPair) (*KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	tmpl.SerialNumber = serial
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signerCert, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing signed certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return &KeyPair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: pemTypeCertificate, Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: pemTypePrivateKey, Bytes: keyDER}),
		Cert:    cert,
		Key:     key,
	}, nil
}

// ParseKeyPair parses the first certificate of certPEM and the key in keyPEM
// and checks that they belong together.
func ParseKeyPair(certPEM, keyPEM []byte) (*KeyPair, error) {
	certs, err := ParseCertificates(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	pub, ok := certs[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, ErrKeyMismatch
	}
	return &KeyPair{CertPEM: certPEM, KeyPEM: keyPEM, Cert: certs[0], Key: key}, nil
}

// parsePrivateKey parses the first private key block of keyPEM (PKCS#8,
// SEC 1 or PKCS#1).
func parsePrivateKey(keyPEM []byte) (crypto.Signer, error) {
	for rest := keyPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%w: no PEM private key found", ErrInvalid)
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case pemTypePrivateKey:
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: unsupported private key type %T", ErrInvalid, key)
		}
		return signer, nil
	}
}

// ParseCertificates returns every CERTIFICATE block of data in order; other
// block types are skipped. It fails when there is none or one does not parse.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != pemTypeCertificate {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no PEM certificate found", ErrInvalid)
	}
	return certs, nil
}

// EncodeCertificates returns certs as concatenated PEM blocks.
func EncodeCertificates(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: pemTypeCertificate, Bytes: c.Raw})...)
	}
	return out
}

// Check returns nil when certPEM is a server certificate that chains to one
// of the CAs in caPEMs, keyPEM is its key, it covers every name in dnsNames,
// and it is valid at now for longer than renewBefore. Otherwise the error
// wraps one of ErrInvalid, ErrKeyMismatch, ErrNotYetValid, ErrExpired,
// ErrUntrusted, ErrNameMismatch or ErrExpiringSoon.
func Check(caPEMs, certPEM, keyPEM []byte, dnsNames []string, now time.Time, renewBefore time.Duration) error {
	return checkServing(caPEMs, certPEM, keyPEM, dnsNames, nil, now, renewBefore)
}

func checkServing(caPEMs, certPEM, keyPEM []byte, dnsNames []string, ips []net.IP, now time.Time, renewBefore time.Duration) error {
	kp, err := ParseKeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	cert := kp.Cert
	if err := checkValidity(cert, now); err != nil {
		return err
	}
	cas, err := ParseCertificates(caPEMs)
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	for _, name := range dnsNames {
		if err := cert.VerifyHostname(name); err != nil {
			return fmt.Errorf("%w: %q", ErrNameMismatch, name)
		}
	}
	for _, ip := range ips {
		if !containsIP(cert.IPAddresses, ip) {
			return fmt.Errorf("%w: IP %s", ErrNameMismatch, ip)
		}
	}
	return checkRenewal(cert, now, renewBefore)
}

// CheckCA returns nil when certPEM is a CA certificate, keyPEM is its key and
// it is valid at now for longer than renewBefore. Errors wrap the same
// sentinels as Check, plus ErrNotCA.
func CheckCA(certPEM, keyPEM []byte, now time.Time, renewBefore time.Duration) error {
	kp, err := ParseKeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	if !kp.Cert.IsCA || kp.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return ErrNotCA
	}
	if err := checkValidity(kp.Cert, now); err != nil {
		return err
	}
	return checkRenewal(kp.Cert, now, renewBefore)
}

func checkValidity(cert *x509.Certificate, now time.Time) error {
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("%w: valid from %s", ErrNotYetValid, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if !now.Before(cert.NotAfter) {
		return fmt.Errorf("%w: at %s", ErrExpired, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func checkRenewal(cert *x509.Certificate, now time.Time, renewBefore time.Duration) error {
	if left := cert.NotAfter.Sub(now); left <= renewBefore {
		return fmt.Errorf("%w: expires at %s (in %s, renewal window %s)",
			ErrExpiringSoon, cert.NotAfter.UTC().Format(time.RFC3339), left.Round(time.Second), renewBefore)
	}
	return nil
}

func containsIP(list []net.IP, ip net.IP) bool {
	for _, candidate := range list {
		if candidate.Equal(ip) {
			return true
		}
	}
	return false
}
