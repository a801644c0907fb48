package inventory

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/portreeve/portreeve/policies"
)

// The reference: the facts as they were computed before the index grouped
// claims by scope, by visiting every claim the index holds. The index must
// give the same decisions, the same holders in the same order (capped at
// maxHolders), and count what the reference lists.

func allClaims(x *Index) []*claims {
	var out []*claims
	for _, c := range x.objects {
		out = append(out, c)
	}
	for _, c := range x.pending {
		out = append(out, c)
	}
	return out
}

// mergePending adds h to hs unless an equal holder is there: that one is
// then pending only when both are.
func mergePending(hs []policies.Holder, h policies.Holder) []policies.Holder {
	for i, o := range hs {
		if o.Namespace == h.Namespace && o.Kind == h.Kind && o.Name == h.Name && o.Claim == h.Claim {
			hs[i].Pending = o.Pending && h.Pending
			return hs
		}
	}
	return append(hs, h)
}

func refHostPortHolders(x *Index, req *request, self objectKey, hp hostPort, now time.Time) []policies.Holder {
	var out []policies.Holder
	for _, c := range allClaims(x) {
		if c.key == req.key || !c.live(now) {
			continue
		}
		if holder := x.resolve(c.group()); holder != self && len(c.hostPorts) > 0 && c.scope.overlaps(req.scope) && c.bindsOverlapping(hp) {
			out = mergePending(out, policies.Holder{
				Namespace: holder.namespace, Kind: holder.kind, Name: holder.name,
				Claim: fmt.Sprintf("hostPort %d/%s", hp.port, hp.protocol), Pending: c.pending,
			})
		}
		if slices.ContainsFunc(c.nodePorts, func(np nodePort) bool { return np.port == hp.port && np.protocol == hp.protocol }) {
			out = mergePending(out, policies.Holder{
				Namespace: c.key.namespace, Kind: c.key.kind, Name: c.key.name,
				Claim: fmt.Sprintf("nodePort %d/%s on every node", hp.port, hp.protocol), Pending: c.pending,
			})
		}
	}
	return policies.SortHolders(out)
}

func refHostHolders(x *Index, req *request, h hostPath, now time.Time) []policies.Holder {
	parent := parentDomain(h.host)
	covered := func(host string) bool {
		switch {
		case host == h.host:
			return true
		case parent == "":
			return false
		case isWildcard(h.host):
			return !isWildcard(host) && parentDomain(host) == parent
		}
		return host == "*."+parent
	}
	var out []policies.Holder
	for _, c := range allClaims(x) {
		if c.key.namespace == req.key.namespace || c.key == req.key || !c.live(now) {
			continue
		}
		var done []string
		for _, o := range c.hosts {
			if covered(o.host) && !slices.Contains(done, o.host) && pathsOverlap(h, o) {
				done = append(done, o.host)
				out = mergePending(out, policies.Holder{
					Namespace: c.key.namespace, Kind: c.key.kind, Name: c.key.name,
					Claim: fmt.Sprintf("host %s path %s", o.host, o.path), Pending: c.pending,
				})
			}
		}
	}
	return policies.SortHolders(out)
}

// refFacts are the facts of the reference, holders capped at maxHolders.
func refFacts(x *Index, req *request, grants []grant, npr policies.PortSpan, now time.Time) *policies.Facts {
	f := &policies.Facts{}
	self := x.resolve(req.holder)
	held := func(hp hostPort) bool { return len(refHostPortHolders(x, req, self, hp, now)) > 0 }
	capped := func(hs []policies.Holder) []policies.Holder { return hs[:min(len(hs), maxHolders)] }
	var ref *hostPort
	for i, hp := range req.hostPorts {
		if hs := refHostPortHolders(x, req, self, hp, now); len(hs) > 0 {
			f.HostPortConflicts = append(f.HostPortConflicts, policies.HostPortConflict{
				Port: int(hp.port), Protocol: hp.protocol, HostIP: hp.hostIP, Field: hp.field, Holders: capped(hs), HolderCount: len(hs),
			})
		}
		if ref == nil && (within(hp.port, npr) || held(hp)) {
			ref = &req.hostPorts[i]
		}
	}
	if ref != nil {
		f.FreeHostPorts = map[string][]int{}
		for _, g := range grants {
			if len(g.hostPorts) == 0 || !g.mayApply(req.key.namespace, now) {
				continue
			}
			ports, probes := []int{}, 0
			for _, r := range g.hostPorts {
				if r.Protocol != "" && r.Protocol != ref.protocol {
					continue
				}
				for p := int32(r.From); p <= int32(r.To) && len(ports) < maxHostPortSuggestions && probes < maxHostPortProbes; p++ {
					probes++
					own := slices.ContainsFunc(req.hostPorts, func(hp hostPort) bool { return hp.port == p })
					if within(p, npr) || own || slices.Contains(ports, int(p)) {
						continue
					}
					if !held(hostPort{port: p, protocol: ref.protocol, hostIP: ref.hostIP}) {
						ports = append(ports, int(p))
					}
				}
			}
			f.FreeHostPorts[g.name] = ports
		}
	}
	for _, h := range req.hosts {
		if hs := refHostHolders(x, req, h, now); len(hs) > 0 {
			f.IngressConflicts = append(f.IngressConflicts, policies.IngressConflict{
				Host: h.host, Path: h.path, Field: h.field, Holders: capped(hs), HolderCount: len(hs),
			})
		}
	}
	return f
}

