package inventory

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/portreeve/portreeve/policies"
)

// maxHostPortSuggestions bounds the free hostPorts suggested per grant, and
// maxHostPortProbes the ports looked at per grant to find them.
const (
	maxHostPortSuggestions = 5
	maxHostPortProbes      = 4096
)

// grant is a grant's port ranges, parsed once per configuration.
type grant struct {
	name       string
	namespaces []string
	expires    time.Time
	hostPorts  []policies.PortRange
	nodePorts  []policies.PortRange
}

// parseGrants reads the grants that have port ranges.
func parseGrants(cfg *policies.Config) []grant {
	if cfg == nil {
		return nil
	}
	var out []grant
	for _, g := range cfg.Grants {
		pg := grant{name: g.Name, namespaces: g.Namespaces}
		if g.Expires != "" {
			t, err := parseExpires(g.Expires)
			if err != nil {
				continue // the configuration did not validate; grant nothing
			}
			pg.expires = t
		}
		for _, s := range g.HostPorts {
			if r, err := policies.ParsePortRange(s, true); err == nil {
				pg.hostPorts = append(pg.hostPorts, r)
			}
		}
		for _, s := range g.NodePorts {
			if r, err := policies.ParsePortRange(s, false); err == nil {
				pg.nodePorts = append(pg.nodePorts, r)
			}
		}
		if len(pg.hostPorts)+len(pg.nodePorts) > 0 {
			out = append(out, pg)
		}
	}
	return out
}

// parseExpires reads a date (valid through that day, UTC) or an RFC 3339
// time, as policies.Config does.
func parseExpires(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.Add(24*time.Hour - time.Nanosecond), nil
	}
	return time.Parse(time.RFC3339, s)
}

// mayApply is a cheap pre-filter: the grant names the namespace (or no
// namespace at all) and has not expired. Rego decides which grants apply.
func (g *grant) mayApply(namespace string, now time.Time) bool {
	if !g.expires.IsZero() && now.After(g.expires) {
		return false
	}
	if len(g.namespaces) == 0 {
		return true
	}
	for _, p := range g.namespaces {
		if ok, _ := path.Match(p, namespace); ok {
			return true
		}
	}
	return false
}

// maxHolders bounds the holders listed per conflict: the first by
// namespace, kind and name. The rules name five and count the others
// listed; the index counts them all.
const maxHolders = 10

// firstHolders keeps the first limit holders it is offered, in the order of
// policies.SortHolders, once each: pending when every offer of it was.
type firstHolders struct {
	limit int
	hs    []policies.Holder
}

// after reports whether a holder named k can no longer enter: the list is
// full and k sorts after its last entry. Candidates offered in order stop
// there.
func (f *firstHolders) after(k objectKey) bool {
	if len(f.hs) < f.limit {
		return false
	}
	if f.limit == 0 {
		return true
	}
	last := f.hs[len(f.hs)-1]
	return compareKeys(k, objectKey{kind: last.Kind, namespace: last.Namespace, name: last.Name}) > 0
}

func (f *firstHolders) offer(h policies.Holder) {
	if n := len(f.hs); n == 0 || compareHolders(f.hs[n-1], h) < 0 {
		// After the last: the common case, holders offered in order.
		if n < f.limit {
			if f.hs == nil {
				f.hs = make([]policies.Holder, 0, f.limit)
			}
			f.hs = append(f.hs, h)
		}
		return
	}
	i, found := slices.BinarySearchFunc(f.hs, h, compareHolders)
	switch {
	case found:
		f.hs[i].Pending = f.hs[i].Pending && h.Pending
	case i < f.limit:
		if f.hs == nil {
			f.hs = make([]policies.Holder, 0, f.limit)
		}
		if len(f.hs) == f.limit {
			f.hs = f.hs[:len(f.hs)-1]
		}
		f.hs = slices.Insert(f.hs, i, h)
	}
}

// compareHolders orders holders as policies.SortHolders does.
func compareHolders(a, b policies.Holder) int {
	if c := compareKeys(objectKey{kind: a.Kind, namespace: a.Namespace, name: a.Name}, objectKey{kind: b.Kind, namespace: b.Namespace, name: b.Name}); c != 0 {
		return c
	}
	return strings.Compare(a.Claim, b.Claim)
}

