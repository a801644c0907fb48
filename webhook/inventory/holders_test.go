package inventory

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/portreeve/portreeve/policies"
)

// names renders holders as namespace/Kind/name, marking pending ones.
func names(hs []policies.Holder) []string {
	out := []string{}
	for _, h := range hs {
		s := h.String()
		if h.Pending {
			s += " (pending)"
		}
		out = append(out, s)
	}
	return out
}

// portHoldersOf returns the holders the index lists for the first hostPort
// of the pod in, and how many hold it.
func portHoldersOf(inv *Inventory, in *policies.Input) ([]string, int) {
	req := readRequest(in)
	hs, n := inv.index.hostPortHolders(req, inv.index.resolve(req.holder), req.hostPorts[0], inv.opts.Now(), maxHolders)
	return names(hs), n
}

// hostHoldersOf returns the holders the index lists for the first host of
// the Ingress in, and how many hold it.
func hostHoldersOf(inv *Inventory, in *policies.Input) ([]string, int) {
	req := readRequest(in)
	hs, n := inv.index.hostHolders(req, req.hosts[0], inv.opts.Now(), maxHolders, nil)
	return names(hs), n
}

// TestHostPortHoldersByNodeScope: holders that name a node, that select
// nodes by label, and that may run anywhere, against requests of each kind.
func TestHostPortHoldersByNodeScope(t *testing.T) {
	edge := map[string]string{"role": "edge"}
	web := map[string]string{"role": "web"}
	existing := []any{
		pod(meta("team-b", "any"), podSpec("", nil, hp(9100))),
		pod(meta("team-b", "on-n1"), podSpec("n1", nil, hp(9100))),
		pod(meta("team-b", "on-n2"), podSpec("n2", nil, hp(9100))),
		pod(meta("team-b", "edge"), podSpec("", edge, hp(9100))),
		pod(meta("team-b", "edge-n1"), podSpec("n1", edge, hp(9100))),
		pod(meta("team-b", "web"), podSpec("", web, hp(9100))),
		pod(meta("team-b", "ip1"), podSpec("", nil, hpIP(9100, "10.0.0.1"))),
		// A DaemonSet's template selects edge nodes; its pods run on n1 and n3.
		daemonSet(meta("monitoring", "agent"), podSpec("", edge, hp(9100))),
		pod(meta("monitoring", "agent-1", "DaemonSet", "agent"), podSpec("n1", edge, hp(9100))),
		pod(meta("monitoring", "agent-3", "DaemonSet", "agent"), podSpec("n3", edge, hp(9100))),
		// Pods of a DaemonSet the index does not show: held on n1 and n2 only.
		pod(meta("team-c", "gone-1", "DaemonSet", "gone"), podSpec("n1", nil, hp(9100))),
		pod(meta("team-c", "gone-2", "DaemonSet", "gone"), podSpec("n2", nil, hp(9100))),
		// Other ports and protocols never count.
		pod(meta("team-b", "other-port"), podSpec("", nil, hp(9101))),
		pod(meta("team-b", "udp"), podSpec("", nil, corev1.ContainerPort{HostPort: 9100, ContainerPort: 9100, Protocol: corev1.ProtocolUDP})),
	}
	tests := []struct {
		name  string
		extra string // pod spec fields of the request
		ip    string
		want  []string
	}{
		{
			name: "a pod that may run anywhere meets every holder",
			want: []string{
				"monitoring/DaemonSet/agent", "team-b/Pod/any", "team-b/Pod/edge", "team-b/Pod/edge-n1", "team-b/Pod/ip1",
				"team-b/Pod/on-n1", "team-b/Pod/on-n2", "team-b/Pod/web", "team-c/DaemonSet/gone",
			},
		},
		{
			name:  "a pod on a named node meets that node's holders and those that name none",
			extra: "nodeName: n1",
			want: []string{
				"monitoring/DaemonSet/agent", "team-b/Pod/any", "team-b/Pod/edge", "team-b/Pod/edge-n1", "team-b/Pod/ip1",
				"team-b/Pod/on-n1", "team-b/Pod/web", "team-c/DaemonSet/gone",
			},
		},
		{
			name:  "a node no pod names: only holders that name no node",
			extra: "nodeName: n9",
			want: []string{
				"monitoring/DaemonSet/agent", "team-b/Pod/any", "team-b/Pod/edge", "team-b/Pod/ip1", "team-b/Pod/web",
			},
		},
		{
			name:  "a node selector excludes the holders that select other values of its key",
			extra: "nodeSelector: {role: web}",
			want: []string{
				"team-b/Pod/any", "team-b/Pod/ip1", "team-b/Pod/on-n1", "team-b/Pod/on-n2", "team-b/Pod/web", "team-c/DaemonSet/gone",
			},
		},
		{
			name:  "a named node and a selector together",
			extra: "nodeName: n3\n  nodeSelector: {role: edge, zone: a}",
			want:  []string{"monitoring/DaemonSet/agent", "team-b/Pod/any", "team-b/Pod/edge", "team-b/Pod/ip1"},
		},
		{
			name: "another specific hostIP meets the wildcard holders only",
			ip:   "10.0.0.2",
			want: []string{
				"monitoring/DaemonSet/agent", "team-b/Pod/any", "team-b/Pod/edge", "team-b/Pod/edge-n1",
				"team-b/Pod/on-n1", "team-b/Pod/on-n2", "team-b/Pod/web", "team-c/DaemonSet/gone",
			},
		},
		{
			name:  "the same hostIP meets its holder too",
			extra: "nodeName: n2\n  nodeSelector: {role: web}",
			ip:    "10.0.0.1",
			want:  []string{"team-b/Pod/any", "team-b/Pod/ip1", "team-b/Pod/on-n2", "team-b/Pod/web", "team-c/DaemonSet/gone"},
		},
	}
	now := testNow
	inv := newTestInventory(&now)
	feed(t, inv.index, existing...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj := hostPortPod(tc.extra)
			if tc.ip != "" {
				obj = strings.Replace(obj, "hostPort: 9100}", "hostPort: 9100, hostIP: "+tc.ip+"}", 1)
			}
			got, n := portHoldersOf(inv, input(t, podKind, "team-a", obj))
			if !slices.Equal(got, tc.want) || n != len(tc.want) {
				t.Errorf("holders %q (%d in all)\n want %q", got, n, tc.want)
			}
		})
	}
}

