package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// Short lifetimes for the rotation test: a serving certificate every ~10 s
// (30 s lifetime, renewed 20 s before expiry), the CA replaced at ~40 s
// (60 s lifetime, renewed a third before expiry, never later than the
// serving window) and the old CA dropped from the caBundle when it expires
// at ~60 s. The rotator checks every 2 s.
var rotationValues = []string{
	"--set", "certs.caDuration=60s",
	"--set", "certs.certDuration=30s",
	"--set", "certs.renewBefore=20s",
	"--set", "extraArgs={--cert-check-interval=2s}",
}

// TestRotation installs the chart in self-signed mode with short lifetimes
// and keeps sending admission requests through the apiserver (server-side
// dry-run creates: a hostNetwork pod that must be denied, a pod with a
// hostPort granted to team-a that must be admitted) while the serving
// certificate rotates, then the CA (old and new CA both in the caBundle
// while the new one takes over), until the old CA has left the bundle.
// Every request must get its expected answer. It logs the request counts
// and, per rotation, the time from the changed Secret (and the changed file)
// to the server serving the new certificate.
func TestRotation(t *testing.T) {
	r := installChart(t, nil, rotationValues...)
	ctx := t.Context()
	s := r.startServeForTest(t, r.serviceAccountKubeconfig(t), "--cert-ip-addresses=127.0.0.1")
	if err := s.waitReady(ctx, 2*time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	secret, err := r.waitCertsInjected(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.waitDenied(ctx, "default", chartHostNetworkPod, "host-network", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	cas := parseCerts(t, secret.Data["ca.crt"])
	if s.mounts["/certs"] == "" {
		t.Fatal("the chart mounts no /certs")
	}
	obs := &rotationObserver{
		firstCA: cas[0], certFile: filepath.Join(s.mounts["/certs"], "tls.crt"),
		inSecret: map[string]time.Time{}, inFile: map[string]time.Time{},
	}

	obsCtx, stopObs := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { obs.watchSecret(obsCtx, r) })
	wg.Go(func() { obs.watchCABundle(obsCtx, r) })
	wg.Go(func() { obs.pollServed(obsCtx, s.addr) })

	load := &admissionLoad{}
	loadCtx, stopLoad := context.WithCancel(ctx)
	wg.Go(func() { load.run(loadCtx, r, "default", chartHostNetworkPod, "host-network") })
	wg.Go(func() { load.run(loadCtx, r, "team-a", chartHostPortPod(8080), "") })

	start := time.Now()
	deadline := start.Add(4 * time.Minute)
	for !obs.done() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if obs.done() {
		time.Sleep(3 * time.Second) // a little more load on the final state
	}
	stopLoad()
	stopObs()
	wg.Wait()

	t.Logf("rotation took %s: %s", time.Since(start).Round(time.Second), obs.summary())
	total := load.denied.Load() + load.admitted.Load() + load.failed.Load()
	t.Logf("admission requests through the apiserver: %d (hostNetwork denied %d, granted hostPort admitted %d), failed %d",
		total, load.denied.Load(), load.admitted.Load(), load.failed.Load())
	for _, line := range obs.latencies() {
		t.Log(line)
	}
	if n := load.failed.Load(); n > 0 {
		t.Errorf("%d requests did not get their expected answer; first ones:\n%s", n, strings.Join(load.failures(), "\n"))
	}
	if !obs.done() {
		t.Errorf("rotation incomplete after %s: %s", time.Since(start).Round(time.Second), obs.summary())
	}
	if load.denied.Load() == 0 || load.admitted.Load() == 0 {
		t.Error("the load sent no requests of one kind")
	}
}

// admissionLoad sends server-side dry-run creates in a loop and counts the
// answers.
type admissionLoad struct {
	denied, admitted, failed atomic.Int64
	mu                       sync.Mutex
	firstFailures            []string
}

// run creates manifest in namespace until ctx ends; want is the text of
// the expected denial, or "" when the pod must be admitted.
func (l *admissionLoad) run(ctx context.Context, r *release, namespace, manifest, want string) {
	pod := &corev1.Pod{}
	if err := json.Unmarshal([]byte(manifest), pod); err != nil {
		l.fail(err.Error())
		return
	}
	pods := r.cs.CoreV1().Pods(namespace)
	for ctx.Err() == nil {
		reqCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := pods.Create(reqCtx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		cancel()
		if ctx.Err() != nil {
			return // cut off by the end of the test, not an answer
		}
		switch {
		case want == "" && err == nil:
			l.admitted.Add(1)
		case want != "" && err != nil && strings.Contains(err.Error(), "denied the request") && strings.Contains(err.Error(), want):
			l.denied.Add(1)
		default:
			l.fail(fmt.Sprintf("%s %s/%s: %v", time.Now().Format("15:04:05.000"), namespace, pod.Name, err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *admissionLoad) fail(msg string) {
	l.failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.firstFailures) < 20 {
		l.firstFailures = append(l.firstFailures, msg)
	}
}

func (l *admissionLoad) failures() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.firstFailures)
}

// rotationObserver records when each serving certificate appeared in the
// Secret, in the cert file and on the wire, and which CAs the caBundle held.
type rotationObserver struct {
	firstCA  *x509.Certificate
	certFile string

	mu        sync.Mutex
	inSecret  map[string]time.Time // serving serial -> first seen in the Secret
	inFile    map[string]time.Time // ... in the cert file
	served    []servedCert         // in the order first served
	maxCAs    int                  // most CAs seen in the caBundle at once
	bundleCAs []*x509.Certificate  // the caBundle's CAs now
}

type servedCert struct {
	serial   string
	at       time.Time
	signedBy string // "first CA", "new CA"
}

func (o *rotationObserver) note(m map[string]time.Time, serial string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := m[serial]; !ok {
		m[serial] = time.Now()
	}
}

func (o *rotationObserver) watchSecret(ctx context.Context, r *release) {
	for ctx.Err() == nil {
		w, err := r.cs.CoreV1().Secrets(chartNamespace).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + chartRelease + "-cert"})
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			if sec, ok := ev.Object.(*corev1.Secret); ok && ev.Type != watch.Deleted {
				if serial, err := certSerial(sec.Data["tls.crt"]); err == nil {
					o.note(o.inSecret, serial.String())
				}
			}
		}
		w.Stop()
	}
}

func (o *rotationObserver) watchCABundle(ctx context.Context, r *release) {
	for ctx.Err() == nil {
		w, err := r.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Watch(ctx,
			metav1.ListOptions{FieldSelector: "metadata.name=" + chartRelease})
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			v, ok := ev.Object.(*admissionregistrationv1.ValidatingWebhookConfiguration)
			if !ok || len(v.Webhooks) == 0 {
				continue
			}
			cas, _ := decodeCerts(v.Webhooks[0].ClientConfig.CABundle)
			o.mu.Lock()
			o.bundleCAs = cas
			o.maxCAs = max(o.maxCAs, len(cas))
			o.mu.Unlock()
		}
		w.Stop()
	}
}

