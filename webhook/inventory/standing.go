package inventory

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portreeve/portreeve/policies"
)

// Conflicts that exist now (standing conflicts): the claims the conflict
// rules would deny had they come in this order, which got in anyway (before
// Portreeve ran, while it observed, past a failing-open webhook, or through
// a race). They are found as the facts find them, pair by pair of holders.

// standingConflicts returns the conflicts that exist now, sorted. Callers
// hold the read lock.
func (x *Index) standingConflicts(now time.Time) []StandingConflict {
	var out []StandingConflict
	for k, p := range x.hostPorts {
		out = append(out, x.hostPortCollisions(k, p, now)...)
	}
	out = append(out, x.nodePortCollisions(now)...)
	out = append(out, x.hostCollisions(now)...)
	slices.SortFunc(out, compareStanding)
	return out
}

func compareStanding(a, b StandingConflict) int {
	return cmp.Or(strings.Compare(a.Rule, b.Rule), cmp.Compare(a.Port, b.Port), strings.Compare(a.Protocol, b.Protocol),
		strings.Compare(a.Host, b.Host), strings.Compare(a.Path, b.Path),
		compareHolders(a.Holders[0], b.Holders[0]), compareHolders(a.Holders[1], b.Holders[1]))
}

// heldClaim is one live claim on a host port and the holder it counts for.
type heldClaim struct {
	c      *claims
	holder objectKey
}

// collides reports whether two claims of different holders bind k on
// overlapping hostIPs on a node both can run on.
func (a heldClaim) collides(b heldClaim, k portKey) bool {
	if a.holder == b.holder || !a.c.scope.overlaps(b.c.scope) {
		return false
	}
	for _, hp := range a.c.hostPorts {
		if hp.port == k.port && hp.protocol == k.protocol && b.c.bindsOverlapping(hp) {
			return true
		}
	}
	return false
}

// hostPortCollisions finds the holders of k that collide: claims on one
// named node against each other, claims on any node (templates, pods not
// scheduled) against all, and every holder against the Services whose node
// port is k (kube-proxy listens on every node).
func (x *Index) hostPortCollisions(k portKey, p *portHolders, now time.Time) []StandingConflict {
	claim := portClaim("hostPort ", hostPort{port: k.port, protocol: k.protocol}, "")
	var anyNode []heldClaim
	named := map[string][]heldClaim{}
	holders := map[objectKey]bool{}
	for _, h := range p.holdings {
		for _, hc := range h.claims {
			if !hc.live(now) {
				continue
			}
			holders[h.holder] = holders[h.holder] || !hc.pending
			hcl := heldClaim{hc.claims, h.holder}
			if n := hc.scope.nodeName; n != "" {
				named[n] = append(named[n], hcl)
			} else {
				anyNode = append(anyNode, hcl)
			}
		}
	}
	type pair [2]objectKey
	found := map[pair]string{} // the first node (by name) they collide on, "" for none known
	note := func(a, b heldClaim) {
		if !a.collides(b, k) {
			return
		}
		pr := pair{a.holder, b.holder}
		if compareKeys(pr[0], pr[1]) > 0 {
			pr[0], pr[1] = pr[1], pr[0]
		}
		node := cmp.Or(a.c.scope.nodeName, b.c.scope.nodeName)
		if old, ok := found[pr]; !ok || (node != "" && (old == "" || node < old)) {
			found[pr] = node
		}
	}
	nodes := slices.Sorted(maps.Keys(named))
	if len(holders) > 1 {
		for i, a := range anyNode {
			for _, b := range anyNode[i+1:] {
				note(a, b)
			}
			for _, n := range nodes {
				for _, b := range named[n] {
					note(a, b)
				}
			}
		}
		for _, n := range nodes {
			cs := named[n]
			for i, a := range cs {
				for _, b := range cs[i+1:] {
					note(a, b)
				}
			}
		}
	}
	out := make([]StandingConflict, 0, len(found))
	for pr, node := range found {
		out = append(out, StandingConflict{
			Rule: policies.RuleHostPortConflicts, Port: int(k.port), Protocol: k.protocol, Node: node,
			Holders: [2]policies.Holder{
				holderOf(pr[0], claim, !holders[pr[0]]), holderOf(pr[1], claim, !holders[pr[1]]),
			},
		})
	}
	// Services whose node port is k hold it on every node.
	for c := range x.nodePorts[k.port] {
		if !c.live(now) || !slices.ContainsFunc(c.nodePorts, func(np nodePort) bool { return np.port == k.port && np.protocol == k.protocol }) {
			continue
		}
		svc := holderOf(c.key, portClaim("nodePort ", hostPort{port: k.port, protocol: k.protocol}, " on every node"), c.pending)
		for _, holder := range slices.SortedFunc(maps.Keys(holders), compareKeys) {
			out = append(out, StandingConflict{
				Rule: policies.RuleHostPortConflicts, Port: int(k.port), Protocol: k.protocol,
				Holders: [2]policies.Holder{holderOf(holder, claim, !holders[holder]), svc},
			})
		}
	}
	return out
}

