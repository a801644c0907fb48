package inventory

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/portreeve/portreeve/policies"
)

// A Snapshot is what the inventory holds at one moment, read from the index
// under its read lock: every holder of a host port, node port and Ingress
// host, and the conflicts among them that exist now (`portreeve ports`).
// Holders are named as the facts name them: a Pod by its top owner.

// Snapshot lists the holders the inventory knows.
type Snapshot struct {
	// Synced is false while the informers have not delivered their initial lists.
	Synced bool `json:"synced"`
	// NodePortRange is the cluster's Service NodePort range.
	NodePortRange policies.PortSpan `json:"nodePortRange"`
	HostPorts     []HostPortHolder  `json:"hostPorts"`
	NodePorts     []NodePortHolder  `json:"nodePorts"`
	Hosts         []HostHolder      `json:"hosts"`
	// Conflicts are the claims that collide now: two holders of one host
	// port on a node both can run on (or a host port and a Service's node
	// port), two Services on one node port, two namespaces on one Ingress
	// host and path.
	Conflicts []StandingConflict `json:"conflicts"`
}

// HostPortHolder is one holder of one (protocol, hostPort, hostIP): its pods
// and pod templates that bind it.
type HostPortHolder struct {
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	// HostIP is the address bound; "" binds every address.
	HostIP string          `json:"hostIP,omitempty"`
	Holder policies.Holder `json:"holder"`
	// Nodes are the nodes its pods run on (sorted).
	Nodes []string `json:"nodes,omitempty"`
	// AnyNode is true when a claim names no node: a pod template (a
	// DaemonSet's holds the port on every node it selects) or a pod not
	// scheduled yet. NodeSelectors are those claims' node selectors
	// (canonical "k=v,k2=v2"; none: every node).
	AnyNode       bool     `json:"anyNode,omitempty"`
	NodeSelectors []string `json:"nodeSelectors,omitempty"`
	// Objects counts the holder's objects (pods, templates) that bind it.
	Objects int `json:"objects"`
	// InNodePortRange: kube-proxy opens every allocated NodePort on every
	// node, so this hostPort collides with the Service that gets it.
	InNodePortRange bool `json:"inNodePortRange,omitempty"`
}

// NodePortHolder is a Service's node port.
type NodePortHolder struct {
	Port     int             `json:"port"`
	Protocol string          `json:"protocol"`
	Holder   policies.Holder `json:"holder"`
}

// HostHolder is one Ingress host and path and the Ingress that claims it.
type HostHolder struct {
	Host string `json:"host"`
	Path string `json:"path"`
	// Exact is true for pathType Exact; other paths cover their subpaths.
	Exact  bool            `json:"exact,omitempty"`
	Holder policies.Holder `json:"holder"`
}

