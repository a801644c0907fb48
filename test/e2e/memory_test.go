package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
)

// memoryBudget is the design's figure for portreeve serve's RSS.
const memoryBudget = 128 << 20

// BenchmarkAuditMemory measures portreeve serve's memory with the inventory
// of issue 14 in a real apiserver: 10,000 Pods, 5,000 Services and 2,000
// Ingresses in 20 namespaces, created through the API with labels, an
// annotation and env. Two servers run one after the other against it:
//
//   - audit-off (--audit-interval=0): the inventory alone, RSS 20 s after
//     /readyz;
//   - audit (--audit-interval=1m, leader election on as in the chart): RSS
//     sampled from /proc every 50 ms from /readyz (the first audit starts
//     as soon as the caches have synced) through the end of the second
//     audit run, a minute later. The peak of each run is the audit's peak;
//     it must stay within the 128 MiB budget.
//
// It reports, in MiB: rss-audit-off, peak-rss-audit-run1 and -run2 (the
// highest VmRSS during each run), rss-after-audit (once the run has handed
// its memory back), hwm (VmHWM: the peak since the process started, the
// informers' initial lists included); and the seconds of each audit run. A
// benchmark, not a test, so that it never runs in make test (it takes
// minutes): make bench-memory runs it.
//
//	make tools build
//	PORTREEVE_BINARY=$PWD/bin/portreeve PORTREEVE_BIN_DIR=$(hack/tools.sh bindir) \
//	  go test ./test/e2e -run XXX -bench AuditMemory -benchtime 1x -v
func BenchmarkAuditMemory(b *testing.B) {
	cp := controlplane.StartForTest(b, controlplane.Options{})
	ctx := b.Context()
	cfg := cp.RESTConfig()
	cfg.QPS, cfg.Burst = 5000, 5000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	const namespaces = 20
	// The namespace of the audit's Lease.
	if err := cp.EnsureNamespace(ctx, harness.Namespace, nil); err != nil {
		b.Fatal(err)
	}
	for i := range namespaces {
		if err := cp.EnsureNamespace(ctx, fmt.Sprintf("load-%02d", i), nil); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	loadObjects(b, 10000, func(i int) error {
		_, err := cs.CoreV1().Pods(fmt.Sprintf("load-%02d", i%namespaces)).Create(ctx, inventoryPod(i), metav1.CreateOptions{})
		return err
	})
	loadObjects(b, 5000, func(i int) error {
		_, err := cs.CoreV1().Services(fmt.Sprintf("load-%02d", i%namespaces)).Create(ctx, inventoryService(i), metav1.CreateOptions{})
		return err
	})
	loadObjects(b, 2000, func(i int) error {
		_, err := cs.NetworkingV1().Ingresses(fmt.Sprintf("load-%02d", i%namespaces)).Create(ctx, inventoryIngress(i), metav1.CreateOptions{})
		return err
	})
	b.Logf("created 10,000 Pods, 5,000 Services and 2,000 Ingresses in %s", time.Since(start).Round(time.Second))
	b.ResetTimer()

	// The inventory alone.
	p := startServe(b, cp, "--audit-interval=0")
	time.Sleep(20 * time.Second) // let GC cycles and the scavenger run
	off := procMemory(b, p.PID())
	stopServe(b, p)
	b.Logf("audit off: RSS %.1f MiB (VmHWM %.1f MiB since start)", mib(off.rss), mib(off.hwm))
	b.ReportMetric(mib(off.rss), "rss-audit-off-MiB")

	// Two audit runs, RSS sampled throughout.
	p = startServe(b, cp, "--audit-interval=1m")
	s := sampleRSS(p.PID(), 50*time.Millisecond)
	var peaks [2]uint64
	var durations [2]string
	for run := range 2 {
		waitForAuditRuns(b, p, run+1, 3*time.Minute)
		peaks[run] = s.takePeak()
		metrics, err := p.Metrics()
		if err != nil {
			b.Fatal(err)
		}
		durations[run] = pageValue(metrics, "portreeve_audit_duration_seconds")
		b.Logf("audit run %d: %s s, peak RSS %.1f MiB (%s objects)", run+1, durations[run], mib(peaks[run]),
			pageValue(metrics, "portreeve_audit_objects"))
		if secs, err := strconv.ParseFloat(durations[run], 64); err == nil {
			b.ReportMetric(secs, fmt.Sprintf("audit-run%d-s", run+1))
		}
		b.ReportMetric(mib(peaks[run]), fmt.Sprintf("peak-rss-audit-run%d-MiB", run+1))
	}
	time.Sleep(2 * time.Second)
	after := procMemory(b, p.PID())
	s.stop()
	stopServe(b, p)
	b.Logf("after the audit: RSS %.1f MiB; VmHWM %.1f MiB since start (the informers' initial lists included)", mib(after.rss), mib(after.hwm))
	b.ReportMetric(mib(after.rss), "rss-after-audit-MiB")
	b.ReportMetric(mib(after.hwm), "hwm-MiB")
	for run, peak := range peaks {
		if peak > memoryBudget {
			b.Errorf("audit run %d: peak RSS %.1f MiB is above the %d MiB budget", run+1, mib(peak), memoryBudget>>20)
		}
	}
	if off.rss > memoryBudget {
		b.Errorf("audit off: RSS %.1f MiB is above the %d MiB budget", mib(off.rss), memoryBudget>>20)
	}
}

func startServe(b *testing.B, cp *controlplane.ControlPlane, args ...string) *harness.Portreeve {
	b.Helper()
	start := time.Now()
	p, err := harness.Start(b.Context(), harness.Options{Kubeconfig: cp.KubeconfigPath, Config: conflictConfig, ExtraArgs: args})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%v: portreeve ready (caches synced) in %s", args, time.Since(start).Round(time.Millisecond))
	return p
}

func stopServe(b *testing.B, p *harness.Portreeve) {
	b.Helper()
	if err := p.Stop(); err != nil {
		b.Error(err)
	}
}

// waitForAuditRuns waits until n audit runs have ended.
func waitForAuditRuns(b *testing.B, p *harness.Portreeve, n int, timeout time.Duration) {
	b.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		metrics, err := p.Metrics()
		if err != nil {
			b.Fatal(err)
		}
		runs := 0
		for _, line := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(line, "portreeve_audit_runs_total{") {
				v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
				runs += int(v)
			}
		}
		if runs >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d audit runs ended within %s, want %d\n%s", runs, timeout, n, p.LogTail())
		}
	}
}

