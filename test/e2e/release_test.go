package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/portreeve/portreeve/test/controlplane"
)

// The chart is installed as release "portreeve" (so every object is named
// "portreeve") into its own namespace, the way the README tells users to.
const (
	chartRelease   = "portreeve"
	chartNamespace = "portreeve-system"
)

// readmeValues returns the values file of README's "Install with Helm"
// section (the grants for one team), so the tests install exactly what the
// README tells users to. The tests rely on it granting team-a hostPort 8080.
func readmeValues(t *testing.T) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "## Install with Helm")
	if !ok {
		t.Fatal(`README.md has no "## Install with Helm" section`)
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	if !ok {
		t.Fatal("README's Install with Helm section has no yaml block")
	}
	values, _, ok := strings.Cut(block, "```")
	if !ok || !strings.Contains(values, "grants:") {
		t.Fatalf("README's values block is not a grants example:\n%s", values)
	}
	return values
}

// release is the chart installed into a control plane, with the webhook
// configurations pointed by URL at 127.0.0.1:port, where `portreeve serve`
// runs on the host in place of the Deployment's pods (there is no kubelet).
type release struct {
	cp   *controlplane.ControlPlane
	cs   *kubernetes.Clientset
	port int
	// values are the helm arguments of the install (reused by upgrade).
	values []string
}

