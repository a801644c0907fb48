package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
)

// loadConfig grants hostNetwork to the load namespaces, so that every pod is
// reviewed by both webhooks and admitted.
const loadConfig = `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - name: load
    namespaces: ["load-*"]
    hostNetwork: true
`

// BenchmarkPodCreates measures what Portreeve costs a cluster: hostNetwork
// pods created through the real kube-apiserver by 20 clients at once. In
// "no-policy" the namespace carries the chart's opt-out label, so the
// apiserver never calls Portreeve; in "portreeve" both webhooks review every
// pod. It reports creates/s and the CPU seconds Portreeve's process spent per
// 1,000 creates (DESIGN.md asks for at most 0.40 s, and at most 5 % less
// throughput than the cheapest webhook). A benchmark, not a test: it never
// runs in make test.
//
//	make tools build
//	PORTREEVE_BINARY=$PWD/bin/portreeve PORTREEVE_BIN_DIR=$(hack/tools.sh bindir) \
//	  go test ./test/e2e -run XXX -bench PodCreates -benchtime 2000x
//
// PORTREEVE_LOAD_CPU_PROFILE=FILE profiles the server for the whole run.
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
	p := harness.StartForTest(b, cp, opts)
	cs, err := cp.Clientset()
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"no-policy", "portreeve"} {
		var run atomic.Int64
		b.Run(mode, func(b *testing.B) {
			ns := fmt.Sprintf("load-%s-%d", mode, run.Add(1))
			var labels map[string]string
			if mode == "no-policy" {
				labels = map[string]string{"portreeve.io/ignore": "true"}
			}
			if err := cp.EnsureNamespace(ctx, ns, labels); err != nil {
				b.Fatal(err)
			}
			cpu0, err := cpuSeconds(p.PID())
			if err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.SetParallelism(10) // 20 clients on this machine's 2 CPUs
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					pod := loadPod(fmt.Sprintf("p-%d", next.Add(1)))
					if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			cpu1, err := cpuSeconds(p.PID())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
			b.ReportMetric((cpu1-cpu0)*1000/float64(b.N), "portreeve-cpu-s/1k-creates")
		})
	}
}

func loadPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "load"}},
		Spec: corev1.PodSpec{
			HostNetwork: true,
			Containers:  []corev1.Container{{Name: "app", Image: "registry.example.com/app:1"}},
		},
	}
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
