package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/portreeve/portreeve/certs"
	"github.com/portreeve/portreeve/policies"
	portreevewebhook "github.com/portreeve/portreeve/webhook"
	"github.com/portreeve/portreeve/webhook/review"
)

// shortTimeouts make every cut visible within seconds.
var shortTimeouts = webhookTimeouts{ReadHeader: time.Second, Read: 3 * time.Second, Write: 4 * time.Second, Idle: 2 * time.Second}

type testWebhookServer struct {
	addr    string
	ca      *certs.KeyPair
	certDir string
	limiter *portreevewebhook.InFlight
}

// startWebhookServer serves the real validating handler (built-in rules)
// at /validate and a handler slower than the write timeout at /slow.
func startWebhookServer(t *testing.T, http2 bool, timeouts webhookTimeouts) *testWebhookServer {
	t.Helper()
	o := newServeOptions()
	o.EnableHTTP2 = http2
	o.TLSMinVersion = "1.3"
	o.WebhookTimeouts = timeouts
	o.Limits = review.Limits{}
	return startServeServer(t, o)
}

// startServeServer serves /validate as serve does with o (its limits, its
// bound on reviews in flight, deadlines from ?timeout=; built-in rules), and
// a handler slower than the write timeout at /slow.
func startServeServer(t *testing.T, o *serveOptions) *testWebhookServer {
	t.Helper()
	timeouts := o.WebhookTimeouts
	ca, err := certs.NewCA("portreeve-test-ca", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testWebhookServer{ca: ca, certDir: t.TempDir()}
	ts.writeCert(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ts.addr = fmt.Sprintf("127.0.0.1:%d", port)

	s := newWebhookServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: ts.certDir, TLSOpts: []func(*tls.Config){o.tlsOptions}}, timeouts)
	engine, err := policies.New(t.Context(), policies.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := portreevewebhook.NewPrometheusRecorder(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	reviewer := review.NewReviewer(engine)
	reviewer.SetLimits(o.Limits)
	if ts.limiter, err = o.newInFlight(reviewer, prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	mountReviews(s, ts.limiter, reviewEndpoint{"/validate", "validating", &portreevewebhook.Handler{Reviewer: reviewer, Recorder: rec}})
	s.Register("/slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(timeouts.Write + time.Second)
		fmt.Fprintln(w, "too late")
	}))

	ready := s.StartedChecker()
	if ready(nil) == nil {
		t.Error("ready before it started")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	})
	for deadline := time.Now().Add(5 * time.Second); ready(nil) != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", ready(nil))
		}
	}
	return ts
}

// writeCert writes a new serving certificate for 127.0.0.1 into the cert dir.
func (ts *testWebhookServer) writeCert(t *testing.T) *x509.Certificate {
	t.Helper()
	kp, err := certs.NewServingCert(ts.ca, nil, []net.IP{net.ParseIP("127.0.0.1")}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"tls.key": kp.KeyPEM, "tls.crt": kp.CertPEM} {
		tmp := filepath.Join(ts.certDir, "."+name)
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(ts.certDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return kp.Cert
}

func (ts *testWebhookServer) tlsConfig(protos ...string) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ts.ca.Cert)
	return &tls.Config{RootCAs: pool, NextProtos: protos, MinVersion: tls.VersionTLS12}
}