// StandingConflict is two holders whose claims collide now.
type StandingConflict struct {
	// Rule is the conflict rule that would deny the later of the two.
	Rule string `json:"rule"`
	// Port and Protocol (host and node ports), Host and Path (Ingress) say
	// what they collide on.
	Port     int    `json:"port,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	Host     string `json:"host,omitempty"`
	Path     string `json:"path,omitempty"`
	// Node is a node both hold the port on, when one is known.
	Node string `json:"node,omitempty"`
	// Holders are the two holders, each Claim saying what it holds.
	Holders [2]policies.Holder `json:"holders"`
}

// Snapshot returns every holder and the conflicts that exist now.
func (inv *Inventory) Snapshot() *Snapshot {
	now := inv.opts.Now()
	s := &Snapshot{Synced: inv.Synced(), NodePortRange: inv.opts.NodePortRange}
	x := inv.index
	x.expireDue(now)
	x.mu.RLock()
	defer x.mu.RUnlock()
	s.HostPorts = x.listHostPorts(inv.opts.NodePortRange, now)
	s.NodePorts = x.listNodePorts(now)
	s.Hosts = x.listHosts(now)
	s.Conflicts = x.standingConflicts(now)
	return s
}

// listHostPorts lists the holders of every host port, by port, protocol,
// hostIP and holder.
func (x *Index) listHostPorts(npr policies.PortSpan, now time.Time) []HostPortHolder {
	var out []HostPortHolder
	for k, p := range x.hostPorts {
		for _, h := range p.holdings {
			rows := map[string]*HostPortHolder{}
			pending := map[string]bool{}
			for _, hc := range h.claims {
				if !hc.live(now) {
					continue
				}
				var ips []string
				for _, b := range hc.hostPorts {
					if b.port == k.port && b.protocol == k.protocol && !slices.Contains(ips, b.hostIP) {
						ips = append(ips, b.hostIP)
					}
				}
				for _, ip := range ips {
					r := rows[ip]
					if r == nil {
						r = &HostPortHolder{
							Port: int(k.port), Protocol: k.protocol, HostIP: ip,
							Holder:          holderOf(h.holder, portClaim("hostPort ", hostPort{port: k.port, protocol: k.protocol}, ""), false),
							InNodePortRange: within(k.port, npr),
						}
						rows[ip] = r
						pending[ip] = true
					}
					r.Objects++
					pending[ip] = pending[ip] && hc.pending
					if n := hc.scope.nodeName; n != "" {
						if !slices.Contains(r.Nodes, n) {
							r.Nodes = append(r.Nodes, n)
						}
						continue
					}
					r.AnyNode = true
					if sel := selectorText(hc.scope.selector); sel != "" && !slices.Contains(r.NodeSelectors, sel) {
						r.NodeSelectors = append(r.NodeSelectors, sel)
					}
				}
			}
			for ip, r := range rows {
				r.Holder.Pending = pending[ip]
				slices.Sort(r.Nodes)
				slices.Sort(r.NodeSelectors)
				out = append(out, *r)
			}
		}
	}
	slices.SortFunc(out, func(a, b HostPortHolder) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), strings.Compare(a.Protocol, b.Protocol),
			strings.Compare(a.HostIP, b.HostIP), compareHolders(a.Holder, b.Holder))
	})
	return out
}

// listNodePorts lists the Services holding each node port.
func (x *Index) listNodePorts(now time.Time) []NodePortHolder {
	var out []NodePortHolder
	for port, ms := range x.nodePorts {
		for c := range ms {
			if !c.live(now) {
				continue
			}
			for _, np := range c.nodePorts {
				if np.port != port {
					continue
				}
				row := NodePortHolder{Port: int(port), Protocol: np.protocol,
					Holder: holderOf(c.key, portClaim("nodePort ", hostPort{port: port, protocol: np.protocol}, ""), c.pending)}
				if i := slices.IndexFunc(out, func(o NodePortHolder) bool {
					return o.Port == row.Port && o.Protocol == row.Protocol && o.Holder.String() == row.Holder.String()
				}); i >= 0 {
					out[i].Holder.Pending = out[i].Holder.Pending && c.pending
					continue
				}
				out = append(out, row)
			}
		}
	}
	slices.SortFunc(out, func(a, b NodePortHolder) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), strings.Compare(a.Protocol, b.Protocol), compareHolders(a.Holder, b.Holder))
	})
	return out
}

// hostEntry is one host and path of one Ingress's claims.
type hostEntry struct {
	c  *claims
	hp hostPath
}

// ingressEntries returns the live claims on each Ingress host: those the
// informers show, and the pending claims of objects they do not show yet
// (with the hostnames routes without hostnames inherit).
func (x *Index) ingressEntries(now time.Time) map[string][]hostEntry {
	byHost := map[string][]hostEntry{}
	add := func(c *claims) {
		c = x.hostsOf(c)
		for _, h := range c.hosts {
			byHost[h.host] = append(byHost[h.host], hostEntry{c, h})
		}
	}
	for _, c := range x.objects {
		add(c)
	}
	for k, c := range x.pending {
		if _, shown := x.objects[k]; !shown && c.live(now) {
			add(c)
		}
	}
	return byHost
}

// listHosts lists the Ingress hosts and paths with their Ingress.
func (x *Index) listHosts(now time.Time) []HostHolder {
	var out []HostHolder
	for host, es := range x.ingressEntries(now) {
		for _, e := range es {
			row := HostHolder{Host: host, Path: e.hp.path, Exact: !e.hp.prefix,
				Holder: holderOf(e.c.key, "host "+host+" path "+e.hp.path, e.c.pending)}
			if !slices.Contains(out, row) {
				out = append(out, row)
			}
		}
	}
	slices.SortFunc(out, func(a, b HostHolder) int {
		return cmp.Or(strings.Compare(a.Host, b.Host), strings.Compare(a.Path, b.Path), compareHolders(a.Holder, b.Holder))
	})
	return out
}

func holderOf(k objectKey, claim string, pending bool) policies.Holder {
	return policies.Holder{Namespace: k.namespace, Kind: k.kind, Name: k.name, Claim: claim, Pending: pending}
}

// selectorText renders a node selector as "k=v,k2=v2" (sorted keys).
func selectorText(sel map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + sel[k])
	}
	return b.String()
}
