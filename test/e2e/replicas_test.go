package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
	"github.com/portreeve/portreeve/webhook/reservations"
)

// replicasConfig grants team-a and team-b the same hostPort, the whole
// NodePort range and the same domain, so that only the conflict rules stand
// between their requests.
const replicasConfig = `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules: {}
grants:
  - name: teams
    namespaces: [team-a, team-b]
    hostPorts: ["9100"]
    nodePorts: ["30000-32767"]
    ingressDomains: ["*.example.com"]
`

// replicaTTL is the reservations' TTL in this test: short, so that what a
// killed replica reserved expires within the test.
const replicaTTL = 6 * time.Second

// replicaProxy stands for a Service in front of two replicas: it sends each
// AdmissionReview of team-a to the first replica and of team-b to the second
// (so that the two requests of a pair always meet different replicas), and
// to the other one when a replica does not answer, as endpoints do once a
// dead pod is removed.
type replicaProxy struct {
	url      string
	backends [2]string
	client   *http.Client
	// served counts reviews, failovers those sent to the other replica.
	served, failovers atomic.Int64
}

func startReplicaProxy(t *testing.T, a, b *harness.Portreeve) *replicaProxy {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(a.CAPEM)
	px := &replicaProxy{
		backends: [2]string{a.URL, b.URL},
		client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 64,
		}},
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(a.Dir, "certs", "tls.crt"), filepath.Join(a.Dir, "certs", "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	px.url = "https://" + l.Addr().String()
	srv := &http.Server{Handler: px, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return px
}

func (px *replicaProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	px.served.Add(1)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var review struct {
		Request struct {
			Namespace string `json:"namespace"`
		} `json:"request"`
	}
	_ = json.Unmarshal(body, &review)
	first := 0
	if review.Request.Namespace == "team-b" {
		first = 1
	}
	for try := range 2 {
		i := (first + try) % 2
		if try > 0 {
			px.failovers.Add(1)
		}
		req, err := http.NewRequestWithContext(r.Context(), r.Method, px.backends[i]+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := px.client.Do(req)
		if err != nil {
			continue
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	http.Error(w, "no replica answered", http.StatusBadGateway)
}

// TestReplicasAgree runs two `portreeve serve` behind one webhook URL and
// fires pairs of concurrent conflicting creates, one to each replica: the
// same hostPort on the same named node, the same explicit nodePort, the same
// Ingress host and path from two namespaces. Exactly one of each pair is
// admitted, in each of five rounds. Then the same load runs while one
// replica is killed: nothing is admitted twice, and once the reservations'
// TTL has passed no reservation Lease is left.
func TestReplicasAgree(t *testing.T) {
	cp := controlplane.StartForTest(t, controlplane.Options{})
	ctx := t.Context()
	for _, ns := range []string{"default", "team-a", "team-b", harness.Namespace} {
		if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"--reservation-ttl", replicaTTL.String(), "--reservation-settle", "1s"}
	a, err := harness.Start(ctx, harness.Options{Kubeconfig: cp.KubeconfigPath, Config: replicasConfig, ExtraArgs: args})
	if err != nil {
		t.Fatal(err)
	}
	b, err := harness.Start(ctx, harness.Options{Kubeconfig: cp.KubeconfigPath, Config: replicasConfig, ExtraArgs: args, CertificateOf: a})
	if err != nil {
		_ = a.Stop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("first replica:\n" + a.LogTail())
			t.Log("second replica:\n" + b.LogTail())
		}
		_ = b.Kill()
		_ = a.Stop()
	})
	px := startReplicaProxy(t, a, b)
	front := &harness.Portreeve{URL: px.url, CAPEM: a.CAPEM}
	if err := front.RegisterWebhooks(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if err := harness.WaitForWebhook(ctx, cp, "default"); err != nil {
		t.Fatal(err)
	}
	if px.served.Load() == 0 {
		t.Fatal("the webhook answered, but not through the proxy")
	}
	cs, err := cp.Clientset()
	if err != nil {
		t.Fatal(err)
	}

	const pairs = 100
	for round := range 5 {
		bad := firePairs(ctx, t, cs, round, pairs, nil)
		for _, msg := range bad {
			t.Errorf("round %d: %s", round, msg)
		}
	}
	if t.Failed() {
		return
	}
	if n := px.failovers.Load(); n != 0 {
		t.Fatalf("%d requests went to the other replica while both were up", n)
	}
	// A metric shows that the reservations, not one replica, did the work.
	for _, p := range []*harness.Portreeve{a, b} {
		if learned := metricValue(t, p.MetricsURL, `portreeve_reservations_total{result="judged-again"}`); learned == 0 {
			t.Errorf("replica %s never judged a request again with what the other reserved", p.URL)
		}
	}

	// Kill the second replica a little into the load: its requests in
	// flight fail over to the first, which sees what the dead one reserved.
	killed := make(chan struct{})
	bad := firePairs(ctx, t, cs, 5, pairs, func(done int) {
		if done == pairs/3 {
			if err := b.Kill(); err != nil {
				t.Error(err)
			}
			close(killed)
		}
	})
	<-killed
	for _, msg := range bad {
		// A pair may lose both requests when the replica dies between
		// reserving and answering: nothing may be admitted twice.
		if strings.Contains(msg, "admitted twice") {
			t.Errorf("with a replica killed: %s", msg)
		}
	}
	if px.failovers.Load() == 0 {
		t.Error("no request failed over to the surviving replica")
	}
	// Every reservation expires (the dead replica's too) and the survivor
	// deletes the Leases.
	leases := cs.CoordinationV1().Leases(harness.Namespace)
	selector := reservations.Label + "=" + harness.ReleaseName + "-rsv"
	deadline := time.Now().Add(replicaTTL + 20*time.Second)
	for {
		list, err := leases.List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d reservation Leases left %s after the load, e.g. %s: %s", len(list.Items), replicaTTL+20*time.Second,
				list.Items[0].Name, list.Items[0].Annotations[reservations.Annotation])
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// firePairs creates pairs of conflicting objects in team-a and team-b, both
// of a pair at once, ten pairs at a time, and returns what went wrong: a pair
// both admitted, or neither, or a refusal that is not a conflict. progress,
// when set, is called after each pair with the number done.
func firePairs(ctx context.Context, t *testing.T, cs kubernetes.Interface, round, n int, progress func(done int)) []string {
	t.Helper()
	type pair struct {
		what   string
		create func(ns string) error
	}
	var todo []pair
	for i := range n {
		name := fmt.Sprintf("r%d-%d", round, i)
		node := "node-" + name
		nodePort := int32(30000 + round*n + i)
		host := "h-" + name + ".example.com"
		todo = append(todo,
			pair{"hostPort 9100 on " + node, func(ns string) error {
				_, err := cs.CoreV1().Pods(ns).Create(ctx, replicaPod(name, node), metav1.CreateOptions{})
				return err
			}},
			pair{fmt.Sprintf("nodePort %d", nodePort), func(ns string) error {
				_, err := cs.CoreV1().Services(ns).Create(ctx, replicaService(name, nodePort), metav1.CreateOptions{})
				return err
			}},
			pair{"host " + host, func(ns string) error {
				_, err := cs.NetworkingV1().Ingresses(ns).Create(ctx, replicaIngress(name, host), metav1.CreateOptions{})
				return err
			}},
		)
	}
	var (
		mu   sync.Mutex
		bad  []string
		done int
		wg   sync.WaitGroup
	)
	next := make(chan pair)
	for range 10 {
		wg.Go(func() {
			for p := range next {
				var errs [2]error
				var both sync.WaitGroup
				for i, ns := range []string{"team-a", "team-b"} {
					both.Go(func() { errs[i] = p.create(ns) })
				}
				both.Wait()
				mu.Lock()
				switch admitted := btoi(errs[0] == nil) + btoi(errs[1] == nil); {
				case admitted == 2:
					bad = append(bad, p.what+": admitted twice")
				case admitted == 0:
					bad = append(bad, fmt.Sprintf("%s: neither admitted: %v; %v", p.what, errs[0], errs[1]))
				default:
					if err := errors.Join(errs[:]...); !conflictRefusal(err) {
						bad = append(bad, fmt.Sprintf("%s: refused for another reason: %v", p.what, err))
					}
				}
				done++
				if progress != nil {
					progress(done)
				}
				mu.Unlock()
			}
		})
	}
	for _, p := range todo {
		next <- p
	}
	close(next)
	wg.Wait()
	return bad
}

// conflictRefusal reports whether err refuses a request for a conflict:
// Portreeve's conflict rules, or the apiserver's nodePort allocator.
func conflictRefusal(err error) bool {
	s := err.Error()
	return strings.Contains(s, "-conflicts: ") || strings.Contains(s, "provided port is already allocated")
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func replicaPod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Name: "c", Image: "registry.example/exporter:1",
			Ports: []corev1.ContainerPort{{ContainerPort: 9100, HostPort: 9100}},
		}}},
	}
}

func replicaService(name string, nodePort int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: nodePort}}},
	}
}

func replicaIngress(name, host string) *networkingv1.Ingress {
	prefix := networkingv1.PathTypePrefix
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{
			HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: &prefix,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}},
			}}},
		}}}},
	}
}