func (ts *testWebhookServer) dial(t *testing.T, protos ...string) *tls.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", ts.addr, ts.tlsConfig(protos...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (ts *testWebhookServer) client(http2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: ts.tlsConfig(), ForceAttemptHTTP2: http2}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// hostNetworkReview is the AdmissionReview of a hostNetwork Pod in default.
func hostNetworkReview(t *testing.T) []byte {
	t.Helper()
	pod := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},` +
		`"spec":{"hostNetwork":true,"containers":[{"name":"c","image":"x"}]}}`)
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "1",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Name:      "p",
			Namespace: "default",
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: pod},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkDenied reads an AdmissionReview response that denies for host-network.
func checkDenied(t *testing.T, resp *http.Response) {
	t.Helper()
	defer resp.Body.Close()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s: %v", resp.Status, err)
	}
	if out.Response == nil || out.Response.Allowed || !strings.Contains(out.Response.Result.Message, "host-network") {
		t.Fatalf("response %+v, want a host-network denial", out.Response)
	}
}

// trickle writes b one byte per second until it is written, the write
// fails or the test ends.
func trickle(t *testing.T, w io.Writer, b []byte) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for i := range b {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			if _, err := w.Write(b[i : i+1]); err != nil {
				return
			}
		}
	}()
}

// waitClosed reads until the server closes conn and returns how long that
// took from start; it fails the test when conn is still open after limit.
func waitClosed(t *testing.T, conn net.Conn, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	if err := conn.SetReadDeadline(start.Add(limit)); err != nil {
		t.Fatal(err)
	}
	_, err := io.Copy(io.Discard, conn)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("the connection is still open after %s", limit)
	}
	return time.Since(start)
}

func checkCut(t *testing.T, what string, took, timeout time.Duration) {
	t.Helper()
	// The cut comes from the timeout: not before it, and soon after.
	if took < timeout-200*time.Millisecond || took > timeout+2*time.Second {
		t.Errorf("%s cut after %s, want about %s", what, took.Round(time.Millisecond), timeout)
	} else {
		t.Logf("%s cut after %s (timeout %s)", what, took.Round(time.Millisecond), timeout)
	}
}

func TestWebhookServerTimeouts(t *testing.T) {
	body := hostNetworkReview(t)
	tests := []struct {
		name     string
		http2    bool
		timeouts webhookTimeouts
		run      func(t *testing.T, ts *testWebhookServer, timeouts webhookTimeouts)
	}{
		{"HTTP/1.1 review", false, shortTimeouts, func(t *testing.T, ts *testWebhookServer, _ webhookTimeouts) {
			resp, err := ts.client(true).Post("https://"+ts.addr+"/validate", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if resp.ProtoMajor != 1 {
				t.Errorf("%s without --enable-http2", resp.Proto)
			}
			if v := resp.TLS.Version; v != tls.VersionTLS13 {
				t.Errorf("TLS version %x with --tls-min-version=1.3", v)
			}
			checkDenied(t, resp)
		}},
		{"HTTP/1.1 slow headers", false, shortTimeouts, func(t *testing.T, ts *testWebhookServer, to webhookTimeouts) {
			conn := ts.dial(t, "http/1.1")
			start := time.Now()
			if _, err := io.WriteString(conn, "POST /validate HTTP/1.1\r\nHost: portreeve\r\n"); err != nil {
				t.Fatal(err)
			}
			trickle(t, conn, []byte("Content-Type: application/json\r\n\r\n"))
			checkCut(t, "slow headers", waitClosed(t, conn, start, to.ReadHeader+5*time.Second), to.ReadHeader)
		}},
		{"HTTP/1.1 slow body", false, shortTimeouts, func(t *testing.T, ts *testWebhookServer, to webhookTimeouts) {
			conn := ts.dial(t, "http/1.1")
			start := time.Now()
			fmt.Fprintf(conn, "POST /validate HTTP/1.1\r\nHost: portreeve\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
			trickle(t, conn, body)
			checkCut(t, "slow body", waitClosed(t, conn, start, to.Read+5*time.Second), to.Read)
		}},
		{"HTTP/1.1 slow handler", false, shortTimeouts, func(t *testing.T, ts *testWebhookServer, to webhookTimeouts) {
			conn := ts.dial(t, "http/1.1")
			start := time.Now()
			if _, err := io.WriteString(conn, "GET /slow HTTP/1.1\r\nHost: portreeve\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			// The response comes after the write timeout: it is never sent.
			if err := conn.SetReadDeadline(start.Add(to.Write + 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
				t.Fatalf("got %s after %s, want no response past the write timeout", resp.Status, time.Since(start))
			} else if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				t.Fatal("the connection is still open")
			}
		}},
		{"HTTP/1.1 idle keep-alive", false, shortTimeouts, func(t *testing.T, ts *testWebhookServer, to webhookTimeouts) {
			conn := ts.dial(t, "http/1.1")
			fmt.Fprintf(conn, "POST /validate HTTP/1.1\r\nHost: portreeve\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			checkDenied(t, resp)
			checkCut(t, "idle connection", waitClosed(t, conn, time.Now(), to.Idle+5*time.Second), to.Idle)
		}},
		{"HTTP/2 review", true, shortTimeouts, func(t *testing.T, ts *testWebhookServer, _ webhookTimeouts) {
			resp, err := ts.client(true).Post("https://"+ts.addr+"/validate", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if resp.ProtoMajor != 2 {
				t.Errorf("%s with --enable-http2", resp.Proto)
			}
			checkDenied(t, resp)
		}},
		{"HTTP/2 slow body", true, shortTimeouts, func(t *testing.T, ts *testWebhookServer, to webhookTimeouts) {
			pr, pw := io.Pipe()
			t.Cleanup(func() { pw.Close() })
			req, err := http.NewRequest(http.MethodPost, "https://"+ts.addr+"/validate", pr)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = int64(len(body))
			trickle(t, pw, body)
			start := time.Now()
			// The handler's read of the body fails at the timeout: it answers
			// with an errored review (as controller-runtime does, in a 200)
			// and the server resets the stream, or the client sees the reset.
			resp, err := ts.client(true).Do(req)
			took := time.Since(start)
			if err == nil {
				defer resp.Body.Close()
				var out admissionv1.AdmissionReview
				if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.ProtoMajor != 2 ||
					out.Response == nil || out.Response.Allowed || out.Response.Result.Code != http.StatusBadRequest {
					t.Fatalf("%s %s %+v (%v), want the body's read cut", resp.Proto, resp.Status, out.Response, err)
				}
				t.Logf("answered: %s", out.Response.Result.Message)
			}
			checkCut(t, "slow HTTP/2 stream", took, to.Read)
		}},
		{"HTTP/2 stalled frame", true, webhookTimeouts{ReadHeader: time.Second, Read: time.Minute, Write: time.Minute, Idle: time.Minute},
			func(t *testing.T, ts *testWebhookServer, to webhookTimeouts) {
				conn := ts.dial(t, "h2")
				if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
					t.Fatalf("negotiated %q", p)
				}
				start := time.Now()
				// The client preface and an empty SETTINGS frame, then a HEADERS
				// frame that never completes: no idle, read or write timeout
				// applies, the unanswered ping closes the connection.
				if _, err := io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
					t.Fatal(err)
				}
				trickle(t, conn, []byte("\x00\x00\x40\x01\x04\x00\x00\x00\x01"))
				checkCut(t, "stalled HTTP/2 connection", waitClosed(t, conn, start, 2*to.ReadHeader+5*time.Second), 2*to.ReadHeader)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, startWebhookServer(t, tc.http2, tc.timeouts), tc.timeouts)
		})
	}
}

// TestWebhookServerTLS: --tls-min-version holds, and a new certificate in
// the cert dir is served without a restart.
func TestWebhookServerTLS(t *testing.T) {
	ts := startWebhookServer(t, false, shortTimeouts)
	old := ts.tlsConfig()
	old.MaxVersion = tls.VersionTLS12
	if conn, err := tls.Dial("tcp", ts.addr, old); err == nil {
		conn.Close()
		t.Error("a TLS 1.2 handshake succeeded with --tls-min-version=1.3")
	}
	served := func() *x509.Certificate {
		conn := ts.dial(t)
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	first := served()
	next := ts.writeCert(t)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		got := served()
		if got.SerialNumber.Cmp(next.SerialNumber) == 0 {
			break
		}
		if got.SerialNumber.Cmp(first.SerialNumber) != 0 {
			t.Fatalf("served serial %v, neither the old nor the new one", got.SerialNumber)
		}
		if time.Now().After(deadline) {
			t.Fatal("the new certificate was not served within 20s")
		}
	}
}

func TestWebhookTimeoutFlags(t *testing.T) {
	o := newServeOptions()
	if o.WebhookTimeouts != (webhookTimeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 30 * time.Second, Idle: 120 * time.Second}) {
		t.Errorf("defaults %+v", o.WebhookTimeouts)
	}
	o.WebhookTimeouts.Read = 0
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), "--webhook-read-timeout must be positive") {
		t.Errorf("validate: %v", err)
	}
	s := newWebhookServer(webhook.Options{}, shortTimeouts).httpServer(t.Context())
	if s.ReadHeaderTimeout != time.Second || s.ReadTimeout != 3*time.Second || s.WriteTimeout != 4*time.Second || s.IdleTimeout != 2*time.Second ||
		s.HTTP2 == nil || s.HTTP2.SendPingTimeout != time.Second || s.HTTP2.PingTimeout != time.Second {
		t.Errorf("http.Server %+v", s)
	}
}

func TestReviewsInFlightFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		max      int
		maxBytes int64
		wantErr  string
	}{
		{name: "defaults", max: 32, maxBytes: 4 << 20},
		{name: "set", args: []string{"--max-reviews-in-flight=4", "--max-review-bytes-in-flight=0"}, max: 4, maxBytes: 0},
		{name: "no reviews", args: []string{"--max-reviews-in-flight=0"}, wantErr: "--max-reviews-in-flight must be at least 1, got 0"},
		{name: "negative bytes", args: []string{"--max-review-bytes-in-flight=-1"}, wantErr: "--max-review-bytes-in-flight must be 0 (no bound) or more, got -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := newServeOptions()
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			o.addFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if err := o.validate(); tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("validate: %v, want %q", err, tc.wantErr)
				}
				return
			} else if err != nil {
				t.Fatal(err)
			}
			l, err := o.newInFlight(review.NewReviewer(nil), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			if l.Max() != tc.max || l.MaxBytes() != tc.maxBytes {
				t.Errorf("bounds %d reviews, %d bytes; want %d and %d", l.Max(), l.MaxBytes(), tc.max, tc.maxBytes)
			}
		})
	}
}
