package inventory

import (
	"slices"
	"time"
)

// Learn adds what other replicas reserved to the inventory as pending claims,
// until they expire or the informers show the objects. It reports whether one
// of them may conflict with one of own (the request's own reservations) and
// is known to the inventory only since seen (the generation of the facts the
// request was judged with, policies.Facts.Seen): the request must then be
// judged again. A holder learnt by another request in between counts as
// news too, as does an object the informers showed in between.
func (inv *Inventory) Learn(rs []Reservation, own []Reservation, seen uint64) bool {
	now := inv.opts.Now()
	judge := false
	for i := range rs {
		r := &rs[i]
		if !r.Until.After(now) {
			continue
		}
		inv.index.learn(r, now)
		if !judge && slices.ContainsFunc(own, func(o Reservation) bool { return mayConflict(r, &o) }) {
			judge = inv.index.knownSince(r, seen)
		}
	}
	return judge
}

// generation is the index's generation now.
func (x *Index) generation() uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.gen
}

// knownSince reports whether what the index holds of r's object (shown by
// the informers, or pending) was added after generation seen.
func (x *Index) knownSince(r *Reservation, seen uint64) bool {
	key := objectKey{kind: r.Kind, namespace: r.Namespace, name: r.Name}
	x.mu.RLock()
	defer x.mu.RUnlock()
	if c, ok := x.objects[key]; ok && c.gen > seen {
		return true
	}
	c, ok := x.pending[key]
	return ok && c.gen > seen
}

// mayConflict reports whether the reservations a and b may claim one thing:
// it errs on the side of yes (the request is then judged again, where the
// inventory decides).
func mayConflict(a, b *Reservation) bool {
	if a.SameObject(b) || (a.OwnerKind != "" && a.OwnerKind == b.OwnerKind && a.OwnerName == b.OwnerName && a.Namespace == b.Namespace) {
		return false
	}
	x, y := reservedClaims(a), reservedClaims(b)
	for _, p := range x.hostPorts {
		for _, q := range y.hostPorts {
			if p.port == q.port && p.protocol == q.protocol && hostIPsOverlap(p.hostIP, q.hostIP) && x.scope.overlaps(y.scope) {
				return true
			}
		}
	}
	for _, p := range x.nodePorts {
		if slices.ContainsFunc(y.nodePorts, func(q nodePort) bool { return q.port == p.port }) {
			return true
		}
	}
	if a.Namespace == b.Namespace {
		return false
	}
	for _, p := range x.hosts {
		for _, q := range y.hosts {
			if hostsMeet(p.host, q.host) && pathsOverlap(p, q) {
				return true
			}
		}
	}
	return false
}

// hostsMeet reports whether two Ingress hosts can name one host: equal, or
// one a wildcard over the other's parent domain.
func hostsMeet(a, b string) bool {
	switch {
	case a == b:
		return true
	case isWildcard(a) && !isWildcard(b):
		return parentDomain(a) == parentDomain(b)
	case isWildcard(b) && !isWildcard(a):
		return parentDomain(b) == parentDomain(a)
	}
	return false
}

// learn records r as a pending claim of its object, merged with what earlier
// reservations of the same object and version said, unless the inventory
// knows as much already (the informers show the object, a claim this replica
// admitted, or the same reservation learnt before).
func (x *Index) learn(r *Reservation, now time.Time) {
	key := objectKey{kind: r.Kind, namespace: r.Namespace, name: r.Name}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.outdates(r) {
		return
	}
	merged := reservedClaims(r)
	if p, ok := x.pending[key]; ok && p.live(now) {
		if !p.reserved || p.resourceVersion != r.Version {
			// This replica admitted the object itself, or learnt another
			// version of it: the claim it holds is as recent.
			return
		}
		if merged.within(p) {
			return
		}
		merged.union(p)
	}
	x.expireLocked(now)
	x.putPendingLocked(merged)
	x.settleLocked()
}

// reservedClaims reads a reservation back into claims.
func reservedClaims(r *Reservation) *claims {
	c := &claims{
		key:             objectKey{kind: r.Kind, namespace: r.Namespace, name: r.Name},
		owner:           ownerRef(r.OwnerKind, r.OwnerName),
		resourceVersion: r.Version,
		reserved:        true,
		expires:         r.Until,
	}
	for _, hp := range r.HostPorts {
		if hp.Port > 0 && hp.Port <= 65535 {
			c.hostPorts = append(c.hostPorts, hostPort{port: hp.Port, protocol: intern(hp.Protocol), hostIP: hp.HostIP})
		}
	}
	if len(c.hostPorts) > 0 {
		c.scope = nodeScope{nodeName: r.NodeName, selector: r.NodeSelector}
	}
	for _, np := range r.NodePorts {
		if np.Port > 0 && np.Port <= 65535 {
			c.nodePorts = append(c.nodePorts, nodePort{port: np.Port, protocol: intern(np.Protocol)})
		}
	}
	for _, h := range r.Hosts {
		c.hosts = append(c.hosts, hostPath{host: h.Host, path: h.Path, prefix: h.Prefix})
	}
	return c
}

// within reports whether every claim of c is one of o's.
func (c *claims) within(o *claims) bool {
	for _, hp := range c.hostPorts {
		if !slices.ContainsFunc(o.hostPorts, hp.same) {
			return false
		}
	}
	for _, np := range c.nodePorts {
		if !slices.Contains(o.nodePorts, np) {
			return false
		}
	}
	for _, h := range c.hosts {
		if !slices.Contains(o.hosts, h) {
			return false
		}
	}
	return true
}

// union adds o's claims to c (c then expires when the later of the two does).
func (c *claims) union(o *claims) {
	for _, hp := range o.hostPorts {
		if !slices.ContainsFunc(c.hostPorts, hp.same) {
			c.hostPorts = append(c.hostPorts, hp)
		}
	}
	if len(c.hostPorts) > 0 && c.scope.nodeName == "" && c.scope.selector == nil {
		c.scope = o.scope
	}
	for _, np := range o.nodePorts {
		if !slices.Contains(c.nodePorts, np) {
			c.nodePorts = append(c.nodePorts, np)
		}
	}
	for _, h := range o.hosts {
		if !slices.Contains(c.hosts, h) {
			c.hosts = append(c.hosts, h)
		}
	}
	if o.expires.After(c.expires) {
		c.expires = o.expires
	}
}

// same reports whether two host ports bind the same (protocol, port, hostIP).
func (hp hostPort) same(o hostPort) bool {
	return hp.port == o.port && hp.protocol == o.protocol && hp.hostIP == o.hostIP
}