// TestHoldersFollowTheirObjects: a holder goes with its objects, moves with
// them, and is named by the top owner the index knows at the time.
func TestHoldersFollowTheirObjects(t *testing.T) {
	del := func(kind, ns, name string) func(*Index) {
		return func(x *Index) { x.Delete(objectKey{kind: kind, namespace: ns, name: name}) }
	}
	add := func(t *testing.T, objs ...any) func(*Index) {
		return func(x *Index) { feed(t, x, objs...) }
	}
	tests := []struct {
		name  string
		steps func(t *testing.T) []func(*Index)
		extra string // of the request, a pod in team-a
		want  []string
	}{
		{
			name: "a deleted pod holds nothing",
			steps: func(t *testing.T) []func(*Index) {
				return []func(*Index){add(t, pod(meta("team-b", "p"), podSpec("", nil, hp(9100)))), del("Pod", "team-b", "p")}
			},
		},
		{
			name: "the pods of a deleted DaemonSet still hold their nodes",
			steps: func(t *testing.T) []func(*Index) {
				return []func(*Index){
					add(t, daemonSet(meta("team-b", "ds"), podSpec("", nil, hp(9100))),
						pod(meta("team-b", "ds-1", "DaemonSet", "ds"), podSpec("n1", nil, hp(9100)))),
					del("DaemonSet", "team-b", "ds"),
				}
			},
			extra: "nodeName: n1",
			want:  []string{"team-b/DaemonSet/ds"},
		},
		{
			name: "... and no other node",
			steps: func(t *testing.T) []func(*Index) {
				return []func(*Index){
					add(t, daemonSet(meta("team-b", "ds"), podSpec("", nil, hp(9100))),
						pod(meta("team-b", "ds-1", "DaemonSet", "ds"), podSpec("n1", nil, hp(9100)))),
					del("DaemonSet", "team-b", "ds"),
				}
			},
			extra: "nodeName: n2",
		},
		{
			name: "a pod that moved to another node",
			steps: func(t *testing.T) []func(*Index) {
				return []func(*Index){
					add(t, pod(meta("team-b", "p"), podSpec("n1", nil, hp(9100)))),
					add(t, pod(meta("team-b", "p"), podSpec("n2", nil, hp(9100)))),
				}
			},
			extra: "nodeName: n1",
		},
		{
			name: "a pod that changed its port",
			steps: func(t *testing.T) []func(*Index) {
				return []func(*Index){
					add(t, pod(meta("team-b", "p"), podSpec("", nil, hp(9100)))),
					add(t, pod(meta("team-b", "p"), podSpec("", nil, hp(9101)))),
				}
			},
		},
		{
			name: "a pod that changed its selector",
			steps: func(t *testing.T) []func(*Index) {
				return []func(*Index){
					add(t, pod(meta("team-b", "p"), podSpec("", map[string]string{"role": "web"}, hp(9100)))),
					add(t, pod(meta("team-b", "p"), podSpec("", map[string]string{"role": "edge"}, hp(9100)))),
				}
			},
			extra: "nodeSelector: {role: web}",
		},
		{
			name: "pods are named by their ReplicaSet until the index knows its Deployment",
			steps: func(t *testing.T) []func(*Index) {
				return []func(*Index){add(t, pod(meta("team-b", "p", "ReplicaSet", "web-1"), podSpec("", nil, hp(9100))))}
			},
			want: []string{"team-b/ReplicaSet/web-1"},
		},
		{
			name: "... and by the Deployment once it does",
			steps: func(t *testing.T) []func(*Index) {
				return []func(*Index){
					add(t, pod(meta("team-b", "p", "ReplicaSet", "web-1"), podSpec("", nil, hp(9100))),
						replicaSet(meta("team-b", "web-1", "Deployment", "web"), 0, podSpec("", nil))),
				}
			},
			want: []string{"team-b/Deployment/web"},
		},
		{
			name: "... and by the ReplicaSet again once it is gone",
			steps: func(t *testing.T) []func(*Index) {
				return []func(*Index){
					add(t, pod(meta("team-b", "p", "ReplicaSet", "web-1"), podSpec("", nil, hp(9100))),
						replicaSet(meta("team-b", "web-1", "Deployment", "web"), 0, podSpec("", nil))),
					del("ReplicaSet", "team-b", "web-1"),
				}
			},
			want: []string{"team-b/ReplicaSet/web-1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := testNow
			inv := newTestInventory(&now)
			for _, step := range tc.steps(t) {
				step(inv.index)
			}
			got, n := portHoldersOf(inv, input(t, podKind, "team-a", hostPortPod(tc.extra)))
			want := tc.want
			if want == nil {
				want = []string{}
			}
			if !slices.Equal(got, want) || n != len(want) {
				t.Errorf("holders %q (%d in all), want %q", got, n, want)
			}
			checkEmptied(t, inv.index)
		})
	}
}

