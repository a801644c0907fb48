package certs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Defaults for Options.
const (
	DefaultCAValidity    = 5 * 365 * 24 * time.Hour
	DefaultCertValidity  = 365 * 24 * time.Hour
	DefaultCheckInterval = time.Minute
	DefaultCACommonName  = "portreeve-ca"
)

// retryInterval is the wait after a failed sync (missing webhook
// configuration, API error), unless CheckInterval is shorter.
const retryInterval = 5 * time.Second

// Options configure a Rotator. Zero durations take their defaults.
type Options struct {
	// Namespace and SecretName name the Secret that stores the bundle.
	Namespace  string
	SecretName string
	// ServiceName adds <service>.<namespace>.svc to the serving certificate.
	ServiceName string
	// DNSNames and IPs are added to the serving certificate (e.g. localhost
	// and 127.0.0.1 when the webhook is registered by URL).
	DNSNames []string
	IPs      []net.IP
	// WebhookConfigName names both the ValidatingWebhookConfiguration and the
	// MutatingWebhookConfiguration whose caBundle is injected.
	WebhookConfigName string
	// NoMutatingWebhook: the installation registers no mutating webhook (no
	// rule needs one), so only the validating configuration gets the CA.
	NoMutatingWebhook bool
	// CertDir receives tls.crt, tls.key and ca.crt.
	CertDir string
	// CACommonName is the subject of the CA (default portreeve-ca).
	CACommonName string
	// CAValidity is the CA lifetime (default 5 years); CARenewBefore is how
	// long before its expiry a new CA is added (default a third of it).
	CAValidity    time.Duration
	CARenewBefore time.Duration
	// CertValidity is the serving certificate lifetime (default 1 year);
	// RenewBefore is how long before its expiry it is renewed (default a
	// third of it).
	CertValidity time.Duration
	RenewBefore  time.Duration
	// CheckInterval is the period of the sync loop (default 1 minute).
	CheckInterval time.Duration
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
}

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.CACommonName == "" {
		o.CACommonName = DefaultCACommonName
	}
	if o.CAValidity == 0 {
		o.CAValidity = DefaultCAValidity
	}
	if o.CARenewBefore == 0 {
		o.CARenewBefore = o.CAValidity / 3
	}
	if o.CertValidity == 0 {
		o.CertValidity = DefaultCertValidity
	}
	if o.RenewBefore == 0 {
		o.RenewBefore = o.CertValidity / 3
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return o
}

// dnsNames returns the names the serving certificate must cover.
func (o Options) dnsNames() []string {
	var names []string
	if o.ServiceName != "" {
		names = append(names, fmt.Sprintf("%s.%s.svc", o.ServiceName, o.Namespace))
	}
	for _, n := range o.DNSNames {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

func (o Options) policy() Policy {
	return Policy{
		CACommonName:    o.CACommonName,
		DNSNames:        o.dnsNames(),
		IPs:             o.IPs,
		CAValidity:      o.CAValidity,
		CARenewBefore:   o.CARenewBefore,
		CertValidity:    o.CertValidity,
		CertRenewBefore: o.RenewBefore,
	}
}

// Validate returns every problem of the (defaulted) options at once.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	for _, f := range []struct{ name, value string }{
		{"Namespace", o.Namespace}, {"SecretName", o.SecretName},
		{"WebhookConfigName", o.WebhookConfigName}, {"CertDir", o.CertDir},
	} {
		if f.value == "" {
			errs = append(errs, fmt.Errorf("%s is required", f.name))
		}
	}
	if err := o.policy().Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.CheckInterval < 0 || o.CheckInterval >= o.RenewBefore {
		errs = append(errs, fmt.Errorf("CheckInterval %s must be positive and shorter than RenewBefore %s",
			o.CheckInterval, o.RenewBefore))
	}
	return errors.Join(errs...)
}

// Rotator keeps the webhook's self-signed TLS in step across replicas: the
// Secret (the shared store), the files in CertDir (what this replica serves)
// and the caBundle of the webhook configurations (what the apiserver trusts).
// It is a manager.Runnable that runs on every replica, without leader
// election.
type Rotator struct {
	client client.Client
	opts   Options
	policy Policy

	ready   atomic.Bool
	mu      sync.Mutex
	lastErr error
}

var (
	_ manager.Runnable               = (*Rotator)(nil)
	_ manager.LeaderElectionRunnable = (*Rotator)(nil)
	_ healthz.Checker                = (*Rotator)(nil).ReadyCheck
)