// randomWorld makes random objects, updates, deletes and admitted claims,
// with few enough names, nodes, selectors, addresses, ports, hosts and paths
// that they meet often.
type randomWorld struct {
	r   *rand.Rand
	x   *Index
	now time.Time
}

var (
	randNamespaces = []string{"a", "b", "c"}
	randNodes      = []string{"", "", "n1", "n2"}
	randSelectors  = []map[string]string{nil, nil, {"pool": "x"}, {"pool": "y"}, {"pool": "x", "zone": "1"}, {"zone": "1"}}
	randIPs        = []string{"", "", "0.0.0.0", "10.0.0.1", "10.0.0.2"}
	randPorts      = []int32{80, 81, 30080}
	randProtocols  = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolTCP, corev1.ProtocolUDP}
	randHosts      = []string{"a.ex.com", "b.ex.com", "*.ex.com", "ex.com", "x.a.ex.com", "*.a.ex.com", "localhost"}
	randPaths      = []string{"/", "/api", "/api/v1", "/apis", "/b", "//"}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func (w *randomWorld) hostPorts() []corev1.ContainerPort {
	var out []corev1.ContainerPort
	for range 1 + w.r.IntN(2) {
		out = append(out, corev1.ContainerPort{
			ContainerPort: 1, HostPort: pick(w.r, randPorts), Protocol: pick(w.r, randProtocols), HostIP: pick(w.r, randIPs),
		})
	}
	return out
}

func (w *randomWorld) ingressRules() []networkingv1.IngressRule {
	var out []networkingv1.IngressRule
	for range 1 + w.r.IntN(2) {
		r := networkingv1.IngressRule{Host: pick(w.r, randHosts)}
		if w.r.IntN(3) > 0 {
			r.HTTP = &networkingv1.HTTPIngressRuleValue{}
			for range 1 + w.r.IntN(2) {
				t := pick(w.r, []networkingv1.PathType{networkingv1.PathTypePrefix, networkingv1.PathTypeExact, networkingv1.PathTypeImplementationSpecific})
				r.HTTP.Paths = append(r.HTTP.Paths, networkingv1.HTTPIngressPath{Path: pick(w.r, randPaths), PathType: &t})
			}
		}
		out = append(out, r)
	}
	return out
}

// object returns a random object (a new version of one when names meet).
func (w *randomWorld) object() any {
	ns := pick(w.r, randNamespaces)
	name := fmt.Sprint(w.r.IntN(6))
	m := meta(ns, "o"+name)
	m.ResourceVersion = fmt.Sprint(10 + w.r.IntN(1000))
	spec := func() corev1.PodSpec {
		return corev1.PodSpec{
			NodeName: pick(w.r, randNodes), NodeSelector: pick(w.r, randSelectors),
			Containers: []corev1.Container{{Name: "c", Ports: w.hostPorts()}},
		}
	}
	switch w.r.IntN(8) {
	case 0, 1, 2:
		switch w.r.IntN(4) {
		case 0:
			m = meta(ns, "o"+name, "ReplicaSet", "rs"+fmt.Sprint(w.r.IntN(2)))
		case 1:
			m = meta(ns, "o"+name, "DaemonSet", "ds")
		}
		p := pod(m, spec())
		if w.r.IntN(10) == 0 {
			p.Status.Phase = corev1.PodSucceeded
		}
		return p
	case 3:
		rs := "rs" + fmt.Sprint(w.r.IntN(2))
		if w.r.IntN(2) == 0 {
			return replicaSet(meta(ns, rs, "Deployment", "web"), int32(w.r.IntN(2)), spec())
		}
		return replicaSet(meta(ns, rs), 1, spec())
	case 4:
		if w.r.IntN(2) == 0 {
			return daemonSet(meta(ns, "ds"), spec())
		}
		return deployment(meta(ns, "web"), 1, spec())
	case 5:
		return nodePortService(m, pick(w.r, randPorts), pick(w.r, randPorts))
	default:
		return ingress(m, w.ingressRules()...)
	}
}

