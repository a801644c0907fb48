package inventory

import (
	"fmt"
	"path"
	"slices"
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

// computeFacts fills f with the conflicts of req and free ports for it.
func (x *Index) computeFacts(req *request, grants []grant, nodePortRange policies.PortSpan, now time.Time, f *policies.Facts) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	self := x.resolve(req.holder)
	inRange := false
	for _, hp := range req.hostPorts {
		holders := x.hostPortHolders(req, self, hp, now)
		if len(holders) > 0 {
			f.HostPortConflicts = append(f.HostPortConflicts, policies.HostPortConflict{
				Port: int(hp.port), Protocol: hp.protocol, HostIP: hp.hostIP, Field: hp.field,
				Holders: policies.SortHolders(holders),
			})
		}
		inRange = inRange || within(hp.port, nodePortRange)
	}
	if len(f.HostPortConflicts) > 0 || inRange {
		f.FreeHostPorts = x.freeHostPorts(req, self, grants, nodePortRange, now)
	}
	for _, np := range req.nodePorts {
		if h, ok := x.nodePortHolder(req, np, now); ok {
			f.NodePortConflicts = append(f.NodePortConflicts, policies.NodePortConflict{Port: int(np.port), Field: np.field, Holder: h})
		}
	}
	if req.key.kind == "Service" && req.opensNodePorts {
		f.FreeNodePorts = x.freeNodePorts(req, grants, nodePortRange, now)
	}
	for _, h := range req.hosts {
		if holders := x.hostHolders(req, h, now); len(holders) > 0 {
			f.IngressConflicts = append(f.IngressConflicts, policies.IngressConflict{
				Host: h.host, Path: h.path, Field: h.field, Holders: policies.SortHolders(holders),
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

// hostPortHolders lists who else holds hp on a node req can run on: one
// entry per holder.
func (x *Index) hostPortHolders(req *request, self objectKey, hp hostPort, now time.Time) []policies.Holder {
	var out []policies.Holder
	x.visitHostPortHolders(req, self, hp, now, func(holder objectKey, c *claims, service bool) bool {
		claim := fmt.Sprintf("hostPort %d/%s", hp.port, hp.protocol)
		if service {
			claim = fmt.Sprintf("nodePort %d/%s on every node", hp.port, hp.protocol)
		}
		out = append(out, policies.Holder{
			Namespace: holder.namespace, Kind: holder.kind, Name: holder.name, Claim: claim, Pending: c.pending,
		})
		return true
	})
	return out
}

// hostPortHeld reports whether anyone else holds hp on a node req can run on.
func (x *Index) hostPortHeld(req *request, self objectKey, hp hostPort, now time.Time) bool {
	held := false
	x.visitHostPortHolders(req, self, hp, now, func(objectKey, *claims, bool) bool {
		held = true
		return false
	})
	return held
}

// visitHostPortHolders calls visit once per holder of hp (the first claim of
// each that can share a node with req), and once per Service whose nodePort
// is hp (kube-proxy listens on it on every node), until visit returns false.
func (x *Index) visitHostPortHolders(req *request, self objectKey, hp hostPort, now time.Time, visit func(holder objectKey, c *claims, service bool) bool) {
	for g, ms := range x.hostPorts[portKey{protocol: hp.protocol, port: hp.port}] {
		holder := x.resolve(g)
		if holder == self {
			continue
		}
		for c := range ms {
			if c.key == req.key || !c.live(now) || !c.scope.overlaps(req.scope) || !c.bindsOverlapping(hp) {
				continue
			}
			if !visit(holder, c, false) {
				return
			}
			break
		}
	}
	for c := range x.nodePorts[hp.port] {
		if c.key == req.key || !c.live(now) {
			continue
		}
		for _, np := range c.nodePorts {
			if np.port == hp.port && np.protocol == hp.protocol {
				if !visit(c.key, c, true) {
					return
				}
				break
			}
		}
	}
}

// bindsOverlapping reports whether c binds hp's (protocol, port) on an
// overlapping hostIP.
func (c *claims) bindsOverlapping(hp hostPort) bool {
	for _, o := range c.hostPorts {
		if o.port == hp.port && o.protocol == hp.protocol && hostIPsOverlap(o.hostIP, hp.hostIP) {
			return true
		}
	}
	return false
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
// protocol and hostIP of req's first conflicting (or in NodePort range)
// hostPort, outside the NodePort range.
func (x *Index) freeHostPorts(req *request, self objectKey, grants []grant, npr policies.PortSpan, now time.Time) map[string][]int {
	var ref hostPort
	for _, hp := range req.hostPorts {
		if within(hp.port, npr) || x.hostPortHeld(req, self, hp, now) {
			ref = hp
			break
		}
	}
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

// hostHolders lists the Ingresses of other namespaces that claim h's host
// (exactly, or through a wildcard either way) on an overlapping path.
func (x *Index) hostHolders(req *request, h hostPath, now time.Time) []policies.Holder {
	var out []policies.Holder
	check := func(host string) {
		for c := range x.hosts[host] {
			if c.key.namespace == req.key.namespace || c.key == req.key || !c.live(now) {
				continue
			}
			for _, o := range c.hosts {
				if o.host == host && pathsOverlap(h, o) {
					out = append(out, policies.Holder{
						Namespace: c.key.namespace, Kind: c.key.kind, Name: c.key.name,
						Claim: fmt.Sprintf("host %s path %s", o.host, o.path), Pending: c.pending,
					})
					break // one entry per Ingress
				}
			}
		}
	}
	check(h.host)
	parent := parentDomain(h.host)
	switch {
	case parent == "":
	case isWildcard(h.host):
		// *.example.com covers every host one label below example.com.
		for child := range x.children[parent] {
			check(child)
		}
	default:
		check("*." + parent)
	}
	return out
}

func within(port int32, r policies.PortSpan) bool {
	return r.From > 0 && int(port) >= r.From && int(port) <= r.To
}
