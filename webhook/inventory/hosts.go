package inventory

import (
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/portreeve/portreeve/policies"
)

// The Ingress host index. What one Ingress claims on one host (a hostClaim)
// is kept in the hostIndex of that host and, for a host below a domain, in
// the hostIndex of the domain (a wildcard request *.example.com covers every
// host one label below example.com). A hostIndex keeps its hostClaims
// ordered by namespace, name and host, in two sets: those that claim the
// whole host (a Prefix path "/", which overlaps every path), and the others,
// which it also keeps by the first element of their paths (two paths overlap
// only when it is the same, or one is a Prefix "/"). A request counts the
// claims of the other namespaces from the sizes of the sets it needs and the
// ranks of its own namespace in them, reads their first entries, and checks
// path by path only the claims that share its path's first element (none
// when it claims the whole host itself).

// hostClaimKey is one Ingress on one host.
type hostClaimKey struct {
	key  objectKey
	host string
}

// hostClaim is what one Ingress claims on one host: the claims of the
// object the informer shows, and of its admitted update while the informer
// has not shown it (two claims, judged path by path).
type hostClaim struct {
	hostClaimKey
	claims []*claims
}

func compareHostClaims(a, b *hostClaim) int {
	if c := compareKeys(a.key, b.key); c != 0 {
		return c
	}
	return strings.Compare(a.host, b.host)
}

// paths returns whether the single claim of e claims the whole host, and
// otherwise the first elements of its paths there.
func (e *hostClaim) paths() (whole bool, segments []string) {
	for _, p := range e.claims[0].hosts {
		if p.host != e.host {
			continue
		}
		if wholeHost(p) {
			return true, nil
		}
		if s := segment(p.path); !slices.Contains(segments, s) {
			segments = append(segments, s)
		}
	}
	return false, segments
}

// hostIndex holds the claims on one host, or on the hosts one label below one
// domain.
type hostIndex struct {
	// whole holds the hostClaims (of one object each) that claim the whole
	// host, partial the others, and segments them again by the first
	// elements of their paths. Each is nil until needed.
	whole, partial *ordered[*hostClaim]
	segments       map[string]*ordered[*hostClaim]
	// twice holds the hostClaims of an object and its admitted update.
	twice []*hostClaim
}

func (hi *hostIndex) empty() bool { return hi.whole.len()+hi.partial.len()+len(hi.twice) == 0 }

// get returns the hostClaim of k.
func (hi *hostIndex) get(k hostClaimKey) *hostClaim {
	probe := &hostClaim{hostClaimKey: k}
	for _, set := range [2]*ordered[*hostClaim]{hi.whole, hi.partial} {
		if e, ok := set.get(probe); ok {
			return e
		}
	}
	if i := slices.IndexFunc(hi.twice, func(e *hostClaim) bool { return e.hostClaimKey == k }); i >= 0 {
		return hi.twice[i]
	}
	return nil
}

// segment is the first element of a path ("/api/v1" -> "api"; "" for "/"):
// two paths that can route the same request have the same, unless one of
// them is a Prefix "/".
func segment(path string) string {
	first, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSuffix(path, "/"), "/"), "/")
	return first
}

// wholeHost reports whether p claims every path of its host.
func wholeHost(p hostPath) bool { return p.prefix && strings.TrimSuffix(p.path, "/") == "" }

func (hi *hostIndex) add(c *claims, host string) {
	k := hostClaimKey{key: c.key, host: host}
	e := hi.get(k)
	if e == nil {
		e = &hostClaim{hostClaimKey: k}
	}
	hi.unplace(e)
	e.claims = append(e.claims, c)
	hi.place(e)
}

func (hi *hostIndex) remove(c *claims, host string) {
	e := hi.get(hostClaimKey{key: c.key, host: host})
	if e == nil || !slices.Contains(e.claims, c) {
		return
	}
	hi.unplace(e)
	e.claims = slices.DeleteFunc(e.claims, func(o *claims) bool { return o == c })
	hi.place(e)
}