func (w *randomWorld) step(t *testing.T) {
	obj := w.object()
	slim, err := transform(obj)
	if err != nil {
		t.Fatal(err)
	}
	c := claimsOf(slim)
	switch w.r.IntN(10) {
	case 0, 1:
		w.x.Delete(c.key)
	case 2, 3:
		c.expires = w.now.Add(time.Duration(1+w.r.IntN(30)) * time.Second)
		c.tentative = w.r.IntN(2) == 0
		w.x.AddPending(c, w.now)
	case 4:
		w.x.ReleaseTentative(c.key)
	default:
		handler{index: w.x}.OnAdd(slim, false)
	}
	if w.r.IntN(5) == 0 {
		w.now = w.now.Add(time.Duration(w.r.IntN(5)) * time.Second)
	}
}

// request is a random request: often an object the index holds, or one of
// its group.
func (w *randomWorld) request() *request {
	ns := pick(w.r, randNamespaces)
	req := &request{active: true}
	switch w.r.IntN(3) {
	case 0:
		req.key = objectKey{kind: "Ingress", namespace: ns, name: "o" + fmt.Sprint(w.r.IntN(6))}
		for i := range 1 + w.r.IntN(2) {
			h := newHostPath(pick(w.r, randHosts), pick(w.r, randPaths), w.r.IntN(3) == 0)
			h.field = fmt.Sprintf("spec.rules[%d].host", i)
			req.hosts = append(req.hosts, h)
		}
	default:
		req.key = objectKey{kind: "Pod", namespace: ns, name: "o" + fmt.Sprint(w.r.IntN(6))}
		switch w.r.IntN(4) {
		case 0:
			req.owner = ref{kind: "ReplicaSet", name: "rs" + fmt.Sprint(w.r.IntN(2))}
		case 1:
			req.owner = ref{kind: "DaemonSet", name: "ds"}
		}
		req.scope = nodeScope{nodeName: pick(w.r, randNodes), selector: pick(w.r, randSelectors)}
		for i := range 1 + w.r.IntN(2) {
			req.hostPorts = append(req.hostPorts, hostPort{
				port: pick(w.r, randPorts), protocol: string(pick(w.r, randProtocols)), hostIP: pick(w.r, randIPs),
				field: fmt.Sprintf("spec.containers[0].ports[%d].hostPort", i),
			})
		}
	}
	req.holder = req.group()
	return req
}

// TestIndexAgreesWithReference: after every step of a random history the
// index's facts equal the reference's, and its counts equal the length of
// the reference's full lists.
func TestIndexAgreesWithReference(t *testing.T) {
	grants := parseGrants(config(t, `
grants:
  - {name: low, namespaces: ["*"], hostPorts: ["75-85", "30075-30085"]}
  - {name: udp, namespaces: [a, b], hostPorts: ["79-84/UDP"]}
`))
	npr := DefaultNodePortRange
	for seed := range uint64(40) {
		w := &randomWorld{r: rand.New(rand.NewPCG(seed, 7)), x: NewIndex(), now: testNow}
		for step := range 300 {
			w.step(t)
			req := w.request()
			want := refFacts(w.x, req, grants, npr, w.now)
			got := &policies.Facts{}
			w.x.computeFacts(req, grants, npr, w.now, got)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d step %d, request %+v:\n got  %+v\n want %+v", seed, step, req, got, want)
			}
			self := w.x.resolve(req.holder)
			for _, hp := range req.hostPorts {
				_, n := w.x.hostPortHolders(req, self, hp, w.now, maxHolders)
				if ref := refHostPortHolders(w.x, req, self, hp, w.now); n != len(ref) {
					t.Fatalf("seed %d step %d: %d holders of %+v, reference %d", seed, step, n, hp, len(ref))
				}
			}
			for _, h := range req.hosts {
				_, n := w.x.hostHolders(req, h, w.now, maxHolders, nil)
				if ref := refHostHolders(w.x, req, h, w.now); n != len(ref) {
					t.Fatalf("seed %d step %d: %d holders of %+v, reference %d: %v", seed, step, n, h, len(ref), ref)
				}
			}
		}
		checkEmptied(t, w.x)
	}
}

// checkEmptied deletes every object and expires every claim: nothing may
// be left in the index.
func checkEmptied(t *testing.T, x *Index) {
	t.Helper()
	for _, c := range allClaims(x) {
		x.Delete(c.key)
	}
	x.Expire(testNow.Add(time.Hour))
	for k := range x.owners {
		x.Delete(k)
	}
	if len(x.objects)+len(x.pending)+len(x.hostPorts)+len(x.nodePorts)+len(x.hosts)+len(x.domains)+len(x.owned)+len(x.taken) != 0 {
		t.Errorf("left in an emptied index: %d objects, %d pending, %d ports, %d node ports, %d hosts, %d domains, %d owned, %d taken",
			len(x.objects), len(x.pending), len(x.hostPorts), len(x.nodePorts), len(x.hosts), len(x.domains), len(x.owned), len(x.taken))
	}
}
