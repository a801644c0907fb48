package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
)

// serve's leader-election defaults (controller-runtime's), which the chart
// uses. A standby tries the Lease every retry period plus a jitter of up to
// 1.2 times it (client-go's), so at most maxRetry apart.
const (
	leaseDuration = 15 * time.Second
	retryPeriod   = 2 * time.Second
	maxRetry      = retryPeriod * 22 / 10
)

// auditor is one `portreeve serve` of TestAuditLeaderElection.
type auditor struct {
	name string
	*harness.Portreeve
}

// TestAuditLeaderElection runs `portreeve serve` twice against one control
// plane, as two replicas of the chart do: both serve admission (ready,
// reviewing, reloading their configuration), exactly one audits (the holder
// of the Lease portreeve-audit: portreeve_audit_leader 1, audit runs in its
// metrics; the other shows portreeve_audit_leader 0 and no other
// portreeve_audit_* metric). When the auditor stops, the other takes over at
// its next retry (the Lease is released); when an auditor dies, a standby
// takes over once the Lease has expired, within the lease duration and a
// retry, and not before.
func TestAuditLeaderElection(t *testing.T) {
	cp := controlplane.StartForTest(t, controlplane.Options{})
	ctx := t.Context()
	for _, ns := range []string{"default", "kube-system", harness.Namespace} {
		if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := cp.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	// Something for the audit to find (no webhook is registered: it is admitted).
	agent := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Spec:       corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "agent", Image: "registry.example.com/agent:1"}}},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, agent, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	start := func(name string) *auditor {
		t.Helper()
		p, err := harness.Start(ctx, harness.Options{Kubeconfig: cp.KubeconfigPath, Config: grantsConfig,
			ExtraArgs: []string{"--audit-interval=10s"}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s:%s", name, p.LogTail())
			}
			if err := p.Stop(); err != nil {
				t.Errorf("stop %s: %v", name, err)
			}
		})
		return &auditor{name, p}
	}
	a, b := start("a"), start("b")
	leader, standby := oneAuditor(t, 30*time.Second, a, b)
	t.Logf("%s audits, %s stands by", leader.name, standby.name)

	// Only the auditor audits, run after run; the other serves admission.
	waitElection(t, 40*time.Second, "two audit runs", func() error {
		if err := checkStandby(standby); err != nil {
			return fmt.Errorf("%w (not retried)", err)
		}
		if n, _ := metricOf(leader, `portreeve_audit_runs_total{result="success"}`); n < 2 {
			return fmt.Errorf("%s: %v successful audit runs", leader.name, n)
		}
		return nil
	})
	if v, ok := metricOf(leader, `portreeve_audit_violations{result="deny",rule="host-network"}`); v != 1 {
		t.Errorf("%s: host-network deny findings %v (%t), want the agent pod", leader.name, v, ok)
	}
	if err := checkStandby(standby); err != nil {
		t.Fatal(err)
	}
	if allowed, msg := reviewHostNetworkPod(t, standby); allowed || !strings.Contains(msg, "host-network") {
		t.Errorf("%s (standby) admitted a hostNetwork pod: %q", standby.name, msg)
	}
	// Its configuration watcher runs too: a new grant is served.
	if err := standby.SetConfig(strings.Replace(grantsConfig, "namespaces: [team-a]", "namespaces: [team-a, default]\n    hostNetwork: true", 1)); err != nil {
		t.Fatal(err)
	}
	waitElection(t, 20*time.Second, standby.name+" serves the new grant", func() error {
		if allowed, msg := reviewHostNetworkPod(t, standby); !allowed {
			return fmt.Errorf("still denied: %s", msg)
		}
		return nil
	})

	// The auditor stops (a rollout, a drain): it releases the Lease before it exits.
	stopping := time.Now()
	if err := leader.Stop(); err != nil {
		t.Fatal(err)
	}
	exited := time.Now()
	took, audited := takeOver(t, standby, exited, leaseDuration)
	t.Logf("the auditor took %s to stop (SIGTERM); %s leads %s after it exited, has audited after %s",
		exited.Sub(stopping).Round(100*time.Millisecond), standby.name, took, audited)
	if took > maxRetry+time.Second {
		t.Errorf("takeover took %s after a released Lease, want within a retry (%s)", took, maxRetry)
	}

	// A new standby, then the auditor dies: no release, the Lease expires.
	c := start("c")
	if err := checkStandby(c); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := syscall.Kill(standby.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-standby.Stopped()
	took, audited = takeOver(t, c, killed, leaseDuration+maxRetry+time.Second)
	t.Logf("after the auditor was killed (SIGKILL), c leads after %s, has audited after %s (lease duration %s, retry period %s)",
		took, audited, leaseDuration, retryPeriod)
	// c saw the last renewal at most a retry before the kill, and waits a
	// lease duration from then: never two auditors at once.
	if earliest := leaseDuration - maxRetry - time.Second; took < earliest {
		t.Errorf("c took over %s after the kill, before the Lease could expire (%s)", took, earliest)
	}
}