// computeFacts fills f with the conflicts of req and free ports for it.
func (x *Index) computeFacts(req *request, grants []grant, nodePortRange policies.PortSpan, now time.Time, f *policies.Facts) {
	x.expireDue(now)
	x.mu.RLock()
	defer x.mu.RUnlock()
	self := x.resolve(req.holder)
	var ref *hostPort // the first hostPort held or in the NodePort range
	for i, hp := range req.hostPorts {
		holders, n := x.hostPortHolders(req, self, hp, now, maxHolders)
		if n > 0 {
			f.HostPortConflicts = append(f.HostPortConflicts, policies.HostPortConflict{
				Port: int(hp.port), Protocol: hp.protocol, HostIP: hp.hostIP, Field: hp.field, Holders: holders, HolderCount: n,
			})
		}
		if ref == nil && (n > 0 || within(hp.port, nodePortRange)) {
			ref = &req.hostPorts[i]
		}
	}
	if ref != nil {
		f.FreeHostPorts = x.freeHostPorts(req, self, *ref, grants, nodePortRange, now)
	}
	for _, np := range req.nodePorts {
		if h, ok := x.nodePortHolder(req, np, now); ok {
			f.NodePortConflicts = append(f.NodePortConflicts, policies.NodePortConflict{Port: int(np.port), Field: np.field, Holder: h})
		}
	}
	if req.key.kind == "Service" && req.opensNodePorts {
		f.FreeNodePorts = x.freeNodePorts(req, grants, nodePortRange, now)
	}
	if req.route {
		x.routeConflicts(req, now, f)
		return
	}
	for _, h := range req.hosts {
		if holders, n := x.hostHolders(req, h, now, maxHolders, nil); n > 0 {
			f.IngressConflicts = append(f.IngressConflicts, policies.IngressConflict{
				Host: h.host, Path: h.path, Field: h.field, Holders: holders, HolderCount: n,
			})
		}
	}
}

// resolve names the top owner the index knows: a ReplicaSet's Deployment, a
// Job's CronJob.
func (x *Index) resolve(g objectKey) objectKey {
	if g.kind == "ReplicaSet" || g.kind == "Job" {
		if o, ok := x.owners[g]; ok {
			return objectKey{kind: o.kind, namespace: g.namespace, name: o.name}
		}
	}
	return g
}

// nodePortHolder returns the other Service that holds np (the first by name
// when, for a moment, several do).
func (x *Index) nodePortHolder(req *request, np nodePort, now time.Time) (policies.Holder, bool) {
	var out []policies.Holder
	for c := range x.nodePorts[np.port] {
		if c.key == req.key || !c.live(now) {
			continue
		}
		out = append(out, policies.Holder{
			Namespace: c.key.namespace, Kind: c.key.kind, Name: c.key.name,
			Claim: fmt.Sprintf("nodePort %d", np.port), Pending: c.pending,
		})
	}
	if len(out) == 0 {
		return policies.Holder{}, false
	}
	return policies.SortHolders(out)[0], true
}

// freeNodePorts lists, per grant with nodePorts that may apply, the first
// free ports of its ranges inside the cluster's NodePort range: one for each
// port of the Service.
func (x *Index) freeNodePorts(req *request, grants []grant, npr policies.PortSpan, now time.Time) map[string][]int {
	want := max(req.servicePorts, 1)
	own := func(p int32) bool {
		for _, np := range req.nodePorts {
			if np.port == p {
				return true
			}
		}
		return false
	}
	out := map[string][]int{}
	for i := range grants {
		g := &grants[i]
		if len(g.nodePorts) == 0 || !g.mayApply(req.key.namespace, now) {
			continue
		}
		var ports []int
		for _, r := range g.nodePorts {
			from, to := int32(r.From), int32(r.To)
			if npr.From > 0 {
				from, to = max(from, int32(npr.From)), min(to, int32(npr.To))
			}
			for p := from; len(ports) < want && p <= to; p++ {
				if p = x.nextFree(p, to, own); p == 0 {
					break
				}
				if !slices.Contains(ports, int(p)) {
					ports = append(ports, int(p))
				}
			}
		}
		out[g.name] = ports
	}
	return out
}

// freeHostPorts suggests, per grant with hostPorts that may apply, a few
// ports of its ranges that no claim on a node req can run on holds, for the
// protocol and hostIP of ref (req's first conflicting, or in NodePort range,
// hostPort), outside the NodePort range. A probe of a port nobody holds reads
// one bit; one of a held port looks at its buckets, not at its holders.
func (x *Index) freeHostPorts(req *request, self objectKey, ref hostPort, grants []grant, npr policies.PortSpan, now time.Time) map[string][]int {
	own := func(p int32) bool {
		for _, hp := range req.hostPorts {
			if hp.port == p {
				return true
			}
		}
		return false
	}
	out := map[string][]int{}
	for i := range grants {
		g := &grants[i]
		if len(g.hostPorts) == 0 || !g.mayApply(req.key.namespace, now) {
			continue
		}
		ports := []int{}
		probes := 0
		for _, r := range g.hostPorts {
			if r.Protocol != "" && r.Protocol != ref.protocol {
				continue
			}
			for p := int32(r.From); p <= int32(r.To) && len(ports) < maxHostPortSuggestions && probes < maxHostPortProbes; p++ {
				probes++
				if within(p, npr) || own(p) || slices.Contains(ports, int(p)) {
					continue
				}
				probe := hostPort{port: p, protocol: ref.protocol, hostIP: ref.hostIP}
				if !x.hostPortHeld(req, self, probe, now) {
					ports = append(ports, int(p))
				}
			}
		}
		out[g.name] = ports
	}
	return out
}

func within(port int32, r policies.PortSpan) bool {
	return r.From > 0 && int(port) >= r.From && int(port) <= r.To
}
