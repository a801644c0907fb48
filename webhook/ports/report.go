// Package ports renders the inventory of who holds which host port, node
// port and Ingress host, and what each grant allows and has left
// (`portreeve ports`): it filters and presents a webhook/inventory Snapshot
// and GrantUsage, which compute everything.
package ports

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gobwas/glob"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/inventory"
)

// Report is what `portreeve ports` prints.
type Report struct {
	NodePortRange policies.PortSpan            `json:"nodePortRange"`
	HostPorts     []HostPort                   `json:"hostPorts"`
	NodePorts     []NodePort                   `json:"nodePorts"`
	Hosts         []Host                       `json:"hosts"`
	Grants        []Grant                      `json:"grants"`
	Conflicts     []inventory.StandingConflict `json:"conflicts"`
}

// HostPort is a holder of a host port; Conflict is true when it is one
// side of a conflict that exists now.
type HostPort struct {
	inventory.HostPortHolder
	Conflict bool `json:"conflict,omitempty"`
}

// NodePort is a Service's node port.
type NodePort struct {
	inventory.NodePortHolder
	Conflict bool `json:"conflict,omitempty"`
}

// Host is an Ingress host and path.
type Host struct {
	inventory.HostHolder
	Conflict bool `json:"conflict,omitempty"`
}

// Grant is one grant of the configuration, the use of its port ranges, and
// what is held inside them.
type Grant struct {
	// Config is the grant as configured: what it allows, to whom.
	Config policies.Grant `json:"config"`
	inventory.GrantUsage
	// InUse lists the holders of the ports of its ranges; Outside marks
	// those of namespaces the grant does not name.
	InUse []PortUse `json:"inUse,omitempty"`
	// Hosts are the Ingress hosts inside its ingressDomains.
	Hosts []Host `json:"hosts,omitempty"`
}

// PortUse is one holder of a port inside a grant's ranges.
type PortUse struct {
	// Range is "hostPorts" or "nodePorts": which ranges of the grant it is in.
	Range    string          `json:"range"`
	Port     int             `json:"port"`
	Protocol string          `json:"protocol"`
	Holder   policies.Holder `json:"holder"`
	Outside  bool            `json:"outside,omitempty"`
}

// Filter narrows a report. Zero values do not filter.
type Filter struct {
	// Namespace keeps holders of the namespace, the grants that may apply
	// there, and the conflicts it is part of.
	Namespace string
	// Grant keeps that grant, and the holders inside its ranges and domains.
	Grant string
	// Port keeps the holders of these ports (no Ingress hosts) and the
	// grants whose ranges include one.
	Port *policies.PortRange
	// Host keeps the Ingress rules for the host (exactly or through a
	// wildcard either way; no ports) and the grants whose domains cover it.
	Host string
}

