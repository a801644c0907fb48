package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	portreevewebhook "github.com/portreeve/portreeve/webhook"
	"github.com/portreeve/portreeve/webhook/inventory"
	"github.com/portreeve/portreeve/webhook/review"
)

// reviewDeadlineMargin is how long before the apiserver's webhook timeout a
// review's context ends: time to encode and send the answer.
const reviewDeadlineMargin = 500 * time.Millisecond

// serveOptions are the flags of `portreeve serve`; defaults match the chart.
type serveOptions struct {
	Kubeconfig         string
	CPUProfile         string
	WebhookHost        string
	WebhookPort        int
	CertDir            string
	TLSMinVersion      string
	ConfigPath         string
	ConfigPollInterval time.Duration
	MetricsBindAddress string
	HealthProbeAddress string
	Namespace          string
	ExemptNamespaces   []string
	CertMode           string
	CertSecret         string
	ServiceName        string
	WebhookConfigName  string
	MutatingWebhook    bool
	CAValidity         time.Duration
	CertValidity       time.Duration
	CertRenewBefore    time.Duration
	CertCheckInterval  time.Duration
	CertExtraDNSNames  []string
	CertExtraIPs       []string
	EnableHTTP2        bool
	// NodePortRange is the cluster's --service-node-port-range; InventoryNotReady
	// says what requests that need the inventory get before it synced.
	NodePortRange     string
	InventoryNotReady string
	// CRDPollInterval is how often discovery is asked whether the CRD kinds
	// (Gateway API) are served yet.
	CRDPollInterval time.Duration
	// Enforcement is enforce or observe (review.Enforcement).
	Enforcement string
	// Limits bound what one review may hold.
	Limits review.Limits
	// MaxReviewsInFlight bounds the reviews that run at once, MaxReviewBytesInFlight their objects' bytes (0: none).
	MaxReviewsInFlight     int
	MaxReviewBytesInFlight int64
	authoringOptions
	leaderOptions
	reservationOptions
	// WebhookTimeouts bound each connection of the webhook server.
	WebhookTimeouts webhookTimeouts
	zap             zap.Options
}

func newServeOptions() *serveOptions {
	return &serveOptions{
		WebhookPort:            9443,
		CertDir:                "/certs",
		TLSMinVersion:          "1.2",
		ConfigPollInterval:     5 * time.Second,
		MetricsBindAddress:     ":8080",
		HealthProbeAddress:     ":8081",
		Namespace:              os.Getenv("POD_NAMESPACE"),
		CertMode:               "cert-manager",
		CAValidity:             5 * 365 * 24 * time.Hour,
		CertValidity:           365 * 24 * time.Hour,
		CertCheckInterval:      time.Minute,
		NodePortRange:          "30000-32767",
		InventoryNotReady:      inventory.NotReadyDeny,
		CRDPollInterval:        inventory.DefaultCRDPollInterval,
		Enforcement:            string(review.Enforce),
		Limits:                 review.DefaultLimits,
		MaxReviewsInFlight:     defaultMaxReviewsInFlight,
		MaxReviewBytesInFlight: defaultMaxReviewBytesInFlight,
		authoringOptions:       defaultAuthoringOptions(),
		leaderOptions:          defaultLeaderOptions(),
		reservationOptions:     defaultReservationOptions(),
		WebhookTimeouts:        defaultWebhookTimeouts(),
	}
}

