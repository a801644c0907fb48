package inventory

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portreeve/portreeve/policies"
)

// The benchmark inventory: the 10,000 Pods, 5,000 Services and 2,000
// Ingresses, plus the workloads that own the Pods, in 50 namespaces on 100
// nodes. Every object is built whole (labels, annotations, managed fields,
// env, resources, probes, status), then passes through the same transform
// and event handler the informers use, and the slim object is kept as the
// informer's store keeps it.
const (
	benchNamespaces  = 50
	benchNodes       = 100
	benchPods        = 10000
	benchServices    = 5000
	benchIngresses   = 2000
	benchDeployments = 500
	benchDaemonSets  = 20
)

type benchInventory struct {
	inv   *Inventory
	store map[string]any // what the informers' stores would hold
}

func benchNS(i int) string { return fmt.Sprintf("team-%02d", i%benchNamespaces) }

func managedFields() []metav1.ManagedFieldsEntry {
	raw := `{"f:metadata":{"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{}},` +
		`"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:env":{},"f:image":{},"f:ports":{},"f:resources":{}}}}}`
	raw = `{"f:a":` + raw + `,"f:b":` + raw + `,"f:c":` + raw + `,"f:d":` + raw + `}` // valid JSON, four times the size
	return []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate,
		APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(raw)}}}
}

func fullContainer(name string, ports []corev1.ContainerPort) corev1.Container {
	env := make([]corev1.EnvVar, 10)
	for i := range env {
		env[i] = corev1.EnvVar{Name: fmt.Sprintf("SETTING_%d", i), Value: fmt.Sprintf("value-%d-%s", i, strings.Repeat("x", 20))}
	}
	return corev1.Container{
		Name: name, Image: "registry.example.com/team/" + name + ":v1.2.3", Env: env, Ports: ports,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		},
		VolumeMounts:   []corev1.VolumeMount{{Name: "data", MountPath: "/data"}, {Name: "config", MountPath: "/etc/app"}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz"}}},
	}
}

func fullPodSpec(i int, hostPorts bool) corev1.PodSpec {
	ports := []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}
	if hostPorts {
		ports = append(ports, corev1.ContainerPort{Name: "metrics", ContainerPort: 9100, HostPort: int32(9100 + i%50), Protocol: corev1.ProtocolTCP})
	}
	return corev1.PodSpec{
		Containers:         []corev1.Container{fullContainer("app", ports), fullContainer("sidecar", nil)},
		Volumes:            []corev1.Volume{{Name: "data"}, {Name: "config"}},
		ServiceAccountName: "app",
		NodeSelector:       map[string]string{"pool": fmt.Sprintf("pool-%d", i%4)},
		Tolerations:        []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}},
	}
}

func fullMeta(ns, name string, owner ...string) metav1.ObjectMeta {
	m := meta(ns, name, owner...)
	m.ResourceVersion = strconv.Itoa(100000 + len(name))
	m.UID = "0c5c2f4e-6a4b-4c1e-9a4f-1c2d3e4f5a6b"
	m.CreationTimestamp = metav1.Now()
	m.Labels = map[string]string{"app": name, "team": ns, "tier": "backend", "version": "v1.2.3"}
	m.Annotations = map[string]string{
		"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat(`{"apiVersion":"v1"}`, 20),
		"prometheus.io/scrape":                             "true",
	}
	m.ManagedFields = managedFields()
	return m
}

func benchPod(i int) *corev1.Pod {
	ns := benchNS(i)
	dep := i % benchDeployments
	hostPorts := i%20 == 0 // 5% of the pods bind a host port
	p := &corev1.Pod{
		ObjectMeta: fullMeta(ns, fmt.Sprintf("web-%d-7d4f9c-%05d", dep, i), "ReplicaSet", fmt.Sprintf("web-%d-7d4f9c", dep)),
		Spec:       fullPodSpec(i, hostPorts),
	}
	p.Spec.NodeName = fmt.Sprintf("node-%03d", i%benchNodes)
	p.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: "10.1.2.3", HostIP: "192.168.0.10",
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.PodScheduled, Status: corev1.ConditionTrue}},
		ContainerStatuses: []corev1.ContainerStatus{
			{Name: "app", Ready: true, Image: "registry.example.com/team/app:v1.2.3", ImageID: "sha256:" + strings.Repeat("a", 64)},
			{Name: "sidecar", Ready: true, Image: "registry.example.com/team/sidecar:v1.2.3", ImageID: "sha256:" + strings.Repeat("b", 64)},
		},
	}
	return p
}

