package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	portreevewebhook "github.com/portreeve/portreeve/webhook"
	"github.com/portreeve/portreeve/webhook/review"
)

// webhookTimeouts bound how long one connection of the webhook server may
// take. The apiserver waits at most 30s (a webhook's timeoutSeconds) for a
// review of at most ~3 MiB, sent at once: a request still incomplete after
// that is of use to no one.
type webhookTimeouts struct {
	ReadHeader time.Duration
	Read       time.Duration
	Write      time.Duration
	Idle       time.Duration
}

func defaultWebhookTimeouts() webhookTimeouts {
	return webhookTimeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 30 * time.Second, Idle: 120 * time.Second}
}

func (t *webhookTimeouts) addFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&t.ReadHeader, "webhook-read-header-timeout", t.ReadHeader, "time for the TLS handshake and a request's headers (HTTP/2: a connection that sends no complete frame for this long is pinged, and closed when the ping is not answered within as long)")
	fs.DurationVar(&t.Read, "webhook-read-timeout", t.Read, "time for a whole request, body included (HTTP/2: per stream); a client that sends slower is cut off")
	fs.DurationVar(&t.Write, "webhook-write-timeout", t.Write, "time from the end of a request's headers until its response is written (HTTP/2: per stream)")
	fs.DurationVar(&t.Idle, "webhook-idle-timeout", t.Idle, "how long a keep-alive connection may wait for its next request (longer than the apiserver's 90s, so that the client closes idle connections first)")
}

func (t *webhookTimeouts) validate() []error {
	var errs []error
	for _, f := range []struct {
		flag string
		d    time.Duration
	}{
		{"--webhook-read-header-timeout", t.ReadHeader}, {"--webhook-read-timeout", t.Read},
		{"--webhook-write-timeout", t.Write}, {"--webhook-idle-timeout", t.Idle},
	} {
		if f.d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", f.flag))
		}
	}
	return errs
}

// webhookServer is controller-runtime's webhook server (Register with its
// request metrics, the mux, NeedLeaderElection false: every replica serves)
// started on an http.Server with Portreeve's timeouts: controller-runtime's
// own Start sets only a 32s header timeout and cuts no slow body. As there,
// the certificate files are reloaded when they change (unless the TLS options
// supply GetCertificate) and the TLS options apply last.
type webhookServer struct {
	webhook.Server
	opts     webhook.Options
	timeouts webhookTimeouts

	mu      sync.Mutex
	started bool
}

func newWebhookServer(opts webhook.Options, t webhookTimeouts) *webhookServer {
	if opts.WebhookMux == nil {
		opts.WebhookMux = http.NewServeMux()
	}
	if opts.Port == 0 {
		opts.Port = webhook.DefaultPort
	}
	return &webhookServer{Server: webhook.NewServer(opts), opts: opts, timeouts: t}
}

func (s *webhookServer) addr() string {
	return net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port))
}

// httpServer serves the registered webhooks with the timeouts.
func (s *webhookServer) httpServer(ctx context.Context) *http.Server {
	t := s.timeouts
	return &http.Server{
		Handler:           s.opts.WebhookMux,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		MaxHeaderBytes:    1 << 20,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		// HTTP/2 applies ReadTimeout and WriteTimeout per stream and IdleTimeout
		// per connection; a connection stuck inside a frame gets no deadline
		// from them, so a silent one is pinged and closed.
		HTTP2: &http.HTTP2Config{SendPingTimeout: t.ReadHeader, PingTimeout: t.ReadHeader},
	}
}