func (o *serveOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then in-cluster)")
	fs.StringVar(&o.WebhookHost, "webhook-host", o.WebhookHost, "address the webhook server binds to (default: all)")
	fs.IntVar(&o.WebhookPort, "webhook-port", o.WebhookPort, "port of the webhook server")
	fs.StringVar(&o.CertDir, "cert-dir", o.CertDir, "folder with tls.crt and tls.key (reloaded when they change)")
	fs.StringVar(&o.TLSMinVersion, "tls-min-version", o.TLSMinVersion, "minimum TLS version: 1.2 or 1.3")
	fs.StringVar(&o.ConfigPath, "config", o.ConfigPath, "policy configuration file (default: the built-in configuration); reloaded when it changes")
	fs.DurationVar(&o.ConfigPollInterval, "config-poll-interval", o.ConfigPollInterval, "how often the configuration file is checked for changes")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, "address of the metrics endpoint; 0 turns it off")
	fs.StringVar(&o.HealthProbeAddress, "health-probe-bind-address", o.HealthProbeAddress, "address of /healthz and /readyz")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "Portreeve's own namespace, never reviewed (default $POD_NAMESPACE)")
	fs.StringSliceVar(&o.ExemptNamespaces, "exempt-namespaces", nil, "more namespaces that are never reviewed (kube-system and --namespace always are)")
	fs.StringVar(&o.CertMode, "cert-mode", o.CertMode, "where the serving certificate comes from: self-signed (built-in rotator) or cert-manager (files mounted in --cert-dir by anyone)")
	fs.StringVar(&o.CertSecret, "cert-secret", o.CertSecret, "self-signed mode: the Secret that stores the CA and the serving certificate")
	fs.StringVar(&o.ServiceName, "service-name", o.ServiceName, "self-signed mode: the webhook Service, whose DNS names the certificate covers")
	fs.StringVar(&o.WebhookConfigName, "webhook-config-name", o.WebhookConfigName, "self-signed mode: name of the validating and mutating webhook configurations to inject the CA into")
	fs.BoolVar(&o.MutatingWebhook, "mutating-webhook", true, "self-signed mode: a mutating webhook configuration is registered (false when no rule needs one): inject the CA into it too, and wait for it")
	fs.DurationVar(&o.CAValidity, "ca-duration", o.CAValidity, "self-signed mode: CA lifetime")
	fs.DurationVar(&o.CertValidity, "cert-duration", o.CertValidity, "self-signed mode: serving certificate lifetime")
	fs.DurationVar(&o.CertRenewBefore, "renew-before", o.CertRenewBefore, "self-signed mode: renew this long before expiry (default: a third of the lifetime)")
	fs.DurationVar(&o.CertCheckInterval, "cert-check-interval", o.CertCheckInterval, "self-signed mode: how often the Secret, the files and the caBundle are checked (shorter than --renew-before)")
	fs.StringSliceVar(&o.CertExtraDNSNames, "cert-dns-names", nil, "self-signed mode: extra DNS names for the serving certificate")
	fs.StringSliceVar(&o.CertExtraIPs, "cert-ip-addresses", nil, "self-signed mode: IP addresses for the serving certificate")
	fs.BoolVar(&o.EnableHTTP2, "enable-http2", false, "serve HTTP/2 (off by default: HTTP/2 rapid reset)")
	fs.StringVar(&o.CPUProfile, "cpu-profile", "", "write a CPU profile (go tool pprof) of the whole run to this file when serve stops")
	fs.StringVar(&o.NodePortRange, "node-port-range", o.NodePortRange, "the cluster's Service NodePort range (kube-apiserver --service-node-port-range): hostPorts inside it collide with NodePorts")
	fs.DurationVar(&o.CRDPollInterval, "crd-poll-interval", o.CRDPollInterval, "how often to ask discovery whether the Gateway API kinds are served (their CRDs installed): each is reviewed by the rules whenever the apiserver sends it, and joins the inventory once discovery shows it")
	fs.StringVar(&o.InventoryNotReady, "inventory-not-ready", o.InventoryNotReady, "what requests that need the inventory of ports and hosts get before it has synced: deny (with a message saying so) or allow (judged without conflicts)")
	fs.IntVar(&o.Limits.Containers, "max-containers", o.Limits.Containers, "most containers (init, regular, ephemeral) one pod spec may have; more are refused before the rules run (0: no limit)")
	fs.IntVar(&o.Limits.Ports, "max-ports", o.Limits.Ports, "most ports one pod spec (all its containers) or Service may have; more are refused before the rules run (0: no limit)")
	fs.IntVar(&o.Limits.IngressRules, "max-ingress-rules", o.Limits.IngressRules, "most rules and TLS hosts one Ingress, or listeners one Gateway, may have (0: no limit)")
	fs.IntVar(&o.Limits.IngressPaths, "max-ingress-paths", o.Limits.IngressPaths, "most paths one Ingress, or hostnames times paths one Gateway API route, may have (0: no limit)")
	fs.IntVar(&o.MaxReviewsInFlight, "max-reviews-in-flight", o.MaxReviewsInFlight, "most reviews that run at once, across the webhooks; more wait in line "+
		"while their deadline leaves the rules' budget (--policy-eval-timeout) to review them, then get a 503 (allowed with a warning when observing)")
	fs.Int64Var(&o.MaxReviewBytesInFlight, "max-review-bytes-in-flight", o.MaxReviewBytesInFlight, "most bytes of objects (object and old object, "+
		"as received) that the reviews in flight hold together, decoded many times their size; a review that would pass it waits as above "+
		"(one counts at most three quarters of it, so that large ones run one at a time and small ones pass; 0: no bound)")
	fs.StringVar(&o.Enforcement, "enforcement", o.Enforcement, "enforce: act on findings by each rule's mode; observe: evaluate and record every rule (metrics, logs, a warning per finding) but deny and rewrite nothing, to adopt Portreeve on a running cluster")
	o.authoringOptions.addFlags(fs)
	o.leaderOptions.addFlags(fs)
	o.reservationOptions.addFlags(fs)
	o.WebhookTimeouts.addFlags(fs)
	logFlags := flag.NewFlagSet("log", flag.ContinueOnError)
	o.zap.BindFlags(logFlags)
	fs.AddGoFlagSet(logFlags)
}