// TestHolderOfItsOwnDeployment: a Deployment never meets its own pods,
// whether the index learnt of its ReplicaSet before or after them.
func TestHolderOfItsOwnDeployment(t *testing.T) {
	rs := replicaSet(meta("team-a", "web-1", "Deployment", "web"), 1, podSpec("", map[string]string{"role": "web"}, hp(9100)))
	p := pod(meta("team-a", "web-1-x", "ReplicaSet", "web-1"), podSpec("n1", map[string]string{"role": "web"}, hp(9100)))
	for _, order := range [][]any{{rs, p}, {p, rs}} {
		now := testNow
		inv := newTestInventory(&now)
		feed(t, inv.index, order...)
		if got, n := portHoldersOf(inv, input(t, deploymentKind, "team-a", hostPortDeployment)); n != 0 {
			t.Errorf("the Deployment meets %q", got)
		}
	}
}

// TestHoldersCapAndCount: at most maxHolders are listed, the first by
// namespace, kind and name, and the count says how many there are. Objects
// of the request's own namespace (sorting among the others) hold its
// hostPort, not its Ingress host; the request's own object holds neither.
func TestHoldersCapAndCount(t *testing.T) {
	tests := []struct {
		name         string
		others, own  int // objects in other namespaces, and in the request's
		ports, hosts int // holders of its hostPort and of its host
	}{
		{"one", 1, 0, 1, 1},
		{"as many as listed", maxHolders, 0, maxHolders, maxHolders},
		{"one more than listed", maxHolders + 1, 0, maxHolders + 1, maxHolders + 1},
		{"many", 2500, 0, 2500, 2500},
		{"many, some in the request's namespace", 2500, 300, 2800, 2500},
		{"only the request's namespace", 0, 300, 300, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := testNow
			inv := newTestInventory(&now)
			var pods, ings []string
			r := rand.New(rand.NewPCG(uint64(tc.others), uint64(tc.own)))
			for _, i := range r.Perm(tc.others + tc.own) {
				ns, name := []string{"a", "z"}[i%2]+fmt.Sprintf("-%04d", i), "x"
				if i >= tc.others {
					ns, name = "team-a", fmt.Sprintf("x-%04d", i)
				} else {
					ings = append(ings, ns+"/Ingress/"+name)
				}
				pods = append(pods, ns+"/Pod/"+name)
				path := "/" // claims the whole host; the others one path under /api
				if i%3 == 1 {
					path = "/api/v1"
				}
				feed(t, inv.index,
					pod(meta(ns, name), podSpec(fmt.Sprintf("n%d", i%7), nil, hp(9100))),
					ingress(meta(ns, name), rule("app.example.com", path)))
			}
			// The request's own object.
			feed(t, inv.index, pod(meta("team-a", "new"), podSpec("", nil, hp(9100))),
				ingress(meta("team-a", "new"), rule("app.example.com")))
			slices.Sort(pods)
			slices.Sort(ings)
			want := pods[:min(len(pods), maxHolders)]
			got, n := portHoldersOf(inv, input(t, podKind, "team-a", hostPortPod("")))
			if !slices.Equal(got, want) || n != tc.ports {
				t.Errorf("hostPort holders %q (%d in all)\n want %q (%d)", got, n, want, tc.ports)
			}
			want = ings[:min(len(ings), maxHolders)]
			got, n = hostHoldersOf(inv, input(t, ingressKind, "team-a", ingressYAML("new", "app.example.com/api")))
			if !slices.Equal(got, want) || n != tc.hosts {
				t.Errorf("Ingress holders %q (%d in all)\n want %q (%d)", got, n, want, tc.hosts)
			}
			f := inv.Facts(input(t, podKind, "team-a", hostPortPod("")), nil)
			if len(f.HostPortConflicts) != 1 || len(f.HostPortConflicts[0].Holders) != min(tc.ports, maxHolders) {
				t.Errorf("facts list %+v", f.HostPortConflicts)
			}
		})
	}
}

