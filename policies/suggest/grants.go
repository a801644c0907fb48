package suggest

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/portreeve/portreeve/policies"
)

// inexact reports the exposure that is needed but cannot be granted exactly,
// and unmarks it so that it is not granted: a Service port whose nodePort
// the apiserver has yet to pick (unless widen grants the whole range; the
// Service's other node ports are then not granted either, or Portreeve would
// allocate the missing one from them), and an address that is not an IP.
func inexact(records []*record, widen bool) []Problem {
	var out []Problem
	for _, r := range records {
		if !widen && slices.ContainsFunc(r.items, func(it *item) bool { return it.kind == anyNodePortItem && it.needed }) {
			var ports []string
			for _, it := range r.items {
				if it.kind == anyNodePortItem {
					ports = append(ports, fmt.Sprintf("%d/%s", it.port, it.protocol))
				}
				if it.rule == "node-ports" {
					it.needed = false
				}
			}
			out = append(out, Problem{
				Message: fmt.Sprintf("Service port %s names no nodePort, so the apiserver would pick any port of the NodePort range: node ports not granted "+
					"(set nodePort, suggest from the live cluster, or pass --widen to grant the whole NodePort range)", strings.Join(ports, ", ")),
				Objects: []Ref{r.ref},
			})
		}
		for _, it := range r.items {
			if it.needed && it.invalid != "" {
				it.needed = false
				out = append(out, Problem{Message: it.field + ": " + it.invalid + ": not granted", Objects: []Ref{r.ref}})
			}
		}
	}
	return out
}

// grantDraft collects what one holder group needs.
type grantDraft struct {
	group          groupKey
	hostNetwork    bool
	hostPorts      map[portKey]bool
	nodePorts      map[int]bool
	anyNodePort    bool
	loadBalancer   bool
	lbUnclassed    bool
	lbClasses      map[string]bool
	externalIPs    map[string]bool
	ingressDomains map[string]bool
	ingressClasses map[string]bool
	objects        map[string]bool
}

func newDraft(g groupKey) *grantDraft {
	return &grantDraft{
		group: g, hostPorts: map[portKey]bool{}, nodePorts: map[int]bool{}, lbClasses: map[string]bool{},
		externalIPs: map[string]bool{}, ingressDomains: map[string]bool{}, ingressClasses: map[string]bool{},
		objects: map[string]bool{},
	}
}

// add records a needed item of r.
func (d *grantDraft) add(r *record, it *item) {
	switch it.kind {
	case hostNetworkItem:
		d.hostNetwork = true
	case hostPortItem:
		d.hostPorts[portKey{it.port, it.protocol}] = true
	case nodePortItem:
		d.nodePorts[it.port] = true
	case anyNodePortItem:
		d.anyNodePort = true
	case loadBalancerItem:
		d.loadBalancer = true
		if it.value == "" {
			d.lbUnclassed = true
		} else {
			d.lbClasses[it.value] = true
		}
	case externalIPItem:
		d.externalIPs[it.value] = true
	case ingressHostItem:
		d.ingressDomains[it.value] = true
	case ingressClassItem:
		d.ingressClasses[it.value] = true
	}
	d.objects[r.ref.Kind+"/"+r.ref.Name] = true
}

// buildGrants turns the needed items into one grant per holder group, named
// ns-<namespace> or sa-<namespace>-<serviceaccount> (made unique against
// taken and each other), sorted by namespace, namespace grant first.
func buildGrants(records []*record, opts Options, taken map[string]bool) []policies.Grant {
	drafts := map[groupKey]*grantDraft{}
	draft := func(g groupKey) *grantDraft {
		if drafts[g] == nil {
			drafts[g] = newDraft(g)
		}
		return drafts[g]
	}
	for _, r := range records {
		for _, it := range r.items {
			// A class restriction cannot admit an Ingress without a class.
			unclassed := it.kind == ingressClassItem && it.value == ""
			if it.needed && !it.conflict && it.invalid == "" && !unclassed {
				draft(r.group).add(r, it)
			}
		}
	}
	// Ingress classes: a grant that names classes restricts every Ingress
	// of its namespace to them. A namespace grant that grants hosts names
	// every class in use in its namespace, unless an Ingress there has no
	// class (a restriction would refuse it); classes the rules denied
	// (another grant restricts them already) are added in any case.
	for _, d := range drafts {
		if d.group.serviceAccount != "" || len(d.ingressDomains) == 0 {
			continue
		}
		var ingresses []*record
		for _, r := range records {
			if r.ingress && r.ref.Namespace == d.group.namespace {
				ingresses = append(ingresses, r)
			}
		}
		if slices.ContainsFunc(ingresses, func(r *record) bool { return r.ingressClass == "" }) {
			continue
		}
		for _, r := range ingresses {
			d.ingressClasses[r.ingressClass] = true
			d.objects[r.ref.Kind+"/"+r.ref.Name] = true
		}
	}

	keys := mapKeys(drafts)
	slices.SortFunc(keys, func(a, b groupKey) int {
		return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.serviceAccount, b.serviceAccount))
	})
	taken = cloneSet(taken)
	var out []policies.Grant
	for _, k := range keys {
		g := drafts[k].grant(opts)
		g.Name = uniqueName(g.Name, taken)
		taken[g.Name] = true
		out = append(out, g)
	}
	return out
}