func (o *serveOptions) validate() error {
	var errs []error
	if o.WebhookPort < 1 || o.WebhookPort > 65535 {
		errs = append(errs, fmt.Errorf("--webhook-port must lie in 1-65535, got %d", o.WebhookPort))
	}
	if o.TLSMinVersion != "1.2" && o.TLSMinVersion != "1.3" {
		errs = append(errs, fmt.Errorf("--tls-min-version must be 1.2 or 1.3, got %q", o.TLSMinVersion))
	}
	if o.CRDPollInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--crd-poll-interval must be at least 100ms"))
	}
	if o.ConfigPollInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--config-poll-interval must be at least 100ms"))
	}
	switch o.CertMode {
	case "cert-manager":
	case "self-signed":
		for flag, v := range map[string]string{"--cert-secret": o.CertSecret, "--service-name": o.ServiceName, "--webhook-config-name": o.WebhookConfigName, "--namespace": o.Namespace} {
			if v == "" {
				errs = append(errs, fmt.Errorf("%s is required with --cert-mode=self-signed", flag))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("--cert-mode must be self-signed or cert-manager, got %q", o.CertMode))
	}
	if _, err := inventory.ParseNodePortRange(o.NodePortRange); err != nil {
		errs = append(errs, fmt.Errorf("--node-port-range: %w", err))
	}
	if o.InventoryNotReady != inventory.NotReadyDeny && o.InventoryNotReady != inventory.NotReadyAllow {
		errs = append(errs, fmt.Errorf("--inventory-not-ready must be deny or allow, got %q", o.InventoryNotReady))
	}
	for flag, v := range map[string]int{"--max-containers": o.Limits.Containers, "--max-ports": o.Limits.Ports, "--max-ingress-rules": o.Limits.IngressRules, "--max-ingress-paths": o.Limits.IngressPaths} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s must be 0 (no limit) or more, got %d", flag, v))
		}
	}
	if o.MaxReviewsInFlight < 1 {
		errs = append(errs, fmt.Errorf("--max-reviews-in-flight must be at least 1, got %d", o.MaxReviewsInFlight))
	}
	if o.MaxReviewBytesInFlight < 0 {
		errs = append(errs, fmt.Errorf("--max-review-bytes-in-flight must be 0 (no bound) or more, got %d", o.MaxReviewBytesInFlight))
	}
	if _, err := review.ParseEnforcement(o.Enforcement); err != nil {
		errs = append(errs, fmt.Errorf("--enforcement: %w", err))
	}
	errs = append(errs, o.authoringOptions.validate()...)
	errs = append(errs, o.validateLeaderElection()...)
	errs = append(errs, o.validateReservations()...)
	errs = append(errs, o.WebhookTimeouts.validate()...)
	return errors.Join(errs...)
}

