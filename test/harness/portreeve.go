// Package harness runs Portreeve against a real control plane for the
// end-to-end tests and the demo: the built binary with a serving certificate
// signed by a test CA, and the chart's own webhook configurations pointed at
// it by URL (one source of truth for rules, selectors, failure policy and
// timeouts).
package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portreeve/portreeve/certs"
	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/proc"
)

// Namespace is the namespace Portreeve "runs in" (exempt from review).
const Namespace = "portreeve"

// ReleaseName is the Helm release name used to render the chart; the webhook
// configurations are named after it.
const ReleaseName = "portreeve"

// Options configure Start.
type Options struct {
	// Binary is bin/portreeve; default $PORTREEVE_BINARY, else it is built.
	Binary string
	// Kubeconfig of the control plane.
	Kubeconfig string
	// Config is the policy configuration (YAML); empty means the built-in one.
	Config string
	// ExtraArgs go to `portreeve serve`.
	ExtraArgs []string
	// Logs also receives the server's output, each line prefixed; it always goes
	// to serve.log in the work dir too.
	Logs io.Writer
	// CertificateOf, when set, is a running Portreeve whose serving
	// certificate this one serves too (replicas behind one URL).
	CertificateOf *Portreeve
}

// Portreeve is a running `portreeve serve`.
type Portreeve struct {
	// URL is https://127.0.0.1:<port>, the base of /validate and /mutate.
	URL string
	// CAPEM signed the serving certificate.
	CAPEM []byte
	// MetricsURL is http://127.0.0.1:<port>/metrics.
	MetricsURL string
	// HealthURL is http://127.0.0.1:<port> (/healthz, /readyz).
	HealthURL string
	// ConfigPath is the policy configuration file serve watches.
	ConfigPath string
	// Dir holds the certificates, the configuration and the log.
	Dir string

	proc *proc.Process
}

// Start runs portreeve serve and waits until it is ready.
func Start(ctx context.Context, opts Options) (*Portreeve, error) {
	bin, err := Binary(opts.Binary)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "portreeve-serve-")
	if err != nil {
		return nil, err
	}
	p := &Portreeve{Dir: dir}
	ok := false
	defer func() {
		if !ok {
			_ = p.Stop()
		}
	}()
	certDir := filepath.Join(dir, "certs")
	if opts.CertificateOf != nil {
		certDir = filepath.Join(opts.CertificateOf.Dir, "certs")
		p.CAPEM = opts.CertificateOf.CAPEM
	} else if p.CAPEM, err = writeServingCert(certDir); err != nil {
		return nil, err
	}
	args := []string{"serve", "--kubeconfig", opts.Kubeconfig, "--cert-dir", certDir, "--namespace", Namespace,
		"--cert-mode", "cert-manager", "--config-poll-interval", "300ms"}
	if opts.Config != "" {
		p.ConfigPath = filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p.ConfigPath, []byte(opts.Config), 0o600); err != nil {
			return nil, err
		}
		args = append(args, "--config", p.ConfigPath)
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	p.URL = fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	p.MetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[1])
	p.HealthURL = fmt.Sprintf("http://127.0.0.1:%d", ports[2])
	args = append(args, "--webhook-host", "127.0.0.1", "--webhook-port", fmt.Sprint(ports[0]),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[2]))
	args = append(args, opts.ExtraArgs...)

	p.proc, err = proc.Start(proc.Options{
		Name: "portreeve", Binary: bin, Args: args,
		LogPath: filepath.Join(dir, "serve.log"), Logs: opts.Logs, StopGrace: 10 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx, 60*time.Second); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, p.LogTail())
	}
	ok = true
	return p, nil
}

func (p *Portreeve) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		select {
		case <-p.proc.Done():
			return fmt.Errorf("portreeve serve exited: %v", p.proc.WaitErr())
		case <-ctx.Done():
			return fmt.Errorf("portreeve serve not ready: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get(p.HealthURL + "/readyz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
	}
}

// LogTail returns the end of the server's log.
func (p *Portreeve) LogTail() string {
	if p.proc == nil {
		return ""
	}
	return p.proc.LogTail(40)
}

// Stop ends the server (SIGTERM, then SIGKILL) and removes its files.
func (p *Portreeve) Stop() error {
	var err error
	if p.proc != nil {
		err = p.proc.Stop()
	}
	return errors.Join(err, os.RemoveAll(p.Dir))
}

// PID is the process id of the running server.
func (p *Portreeve) PID() int { return p.proc.PID() }

// Stopped is closed when the server has exited.
func (p *Portreeve) Stopped() <-chan struct{} { return p.proc.Done() }

// Kill kills the process at once (SIGKILL: no graceful shutdown, requests in
// flight are cut) and waits for it to exit. Unlike Stop it leaves Dir alone.
func (p *Portreeve) Kill() error {
	if p.proc == nil || p.proc.Exited() {
		return nil
	}
	p.proc.Expect()
	if err := syscall.Kill(p.proc.PID(), syscall.SIGKILL); err != nil {
		return err
	}
	<-p.proc.Done()
	return nil
}