// ParsePort reads a --port filter: "9100", "30000-30100" or "53/UDP".
func ParsePort(s string) (*policies.PortRange, error) {
	r, err := policies.ParsePortRange(s, true)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// Build makes the report of a snapshot and the grants' use under cfg.
func Build(s *inventory.Snapshot, cfg *policies.Config, usage []inventory.GrantUsage, f Filter) (*Report, error) {
	r := &Report{NodePortRange: s.NodePortRange, HostPorts: []HostPort{}, NodePorts: []NodePort{}, Hosts: []Host{}, Grants: []Grant{}}
	flagged := conflictKeys(s.Conflicts)
	var grant *grantMatch
	if f.Grant != "" {
		i := slices.IndexFunc(cfg.Grants, func(g policies.Grant) bool { return g.Name == f.Grant })
		if i < 0 {
			return nil, fmt.Errorf("no grant named %q in the configuration", f.Grant)
		}
		grant = newGrantMatch(cfg.Grants[i], s.NodePortRange)
	}
	for _, h := range s.HostPorts {
		if f.keepHolder(h.Holder) && f.keepPort(h.Port, h.Protocol) && f.Host == "" && (grant == nil || grant.hostPortIn(h.Port, h.Protocol)) {
			r.HostPorts = append(r.HostPorts, HostPort{h, flagged[hostPortKey(h.Port, h.Protocol, h.Holder)]})
		}
	}
	for _, n := range s.NodePorts {
		if f.keepHolder(n.Holder) && f.keepPort(n.Port, n.Protocol) && f.Host == "" && (grant == nil || grant.nodePortIn(n.Port, n.Protocol)) {
			r.NodePorts = append(r.NodePorts, NodePort{n, flagged[nodePortKey(n.Port, n.Holder)]})
		}
	}
	for _, h := range s.Hosts {
		if f.keepHolder(h.Holder) && f.Port == nil && f.keepHost(h.Host) && (grant == nil || grant.covers(h.Host)) {
			r.Hosts = append(r.Hosts, Host{h, flagged[hostKey(h.Holder)]})
		}
	}
	for i, g := range cfg.Grants {
		m := newGrantMatch(g, s.NodePortRange)
		if (f.Grant != "" && g.Name != f.Grant) || (f.Namespace != "" && !m.mayApplyIn(f.Namespace)) ||
			(f.Port != nil && !m.hasPorts(*f.Port)) || (f.Host != "" && !m.covers(f.Host)) {
			continue
		}
		out := Grant{Config: g, GrantUsage: inventory.GrantUsage{Grant: g.Name}}
		if i < len(usage) && usage[i].Grant == g.Name {
			out.GrantUsage = usage[i]
		}
		if f.Host == "" {
			out.InUse = m.inUse(s, f)
		}
		if f.Port == nil {
			for _, h := range s.Hosts {
				if len(g.IngressDomains) > 0 && m.covers(h.Host) && f.keepHost(h.Host) {
					out.Hosts = append(out.Hosts, Host{h, flagged[hostKey(h.Holder)]})
				}
			}
		}
		r.Grants = append(r.Grants, out)
	}
	r.Conflicts = []inventory.StandingConflict{}
	for _, c := range s.Conflicts {
		if f.keepConflict(c) && (grant == nil || grant.hasConflict(c)) {
			r.Conflicts = append(r.Conflicts, c)
		}
	}
	return r, nil
}

func (f Filter) keepHolder(h policies.Holder) bool {
	return f.Namespace == "" || h.Namespace == f.Namespace
}

func (f Filter) keepPort(port int, protocol string) bool {
	return f.Port == nil || (port >= f.Port.From && port <= f.Port.To && (f.Port.Protocol == "" || protocol == "" || f.Port.Protocol == protocol))
}

func (f Filter) keepHost(host string) bool {
	return f.Host == "" || hostsOverlap(f.Host, host)
}

func (f Filter) keepConflict(c inventory.StandingConflict) bool {
	if f.Namespace != "" && c.Holders[0].Namespace != f.Namespace && c.Holders[1].Namespace != f.Namespace {
		return false
	}
	if c.Host != "" {
		return f.Port == nil && f.keepHost(c.Host)
	}
	return f.Host == "" && f.keepPort(c.Port, c.Protocol)
}

// hostsOverlap reports whether two Ingress hosts can route the same name:
// the same, or a wildcard covering the other one label below it.
func hostsOverlap(a, b string) bool {
	if a == b {
		return true
	}
	covers := func(w, h string) bool {
		rest, ok := strings.CutPrefix(w, "*.")
		_, parent, found := strings.Cut(h, ".")
		return ok && found && parent == rest && !strings.HasPrefix(h, "*.")
	}
	return covers(a, b) || covers(b, a)
}

// The keys by which holder rows find the conflicts they are part of.
func hostPortKey(port int, protocol string, h policies.Holder) string {
	return "hostPort " + strconv.Itoa(port) + "/" + protocol + " " + h.String()
}

func nodePortKey(port int, h policies.Holder) string {
	return "nodePort " + strconv.Itoa(port) + " " + h.String()
}

func hostKey(h policies.Holder) string { return h.Claim + " " + h.String() }

func conflictKeys(cs []inventory.StandingConflict) map[string]bool {
	out := map[string]bool{}
	for _, c := range cs {
		for _, h := range c.Holders {
			switch {
			case c.Host != "":
				out[hostKey(h)] = true
			case strings.HasPrefix(h.Claim, "nodePort"):
				out[nodePortKey(c.Port, h)] = true
			default:
				out[hostPortKey(c.Port, c.Protocol, h)] = true
			}
		}
	}
	return out
}

// grantMatch answers questions about one grant: its ranges parsed, its
// namespace patterns compiled (as the engine compiles them).
type grantMatch struct {
	g          policies.Grant
	hostPorts  []policies.PortRange
	nodePorts  []policies.PortRange
	namespaces []*glob.Pattern
}

func newGrantMatch(g policies.Grant, npr policies.PortSpan) *grantMatch {
	m := &grantMatch{g: g}
	for _, s := range g.HostPorts {
		if r, err := policies.ParsePortRange(s, true); err == nil {
			m.hostPorts = append(m.hostPorts, r)
		}
	}
	for _, s := range g.NodePorts {
		if r, err := policies.ParsePortRange(s, false); err == nil {
			if npr.From > 0 {
				r.From, r.To = max(r.From, npr.From), min(r.To, npr.To)
			}
			if r.From <= r.To {
				m.nodePorts = append(m.nodePorts, r)
			}
		}
	}
	for _, p := range g.Namespaces {
		if gl, err := glob.Compile(p, '.'); err == nil {
			m.namespaces = append(m.namespaces, gl)
		}
	}
	return m
}

// mayApplyIn reports whether the grant can apply to requests in namespace
// ns: it names the namespace, or no namespace at all (its other subjects
// then decide, in any namespace).
func (m *grantMatch) mayApplyIn(ns string) bool {
	return len(m.g.Namespaces) == 0 || m.names(ns)
}

func (m *grantMatch) names(ns string) bool {
	return slices.ContainsFunc(m.namespaces, func(g *glob.Pattern) bool { return g.Match(ns) })
}

func inRanges(rs []policies.PortRange, port int, protocol string) bool {
	return slices.ContainsFunc(rs, func(r policies.PortRange) bool {
		return port >= r.From && port <= r.To && (r.Protocol == "" || protocol == "" || r.Protocol == protocol)
	})
}

// hostPortIn reports whether a host port lies in the grant's host-port
// ranges, or takes a number of its node-port ranges.
func (m *grantMatch) hostPortIn(port int, protocol string) bool {
	return inRanges(m.hostPorts, port, protocol) || inRanges(m.nodePorts, port, "")
}

// nodePortIn reports whether a node port lies in the grant's node-port
// ranges, or holds a host port of its host-port ranges on every node.
func (m *grantMatch) nodePortIn(port int, protocol string) bool {
	return inRanges(m.nodePorts, port, "") || inRanges(m.hostPorts, port, protocol)
}

// hasPorts reports whether a range of the grant meets r.
func (m *grantMatch) hasPorts(r policies.PortRange) bool {
	meets := func(rs []policies.PortRange) bool {
		return slices.ContainsFunc(rs, func(o policies.PortRange) bool {
			return o.From <= r.To && r.From <= o.To && (o.Protocol == "" || r.Protocol == "" || o.Protocol == r.Protocol)
		})
	}
	return meets(m.hostPorts) || meets(m.nodePorts)
}

// covers reports whether the grant's ingressDomains cover host, as the
// ingress-hosts rule reads them (*.example.com covers every name below).
func (m *grantMatch) covers(host string) bool {
	return slices.ContainsFunc(m.g.IngressDomains, func(d string) bool {
		if d == host {
			return true
		}
		suffix, ok := strings.CutPrefix(d, "*")
		return ok && strings.HasPrefix(suffix, ".") && strings.HasSuffix(host, suffix)
	})
}

func (m *grantMatch) hasConflict(c inventory.StandingConflict) bool {
	if c.Host != "" {
		return m.covers(c.Host)
	}
	return m.hostPortIn(c.Port, c.Protocol) || m.nodePortIn(c.Port, c.Protocol)
}

// inUse lists the holders of the ports of the grant's ranges that pass f's
// port filter (whatever their namespace: they take the grant's ports).
func (m *grantMatch) inUse(s *inventory.Snapshot, f Filter) []PortUse {
	var out []PortUse
	add := func(u PortUse) {
		if !f.keepPort(u.Port, u.Protocol) {
			return
		}
		u.Outside = len(m.g.Namespaces) > 0 && !m.names(u.Holder.Namespace)
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	for _, h := range s.HostPorts {
		if inRanges(m.hostPorts, h.Port, h.Protocol) {
			add(PortUse{Range: "hostPorts", Port: h.Port, Protocol: h.Protocol, Holder: h.Holder})
		}
		if inRanges(m.nodePorts, h.Port, "") {
			add(PortUse{Range: "nodePorts", Port: h.Port, Protocol: h.Protocol, Holder: h.Holder})
		}
	}
	for _, n := range s.NodePorts {
		if inRanges(m.hostPorts, n.Port, n.Protocol) {
			add(PortUse{Range: "hostPorts", Port: n.Port, Protocol: n.Protocol, Holder: n.Holder})
		}
		if inRanges(m.nodePorts, n.Port, "") {
			add(PortUse{Range: "nodePorts", Port: n.Port, Protocol: n.Protocol, Holder: n.Holder})
		}
	}
	slices.SortStableFunc(out, func(a, b PortUse) int {
		if a.Range != b.Range {
			return strings.Compare(a.Range, b.Range)
		}
		return a.Port - b.Port
	})
	return out
}
