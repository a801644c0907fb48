package incluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

const (
	loadNS   = "load"
	loadPort = 18090
	// loadInterval paces the stream: one request every 40 ms (25/s).
	loadInterval = 40 * time.Millisecond
	loadInFlight = 16
)

// TestAvailability sends a steady stream of admission requests (server-side
// dry-run creates: pods Portreeve must deny, pods it must admit, and pods
// the matchConditions keep from it) while Portreeve's Deployment is
// restarted, one replica's pod is deleted, and the serving certificate is
// rotated. Every request must be answered as it would be at rest: no
// failure, and no pod admitted that should have been denied.
func TestAvailability(t *testing.T) {
	requireCluster(t)
	ensureNamespace(t, loadNS)
	install(t, "-f", grantValues(t, loadNS, fmt.Sprint(loadPort)),
		// The rotator checks often, so a rotation is served within seconds.
		"--set", "extraArgs={--cert-check-interval=2s}")
	waitWebhook(t, loadNS)

	g := newLoad(cluster.cs, loadNS)
	g.start()
	defer g.stop()

	g.setPhase("steady")
	time.Sleep(5 * time.Second)

	g.setPhase("rollout restart")
	start := time.Now()
	before := podNames(t)
	if r := kubectl(t, "rollout", "restart", "-n", namespace, "deployment/"+release); r.err != nil {
		t.Fatalf("rollout restart: %v\n%s", r.err, r)
	}
	if r := kubectl(t, "rollout", "status", "-n", namespace, "deployment/"+release, "--timeout=4m"); r.err != nil {
		t.Fatalf("rollout status: %v\n%s", r.err, r)
	}
	rolled := time.Since(start)
	waitReplaced(t, before)
	t.Logf("timing: rollout restart: new replicas available after %.1fs, old pods gone after %.1fs", rolled.Seconds(), time.Since(start).Seconds())
	g.setPhase("after restart")
	time.Sleep(3 * time.Second)

	g.setPhase("delete pod")
	start = time.Now()
	before = podNames(t)
	victim := before[0]
	if err := cluster.cs.CoreV1().Pods(namespace).Delete(context.Background(), victim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitReplaced(t, []string{victim})
	t.Logf("timing: delete pod %s: gone and replaced by a Ready pod after %.1fs", victim, time.Since(start).Seconds())
	g.setPhase("after delete")
	time.Sleep(3 * time.Second)

	g.setPhase("cert rotation")
	start = time.Now()
	oldSerial, newSerial := rotateServingCert(t)
	t.Logf("timing: serving certificate rotated (serial %s -> %s): both replicas serve it after %.1fs", short(oldSerial), short(newSerial), time.Since(start).Seconds())
	g.setPhase("after rotation")
	time.Sleep(3 * time.Second)
	g.stop()

	report := g.report()
	for _, l := range report {
		t.Log(l)
	}
	if g.totalFailed() > 0 || g.totalWrong() > 0 {
		t.Fatalf("availability: %d failed requests, %d admitted that should have been denied; first errors:\n%s",
			g.totalFailed(), g.totalWrong(), strings.Join(g.firstErrors, "\n"))
	}
}

// podNames returns the names of the release's pods that are not being
// deleted.
func podNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, p := range releasePods(t) {
		if p.DeletionTimestamp == nil {
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	return names
}

// waitReplaced waits until none of the old pods exists any more and two
// other pods are Ready.
func waitReplaced(t *testing.T, old []string) {
	t.Helper()
	waitFor(t, 4*time.Minute, "the pods to be replaced", func() error {
		ready := 0
		for _, p := range releasePods(t) {
			for _, o := range old {
				if p.Name == o {
					return fmt.Errorf("%s still there", o)
				}
			}
			if podReady(&p) && p.DeletionTimestamp == nil {
				ready++
			}
		}
		if ready != 2 {
			return fmt.Errorf("%d Ready pods", ready)
		}
		return nil
	})
}

// rotateServingCert makes the rotator renew the serving certificate (its
// CA stays): it removes the certificate from the Secret, as if it had
// expired, and waits until both replicas serve the new one. It returns the
// old and the new serial numbers.
func rotateServingCert(t *testing.T) (string, string) {
	t.Helper()
	ctx := context.Background()
	secrets := cluster.cs.CoreV1().Secrets(namespace)
	name := release + "-cert"
	s, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldSerial := serialOf(t, s.Data["tls.crt"])
	for _, ip := range podIPs(t) {
		if got := servedSerial(ip); got != oldSerial {
			t.Fatalf("pod %s serves serial %s before the rotation, the Secret holds %s", ip, got, oldSerial)
		}
	}
	patch := `[{"op":"remove","path":"/data/tls.crt"},{"op":"remove","path":"/data/tls.key"}]`
	if _, err := secrets.Patch(ctx, name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var newSerial string
	waitFor(t, 2*time.Minute, "both replicas to serve the renewed certificate", func() error {
		s, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Data["tls.crt"]) == 0 {
			return fmt.Errorf("the Secret has no certificate yet")
		}
		newSerial = serialOf(t, s.Data["tls.crt"])
		if newSerial == oldSerial {
			return fmt.Errorf("the Secret still holds the old certificate")
		}
		for _, ip := range podIPs(t) {
			if got := servedSerial(ip); got != newSerial {
				return fmt.Errorf("pod %s serves serial %s", ip, short(got))
			}
		}
		return nil
	})
	return oldSerial, newSerial
}

func podIPs(t *testing.T) []string {
	var ips []string
	for _, p := range releasePods(t) {
		if p.DeletionTimestamp == nil && p.Status.PodIP != "" {
			ips = append(ips, p.Status.PodIP)
		}
	}
	return ips
}

// servedSerial returns the serial of the certificate the webhook server at
// ip:9443 (a pod address of the test's node) presents.
func servedSerial(ip string) string {
	d := &net.Dialer{Timeout: 3 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(ip, "9443"), &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // only reads the presented certificate
	})
	if err != nil {
		return "error: " + err.Error()
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func serialOf(t *testing.T, certPEM []byte) string {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("tls.crt is not PEM")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

func short(s string) string {
	if len(s) > 10 {
		return s[:10] + "…"
	}
	return s
}

// The load generator.

type reqKind int

const (
	mustDeny  reqKind = iota // hostNetwork: evaluated, denied
	mustAdmit                // granted hostPort: evaluated, admitted
	skipped                  // no exposure: matchConditions keep it from Portreeve
)

var kindNames = []string{"evaluated, must deny", "evaluated, must admit", "skipped by matchConditions"}

type counts struct {
	sent, ok, failed, wrong int
	maxLatency              time.Duration
}

type load struct {
	cs kubernetes.Interface
	ns string

	mu          sync.Mutex
	phase       string
	phases      []string
	counts      map[string]*[3]counts
	firstErrors []string

	quit chan struct{}
	done chan struct{}
	once sync.Once
}

func newLoad(cs kubernetes.Interface, ns string) *load {
	return &load{cs: cs, ns: ns, counts: map[string]*[3]counts{}, quit: make(chan struct{}), done: make(chan struct{})}
}

func (g *load) setPhase(p string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.phase = p
	if g.counts[p] == nil {
		g.counts[p] = &[3]counts{}
		g.phases = append(g.phases, p)
	}
}

// start sends one request every loadInterval, at most loadInFlight at once,
// until stop; the stream is bounded by the test's phases.
func (g *load) start() {
	g.setPhase("start")
	go func() {
		defer close(g.done)
		sem := make(chan struct{}, loadInFlight)
		var wg sync.WaitGroup
		tick := time.NewTicker(loadInterval)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-g.quit:
				wg.Wait()
				return
			case <-tick.C:
			}
			sem <- struct{}{}
			wg.Add(1)
			go func(k reqKind) {
				defer func() { <-sem; wg.Done() }()
				g.send(k)
			}(reqKind(i % 3))
		}
	}()
}

func (g *load) stop() {
	g.once.Do(func() { close(g.quit) })
	<-g.done
}

func (g *load) send(k reqKind) {
	g.mu.Lock()
	phase := g.phase
	g.mu.Unlock()
	pod := loadPod(k)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := g.cs.CoreV1().Pods(g.ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	took := time.Since(start)

	g.mu.Lock()
	defer g.mu.Unlock()
	c := &g.counts[phase][k]
	c.sent++
	c.maxLatency = max(c.maxLatency, took)
	var problem string
	switch {
	case k == mustDeny && err == nil:
		c.wrong++
		problem = "admitted a hostNetwork pod"
	case k == mustDeny && strings.Contains(err.Error(), "denied the request") && strings.Contains(err.Error(), "host-network"):
		c.ok++
	case k != mustDeny && err == nil:
		c.ok++
	default:
		c.failed++
		problem = err.Error()
	}
	if problem != "" && len(g.firstErrors) < 20 {
		g.firstErrors = append(g.firstErrors, fmt.Sprintf("%s [%s, %s]: %s", start.Format("15:04:05.000"), phase, kindNames[k], problem))
	}
}

func loadPod(k reqKind) *corev1.Pod {
	c := corev1.Container{Name: "c", Image: cluster.node.SandboxImage, ImagePullPolicy: corev1.PullNever}
	spec := corev1.PodSpec{AutomountServiceAccountToken: ptr.To(false)}
	switch k {
	case mustDeny:
		spec.HostNetwork = true
	case mustAdmit:
		c.Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: loadPort, HostIP: cluster.node.IP}}
	}
	spec.Containers = []corev1.Container{c}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "load-"}, Spec: spec}
}