// New returns a Rotator. c must read from the API server directly (not the
// manager's cache, which would start a cluster-wide Secret informer): pass
// a client from client.New, not mgr.GetClient(). It needs get/create/update
// on the Secret and get/patch on both webhook configurations.
func New(c client.Client, opts Options) (*Rotator, error) {
	if c == nil {
		return nil, errors.New("client is required")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	return &Rotator{client: c, opts: opts, policy: opts.policy()}, nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica serves, so every replica needs certificates.
func (r *Rotator) NeedLeaderElection() bool { return false }

// Bootstrap makes sure CertDir holds a usable serving certificate, creating
// the Secret if needed, without waiting for the webhook configurations. The
// webhook server fails to start without these files, and the manager starts
// it before other runnables, so call Bootstrap before mgr.Start. It retries
// until it succeeds or ctx ends.
func (r *Rotator) Bootstrap(ctx context.Context) error {
	ctx = r.withLogger(ctx)
	for {
		err := r.bootstrapOnce(ctx)
		if err == nil {
			return nil
		}
		r.setErr(err)
		logf.FromContext(ctx).Error(err, "Bootstrapping webhook certificates failed, retrying")
		if !sleep(ctx, r.retryWait()) {
			return ctx.Err()
		}
	}
}

func (r *Rotator) bootstrapOnce(ctx context.Context) error {
	now := r.opts.Clock()
	b, err := r.syncSecret(ctx, now)
	if err != nil {
		return err
	}
	return r.syncFiles(ctx, b, false, now)
}

// Start implements manager.Runnable: it syncs now and then every
// CheckInterval (sooner after a failure) until ctx ends.
func (r *Rotator) Start(ctx context.Context) error {
	ctx = r.withLogger(ctx)
	log := logf.FromContext(ctx)
	log.Info("Starting webhook certificate rotator")
	for {
		wait := r.opts.CheckInterval
		if err := r.Sync(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Error(err, "Syncing webhook certificates failed, retrying")
			wait = r.retryWait()
		}
		if !sleep(ctx, wait) {
			log.Info("Stopping webhook certificate rotator")
			return nil
		}
	}
}

// Sync runs one pass: make the Secret hold a valid bundle, inject its CA
// bundle into both webhook configurations, then write the files. A working
// served certificate is only replaced once the injection succeeded, so the
// apiserver always trusts what is served. The Rotator becomes ready after
// the first pass in which both succeeded, and stays ready.
func (r *Rotator) Sync(ctx context.Context) error {
	now := r.opts.Clock()
	b, err := r.syncSecret(ctx, now)
	if err != nil {
		r.setErr(err)
		return err
	}
	if cas, err := ParseCertificates(b.CACerts); err == nil {
		setExpiry(metricCertCA, cas[0].NotAfter)
	}
	injectErr := r.injectCABundle(ctx, b.CACerts)
	filesErr := r.syncFiles(ctx, b, injectErr == nil, now)
	err = errors.Join(injectErr, filesErr)
	r.setErr(err)
	if err == nil && !r.ready.Swap(true) {
		logf.FromContext(ctx).Info("Webhook certificates ready")
	}
	return err
}

// syncFiles writes b into CertDir. Unless injected is true, a served
// certificate that still works is left alone: its replacement may be signed
// by a CA the apiserver does not trust yet.
func (r *Rotator) syncFiles(ctx context.Context, b Bundle, injected bool, now time.Time) error {
	if !injected {
		if cert, key := readServedFiles(r.opts.CertDir); cert != nil {
			if kp, err := ParseKeyPair(cert, key); err == nil && checkValidity(kp.Cert, now) == nil {
				setExpiry(metricCertServing, kp.Cert.NotAfter)
				return nil
			}
		}
	}
	changed, err := writeCertFiles(r.opts.CertDir, b)
	if err != nil {
		return err
	}
	if changed {
		logf.FromContext(ctx).Info("Wrote webhook certificates", "dir", r.opts.CertDir)
	}
	if kp, err := ParseKeyPair(b.TLSCert, b.TLSKey); err == nil {
		setExpiry(metricCertServing, kp.Cert.NotAfter)
	}
	return nil
}

// ReadyCheck is a healthz.Checker: it fails until the serving certificate
// has been written and the CA bundle injected into both webhook
// configurations.
func (r *Rotator) ReadyCheck(_ *http.Request) error {
	if r.ready.Load() {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastErr != nil {
		return fmt.Errorf("webhook certificates not ready: %w", r.lastErr)
	}
	return errors.New("webhook certificates not ready")
}

func (r *Rotator) setErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastErr = err
}

func (r *Rotator) retryWait() time.Duration {
	return min(retryInterval, r.opts.CheckInterval)
}

func (r *Rotator) withLogger(ctx context.Context) context.Context {
	log := logf.FromContext(ctx).WithName("cert-rotator").
		WithValues("secret", r.opts.Namespace+"/"+r.opts.SecretName)
	return logf.IntoContext(ctx, log)
}

// sleep waits for d and reports false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