func cloneSet(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (d *grantDraft) grant(opts Options) policies.Grant {
	g := policies.Grant{HostNetwork: d.hostNetwork, Expires: opts.Expires}
	if d.group.serviceAccount != "" {
		g.Name = "sa-" + d.group.namespace + "-" + d.group.serviceAccount
		g.ServiceAccounts = []string{d.group.namespace + "/" + d.group.serviceAccount}
	} else {
		g.Name = "ns-" + d.group.namespace
		g.Namespaces = []string{d.group.namespace}
	}
	g.HostPorts = hostPortSpecs(d.hostPorts, opts.Widen)
	switch {
	case opts.Widen && (len(d.nodePorts) > 0 || d.anyNodePort):
		g.NodePorts = []string{fmt.Sprintf("%d-%d", opts.NodePortRange.From, opts.NodePortRange.To)}
	default:
		ports := mapKeys(d.nodePorts)
		slices.Sort(ports)
		for _, p := range ports {
			g.NodePorts = append(g.NodePorts, strconv.Itoa(p))
		}
	}
	if d.loadBalancer {
		lb := &policies.LoadBalancer{Allowed: true}
		if !d.lbUnclassed {
			lb.Classes = sortedSet(d.lbClasses)
		}
		g.LoadBalancer = lb
	}
	ips := mapKeys(d.externalIPs)
	slices.SortFunc(ips, func(a, b string) int {
		return netip.MustParsePrefix(a).Addr().Compare(netip.MustParsePrefix(b).Addr())
	})
	g.ExternalIPs = ips
	g.IngressDomains = ingressDomains(d.ingressDomains, opts.WildcardDomains)
	g.IngressClasses = sortedSet(d.ingressClasses)
	g.Reason = "in use by " + strings.Join(sortedSet(d.objects), ", ") + " (portreeve suggest)"
	return g
}

// hostPortSpecs renders hostPorts as "9100/TCP", sorted by port and
// protocol; widened, one range per protocol from the lowest port to the highest.
func hostPortSpecs(ports map[portKey]bool, widen bool) []string {
	keys := mapKeys(ports)
	slices.SortFunc(keys, comparePortKeys)
	if widen {
		spans := map[string][2]int{}
		for _, k := range keys {
			s, ok := spans[k.protocol]
			if !ok {
				s = [2]int{k.port, k.port}
			}
			spans[k.protocol] = [2]int{min(s[0], k.port), max(s[1], k.port)}
		}
		keys = keys[:0]
		for proto, s := range spans {
			keys = append(keys, portKey{s[0], proto})
		}
		slices.SortFunc(keys, comparePortKeys)
		out := make([]string, 0, len(keys))
		for _, k := range keys {
			if s := spans[k.protocol]; s[0] != s[1] {
				out = append(out, fmt.Sprintf("%d-%d/%s", s[0], s[1], k.protocol))
			} else {
				out = append(out, fmt.Sprintf("%d/%s", k.port, k.protocol))
			}
		}
		return out
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%d/%s", k.port, k.protocol))
	}
	return out
}

// ingressDomains renders the hosts (of Ingresses, listeners and routes),
// exact or (wildcard) as *.parent for hosts of three labels or more; a host
// a wildcard of the list covers is dropped, and "*" (a listener without a
// hostname) covers every one.
func ingressDomains(hosts map[string]bool, wildcard bool) []string {
	if hosts[everyHost] {
		return []string{everyHost}
	}
	set := map[string]bool{}
	for h := range hosts {
		if wildcard && !isWildcard(h) && strings.Count(h, ".") >= 2 {
			_, parent, _ := strings.Cut(h, ".")
			h = "*." + parent
		}
		set[h] = true
	}
	out := sortedSet(set)
	return slices.DeleteFunc(out, func(h string) bool {
		if isWildcard(h) {
			return false
		}
		for d := range set {
			if isWildcard(d) && strings.HasSuffix(h, d[1:]) {
				return true
			}
		}
		return false
	})
}

func sortedSet(m map[string]bool) []string {
	out := mapKeys(m)
	slices.Sort(out)
	return out
}