func (g *load) report() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	var total [3]counts
	for _, p := range g.phases {
		for k := range 3 {
			c := g.counts[p][k]
			if c.sent == 0 {
				continue
			}
			out = append(out, fmt.Sprintf("availability: %-15s %-27s sent %4d  ok %4d  failed %d  wrongly admitted %d  max latency %s",
				p, kindNames[k], c.sent, c.ok, c.failed, c.wrong, c.maxLatency.Round(time.Millisecond)))
			t := &total[k]
			t.sent, t.ok, t.failed, t.wrong = t.sent+c.sent, t.ok+c.ok, t.failed+c.failed, t.wrong+c.wrong
			t.maxLatency = max(t.maxLatency, c.maxLatency)
		}
	}
	for k := range 3 {
		c := total[k]
		out = append(out, fmt.Sprintf("availability: %-15s %-27s sent %4d  ok %4d  failed %d  wrongly admitted %d  max latency %s",
			"total", kindNames[k], c.sent, c.ok, c.failed, c.wrong, c.maxLatency.Round(time.Millisecond)))
	}
	return out
}

func (g *load) totalFailed() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, cs := range g.counts {
		for _, c := range cs {
			n += c.failed
		}
	}
	return n
}

func (g *load) totalWrong() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, cs := range g.counts {
		for _, c := range cs {
			n += c.wrong
		}
	}
	return n
}