// memory is a process's resident set now and at its peak (bytes).
type memory struct{ rss, hwm uint64 }

// procMemory reads VmRSS and VmHWM from /proc/<pid>/status.
func procMemory(b *testing.B, pid int) memory {
	b.Helper()
	m, err := readProcMemory(pid)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func readProcMemory(pid int) (memory, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	for _, line := range strings.Split(string(data), "\n") {
		key, value, _ := strings.Cut(line, ":")
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		switch {
		case key != "VmRSS" && key != "VmHWM":
			continue
		case err != nil:
			return memory{}, fmt.Errorf("/proc/%d/status: %s: %w", pid, line, err)
		case key == "VmRSS":
			m.rss = kb << 10
		default:
			m.hwm = kb << 10
		}
	}
	if m.rss == 0 {
		return memory{}, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
	}
	return m, nil
}

// rssSampler records the highest VmRSS of a process since it was last asked.
type rssSampler struct {
	mu   sync.Mutex
	peak uint64
	done chan struct{}
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{done: make(chan struct{})}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if m, err := readProcMemory(pid); err == nil {
				s.mu.Lock()
				s.peak = max(s.peak, m.rss)
				s.mu.Unlock()
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// takePeak returns the peak since the last call and starts a new one.
func (s *rssSampler) takePeak() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	peak := s.peak
	s.peak = 0
	return peak
}

func (s *rssSampler) stop() { close(s.done) }

func mib(bytes uint64) float64 { return float64(bytes) / (1 << 20) }

// pageValue is the value of an unlabelled metric on a Prometheus text
// page, as written there ("" when absent).
func pageValue(page, name string) string {
	for _, line := range strings.Split(page, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// loadObjects runs create for 0..n-1 from 16 clients at once.
func loadObjects(t testing.TB, n int, create func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	var mu sync.Mutex
	var firstErr error
	for range 16 {
		wg.Go(func() {
			for i := range next {
				if err := create(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
}

// inventoryMeta: labels and a last-applied annotation, as kubectl apply leaves them.
func inventoryMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:   name,
		Labels: map[string]string{"app": name, "tier": "backend", "version": "v1.2.3"},
		Annotations: map[string]string{
			"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat(`{"apiVersion":"v1"}`, 40),
		},
	}
}

// inventoryPod is a two-container pod with env; one in 20 holds a hostPort.
func inventoryPod(i int) *corev1.Pod {
	env := make([]corev1.EnvVar, 10)
	for j := range env {
		env[j] = corev1.EnvVar{Name: fmt.Sprintf("SETTING_%d", j), Value: strings.Repeat("x", 30)}
	}
	ports := []corev1.ContainerPort{{ContainerPort: 8080}}
	if i%20 == 0 {
		ports = append(ports, corev1.ContainerPort{ContainerPort: 9100, HostPort: int32(9100 + i%50)})
	}
	return &corev1.Pod{
		ObjectMeta: inventoryMeta(fmt.Sprintf("pod-%05d", i)),
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"pool": fmt.Sprintf("pool-%d", i%4)},
			Containers: []corev1.Container{
				{Name: "app", Image: "registry.example.com/team/app:v1.2.3", Env: env, Ports: ports},
				{Name: "sidecar", Image: "registry.example.com/team/sidecar:v1.2.3", Env: env},
			},
		},
	}
}

// inventoryService is a ClusterIP Service; one in 5 is a NodePort.
func inventoryService(i int) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: inventoryMeta(fmt.Sprintf("svc-%04d", i)),
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": fmt.Sprintf("pod-%05d", i)},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}
	if i%5 == 0 {
		s.Spec.Type = corev1.ServiceTypeNodePort
	}
	return s
}

// inventoryIngress routes a host of its own.
func inventoryIngress(i int) *networkingv1.Ingress {
	prefix := networkingv1.PathTypePrefix
	backend := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
	return &networkingv1.Ingress{
		ObjectMeta: inventoryMeta(fmt.Sprintf("ing-%04d", i)),
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{
			Host: fmt.Sprintf("app-%04d.load.example.com", i),
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{
				{Path: "/", PathType: &prefix, Backend: backend},
			}}},
		}}},
	}
}