// Start serves until ctx ends, then shuts down gracefully (a minute at most).
func (s *webhookServer) Start(ctx context.Context) error {
	log := ctrl.Log.WithName("webhook-server")
	cfg := &tls.Config{NextProtos: []string{"h2"}}
	for _, op := range s.opts.TLSOpts {
		op(cfg)
	}
	if cfg.GetCertificate == nil {
		w, err := certwatcher.New(filepath.Join(s.opts.CertDir, "tls.crt"), filepath.Join(s.opts.CertDir, "tls.key"))
		if err != nil {
			return err
		}
		cfg.GetCertificate = w.GetCertificate
		go func() {
			if err := w.Start(ctx); err != nil {
				log.Error(err, "certificate watcher")
			}
		}()
	}
	ln, err := tls.Listen("tcp", s.addr(), cfg)
	if err != nil {
		return err
	}
	srv := s.httpServer(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil {
			log.Error(err, "shutting down the webhook server")
		}
	}()
	log.Info("serving webhooks", "address", s.addr(), "readHeaderTimeout", s.timeouts.ReadHeader.String(),
		"readTimeout", s.timeouts.Read.String(), "writeTimeout", s.timeouts.Write.String(), "idleTimeout", s.timeouts.Idle.String())
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-done
	return nil
}

// StartedChecker is healthy once the server accepts TLS connections.
func (s *webhookServer) StartedChecker() healthz.Checker {
	return func(*http.Request) error {
		s.mu.Lock()
		started := s.started
		s.mu.Unlock()
		if !started {
			return errors.New("webhook server has not been started yet")
		}
		// Only reachability is checked, not the certificate.
		d := &net.Dialer{Timeout: 10 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", s.addr(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return fmt.Errorf("webhook server is not reachable: %w", err)
		}
		return conn.Close()
	}
}

// The bounds on reviews in flight (serve --max-reviews-in-flight and
// --max-review-bytes-in-flight). A review is CPU work (decoding, facts, Rego)
// that waits on nothing but a contested key, so more of them in flight than a
// few per CPU only makes each slower and holds its memory longer, until the
// rules run out of their time budget together. 32 keeps 8 CPUs busy, more
// than one replica uses (more load wants more replicas), and 8 reviews of one
// slow rule still run side by side on one or two. The bound is fixed rather
// than per CPU because the chart sets no CPU limit: GOMAXPROCS is then the
// node's CPU count, and the memory the bound must keep within the chart's
// 256Mi would grow with the node. Small objects are cheap: a Pod is a few KiB,
// and 32 reviews of 64 KiB objects hold under 64 MiB decoded. Large ones are
// bounded by their bytes: decoded, an object takes about 16 times its size in
// JSON (a 2.5 MiB Pod with 65,000 ports, 40 MB), so 4 MiB of objects in
// flight stay near 64 MB: a Pod of the largest size the apiserver sends
// (3 MiB) is reviewed one at a time, while small reviews go on beside it.
const (
	defaultMaxReviewsInFlight     = 32
	defaultMaxReviewBytesInFlight = 4 << 20
)

// newInFlight is the bound on reviews in flight of --max-reviews-in-flight
// and --max-review-bytes-in-flight: a review waits in line while its deadline
// leaves the rules' budget (--policy-eval-timeout) to review it, and fails
// like the webhooks do (open when observing) once it does not.
func (o *serveOptions) newInFlight(reviewer *review.Reviewer, reg prometheus.Registerer) (*portreevewebhook.InFlight, error) {
	return portreevewebhook.NewInFlight(portreevewebhook.InFlightOptions{
		Max:        o.MaxReviewsInFlight,
		MaxBytes:   o.MaxReviewBytesInFlight,
		Reserve:    o.EvalTimeout,
		Observe:    func() bool { return reviewer.Enforcement() == review.Observe },
		Registerer: reg,
	})
}

// reviewEndpoint is one admission webhook of the server.
type reviewEndpoint struct {
	path    string
	name    string // in the metrics: validating, mutating, namespaces
	handler admission.Handler
}

// mountReviews registers the webhooks on server: each review's context ends
// before the apiserver stops waiting for it (its ?timeout=), so that it
// always gets an answer, and waits for its turn under limiter.
func mountReviews(server webhook.Server, limiter *portreevewebhook.InFlight, endpoints ...reviewEndpoint) {
	for _, e := range endpoints {
		h := portreevewebhook.NewEndpoint(limiter.Wrap(e.name, e.handler), ctrl.Log.WithName("admission"))
		server.Register(e.path, portreevewebhook.WithRequestDeadline(h, reviewDeadlineMargin))
	}
}
