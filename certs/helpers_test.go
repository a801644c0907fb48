package certs

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

const (
	testNamespace = "portreeve-system"
	testSecret    = "portreeve-webhook-cert"
	testService   = "portreeve-webhook"
	testConfig    = "portreeve"
)

// fakeClock is a settable Options.Clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// testCtx returns the test's context with a logger that writes to t.Log.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	return logf.IntoContext(t.Context(), testr.New(t))
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func validatingConfig() *admissionregistrationv1.ValidatingWebhookConfiguration {
	none := admissionregistrationv1.SideEffectClassNone
	hook := func(name string) admissionregistrationv1.ValidatingWebhook {
		return admissionregistrationv1.ValidatingWebhook{
			Name: name,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service: &admissionregistrationv1.ServiceReference{Namespace: testNamespace, Name: testService},
			},
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
		}
	}
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: testConfig},
		Webhooks:   []admissionregistrationv1.ValidatingWebhook{hook("pods.portreeve.io"), hook("services.portreeve.io")},
	}
}

func mutatingConfig() *admissionregistrationv1.MutatingWebhookConfiguration {
	none := admissionregistrationv1.SideEffectClassNone
	hook := func(name string) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name: name,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service: &admissionregistrationv1.ServiceReference{Namespace: testNamespace, Name: testService},
			},
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
		}
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: testConfig},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{hook("pods.portreeve.io"), hook("services.portreeve.io")},
	}
}

func newClient(objs ...client.Object) *fake.ClientBuilder {
	return fake.NewClientBuilder().WithObjects(objs...)
}

func testOptions(t *testing.T, clock *fakeClock) Options {
	t.Helper()
	return Options{
		Namespace:         testNamespace,
		SecretName:        testSecret,
		ServiceName:       testService,
		DNSNames:          []string{"localhost"},
		IPs:               []net.IP{net.ParseIP("127.0.0.1")},
		WebhookConfigName: testConfig,
		CertDir:           t.TempDir(),
		Clock:             clock.Now,
	}
}

func newTestRotator(t *testing.T, c client.Client, opts Options) *Rotator {
	t.Helper()
	r, err := New(c, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func getSecret(t *testing.T, c client.Client) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: testNamespace, Name: testSecret}, s); err != nil {
		t.Fatalf("get Secret: %v", err)
	}
	return s
}

// injected returns the caBundle of every webhook of both configurations.
func injected(t *testing.T, c client.Client) [][]byte {
	t.Helper()
	var out [][]byte
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Get(t.Context(), client.ObjectKey{Name: testConfig}, v); err != nil {
		t.Fatalf("get validating config: %v", err)
	}
	for _, w := range v.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(t.Context(), client.ObjectKey{Name: testConfig}, m); err != nil {
		t.Fatalf("get mutating config: %v", err)
	}
	for _, w := range m.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	return out
}

func readFile(t *testing.T, dir, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return data
}

// assertInSync checks that r's files hold the Secret's bundle, that every
// webhook trusts it, and that the served certificate verifies against the
// injected bundle for the names the apiserver uses.
func assertInSync(t *testing.T, c client.Client, r *Rotator, now time.Time) Bundle {
	t.Helper()
	b := bundleFromSecret(getSecret(t, c))
	if Plan(b, r.policy, now).Action == ActionBootstrap {
		t.Fatal("Secret holds no usable CA")
	}
	dir := r.opts.CertDir
	if string(readFile(t, dir, CertFileName)) != string(b.TLSCert) ||
		string(readFile(t, dir, KeyFileName)) != string(b.TLSKey) ||
		string(readFile(t, dir, CACertFileName)) != string(b.CACerts) {
		t.Fatal("files in CertDir differ from the Secret")
	}
	for i, ca := range injected(t, c) {
		if string(ca) != string(b.CACerts) {
			t.Fatalf("webhook %d: caBundle differs from the Secret's ca.crt", i)
		}
	}
	names := []string{testService + "." + testNamespace + ".svc", "localhost"}
	if err := Check(b.CACerts, b.TLSCert, b.TLSKey, names, now, 0); err != nil {
		t.Fatalf("served certificate does not verify against the injected bundle: %v", err)
	}
	return b
}
