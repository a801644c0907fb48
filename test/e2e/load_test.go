package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/portreeve/portreeve/certs"
	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
	"github.com/portreeve/portreeve/test/proc"
)

// loadConfig grants the load namespaces hostPorts below the NodePort range,
// so that every load pod is evaluated by Portreeve and admitted.
const loadConfig = `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - name: load
    namespaces: ["load-*"]
    hostPorts: ["1024-29999"]
`

// Namespaces opt out of one webhook or the other by label: Portreeve's
// chart skips portreeve.io/ignore, the floor's registration (the same chart,
// another release) skips notFloor.
const notFloor = "bench.portreeve.io/not-floor"

// BenchmarkPodCreates measures what Portreeve costs a cluster, beside the
// cheapest webhook that can be registered (test/floor: decode, allow) in the
// same run, both registered by the chart's own webhook configurations (scope
// auto: the default rules rewrite nothing, so a pod costs one call). Realistic
// three-container pods are created through the real kube-apiserver by 20
// clients at once, each pod with its own hostPort in a granted range (pods
// Portreeve must evaluate and admit). Targets:
//
//   - no-webhook: the namespace opts out of both;
//   - floor: only the floor webhook is called;
//   - portreeve: only Portreeve is called;
//   - portreeve-no-exposure: pods without host exposure in a Portreeve
//     namespace (the chart's matchConditions keep them from Portreeve).
//
// Each reports creates/s, and per 1,000 creates the CPU seconds of the
// webhook's process and of kube-apiserver. Compare targets within one run
// (ratios), never across runs: the machines are shared. A benchmark, not a
// test: it never runs in make test. -count repeats every target in turn.
//
//	make tools build
//	PORTREEVE_BINARY=$PWD/bin/portreeve PORTREEVE_BIN_DIR=$(hack/tools.sh bindir) \
//	  go test ./test/e2e -run XXX -bench PodCreates -benchtime 2000x -count 3
//
// PORTREEVE_LOAD_CPU_PROFILE=FILE profiles Portreeve for the whole run;
// PORTREEVE_LOAD_SERVE_ARGS adds flags to its serve (such as
// --reservations=false, to see what reserving each pod's hostPort costs).
func BenchmarkPodCreates(b *testing.B) {
	cp := controlplane.StartForTest(b, controlplane.Options{})
	ctx := b.Context()
	if err := cp.EnsureNamespace(ctx, harness.Namespace, nil); err != nil {
		b.Fatal(err)
	}
	opts := harness.Options{Config: loadConfig}
	if f := os.Getenv("PORTREEVE_LOAD_CPU_PROFILE"); f != "" {
		opts.ExtraArgs = []string{"--cpu-profile", f} // written when serve stops
	}
	opts.ExtraArgs = append(opts.ExtraArgs, strings.Fields(os.Getenv("PORTREEVE_LOAD_SERVE_ARGS"))...)
	p := harness.StartForTest(b, cp, opts, "--set", "webhook.mutating.scope=auto")
	floorPID := startFloor(b, cp)
	// 20 clients, never throttled on the client side: the apiserver and the webhooks set the pace.
	cfg := cp.RESTConfig()
	cfg.QPS, cfg.Burst = 10000, 10000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	apiserver := cp.PIDs()[controlplane.BinAPIServer]
	targets := []struct {
		name     string
		labels   map[string]string
		pid      int
		exposure bool
	}{
		{"no-webhook", map[string]string{"portreeve.io/ignore": "true", notFloor: "true"}, 0, true},
		{"floor", map[string]string{"portreeve.io/ignore": "true"}, floorPID, true},
		{"portreeve", map[string]string{notFloor: "true"}, p.PID(), true},
		{"portreeve-no-exposure", map[string]string{notFloor: "true"}, p.PID(), false},
	}
	var nextPort atomic.Int64
	nextPort.Store(1023)
	for _, target := range targets {
		var run atomic.Int64
		b.Run(target.name, func(b *testing.B) {
			ns := fmt.Sprintf("load-%s-%d", target.name, run.Add(1))
			if err := cp.EnsureNamespace(ctx, ns, target.labels); err != nil {
				b.Fatal(err)
			}
			before := cpuOf(b, target.pid, apiserver)
			var next atomic.Int64
			b.SetParallelism(10) // 20 clients on this machine's 2 CPUs
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					port := 0
					if target.exposure {
						if port = int(nextPort.Add(1)); port > 29999 {
							b.Error("out of hostPorts below the NodePort range: lower -benchtime or -count")
							return
						}
					}
					pod := loadPod(fmt.Sprintf("p-%d", next.Add(1)), port)
					if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			after := cpuOf(b, target.pid, apiserver)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
			b.ReportMetric((after[0]-before[0])*1000/float64(b.N), "webhook-cpu-s/1k")
			b.ReportMetric((after[1]-before[1])*1000/float64(b.N), "apiserver-cpu-s/1k")
		})
	}
}

