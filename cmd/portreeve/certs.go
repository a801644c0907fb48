package main

import (
	"context"
	"fmt"
	"net"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/portreeve/portreeve/certs"
)

// setupCerts wires the serving certificate. In cert-manager mode someone else
// (cert-manager, or a test) writes tls.crt and tls.key into --cert-dir and the
// webhook server reloads them. In self-signed mode the built-in rotator keeps
// a CA and the serving certificate in a Secret, writes the files and injects
// the CA into both webhook configurations; it bootstraps before the manager
// starts, because the webhook server needs the files to start.
func setupCerts(ctx context.Context, mgr manager.Manager, scheme *runtime.Scheme, o *serveOptions, ready map[string]healthz.Checker) error {
	if err := certs.RegisterMetrics(ctrlmetrics.Registry); err != nil {
		return err
	}
	if o.CertMode != "self-signed" {
		return nil
	}
	var ips []net.IP
	for _, s := range o.CertExtraIPs {
		ip := net.ParseIP(s)
		if ip == nil {
			return &exitError{code: 2, err: fmt.Errorf("--cert-ip-addresses: not an IP address: %q", s)}
		}
		ips = append(ips, ip)
	}
	// A direct client: no cluster-wide Secret or webhook configuration watch.
	c, err := client.New(mgr.GetConfig(), client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	r, err := certs.New(c, certs.Options{
		Namespace:         o.Namespace,
		SecretName:        o.CertSecret,
		ServiceName:       o.ServiceName,
		DNSNames:          o.CertExtraDNSNames,
		IPs:               ips,
		WebhookConfigName: o.WebhookConfigName,
		NoMutatingWebhook: !o.MutatingWebhook,
		CertDir:           o.CertDir,
		CAValidity:        o.CAValidity,
		CertValidity:      o.CertValidity,
		RenewBefore:       o.CertRenewBefore,
		CheckInterval:     o.CertCheckInterval,
	})
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if err := r.Bootstrap(ctx); err != nil {
		return fmt.Errorf("bootstrap serving certificate: %w", err)
	}
	ready["certs"] = r.ReadyCheck
	return mgr.Add(r)
}