// tlsOptions apply --tls-min-version and --enable-http2.
func (o *serveOptions) tlsOptions(c *tls.Config) {
	c.MinVersion = tls.VersionTLS12
	if o.TLSMinVersion == "1.3" {
		c.MinVersion = tls.VersionTLS13
	}
	if !o.EnableHTTP2 {
		c.NextProtos = []string{"http/1.1"}
	}
}

func (o *serveOptions) exempt() []string {
	out := []string{"kube-system"}
	if o.Namespace != "" {
		out = append(out, o.Namespace)
	}
	for _, ns := range o.ExemptNamespaces {
		if ns != "" && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out
}

func newServeCommand() *cobra.Command {
	o := newServeOptions()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the validating (/validate) and mutating (/mutate) admission webhooks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.leaderElectSet = cmd.Flags().Changed("leader-elect")
			o.reservationsSet = cmd.Flags().Changed("reservations")
			if err := o.validate(); err != nil {
				return &exitError{code: 2, err: err}
			}
			ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap)))
			if o.CPUProfile != "" {
				f, err := os.Create(o.CPUProfile)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--cpu-profile: %w", err)}
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--cpu-profile: %w", err)}
				}
				defer pprof.StopCPUProfile()
			}
			return serve(ctrl.SetupSignalHandler(), o)
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func restConfig(path string) (*rest.Config, error) {
	if path == "" {
		return ctrl.GetConfig()
	}
	return clientcmd.BuildConfigFromFlags("", path)
}