func benchService(i int) *corev1.Service {
	s := &corev1.Service{ObjectMeta: fullMeta(benchNS(i), fmt.Sprintf("svc-%04d", i))}
	s.Spec = corev1.ServiceSpec{
		Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
		Selector: map[string]string{"app": fmt.Sprintf("web-%d", i)},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
	}
	if i%5 == 0 { // 1,000 NodePort Services
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports[0].NodePort = int32(30000 + i/5)
	}
	return s
}

func benchIngress(i int) *networkingv1.Ingress {
	ns := benchNS(i)
	prefix := networkingv1.PathTypePrefix
	host := fmt.Sprintf("app-%04d.%s.example.com", i, ns)
	if i%100 == 0 {
		host = fmt.Sprintf("*.shop-%d.example.com", i)
	}
	return &networkingv1.Ingress{
		ObjectMeta: fullMeta(ns, fmt.Sprintf("ing-%04d", i)),
		Spec: networkingv1.IngressSpec{
			Rules: []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{
					{Path: "/", PathType: &prefix, Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}},
					{Path: "/api", PathType: &prefix, Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "api", Port: networkingv1.ServiceBackendPort{Number: 80}}}},
				},
			}}}},
			TLS: []networkingv1.IngressTLS{{Hosts: []string{host}, SecretName: "tls"}},
		},
	}
}

func loadBenchInventory(tb testing.TB) *benchInventory {
	bi := &benchInventory{inv: New(Options{}), store: map[string]any{}}
	bi.inv.MarkSynced()
	h := handler{index: bi.inv.index}
	add := func(kind string, obj any) {
		slim, err := transform(obj)
		if err != nil {
			tb.Fatal(err)
		}
		m := metaOf(slim)
		bi.store[kind+"/"+m.GetNamespace()+"/"+m.GetName()] = slim
		h.OnAdd(slim, true)
	}
	for i := range benchDeployments {
		ns := benchNS(i)
		replicas := int32(20)
		add("Deployment", &appsv1.Deployment{ObjectMeta: fullMeta(ns, fmt.Sprintf("web-%d", i)),
			Spec: appsv1.DeploymentSpec{Replicas: &replicas, Template: corev1.PodTemplateSpec{Spec: fullPodSpec(i, false)}}})
		add("ReplicaSet", &appsv1.ReplicaSet{ObjectMeta: fullMeta(ns, fmt.Sprintf("web-%d-7d4f9c", i), "Deployment", fmt.Sprintf("web-%d", i)),
			Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Template: corev1.PodTemplateSpec{Spec: fullPodSpec(i, false)}}})
	}
	for i := range benchDaemonSets {
		add("DaemonSet", &appsv1.DaemonSet{ObjectMeta: fullMeta("kube-system", fmt.Sprintf("agent-%d", i)),
			Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: fullPodSpec(i, true)}}})
	}
	for i := range benchPods {
		add("Pod", benchPod(i))
	}
	for i := range benchServices {
		add("Service", benchService(i))
	}
	for i := range benchIngresses {
		add("Ingress", benchIngress(i))
	}
	return bi
}

var (
	benchOnce sync.Once
	benchInv  *benchInventory
)

func sharedBenchInventory(tb testing.TB) *benchInventory {
	benchOnce.Do(func() { benchInv = loadBenchInventory(tb) })
	return benchInv
}

// vmRSS reads the resident set size of this process (Linux).
func vmRSS() (uint64, bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err == nil
		}
	}
	return 0, false
}

func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

const mib = 1 << 20

// BenchmarkInventoryMemory loads the inventory (with the compiled policy
// engine beside it, as in serve) and reports the heap it keeps alive and the
// process's RSS. Run it alone for a clean RSS figure:
//
//	go test -run XXX -bench InventoryMemory -benchtime 1x ./webhook/inventory/
func BenchmarkInventoryMemory(b *testing.B) {
	engine, err := policies.New(b.Context(), policies.Options{})
	if err != nil {
		b.Fatal(err)
	}
	before := heapAfterGC()
	start := time.Now()
	bi := loadBenchInventory(b)
	load := time.Since(start)
	after := heapAfterGC()
	rssAfterGC, _ := vmRSS()
	debug.FreeOSMemory()
	rssScavenged, _ := vmRSS()
	objects, _ := bi.inv.index.Len()
	for b.Loop() {
		runtime.KeepAlive(bi)
	}
	// After the loop: b.Loop resets the timer, which drops reported metrics.
	b.ReportMetric(float64(after-before)/mib, "inventory-heap-MiB")
	b.ReportMetric(float64(after)/mib, "total-heap-MiB")
	b.ReportMetric(float64(rssAfterGC)/mib, "rss-MiB")
	b.ReportMetric(float64(rssScavenged)/mib, "rss-scavenged-MiB")
	b.ReportMetric(float64(load.Milliseconds()), "load-ms")
	b.ReportMetric(float64(len(bi.store)), "objects")
	b.ReportMetric(float64(objects), "claiming-objects")
	runtime.KeepAlive(engine)
}

