package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/portreeve/portreeve/certs"
	"github.com/portreeve/portreeve/policies"
	portreevewebhook "github.com/portreeve/portreeve/webhook"
	"github.com/portreeve/portreeve/webhook/review"
)

type failingNamespaces struct{}

func (failingNamespaces) NamespaceLabels(context.Context, string) (map[string]string, error) {
	return nil, errors.New(`namespaces "default" not found`)
}

// probeTarget is the real webhook server of serve, with the real handlers:
// /validate and /mutate of an enforcing and of an observing Portreeve, and
// /broken, whose namespace lookups fail (a review that errors).
type probeTarget struct {
	url    string
	caFile string // the CA that signed the serving certificate
}

func startProbeTarget(t *testing.T) *probeTarget {
	t.Helper()
	ca, err := certs.NewCA("portreeve-probe-test-ca", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := certs.NewServingCert(ca, []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	for name, data := range map[string][]byte{"tls.key": kp.KeyPEM, "tls.crt": kp.CertPEM, "ca.crt": ca.CertPEM} {
		if err := os.WriteFile(filepath.Join(certDir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	o := newServeOptions()
	s := newWebhookServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: certDir, TLSOpts: []func(*tls.Config){o.tlsOptions}}, defaultWebhookTimeouts())
	engine, err := policies.New(t.Context(), policies.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := portreevewebhook.NewPrometheusRecorder(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	register := func(path string, h *portreevewebhook.Handler) {
		s.Register(path, portreevewebhook.WithRequestDeadline(portreevewebhook.NewEndpoint(h, logr.Discard()), reviewDeadlineMargin))
	}
	enforcing, observing := review.NewReviewer(engine), review.NewReviewer(engine)
	enforcing.SetEnforcement(review.Enforce)
	observing.SetEnforcement(review.Observe)
	register("/validate", &portreevewebhook.Handler{Reviewer: enforcing, Recorder: rec})
	register("/mutate", &portreevewebhook.Handler{Mutating: true, Reviewer: enforcing, Recorder: rec})
	register("/observe/validate", &portreevewebhook.Handler{Reviewer: observing, Recorder: rec})
	register("/observe/mutate", &portreevewebhook.Handler{Mutating: true, Reviewer: observing, Recorder: rec})
	register("/broken", &portreevewebhook.Handler{Reviewer: enforcing, Recorder: rec, Namespaces: failingNamespaces{}})
	s.Register("/plain", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "hello") }))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	})
	ready := s.StartedChecker()
	for deadline := time.Now().Add(5 * time.Second); ready(nil) != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", ready(nil))
		}
	}
	return &probeTarget{url: fmt.Sprintf("https://127.0.0.1:%d", port), caFile: filepath.Join(certDir, "ca.crt")}
}