func serve(ctx context.Context, o *serveOptions) error {
	log := ctrl.Log.WithName("serve")
	ruleErrors, err := newRuleErrorReporter(ctrlmetrics.Registry)
	if err != nil {
		return err
	}
	set, err := loadPolicySet(o.ConfigPath, o.PolicyDir)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	engine, err := o.newEngine(ctx, set, ruleErrors.Report)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	reviewer := review.NewReviewer(engine)
	enforcement, _ := review.ParseEnforcement(o.Enforcement) // validated
	reviewer.SetEnforcement(enforcement)
	reviewer.SetLimits(o.Limits)

	restCfg, err := restConfig(o.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	restCfg.UserAgent = "portreeve/" + version
	// The apiserver is a cluster-network hop away: gzip on its watch streams
	// and responses costs CPU on both ends (on Portreeve, the informers'
	// decompression was an eighth of its CPU per pod created) and saves
	// bandwidth nobody lacks there.
	restCfg.DisableCompression = true
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	var server webhook.Server = newWebhookServer(webhook.Options{
		Host:    o.WebhookHost,
		Port:    o.WebhookPort,
		CertDir: o.CertDir,
		TLSOpts: []func(*tls.Config){o.tlsOptions},
	}, o.WebhookTimeouts)
	mgrOpts := manager.Options{
		Scheme:                 scheme,
		WebhookServer:          server,
		Metrics:                metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress: o.HealthProbeAddress,
		Cache:                  inventory.CacheOptions(),
	}
	// Every replica serves admission; only the elected one audits.
	if elect, why := o.leaderElection(); elect {
		if err := o.useLeaderElection(restCfg, &mgrOpts); err != nil {
			return err
		}
		log.Info("the audit runs on the holder of the Lease", "lease", o.Namespace+"/"+o.leaseName())
	} else {
		log.Info("no leader election", "reason", why)
	}
	mgr, err := ctrl.NewManager(restCfg, mgrOpts)
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	inv, err := setupInventory(ctx, mgr, o, reviewer)
	if err != nil {
		return err
	}
	if err := registerInventoryMetrics(ctrlmetrics.Registry, inv, reviewer); err != nil {
		return err
	}
	if on, err := setupReservations(ctx, mgr, o, restCfg, inv, reviewer); err != nil {
		return err
	} else if on {
		log.Info("contested keys are reserved in Leases", "namespace", o.Namespace, "prefix", o.reservationPrefix())
	}
	// The manager starts the webhook server only once it has been asked for it.
	server = mgr.GetWebhookServer()

	recorder, err := portreevewebhook.NewPrometheusRecorder(ctrlmetrics.Registry)
	if err != nil {
		return err
	}
	if err := registerBuildInfo(ctrlmetrics.Registry); err != nil {
		return err
	}
	namespaces := &cachedNamespaces{reader: mgr.GetClient()}
	exempt := o.exempt()
	limiter, err := o.newInFlight(reviewer, ctrlmetrics.Registry)
	if err != nil {
		return err
	}
	mountReviews(server, limiter,
		reviewEndpoint{"/validate", "validating", &portreevewebhook.Handler{
			Reviewer: reviewer, Namespaces: namespaces, Recorder: recorder, ExemptNamespaces: exempt,
		}},
		reviewEndpoint{"/mutate", "mutating", &portreevewebhook.Handler{
			Mutating: true, Reviewer: reviewer, Namespaces: namespaces, Recorder: recorder, ExemptNamespaces: exempt,
		}},
		// The namespace opt-out label (--audit-ignore-label, the chart's webhook.ignoreLabel.key) is an admin's act.
		reviewEndpoint{"/namespaces", "namespaces", &portreevewebhook.OptOutGuard{
			Reviewer: reviewer, Label: o.AuditIgnoreLabel, Recorder: recorder,
		}},
	)

	watcher, err := newConfigWatcher(o, set, reviewer, ruleErrors.Report, ctrlmetrics.Registry)
	if err != nil {
		return err
	}
	if err := mgr.Add(everyReplica{watcher}); err != nil {
		return err
	}
	readyChecks := map[string]healthz.Checker{
		"webhook-server": server.StartedChecker(),
		"informers": func(req *http.Request) error {
			if !mgr.GetCache().WaitForCacheSync(req.Context()) {
				return errors.New("informer caches not synced")
			}
			return nil
		},
		"config":    watcher.ReadyCheck,
		"policies":  watcher.PoliciesReadyCheck,
		"inventory": inv.ReadyCheck,
	}
	if err := setupCerts(ctx, mgr, scheme, o, readyChecks); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	for name, check := range readyChecks {
		if err := mgr.AddReadyzCheck(name, check); err != nil {
			return err
		}
	}
	if err := setupAudit(mgr, o, reviewer, inv, namespaces); err != nil {
		return err
	}
	log.Info("starting", "version", version, "revision", currentBuildInfo().Revision, "enforcement", enforcement, "rules", len(engine.Rules()), "exemptNamespaces", strings.Join(exempt, ","))
	return mgr.Start(ctx)
}

// setupInventory starts the informers of the inventory of ports and hosts
// with the manager's cache and hands its facts to the reviewer.
func setupInventory(ctx context.Context, mgr manager.Manager, o *serveOptions, reviewer *review.Reviewer) (*inventory.Inventory, error) {
	npr, _ := inventory.ParseNodePortRange(o.NodePortRange) // validated
	inv := inventory.New(inventory.Options{NodePortRange: npr, NotReady: o.InventoryNotReady, Remember: max(inventory.DefaultPendingTTL, o.ReservationTTL)})
	if err := inv.Register(ctx, mgr.GetCache()); err != nil {
		return nil, err
	}
	if err := watchCRDKinds(mgr, inv, o.CRDPollInterval); err != nil {
		return nil, err
	}
	reviewer.UseFacts(inv)
	return inv, mgr.Add(inv)
}

// cachedNamespaces reads namespace labels from the manager's cache (metadata only).
type cachedNamespaces struct {
	reader client.Reader
}

func (c *cachedNamespaces) NamespaceLabels(ctx context.Context, name string) (map[string]string, error) {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := c.reader.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		return nil, err
	}
	return ns.GetLabels(), nil
}