func (hi *hostIndex) place(e *hostClaim) {
	switch len(e.claims) {
	case 0:
		return
	case 1:
	default:
		hi.twice = append(hi.twice, e)
		return
	}
	whole, segments := e.paths()
	if whole {
		hi.whole = insertInto(hi.whole, e)
		return
	}
	hi.partial = insertInto(hi.partial, e)
	for _, s := range segments {
		if hi.segments == nil {
			hi.segments = map[string]*ordered[*hostClaim]{}
		}
		hi.segments[s] = insertInto(hi.segments[s], e)
	}
}

func (hi *hostIndex) unplace(e *hostClaim) {
	switch len(e.claims) {
	case 0:
		return
	case 1:
	default:
		hi.twice = slices.DeleteFunc(hi.twice, func(o *hostClaim) bool { return o == e })
		return
	}
	whole, segments := e.paths()
	if whole {
		hi.whole = deleteFrom(hi.whole, e)
		return
	}
	hi.partial = deleteFrom(hi.partial, e)
	for _, s := range segments {
		if hi.segments[s] = deleteFrom(hi.segments[s], e); hi.segments[s] == nil {
			delete(hi.segments, s)
		}
	}
}

// insertInto inserts e into set, made if nil, and returns the set.
func insertInto(set *ordered[*hostClaim], e *hostClaim) *ordered[*hostClaim] {
	if set == nil {
		set = newOrdered(compareHostClaims)
	}
	set.insert(e)
	return set
}

// deleteFrom deletes e from set and returns the set, nil once empty.
func deleteFrom(set *ordered[*hostClaim], e *hostClaim) *ordered[*hostClaim] {
	if set.delete(e); set.len() == 0 {
		return nil
	}
	return set
}

// inNamespace counts the claims of set in namespace ns.
func inNamespace(set *ordered[*hostClaim], ns string) int {
	return set.rank(func(e *hostClaim) bool { return e.key.namespace <= ns }) -
		set.rank(func(e *hostClaim) bool { return e.key.namespace < ns })
}

// outside yields the claims of set that are not in namespace ns, skipping
// those that are at once.
func outside(set *ordered[*hostClaim], ns string) iter.Seq[*hostClaim] {
	return func(yield func(*hostClaim) bool) {
		for e := range set.from(nil) {
			if e.key.namespace >= ns {
				break
			}
			if !yield(e) {
				return
			}
		}
		for e := range set.from(func(e *hostClaim) bool { return e.key.namespace <= ns }) {
			if !yield(e) {
				return
			}
		}
	}
}

// holder names c as the holder of h's host: by the first of its paths on
// e's host that overlaps h's, false when none does.
func (e *hostClaim) holder(c *claims, h hostPath) (policies.Holder, bool) {
	for _, o := range c.hosts {
		if o.host == e.host && pathsOverlap(h, o) {
			return policies.Holder{
				Namespace: c.key.namespace, Kind: c.key.kind, Name: c.key.name,
				Claim: "host " + o.host + " path " + o.path, Pending: c.pending,
			}, true
		}
	}
	return policies.Holder{}, false
}

// overlaps reports whether c claims a path of e's host that overlaps h's.
func (e *hostClaim) overlaps(c *claims, h hostPath) bool {
	for _, o := range c.hosts {
		if o.host == e.host && pathsOverlap(h, o) {
			return true
		}
	}
	return false
}