func TestProbe(t *testing.T) {
	target := startProbeTarget(t)
	otherCA, err := certs.NewCA("someone-else", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherCAFile := writeTemp(t, "other-ca.crt", string(otherCA.CertPEM))
	emptyCAFile := writeTemp(t, "empty-ca.crt", "")

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string // substrings, in order
		stderr string
	}{
		{
			name:   "an enforcing webhook denies the probe Pod by its rule",
			args:   []string{"--path", "/validate", "--expect-finding", "host-network"},
			code:   0,
			stdout: []string{"ok  /validate: denied: host-network: "},
		},
		{
			name:   "both webhooks of an enforcing Portreeve answer (host-network in deny mode rewrites nothing)",
			args:   []string{"--path", "/validate", "--path", "/mutate", "--wait", "0s"},
			code:   0,
			stdout: []string{"ok  /validate: denied: host-network: ", "ok  /mutate: allowed"},
		},
		{
			name:   "an observing webhook allows it with a warning naming the rule",
			args:   []string{"--path", "/observe/validate", "--expect-finding", "host-network"},
			code:   0,
			stdout: []string{"ok  /observe/validate: allowed", "warning: portreeve would deny (enforcement: observe): host-network: "},
		},
		{
			name:   "an observing mutating webhook answers, with no finding",
			args:   []string{"--path", "/observe/mutate"},
			code:   0,
			stdout: []string{"ok  /observe/mutate: allowed (enforcement: observe, nothing is rewritten)"},
		},
		{
			name:   "an expected finding that is not there fails",
			args:   []string{"--path", "/observe/mutate", "--expect-finding", "host-network", "--wait", "0s"},
			code:   1,
			stdout: []string{"FAIL /observe/mutate: no finding of host-network in the answer: allowed"},
		},
		{
			name:   "a review that errors is not an answer",
			args:   []string{"--path", "/broken", "--wait", "0s"},
			code:   1,
			stdout: []string{"FAIL /broken: the review failed (code 500): portreeve: look up namespace default: "},
			stderr: "did not answer as a webhook after 1 attempts",
		},
		{
			name:   "something that is not a webhook is not an answer",
			args:   []string{"--path", "/plain", "--wait", "0s"},
			code:   1,
			stdout: []string{"FAIL /plain: not an AdmissionReview"},
		},
		{
			name:   "a path that is not served",
			args:   []string{"--path", "/nothing", "--wait", "0s"},
			code:   1,
			stdout: []string{"FAIL /nothing: HTTP 404"},
		},
		{
			name:   "a certificate of another CA is refused",
			args:   []string{"--ca-file", otherCAFile, "--wait", "0s"},
			code:   1,
			stdout: []string{"FAIL /validate: ", "certificate signed by unknown authority"},
		},
		{
			name:   "an empty CA file (the Secret not filled yet) is retried, then fails",
			args:   []string{"--ca-file", emptyCAFile, "--wait", "1s"},
			code:   1,
			stdout: []string{"retry /validate: --ca-file " + emptyCAFile + " holds no PEM certificate (yet)", "FAIL /validate: "},
		},
		{
			name:   "--address is dialled while the certificate is checked for --url's host",
			args:   []string{"--url", strings.Replace(target.url, "127.0.0.1", "localhost", 1), "--address", "127.0.0.1", "--wait", "0s"},
			code:   0,
			stdout: []string{"ok  /validate: denied: host-network: "},
		},
		{
			name:   "--address does not excuse a certificate that does not hold --url's host",
			args:   []string{"--url", strings.Replace(target.url, "127.0.0.1", "portreeve.elsewhere.svc", 1), "--address", "127.0.0.1", "--wait", "0s"},
			code:   1,
			stdout: []string{"FAIL /validate: ", "portreeve.elsewhere.svc"},
		},
		{name: "no --url", args: []string{"--url="}, code: 2, stderr: "--url is required"},
		{name: "plain http", args: []string{"--url", "http://127.0.0.1:1"}, code: 2, stderr: "--url must be https://"},
		{name: "a relative path", args: []string{"--path", "validate"}, code: 2, stderr: "--path must start with /"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"probe", "--url", target.url, "--ca-file", target.caFile, "--timeout", "5s"}, tc.args...)
			stdout, stderr, code := runSplit(t, "", args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			rest := stdout
			for _, want := range tc.stdout {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in order):\n%s", want, stdout)
				}
				rest = rest[i+len(want):]
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, stderr)
			}
		})
	}
}

// TestProbeWaitsForTheCA: the chart's test Pod may start before the rotator
// filled the Secret; the probe reads the CA file again on every attempt.
func TestProbeWaitsForTheCA(t *testing.T) {
	target := startProbeTarget(t)
	ca, err := os.ReadFile(target.caFile)
	if err != nil {
		t.Fatal(err)
	}
	late := writeTemp(t, "late-ca.crt", "")
	go func() {
		time.Sleep(time.Second)
		_ = os.WriteFile(late, ca, 0o600)
	}()
	stdout, stderr, code := runSplit(t, "", "probe", "--url", target.url, "--ca-file", late, "--wait", "20s")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "retry /validate: ") || !strings.Contains(stdout, "ok  /validate: denied: host-network: ") {
		t.Errorf("stdout:\n%s", stdout)
	}
}

func TestJudgeProbeAnswer(t *testing.T) {
	answer := func(mutate func(*admissionv1.AdmissionReview)) *admissionv1.AdmissionReview {
		r := &admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Response: &admissionv1.AdmissionResponse{UID: "u1", Allowed: true},
		}
		if mutate != nil {
			mutate(r)
		}
		return r
	}
	tests := []struct {
		name   string
		review *admissionv1.AdmissionReview
		expect string
		err    string
	}{
		{"allowed", answer(nil), "", ""},
		{"another uid", answer(func(r *admissionv1.AdmissionReview) { r.Response.UID = "u2" }), "", `answered uid "u2", sent "u1"`},
		{"no response", answer(func(r *admissionv1.AdmissionReview) { r.Response = nil }), "", "no response"},
		{"another kind", answer(func(r *admissionv1.AdmissionReview) { r.APIVersion = "admission.k8s.io/v1beta1" }), "", "want admission.k8s.io/v1 AdmissionReview"},
		{"denied without a status", answer(func(r *admissionv1.AdmissionReview) { r.Response.Allowed = false }), "", "the review failed (code 0)"},
		{"denied by a rule", answer(func(r *admissionv1.AdmissionReview) {
			r.Response.Allowed = false
			r.Response.Result = &metav1.Status{Code: 403, Message: "host-network: no"}
		}), "host-network", ""},
		{"denied by another rule", answer(func(r *admissionv1.AdmissionReview) {
			r.Response.Allowed = false
			r.Response.Result = &metav1.Status{Code: 403, Message: "host-ports: no"}
		}), "host-network", "no finding of host-network"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := judgeProbeAnswer(tc.review, "u1", tc.expect)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}