// pollServed reads the cert file and does a TLS handshake every 50 ms.
func (o *rotationObserver) pollServed(ctx context.Context, addr string) {
	last := ""
	for ctx.Err() == nil {
		if b, err := os.ReadFile(o.certFile); err == nil {
			if serial, err := certSerial(b); err == nil {
				o.note(o.inFile, serial.String())
			}
		}
		if c, err := servedCertificate(addr, nil); err == nil && c.SerialNumber.String() != last {
			last = c.SerialNumber.String()
			by := "new CA"
			if c.CheckSignatureFrom(o.firstCA) == nil {
				by = "first CA"
			}
			o.mu.Lock()
			o.served = append(o.served, servedCert{serial: last, at: time.Now(), signedBy: by})
			o.mu.Unlock()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// done reports whether the whole sequence was seen: a serving rotation
// under the first CA, old and new CA together in the caBundle, a serving
// certificate of the new CA on the wire, and the old CA gone from the bundle.
func (o *rotationObserver) done() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	firstCA, newCA := 0, 0
	for _, s := range o.served {
		if s.signedBy == "first CA" {
			firstCA++
		} else {
			newCA++
		}
	}
	oldGone := len(o.bundleCAs) >= 1 && !slices.ContainsFunc(o.bundleCAs, func(c *x509.Certificate) bool {
		return bytes.Equal(c.Raw, o.firstCA.Raw)
	})
	return firstCA >= 2 && o.maxCAs >= 2 && newCA >= 1 && oldGone
}

func (o *rotationObserver) summary() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	byFirst := 0
	for _, s := range o.served {
		if s.signedBy == "first CA" {
			byFirst++
		}
	}
	return fmt.Sprintf("%d serving certificates served (%d by the first CA, %d by the new CA), up to %d CAs in the caBundle at once, %d now",
		len(o.served), byFirst, len(o.served)-byFirst, o.maxCAs, len(o.bundleCAs))
}

// latencies describes, per rotation after the first certificate, the time
// from the Secret (and the file) holding a certificate to it being served.
func (o *rotationObserver) latencies() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	var worst time.Duration
	for i, s := range o.served {
		if i == 0 {
			continue
		}
		sec, okS := o.inSecret[s.serial]
		file, okF := o.inFile[s.serial]
		line := fmt.Sprintf("rotation %d (%s, serial %.12s...):", i, s.signedBy, s.serial)
		// Both ends are sampled (watch events, 50 ms polls), so a change
		// seen in the same round as the new certificate can come out
		// slightly negative: count it as 0.
		if okS {
			d := max(0, s.at.Sub(sec))
			worst = max(worst, d)
			line += fmt.Sprintf(" Secret changed -> served in %s;", d.Round(time.Millisecond))
		}
		if okF {
			line += fmt.Sprintf(" file changed -> served in %s", max(0, s.at.Sub(file)).Round(time.Millisecond))
		}
		out = append(out, line)
	}
	if len(out) > 0 {
		out = append(out, fmt.Sprintf("worst time from a changed Secret to the new certificate served: %s (observed every 50 ms)", worst.Round(time.Millisecond)))
	}
	return out
}

func decodeCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out, nil
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

func parseCerts(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	cs, err := decodeCerts(data)
	if err != nil || len(cs) == 0 {
		t.Fatalf("CA bundle: %v (%d certificates)", err, len(cs))
	}
	return cs
}
