package inventory

import (
	"math/bits"
	"time"

	"github.com/portreeve/portreeve/policies"
)

// How much of each grant's port ranges is in use, from the index (`portreeve
// ports`, and serve's per-grant gauges, computed on scrape). A port is used
// when a claim holds it on some node: a host port of the range's protocol
// (any protocol for a range without one), or a Service's node port of that
// protocol, which kube-proxy opens on every node; for node-port ranges, when
// anything holds the number, as for the free ports the facts suggest. A
// host port inside the cluster's NodePort range is never free (it collides
// with the Service that gets it).

// GrantUsage is the use of one grant's port ranges.
type GrantUsage struct {
	Grant string `json:"grant"`
	// Expires is the grant's expiry as written, ExpiresAt when it ends,
	// Expired whether it has.
	Expires   string     `json:"expires,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	Expired   bool       `json:"expired,omitempty"`
	// HostPorts and NodePorts are nil when the grant has no such ranges.
	HostPorts *PortUsage `json:"hostPorts,omitempty"`
	NodePorts *PortUsage `json:"nodePorts,omitempty"`
}

// PortUsage counts the ports of a grant's ranges of one kind (each port
// once, however many ranges name it), and each range's.
type PortUsage struct {
	Granted int          `json:"granted"`
	Used    int          `json:"used"`
	Free    int          `json:"free"`
	Ranges  []RangeUsage `json:"ranges"`
}

// RangeUsage is the use of one range.
type RangeUsage struct {
	// Range is the range as the grant writes it ("9100-9199/TCP").
	Range    string `json:"range"`
	From     int    `json:"from"`
	To       int    `json:"to"`
	Protocol string `json:"protocol,omitempty"`
	// Granted counts its ports; for node ports only those inside the
	// cluster's NodePort range, which the apiserver can allocate.
	Granted int `json:"granted"`
	Used    int `json:"used"`
	Free    int `json:"free"`
	// NextFree are its first free ports (as many as asked for).
	NextFree []int `json:"nextFree,omitempty"`
}

// GrantUsage returns the use of every grant of cfg, in its order, with up
// to nextFree free ports per range.
func (inv *Inventory) GrantUsage(cfg *policies.Config, nextFree int) []GrantUsage {
	if cfg == nil {
		return nil
	}
	now := inv.opts.Now()
	v := inv.index.heldView(now)
	out := make([]GrantUsage, 0, len(cfg.Grants))
	for _, g := range cfg.Grants {
		u := GrantUsage{Grant: g.Name, Expires: g.Expires}
		if g.Expires != "" {
			if t, err := parseExpires(g.Expires); err == nil {
				u.ExpiresAt, u.Expired = &t, now.After(t)
			}
		}
		if len(g.HostPorts) > 0 {
			u.HostPorts = v.usage(g.HostPorts, true, inv.opts.NodePortRange, nextFree)
		}
		if len(g.NodePorts) > 0 {
			u.NodePorts = v.usage(g.NodePorts, false, inv.opts.NodePortRange, nextFree)
		}
		out = append(out, u)
	}
	return out
}

// ObjectCounts returns how many objects of each kind hold something in the
// index: shown by the informers, and admitted but not shown yet (pending).
func (inv *Inventory) ObjectCounts() (stored, pending map[string]int) {
	x := inv.index
	x.mu.RLock()
	defer x.mu.RUnlock()
	stored, pending = map[string]int{}, map[string]int{}
	for k := range x.objects {
		stored[k.kind]++
	}
	for k := range x.pending {
		pending[k.kind]++
	}
	return stored, pending
}

// portSet is a set of ports.
type portSet [65536 / 64]uint64

func (s *portSet) add(p int) { s[p/64] |= 1 << (p % 64) }

func (s *portSet) has(p int) bool { return s[p/64]&(1<<(p%64)) != 0 }

func (s *portSet) count() int {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return n
}

// heldPorts is what the index holds, as sets of ports: host ports and node
// ports by protocol and of any protocol, and every number anything holds
// (taken).
type heldPorts struct {
	byProtocol  map[string]*portSet
	anyProtocol portSet
	taken       portSet
}

func (x *Index) heldView(now time.Time) *heldPorts {
	x.expireDue(now)
	x.mu.RLock()
	defer x.mu.RUnlock()
	v := &heldPorts{byProtocol: map[string]*portSet{}, taken: x.takenBits}
	set := func(protocol string, port int32) {
		s := v.byProtocol[protocol]
		if s == nil {
			s = &portSet{}
			v.byProtocol[protocol] = s
		}
		s.add(int(port))
		v.anyProtocol.add(int(port))
	}
	for k := range x.hostPorts {
		set(k.protocol, k.port)
	}
	for port, ms := range x.nodePorts {
		for c := range ms {
			for _, np := range c.nodePorts {
				if np.port == port {
					set(np.protocol, port)
				}
			}
		}
	}
	return v
}

// hostHeld reports whether a host port or node port of protocol ("": any)
// holds port.
func (v *heldPorts) hostHeld(protocol string, port int) bool {
	if protocol == "" {
		return v.anyProtocol.has(port)
	}
	s := v.byProtocol[protocol]
	return s != nil && s.has(port)
}

// usage counts the use of the ranges specs (host ports when hostPorts,
// else node ports, clipped to the cluster's NodePort range npr).
func (v *heldPorts) usage(specs []string, hostPorts bool, npr policies.PortSpan, nextFree int) *PortUsage {
	u := &PortUsage{Ranges: []RangeUsage{}}
	var granted, used, free portSet
	for _, spec := range specs {
		r, err := policies.ParsePortRange(spec, hostPorts)
		if err != nil {
			continue // the configuration did not validate; grant nothing
		}
		ru := RangeUsage{Range: spec, From: r.From, To: r.To, Protocol: r.Protocol}
		from, to := r.From, r.To
		if !hostPorts && npr.From > 0 {
			from, to = max(from, npr.From), min(to, npr.To)
		}
		for p := from; p <= to; p++ {
			ru.Granted++
			granted.add(p)
			var held bool
			if hostPorts {
				held = v.hostHeld(r.Protocol, p)
			} else {
				held = v.taken.has(p)
			}
			switch {
			case held:
				ru.Used++
				used.add(p)
			case hostPorts && within(int32(p), npr):
			default:
				ru.Free++
				free.add(p)
				if len(ru.NextFree) < nextFree {
					ru.NextFree = append(ru.NextFree, p)
				}
			}
		}
		u.Ranges = append(u.Ranges, ru)
	}
	for i := range free {
		free[i] &^= used[i]
	}
	u.Granted, u.Used, u.Free = granted.count(), used.count(), free.count()
	return u
}