// Client is an HTTPS client that trusts the serving CA.
func (p *Portreeve) Client() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.CAPEM)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// Metrics returns the metrics page.
func (p *Portreeve) Metrics() (string, error) {
	resp, err := http.Get(p.MetricsURL)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// SetConfig replaces the policy configuration file (serve reloads it).
func (p *Portreeve) SetConfig(config string) error {
	if p.ConfigPath == "" {
		return errors.New("started without a config file")
	}
	tmp := p.ConfigPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(config), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p.ConfigPath)
}

// Binary returns the portreeve binary: path, $PORTREEVE_BINARY, or a fresh build.
func Binary(path string) (string, error) {
	if path == "" {
		path = os.Getenv("PORTREEVE_BINARY")
	}
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("portreeve binary: %w", err)
		}
		return path, nil
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(root, "bin", "portreeve")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/portreeve")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build portreeve: %v\n%s", err, b)
	}
	return out, nil
}

// writeServingCert writes a serving certificate for 127.0.0.1 and localhost,
// signed by a new test CA, to certDir, and returns the CA.
func writeServingCert(certDir string) ([]byte, error) {
	now := time.Now()
	ca, err := certs.NewCA("portreeve-test-ca", now, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	serving, err := certs.NewServingCert(ca, []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, now, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	for name, data := range map[string][]byte{"tls.crt": serving.CertPEM, "tls.key": serving.KeyPEM} {
		if err := os.WriteFile(filepath.Join(certDir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	return ca.CertPEM, nil
}

// WebhookValues are the chart values that point the webhook configurations at p.
func (p *Portreeve) WebhookValues() []string {
	return []string{
		"--set", "webhook.url=" + p.URL,
		"--set", "webhook.caBundle=" + base64.StdEncoding.EncodeToString(p.CAPEM),
	}
}

// RenderWebhooks renders the chart's two webhook configurations (with extra
// helm arguments such as --set webhook.validating.failurePolicy=Ignore).
func RenderWebhooks(ctx context.Context, cp *controlplane.ControlPlane, values ...string) (string, error) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return "", err
	}
	args := append([]string{"template", ReleaseName, filepath.Join(root, "charts", "portreeve"),
		"--namespace", Namespace,
		// Render for the apiserver under test: matchConditions need 1.28 or later.
		"--kube-version", "1.37.2",
		"--show-only", "templates/validatingwebhookconfiguration.yaml",
		"--show-only", "templates/mutatingwebhookconfiguration.yaml",
		// The portreeve serve under test enforces (its default): fail closed, as an enforcing chart does.
		"--set", "enforcement=enforce",
		// Tests switch rules to rewrite by rewriting serve's configuration, outside the chart's values.
		"--set", "webhook.mutating.scope=all"}, values...)
	out, stderr, err := cp.Helm(ctx, args...)
	if err != nil {
		return "", fmt.Errorf("helm template: %v: %s", err, stderr)
	}
	return out, nil
}

// RegisterWebhooks applies the chart's webhook configurations pointed at p,
// and waits until the apiserver calls them.
func (p *Portreeve) RegisterWebhooks(ctx context.Context, cp *controlplane.ControlPlane, values ...string) error {
	manifest, err := RenderWebhooks(ctx, cp, append(p.WebhookValues(), values...)...)
	if err != nil {
		return err
	}
	if _, stderr, err := cp.KubectlStdin(ctx, strings.NewReader(manifest), "apply", "-f", "-"); err != nil {
		return fmt.Errorf("kubectl apply webhooks: %v: %s", err, stderr)
	}
	return nil
}

// WaitForWebhook retries a server-side dry-run create of a hostNetwork pod in
// namespace until the validating webhook judges it (the apiserver's webhook
// configuration cache is eventually consistent).
func WaitForWebhook(ctx context.Context, cp *controlplane.ControlPlane, namespace string) error {
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"portreeve-probe"},"spec":{"hostNetwork":true,"containers":[{"name":"c","image":"x"}]}}`
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, stderr, err := cp.KubectlStdin(ctx, bytes.NewReader([]byte(pod)), "create", "--dry-run=server", "-n", namespace, "-f", "-")
		// Denied (deny mode) or warned (warn mode): either way the webhook answered.
		if strings.Contains(stderr, "host-network") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhook not called within 30s (last: err=%v stderr=%s)", err, stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// StartForTest starts Portreeve against cp for a test, registers its webhooks
// and waits until the apiserver calls them; it stops Portreeve in t.Cleanup
// (printing the end of its log when the test failed). Extra helm values
// adjust the chart's webhook configurations.
func StartForTest(t testing.TB, cp *controlplane.ControlPlane, opts Options, values ...string) *Portreeve {
	t.Helper()
	ctx := t.Context()
	opts.Kubeconfig = cp.KubeconfigPath
	p, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(p.LogTail())
		}
		if err := p.Stop(); err != nil {
			t.Errorf("stop portreeve: %v", err)
		}
	})
	if err := p.RegisterWebhooks(ctx, cp, values...); err != nil {
		t.Fatal(err)
	}
	if err := WaitForWebhook(ctx, cp, "default"); err != nil {
		t.Fatal(err)
	}
	return p
}
