package suggest

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/policies/exposure"
)

// findConflicts finds what no grant can fix among the records, marks the
// items concerned (they are not granted) and describes each conflict:
//
//   - one hostPort and protocol held by two different workloads that may
//     share a node: they may unless both name a node and the names differ,
//     or their nodeSelectors give one key different values (affinity and
//     taints are not considered: the test stays simple and conservative);
//     hostIPs must overlap too (empty and 0.0.0.0 overlap every address).
//     Only objects that run pods now hold ports (not a Deployment scaled to
//     zero, a finished Job or a suspended CronJob).
//   - a hostPort inside the NodePort range: kube-proxy opens every
//     allocated node port on every node.
//   - one nodePort (or healthCheckNodePort) held by two Services.
//   - one Ingress or route host and path claimed in two namespaces: the same
//     host, or a wildcard covering it (one label deep), on overlapping paths
//     (the same path, or a Prefix path covering the other); two routes only
//     where they can attach to one listener (routesMeet).
func findConflicts(records []*record, nodePortRange policies.PortSpan, listeners listenerIndex) []Problem {
	var out []Problem
	out = append(out, hostPortConflicts(records)...)
	for _, r := range records {
		for _, it := range r.items {
			if it.kind == hostPortItem && nodePortRange.From <= it.port && it.port <= nodePortRange.To {
				it.conflict = true
				out = append(out, Problem{
					Message: fmt.Sprintf("hostPort %d/%s lies in the NodePort range %d-%d, where kube-proxy opens every allocated node port on every node: not granted",
						it.port, it.protocol, nodePortRange.From, nodePortRange.To),
					Objects: []Ref{r.ref},
				})
			}
		}
	}
	out = append(out, nodePortConflicts(records)...)
	out = append(out, ingressConflicts(records, listeners)...)
	return out
}

type portKey struct {
	port     int
	protocol string
}

func comparePortKeys(a, b portKey) int {
	return cmp.Or(cmp.Compare(a.port, b.port), cmp.Compare(a.protocol, b.protocol))
}

func hostPortConflicts(records []*record) []Problem {
	type holder struct {
		r  *record
		it *item
	}
	byPort := map[portKey][]holder{}
	for _, r := range records {
		if !r.active {
			continue
		}
		for _, it := range r.items {
			if it.kind == hostPortItem {
				k := portKey{it.port, it.protocol}
				byPort[k] = append(byPort[k], holder{r, it})
			}
		}
	}
	keys := mapKeys(byPort)
	slices.SortFunc(keys, comparePortKeys)
	var out []Problem
	for _, k := range keys {
		hs := byPort[k]
		involved := map[*record]bool{}
		for i, a := range hs {
			for _, b := range hs[i+1:] {
				if a.r == b.r || !hostIPsOverlap(a.it.hostIP, b.it.hostIP) || !mayShareNode(a.r, b.r) {
					continue
				}
				a.it.conflict, b.it.conflict = true, true
				involved[a.r], involved[b.r] = true, true
			}
		}
		if len(involved) == 0 {
			continue
		}
		out = append(out, Problem{
			Message: fmt.Sprintf("hostPort %d/%s is held by %d workloads that may run on the same nodes (no nodeName or nodeSelector tells them apart): granted to none of them",
				k.port, k.protocol, len(involved)),
			Objects: refsOf(involved),
		})
	}
	return out
}

// hostIPsOverlap: two hostIPs of one port collide unless both name different addresses.
func hostIPsOverlap(a, b string) bool {
	wildcard := func(ip string) bool { return ip == "" || ip == "0.0.0.0" }
	return wildcard(a) || wildcard(b) || a == b
}

// mayShareNode reports whether the pods of two records may land on one node.
func mayShareNode(a, b *record) bool {
	if a.nodeName != "" && b.nodeName != "" && a.nodeName != b.nodeName {
		return false
	}
	for k, v := range a.nodeSelector {
		if w, ok := b.nodeSelector[k]; ok && w != v {
			return false
		}
	}
	return true
}