// BenchmarkFacts computes the facts of typical requests against the loaded inventory.
func BenchmarkFacts(b *testing.B) {
	bi := sharedBenchInventory(b)
	cfg := config(b, `
grants:
  - {name: team-07, namespaces: [team-07], hostPorts: ["9100-9199"], nodePorts: ["31000-31099"]}
  - {name: teams, namespaces: ["team-*"], hostPorts: ["8000-8999"]}
`)
	cases := []struct {
		name string
		kind policies.GroupVersionKind
		obj  string
	}{
		{"pod-hostport-conflict", podKind, hostPortPod("")},
		{"pod-hostport-free", podKind, strings.ReplaceAll(hostPortPod("nodeName: node-001"), "9100", "9190")},
		{"service-nodeport-conflict", serviceKind, service("new", ", nodePort: 30001", "", "")},
		{"service-free-nodeports", serviceKind, service("new", "", "")},
		{"ingress-conflict", ingressKind, ingressYAML("new", "app-0007.team-07.example.com/")},
		{"ingress-wildcard", ingressKind, ingressYAML("new", "*.team-07.example.com/")},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			in := input(b, tc.kind, "team-07", tc.obj)
			f := bi.inv.Facts(in, cfg)
			if !f.Ready {
				b.Fatal("not ready")
			}
			b.ReportAllocs()
			for b.Loop() {
				bi.inv.Facts(in, cfg)
			}
		})
	}
}

// TestBenchInventoryFacts checks that the benchmark's requests meet what
// they are named for.
func TestBenchInventoryFacts(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 17,000 objects")
	}
	bi := sharedBenchInventory(t)
	cfg := config(t, "grants: [{name: team-07, namespaces: [team-07], hostPorts: [\"9100-9199\"], nodePorts: [\"31000-31099\"]}]\n")
	if f := bi.inv.Facts(input(t, podKind, "team-07", hostPortPod("")), cfg); len(f.HostPortConflicts) == 0 {
		t.Error("no hostPort conflict")
	}
	if f := bi.inv.Facts(input(t, serviceKind, "team-07", service("new", ", nodePort: 30001")), cfg); len(f.NodePortConflicts) != 1 {
		t.Errorf("nodePort conflicts: %+v", f.NodePortConflicts)
	}
	wildcard := input(t, ingressKind, "team-08", ingressYAML("new", "*.team-07.example.com/"))
	if f := bi.inv.Facts(wildcard, cfg); len(f.IngressConflicts) != 1 || len(f.IngressConflicts[0].Holders) != maxHolders {
		t.Errorf("wildcard ingress conflicts: %+v", f.IngressConflicts)
	}
	if _, n := hostHoldersOf(bi.inv, wildcard); n != benchIngresses/benchNamespaces {
		t.Errorf("wildcard ingress conflicts: %d holders", n)
	}
}

// TestHolderBenchFacts checks that BenchmarkFactsHolders's requests meet as
// many holders as they are named for.
func TestHolderBenchFacts(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 100,000 objects")
	}
	inv := sharedHolderBench(t)
	if objects, _ := inv.index.Len(); objects != holderBenchObjects {
		t.Errorf("%d objects in the index, want %d", objects, holderBenchObjects)
	}
	for _, n := range holderBenchCounts {
		for _, rq := range holderBenchRequests(n) {
			in := input(t, rq.kind, "req", rq.obj)
			var got int
			want := n
			switch rq.name {
			case "ingress":
				_, got = hostHoldersOf(inv, in)
			case "pinned-pod":
				_, got = portHoldersOf(inv, in)
				// Not the other pools, nor the other named nodes.
				want = 0
				for i := range n {
					meets := true
					switch i % 4 {
					case 1:
						meets = holderBenchNode(i) == "node-005"
					case 2:
						meets = holderBenchPool(i) == "pool-1"
					}
					if meets {
						want++
					}
				}
			default:
				_, got = portHoldersOf(inv, in)
			}
			if got != want {
				t.Errorf("%s with %d holders: meets %d, want %d", rq.name, n, got, want)
			}
		}
	}
}

// The holders benchmark: one index of 100,000 objects in which one hostPort
// (and one Ingress host) is held by 10, another by 1,000 and another by
// 10,000 holders, as when many pods were admitted while host-port-conflicts
// was in dryrun. The holders of a port are spread over node scopes: pods
// that name no node, pods on one of 500 named nodes, pods with one of three
// node selectors, and DaemonSet templates.
const (
	holderBenchObjects = 100000
	holderBenchNodes   = 500
)

var holderBenchCounts = []int{10, 1000, 10000}