// nodePortCollisions finds node ports that two Services hold (the
// allocator gives a port to one Service: a moment's race, or a Service
// restored from a backup).
func (x *Index) nodePortCollisions(now time.Time) []StandingConflict {
	var out []StandingConflict
	for port, ms := range x.nodePorts {
		services := map[objectKey]bool{} // Service -> a claim of it is not pending
		for c := range ms {
			if c.live(now) {
				services[c.key] = services[c.key] || !c.pending
			}
		}
		if len(services) < 2 {
			continue
		}
		keys := slices.SortedFunc(maps.Keys(services), compareKeys)
		claim := "nodePort " + strconv.Itoa(int(port))
		for i, a := range keys {
			for _, b := range keys[i+1:] {
				out = append(out, StandingConflict{
					Rule: policies.RuleNodePortConflicts, Port: int(port),
					Holders: [2]policies.Holder{holderOf(a, claim, !services[a]), holderOf(b, claim, !services[b])},
				})
			}
		}
	}
	return out
}

// hostCollisions finds Ingresses of different namespaces that claim
// overlapping paths of one host, exactly or through a wildcard one label
// above it (*.example.com covers a.example.com, as in the Ingress API).
func (x *Index) hostCollisions(now time.Time) []StandingConflict {
	byHost := x.ingressEntries(now)
	below := map[string][]string{} // domain -> its hosts one label below
	for host := range byHost {
		if parent := parentDomain(host); parent != "" && !isWildcard(host) {
			below[parent] = append(below[parent], host)
		}
	}
	type pairKey struct {
		a, b       objectKey
		host, path string
	}
	seen := map[pairKey]bool{}
	var out []StandingConflict
	check := func(a, b hostEntry) {
		if a.c.key.namespace == b.c.key.namespace || !pathsOverlap(a.hp, b.hp) || !x.routesMeet(a.c, b.c) {
			return
		}
		if compareKeys(a.c.key, b.c.key) > 0 {
			a, b = b, a
		}
		// Named by the narrower host and path of the two: what both route.
		host, path := a.hp.host, a.hp.path
		if isWildcard(host) {
			host = b.hp.host
		}
		if len(b.hp.path) > len(path) {
			path = b.hp.path
		}
		k := pairKey{a.c.key, b.c.key, host, path}
		if seen[k] {
			return
		}
		seen[k] = true
		out = append(out, StandingConflict{
			Rule: policies.RuleIngressHostConflicts, Host: host, Path: path,
			Holders: [2]policies.Holder{
				holderOf(a.c.key, "host "+a.hp.host+" path "+a.hp.path, a.c.pending),
				holderOf(b.c.key, "host "+b.hp.host+" path "+b.hp.path, b.c.pending),
			},
		})
	}
	for host, es := range byHost {
		for i, a := range es {
			for _, b := range es[i+1:] {
				check(a, b)
			}
		}
		if !isWildcard(host) {
			continue
		}
		for _, h := range below[parentDomain(host)] {
			for _, a := range es {
				for _, b := range byHost[h] {
					check(a, b)
				}
			}
		}
	}
	return out
}