// installChart starts a control plane (with helm), creates namespaces
// default and team-a, and helm-installs the chart with README's values, webhook.url=https://127.0.0.1:<free port> and extra helm
// arguments. before runs between the control plane start and the install.
func installChart(t *testing.T, before func(*controlplane.ControlPlane), extra ...string) *release {
	t.Helper()
	extraTools := []string{controlplane.BinHelm}
	controlplane.RequireTools(t, controlplane.Options{}, extraTools...)
	cp := controlplane.StartForTest(t, controlplane.Options{})
	cs, err := cp.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"default", "team-a"} {
		if err := cp.EnsureNamespace(t.Context(), ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	if before != nil {
		before(cp)
	}
	port := freeLoopbackPort()
	valuesFile := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(valuesFile, []byte(readmeValues(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &release{cp: cp, cs: cs, port: port}
	// These tests show an enforcing installation (the chart observes by default). There is no
	// kubelet here to run the configuration check's hook Job: TestAdoption runs it in its stead.
	r.values = append([]string{"-f", valuesFile, "--set", fmt.Sprintf("webhook.url=https://127.0.0.1:%d", port),
		"--set", "enforcement=enforce", "--set", "configCheck.enabled=false"}, extra...)
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"install", chartRelease, filepath.Join(root, "charts", "portreeve"),
		"--namespace", chartNamespace, "--create-namespace"}, r.values...)
	out, stderr, err := r.helm(t, args...)
	if err != nil {
		t.Fatalf("helm install: %v\n%s\n%s", err, out, stderr)
	}
	t.Logf("helm install %s", strings.Join(args[3:], " "))
	return r
}

func (r *release) helm(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	return r.cp.Helm(ctx, args...)
}

// deployment returns the installed Deployment and its portreeve container.
func (r *release) deployment(ctx context.Context) (*appsv1.Deployment, *corev1.Container, error) {
	d, err := r.cs.AppsV1().Deployments(chartNamespace).Get(ctx, chartRelease, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == "portreeve" {
			return d, c, nil
		}
	}
	return nil, nil, errors.New("the Deployment has no portreeve container")
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as the
// chart's ServiceAccount with a token from the TokenRequest API, as the
// kubelet would mount it into the pod.
func (r *release) serviceAccountKubeconfig(t *testing.T) string {
	t.Helper()
	d, _, err := r.deployment(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	sa := d.Spec.Template.Spec.ServiceAccountName
	expiry := int64(3600)
	tr, err := r.cs.CoreV1().ServiceAccounts(chartNamespace).CreateToken(t.Context(), sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for ServiceAccount %s: %v", sa, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cp"] = &clientcmdapi.Cluster{Server: r.cp.APIServerURL, CertificateAuthorityData: r.cp.CACertPEM}
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "cp", AuthInfo: sa}
	cfg.CurrentContext = "sa"
	path := filepath.Join(t.TempDir(), "serviceaccount.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// certSecret returns the chart's certificate Secret (portreeve-cert).
func (r *release) certSecret(ctx context.Context) (*corev1.Secret, error) {
	return r.cs.CoreV1().Secrets(chartNamespace).Get(ctx, chartRelease+"-cert", metav1.GetOptions{})
}

// caBundles returns the caBundle of every webhook of both configurations.
func (r *release) caBundles(ctx context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	v, err := r.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, chartRelease, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	for _, w := range v.Webhooks {
		out["validating/"+w.Name] = w.ClientConfig.CABundle
	}
	m, err := r.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, chartRelease, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	for _, w := range m.Webhooks {
		out["mutating/"+w.Name] = w.ClientConfig.CABundle
	}
	return out, nil
}

// waitCertsInjected waits until the certificate Secret holds a CA and a
// serving certificate and every webhook's caBundle is that CA bundle, and
// returns the Secret.
func (r *release) waitCertsInjected(ctx context.Context, timeout time.Duration) (*corev1.Secret, error) {
	var last error
	deadline := time.Now().Add(timeout)
	for {
		last = func() error {
			s, err := r.certSecret(ctx)
			if err != nil {
				return err
			}
			for _, k := range []string{"ca.crt", "tls.crt", "tls.key"} {
				if len(s.Data[k]) == 0 {
					return fmt.Errorf("secret %s: %s is empty", s.Name, k)
				}
			}
			bundles, err := r.caBundles(ctx)
			if err != nil {
				return err
			}
			for name, b := range bundles {
				if !bytes.Equal(b, s.Data["ca.crt"]) {
					return fmt.Errorf("%s: caBundle (%d bytes) is not the Secret's ca.crt (%d bytes)", name, len(b), len(s.Data["ca.crt"]))
				}
			}
			return nil
		}()
		if last == nil {
			return r.certSecret(ctx)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("certificates not injected within %s: %w", timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

const chartHostNetworkPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"chart-probe"},
"spec":{"hostNetwork":true,"containers":[{"name":"c","image":"x"}]}}`

func chartHostPortPod(port int) string {
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"chart-hostport"},
"spec":{"containers":[{"name":"c","image":"x","ports":[{"containerPort":%d,"hostPort":%d}]}]}}`, port, port)
}

// dryRunCreate runs `kubectl create --dry-run=server` (through every
// admission webhook, nothing stored) and returns kubectl's error output.
func (r *release) dryRunCreate(ctx context.Context, namespace, manifest string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, stderr, err := r.cp.KubectlStdin(ctx, strings.NewReader(manifest), "create", "--dry-run=server", "-n", namespace, "-f", "-")
	return stderr, err
}

// waitDenied retries a dry-run create until Portreeve's validating webhook
// denies it with want in the message (the apiserver picks up webhook
// configuration changes asynchronously), or timeout passes.
func (r *release) waitDenied(ctx context.Context, namespace, manifest, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		stderr, err := r.dryRunCreate(ctx, namespace, manifest)
		if err != nil && strings.Contains(stderr, `admission webhook "pods.portreeve.io" denied the request`) && strings.Contains(stderr, want) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not denied by Portreeve with %q within %s; last: err=%v stderr=%s", want, timeout, err, stderr)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// waitAdmitted retries a dry-run create until it is admitted.
func (r *release) waitAdmitted(ctx context.Context, namespace, manifest string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		stderr, err := r.dryRunCreate(ctx, namespace, manifest)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not admitted within %s; last: %v %s", timeout, err, stderr)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// servedCertificate does a TLS handshake with the webhook server and returns
// the leaf certificate it serves, verified against roots when not nil.
func servedCertificate(addr string, roots *x509.CertPool) (*x509.Certificate, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: "127.0.0.1", RootCAs: roots}
	if roots == nil {
		cfg.InsecureSkipVerify = true //nolint:gosec // only reading which certificate is served
	}
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// certSerial returns the serial of the first certificate in pemData.
func certSerial(pemData []byte) (*big.Int, error) {
	block, _ := pem.Decode(pemData)
	if block == nil {
		return nil, errors.New("no PEM certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	return c.SerialNumber, nil
}

func certPool(pemData []byte) *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(pemData)
	return p
}