// holderBenchPort is the hostPort that n holders hold (8080, 8180, 8280),
// and holderBenchHost the Ingress host that n Ingresses of other namespaces
// claim.
func holderBenchPort(n int) int32 { return int32(8080 + 100*slices.Index(holderBenchCounts, n)) }

func holderBenchHost(n int) string             { return fmt.Sprintf("h%d.example.com", n) }
func holderBenchNS(i int) string               { return fmt.Sprintf("ns-%03d", i%200) }
func holderBenchNode(i int) string             { return fmt.Sprintf("node-%03d", i%holderBenchNodes) }
func holderBenchPool(i int) string             { return fmt.Sprintf("pool-%d", i%3) }
func holderBenchName(port int32, i int) string { return fmt.Sprintf("holder-%d-%05d", port, i) }

func loadHolderBench(tb testing.TB) *Inventory {
	inv := New(Options{})
	inv.MarkSynced()
	h := handler{index: inv.index}
	objects := 0
	add := func(obj any) {
		slim, err := transform(obj)
		if err != nil {
			tb.Fatal(err)
		}
		h.OnAdd(slim, true)
		objects++
	}
	for _, n := range holderBenchCounts {
		port := holderBenchPort(n)
		for i := range n {
			m := meta(holderBenchNS(i), holderBenchName(port, i))
			switch i % 4 {
			case 0:
				add(pod(m, podSpec("", nil, hp(port))))
			case 1:
				add(pod(m, podSpec(holderBenchNode(i), nil, hp(port))))
			case 2:
				add(pod(m, podSpec("", map[string]string{"pool": holderBenchPool(i)}, hp(port))))
			case 3:
				add(daemonSet(m, podSpec("", nil, hp(port))))
			}
			add(ingress(meta(holderBenchNS(i), fmt.Sprintf("ing-%d-%05d", n, i)), rule(holderBenchHost(n), "/")))
		}
	}
	// Everything else holds other ports and hosts.
	for i := 0; objects < holderBenchObjects; i++ {
		m := meta(holderBenchNS(i), fmt.Sprintf("other-%06d", i))
		switch i % 20 {
		case 0:
			add(nodePortService(m, int32(30000+i%2768)))
		case 1:
			add(ingress(m, rule(fmt.Sprintf("app-%06d.%s.example.com", i, holderBenchNS(i)), "/", "/api")))
		default:
			add(pod(m, podSpec(holderBenchNode(i), nil, hp(int32(9000+i%1000)))))
		}
	}
	return inv
}

var (
	holderBenchOnce sync.Once
	holderBenchInv  *Inventory
)

func sharedHolderBench(tb testing.TB) *Inventory {
	holderBenchOnce.Do(func() { holderBenchInv = loadHolderBench(tb) })
	return holderBenchInv
}

// holderBenchRequests are the requests of BenchmarkFactsHolders for a port
// (and host) with n holders: a pod that names no node (it conflicts with
// every holder), a pod pinned to a node with a node selector (it conflicts
// with the holders that name no node and no other pool, and those on its
// node), and an Ingress for the whole host from a namespace of its own.
func holderBenchRequests(n int) []struct {
	name string
	kind policies.GroupVersionKind
	obj  string
} {
	port := fmt.Sprint(holderBenchPort(n))
	anyPod := strings.ReplaceAll(hostPortPod(""), "9100", port)
	pinned := strings.ReplaceAll(hostPortPod("nodeName: node-005\n  nodeSelector: {pool: pool-1}"), "9100", port)
	return []struct {
		name string
		kind policies.GroupVersionKind
		obj  string
	}{
		{"pod", podKind, anyPod},
		{"pinned-pod", podKind, pinned},
		{"ingress", ingressKind, ingressYAML("new", holderBenchHost(n)+"/")},
	}
}

const holderBenchConfig = `
grants:
  - {name: req, namespaces: [req], hostPorts: ["8000-8099"]}
`

// BenchmarkFactsHolders computes the facts of one request whose port (or
// host) 10, 1,000 and 10,000 others hold, in an index of 100,000 objects.
//
//	go test -run XXX -bench FactsHolders -count 5 ./webhook/inventory/
func BenchmarkFactsHolders(b *testing.B) {
	inv := sharedHolderBench(b)
	cfg := config(b, holderBenchConfig)
	for _, n := range holderBenchCounts {
		for _, rq := range holderBenchRequests(n) {
			b.Run(fmt.Sprintf("%s/holders=%d", rq.name, n), func(b *testing.B) {
				in := input(b, rq.kind, "req", rq.obj)
				if f := inv.Facts(in, cfg); len(f.HostPortConflicts)+len(f.IngressConflicts) == 0 {
					b.Fatal("no conflict")
				}
				b.ReportAllocs()
				for b.Loop() {
					inv.Facts(in, cfg)
				}
			})
		}
	}
}