func nodePortConflicts(records []*record) []Problem {
	byPort := map[int]map[*record][]*item{}
	for _, r := range records {
		if !r.opensNodePorts {
			continue
		}
		for _, it := range r.items {
			if it.kind == nodePortItem {
				if byPort[it.port] == nil {
					byPort[it.port] = map[*record][]*item{}
				}
				byPort[it.port][r] = append(byPort[it.port][r], it)
			}
		}
	}
	ports := mapKeys(byPort)
	slices.Sort(ports)
	var out []Problem
	for _, p := range ports {
		holders := byPort[p]
		if len(holders) < 2 {
			continue
		}
		involved := map[*record]bool{}
		for r, items := range holders {
			involved[r] = true
			for _, it := range items {
				it.conflict = true
			}
		}
		out = append(out, Problem{
			Message: fmt.Sprintf("nodePort %d is held by %d Services (the apiserver allocates a node port to one Service only): granted to none of them", p, len(holders)),
			Objects: refsOf(involved),
		})
	}
	return out
}

func ingressConflicts(records []*record, listeners listenerIndex) []Problem {
	type claim struct {
		r *record
		p hostClaim
	}
	byHost := map[string][]claim{}
	for _, r := range records {
		for _, p := range r.paths {
			byHost[p.Host] = append(byHost[p.Host], claim{r, p})
		}
	}
	type conflictKey struct{ host, path string }
	found := map[conflictKey]map[*record]bool{}
	hostsOf := map[*record]map[string]bool{}
	note := func(a, b claim) {
		k := conflictKey{a.p.Host, a.p.Path}
		if found[k] == nil {
			found[k] = map[*record]bool{}
		}
		found[k][a.r], found[k][b.r] = true, true
		for _, c := range []claim{a, b} {
			if hostsOf[c.r] == nil {
				hostsOf[c.r] = map[string]bool{}
			}
			hostsOf[c.r][c.p.Host] = true
		}
	}
	hosts := mapKeys(byHost)
	slices.Sort(hosts)
	for _, h := range hosts {
		// The same host, and the wildcard one label above it.
		candidates := slices.Clone(byHost[h])
		if !isWildcard(h) {
			if _, parent, ok := strings.Cut(h, "."); ok {
				candidates = append(candidates, byHost["*."+parent]...)
			}
		}
		for _, a := range byHost[h] {
			for _, b := range candidates {
				if a.r.ref.Namespace == b.r.ref.Namespace || !pathsOverlap(a.p.HostPath, b.p.HostPath) ||
					!routesMeet(a.r, b.r, a.p.parents, b.p.parents, listeners) {
					continue
				}
				if a.p.Host == b.p.Host && compareRefs(a.r.ref, b.r.ref) > 0 {
					continue // the same pair, found from the other side
				}
				note(a, b)
			}
		}
	}
	for r, hs := range hostsOf {
		for _, it := range r.items {
			if it.kind == ingressHostItem && hs[it.value] {
				it.conflict = true
			}
		}
	}
	keys := mapKeys(found)
	slices.SortFunc(keys, func(a, b conflictKey) int {
		return cmp.Or(cmp.Compare(a.host, b.host), cmp.Compare(a.path, b.path))
	})
	var out []Problem
	for _, k := range keys {
		out = append(out, Problem{
			Message: fmt.Sprintf("%s %s path %s is claimed in %d namespaces (each would steal the other's traffic): granted to none of them",
				hostNoun(found[k]), k.host, k.path, len(namespacesOf(found[k]))),
			Objects: refsOf(found[k]),
		})
	}
	return out
}

// hostNoun names what claims a host: Ingresses, routes or both.
func hostNoun(rs map[*record]bool) string {
	var ingresses, routes bool
	for r := range rs {
		ingresses, routes = ingresses || !r.route, routes || r.route
	}
	switch {
	case !routes:
		return "Ingress host"
	case !ingresses:
		return "route hostname"
	}
	return "Ingress and route host"
}

func isWildcard(host string) bool { return strings.HasPrefix(host, "*.") }

// pathsOverlap: the same path, or a Prefix path covering the other.
func pathsOverlap(a, b exposure.HostPath) bool {
	return a.Path == b.Path || a.Prefix && prefixCovers(a.Path, b.Path) || b.Prefix && prefixCovers(b.Path, a.Path)
}

// prefixCovers matches path elements: /foo covers /foo and /foo/bar, not /foobar.
func prefixCovers(p, q string) bool {
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return true
	}
	q = strings.TrimSuffix(q, "/")
	return q == p || strings.HasPrefix(q, p+"/")
}

func namespacesOf(rs map[*record]bool) map[string]bool {
	out := map[string]bool{}
	for r := range rs {
		out[r.ref.Namespace] = true
	}
	return out
}

func refsOf(rs map[*record]bool) []Ref {
	out := make([]Ref, 0, len(rs))
	for r := range rs {
		out = append(out, r.ref)
	}
	slices.SortFunc(out, compareRefs)
	return out
}

func mapKeys[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