// takeOver waits until p leads, then until it has audited, and returns both
// times since from, to a tenth of a second.
func takeOver(t *testing.T, p *auditor, from time.Time, timeout time.Duration) (leads, audited time.Duration) {
	t.Helper()
	waitElection(t, timeout, p.name+" takes over", func() error {
		if v, _ := metricOf(p, "portreeve_audit_leader"); v != 1 {
			return fmt.Errorf("portreeve_audit_leader %v", v)
		}
		return nil
	})
	leads = time.Since(from).Round(100 * time.Millisecond)
	waitElection(t, 30*time.Second, p.name+" audits", func() error { return auditing(p) })
	return leads, time.Since(from).Round(100 * time.Millisecond)
}

// oneAuditor waits until exactly one of a and b audits and returns it first.
func oneAuditor(t *testing.T, timeout time.Duration, a, b *auditor) (leader, standby *auditor) {
	t.Helper()
	waitElection(t, timeout, "one auditor", func() error {
		errA, errB := auditing(a), auditing(b)
		switch {
		case errA == nil && errB == nil:
			t.Fatalf("both %s and %s audit", a.name, b.name)
		case errA == nil:
			leader, standby = a, b
		case errB == nil:
			leader, standby = b, a
		default:
			return fmt.Errorf("%v; %v", errA, errB)
		}
		return nil
	})
	return leader, standby
}

// auditing reports nil once p holds the Lease and has run an audit.
func auditing(p *auditor) error {
	if v, _ := metricOf(p, "portreeve_audit_leader"); v != 1 {
		return fmt.Errorf("%s: portreeve_audit_leader %v", p.name, v)
	}
	if _, ok := metricOf(p, `portreeve_audit_runs_total{result="success"}`); !ok {
		return fmt.Errorf("%s leads but has not audited yet", p.name)
	}
	return nil
}

// checkStandby: p says it does not audit and shows no audit results.
func checkStandby(p *auditor) error {
	page, err := p.Metrics()
	if err != nil {
		return err
	}
	if v, ok := seriesValue(page, "portreeve_audit_leader"); !ok || v != 0 {
		return fmt.Errorf("%s: portreeve_audit_leader %v (%t), want 0", p.name, v, ok)
	}
	var others []string
	for _, m := range regexp.MustCompile(`(?m)^(portreeve_audit_\w+)`).FindAllStringSubmatch(page, -1) {
		if m[1] != "portreeve_audit_leader" && !slices.Contains(others, m[1]) {
			others = append(others, m[1])
		}
	}
	if len(others) > 0 {
		return fmt.Errorf("%s does not lead but exports %v", p.name, others)
	}
	return nil
}

// waitElection retries check every 100ms until it passes, and returns how long
// that took; after timeout (or an error marked "not retried") it fails the
// test and returns 0.
func waitElection(t *testing.T, timeout time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if strings.Contains(err.Error(), "(not retried)") || time.Since(start) > timeout {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
			return 0
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func metricOf(p *auditor, series string) (float64, bool) {
	page, err := p.Metrics()
	if err != nil {
		return 0, false
	}
	return seriesValue(page, series)
}

// fetchMetrics reads a metrics endpoint.
func fetchMetrics(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// seriesValue finds one series (name and labels exactly as exported) on a
// metrics page.
func seriesValue(page, series string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(page)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// reviewHostNetworkPod sends p's validating webhook the review of a
// hostNetwork pod created in default, as the apiserver would.
func reviewHostNetworkPod(t *testing.T, p *auditor) (allowed bool, message string) {
	t.Helper()
	pod := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"agent-2","namespace":"default"},` +
		`"spec":{"hostNetwork":true,"containers":[{"name":"agent","image":"registry.example.com/agent:1"}]}}`)
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "leader-test", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Name: "agent-2", Namespace: "default",
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: pod},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL+"/validate", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.Client().Do(req)
	if err != nil {
		t.Fatalf("%s: review: %v", p.name, err)
	}
	defer resp.Body.Close()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil {
		t.Fatalf("%s: %s: %v %+v", p.name, resp.Status, err, out)
	}
	if out.Response.Result != nil {
		message = out.Response.Result.Message
	}
	return out.Response.Allowed, message
}