// collect offers to first the holders of the claims on hi that overlap h
// and are not in namespace ns, and returns how many there are. With a
// filter (a route request), only the claims it accepts count, each judged
// on its own.
func (hi *hostIndex) collect(h hostPath, ns string, now time.Time, first *firstHolders, filter func(*claims) bool) int {
	// Claims of the whole host overlap every path, and a request for the
	// whole host overlaps every claim; others are checked path by path.
	exact := [2]*ordered[*hostClaim]{hi.whole}
	var check *ordered[*hostClaim]
	if wholeHost(h) {
		exact[1] = hi.partial
	} else {
		check = hi.segments[segment(h.path)]
	}
	total := 0
	for _, set := range exact {
		if filter != nil {
			total += collectEach(set, h, ns, first, filter)
			continue
		}
		total += set.len() - inNamespace(set, ns)
		for e := range outside(set, ns) {
			if first.after(e.key) {
				break
			}
			if hd, ok := e.holder(e.claims[0], h); ok {
				first.offer(hd)
			}
		}
	}
	total += collectEach(check, h, ns, first, filter)
	for _, e := range hi.twice {
		if e.key.namespace == ns {
			continue
		}
		var seen []string // claims of the object and of its update may be the same
		for _, c := range e.claims {
			if !c.live(now) || (filter != nil && !filter(c)) {
				continue
			}
			if hd, ok := e.holder(c, h); ok {
				if !slices.Contains(seen, hd.Claim) {
					seen = append(seen, hd.Claim)
					total++
				}
				first.offer(hd)
			}
		}
	}
	return total
}

// collectEach offers to first the holders of the single claims of set
// outside namespace ns that overlap h (and that filter accepts, if set),
// judging each, and returns how many there are.
func collectEach(set *ordered[*hostClaim], h hostPath, ns string, first *firstHolders, filter func(*claims) bool) int {
	total := 0
	for e := range outside(set, ns) {
		if !e.overlaps(e.claims[0], h) || (filter != nil && !filter(e.claims[0])) {
			continue
		}
		total++
		if !first.after(e.key) {
			hd, _ := e.holder(e.claims[0], h)
			first.offer(hd)
		}
	}
	return total
}

// hostHolders returns the Ingresses of other namespaces that claim h's host
// (exactly, or through a wildcard either way) on an overlapping path: the
// first limit holders in the order of policies.SortHolders (one per Ingress
// and host), and how many there are in all. filter, when set, says which
// claims a route request meets (routeFilter).
func (x *Index) hostHolders(req *request, h hostPath, now time.Time, limit int, filter func(*claims) bool) ([]policies.Holder, int) {
	idx := [2]*hostIndex{x.hosts[h.host]}
	switch parent := parentDomain(h.host); {
	case parent == "":
	case isWildcard(h.host):
		idx[1] = x.domains[parent]
	default:
		idx[1] = x.hosts["*."+parent]
	}
	first := firstHolders{limit: limit}
	total := 0
	for _, hi := range idx {
		if hi != nil {
			total += hi.collect(h, req.key.namespace, now, &first, filter)
		}
	}
	return first.hs, total
}

// addHosts indexes c's hosts, by host and by parent domain.
func (x *Index) addHosts(c *claims) {
	for i, h := range c.hosts {
		if slices.ContainsFunc(c.hosts[:i], func(o hostPath) bool { return o.host == h.host }) {
			continue
		}
		hostIndexOf(x.hosts, h.host).add(c, h.host)
		if parent := parentDomain(h.host); parent != "" && !isWildcard(h.host) {
			hostIndexOf(x.domains, parent).add(c, h.host)
		}
	}
}

// removeHosts drops c's hosts from the index.
func (x *Index) removeHosts(c *claims) {
	for i, h := range c.hosts {
		if slices.ContainsFunc(c.hosts[:i], func(o hostPath) bool { return o.host == h.host }) {
			continue
		}
		dropHostClaim(x.hosts, h.host, h.host, c)
		if parent := parentDomain(h.host); parent != "" && !isWildcard(h.host) {
			dropHostClaim(x.domains, parent, h.host, c)
		}
	}
}

func hostIndexOf(m map[string]*hostIndex, k string) *hostIndex {
	hi := m[k]
	if hi == nil {
		hi = &hostIndex{}
		m[k] = hi
	}
	return hi
}

// dropHostClaim removes c's claim on host from the hostIndex m holds at k.
func dropHostClaim(m map[string]*hostIndex, k, host string, c *claims) {
	hi := m[k]
	if hi == nil {
		return
	}
	hi.remove(c, host)
	if hi.empty() {
		delete(m, k)
	}
}