// cpuOf reads the CPU seconds of the webhook (0 for none) and the apiserver.
func cpuOf(b *testing.B, webhook, apiserver int) [2]float64 {
	b.Helper()
	var out [2]float64
	for i, pid := range []int{webhook, apiserver} {
		if pid == 0 {
			continue
		}
		s, err := cpuSeconds(pid)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = s
	}
	return out
}

// startFloor builds and runs test/floor with a certificate of its own, and
// registers it with the chart's webhook configurations (release "floor").
// It returns the floor's PID.
func startFloor(b *testing.B, cp *controlplane.ControlPlane) int {
	b.Helper()
	ctx := b.Context()
	dir := b.TempDir()
	root, err := controlplane.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "floor")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./test/floor")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build the floor webhook: %v\n%s", err, out)
	}
	now := time.Now()
	ca, err := certs.NewCA("floor-ca", now, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	serving, err := certs.NewServingCert(ca, nil, []net.IP{net.ParseIP("127.0.0.1")}, now, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	for name, data := range map[string][]byte{"tls.crt": serving.CertPEM, "tls.key": serving.KeyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	floor, err := proc.Start(proc.Options{Name: "floor", Binary: bin, LogPath: filepath.Join(dir, "floor.log"), StopGrace: time.Second,
		Args: []string{"--addr", addr, "--cert", filepath.Join(dir, "tls.crt"), "--key", filepath.Join(dir, "tls.key")}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = floor.Stop() })
	manifest, err := harness.RenderWebhooks(ctx, cp, "--set", "fullnameOverride=floor", "--set", "webhook.url=https://"+addr,
		"--set", "webhook.caBundle="+base64.StdEncoding.EncodeToString(ca.CertPEM),
		"--set", "webhook.ignoreLabel.key="+notFloor, "--set", "webhook.mutating.scope=auto")
	if err != nil {
		b.Fatal(err)
	}
	if _, stderr, err := cp.KubectlStdin(ctx, strings.NewReader(manifest), "apply", "-f", "-"); err != nil {
		b.Fatalf("register the floor: %v: %s", err, stderr)
	}
	if err := waitForFloor(ctx, cp); err != nil {
		b.Fatal(err)
	}
	return floor.PID()
}

// waitForFloor waits until the apiserver calls the floor: it refuses a pod
// named floor-probe, and only it judges the probe's namespace.
func waitForFloor(ctx context.Context, cp *controlplane.ControlPlane) error {
	if err := cp.EnsureNamespace(ctx, "load-probe", map[string]string{"portreeve.io/ignore": "true"}); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"floor-probe"},"spec":{"containers":[{"name":"c","image":"x","ports":[{"containerPort":80,"hostPort":80}]}]}}`
		_, stderr, err := cp.KubectlStdin(ctx, strings.NewReader(pod), "create", "--dry-run=server", "-n", "load-probe", "-f", "-")
		if err != nil && strings.Contains(stderr, "the floor webhook answers") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the floor webhook is not called: %v: %s", err, stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// loadPod is a realistic three-container pod (about 2 KB of JSON), the
// first container holding hostPort port (none when 0).
func loadPod(name string, port int) *corev1.Pod {
	container := func(name string, containerPort int32) corev1.Container {
		return corev1.Container{
			Name:  name,
			Image: "registry.example.com/team/" + name + ":1.4.2",
			Args:  []string{"--listen=:" + strconv.Itoa(int(containerPort)), "--log-level=info"},
			Env: []corev1.EnvVar{
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "MODE", Value: "production"},
			},
			Ports: []corev1.ContainerPort{{Name: name + "-http", ContainerPort: containerPort}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(containerPort)}}},
		}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "load", "tier": "web"},
			Annotations: map[string]string{"example.com/owner": "team-load"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{container("app", 8080), container("sidecar", 9090), container("exporter", 9100)}},
	}
	if port > 0 {
		pod.Spec.Containers[0].Ports[0].HostPort = int32(port)
	}
	return pod
}

// cpuSeconds is the user and system CPU time a process has used so far, from
// /proc/<pid>/stat (in clock ticks of 1/100 s, Linux's USER_HZ).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count fields after its ")".
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err := strconv.ParseFloat(fields[11], 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseFloat(fields[12], 64)
	if err != nil {
		return 0, err
	}
	return (utime + stime) / 100, nil
}