func TestOrdered(t *testing.T) {
	for _, n := range []int{0, 1, maxChunk, maxChunk + 1, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := newOrdered(cmp.Compare[int])
			r := rand.New(rand.NewPCG(uint64(n), 2))
			want := []int{}
			for _, v := range r.Perm(n) {
				if !s.insert(2 * v) {
					t.Fatalf("insert %d: already there", 2*v)
				}
				want = append(want, 2*v)
			}
			if n > 0 && s.insert(0) {
				t.Error("inserted 0 twice")
			}
			for _, v := range r.Perm(n)[:n/3] {
				if !s.delete(2 * v) {
					t.Fatalf("delete %d: not there", 2*v)
				}
				want = slices.DeleteFunc(want, func(w int) bool { return w == 2*v })
			}
			if s.delete(1) {
				t.Error("deleted 1, never inserted")
			}
			slices.Sort(want)
			if got := slices.Collect(s.from(nil)); !slices.Equal(got, want) || s.len() != len(want) {
				t.Fatalf("entries %v (len %d), want %v", got, s.len(), want)
			}
			for _, pivot := range []int{-1, 0, 1, n / 2, n, 2*n + 1} {
				before := func(v int) bool { return v < pivot }
				i, found := slices.BinarySearch(want, pivot)
				if got := slices.Collect(s.from(before)); !slices.Equal(got, want[i:]) {
					t.Errorf("from %d: %v, want %v", pivot, got, want[i:])
				}
				if got := s.rank(before); got != i {
					t.Errorf("rank %d: %d, want %d", pivot, got, i)
				}
				if v, ok := s.get(pivot); ok != found || ok && v != pivot {
					t.Errorf("get %d: %d, %v", pivot, v, ok)
				}
			}
			start := 0
			for i, c := range s.chunks {
				if len(c) == 0 || len(c) > maxChunk || s.starts[i] != start {
					t.Errorf("chunk %d: %d entries from %d, want from %d", i, len(c), s.starts[i], start)
				}
				start += len(c)
			}
		})
	}
}

func TestSegment(t *testing.T) {
	tests := []struct{ path, want string }{
		{"/", ""}, {"", ""}, {"/api", "api"}, {"/api/", "api"}, {"/api/v1", "api"}, {"api/v1", "api"}, {"//x", ""},
	}
	for _, tc := range tests {
		if got := segment(tc.path); got != tc.want {
			t.Errorf("segment(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}
