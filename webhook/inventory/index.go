package inventory

import (
	"maps"
	"math/bits"
	"slices"
	"sync"
	"time"
)

// portKey is a host port's (protocol, port).
type portKey struct {
	protocol string
	port     int32
}

// members is a set of claims.
type members map[*claims]struct{}

// Index holds every claim by the keys lookups use. All methods are safe for
// concurrent use.
type Index struct {
	mu sync.RWMutex
	// objects are the claims of the objects the informers show, pending
	// those of admitted requests not shown yet.
	objects map[objectKey]*claims
	pending map[objectKey]*claims
	// queue holds pending claims in the order they expire (one TTL for all).
	queue []*claims
	// owners maps a ReplicaSet or Job to its controller owner, so that Pods
	// are named by their Deployment or CronJob; owned holds the claims with
	// host ports whose group is a ReplicaSet or Job, to move them to the
	// holder they resolve to when that owner changes.
	owners map[objectKey]ref
	owned  map[objectKey]members

	hostPorts map[portKey]*portHolders
	nodePorts map[int32]members
	// hosts holds the claims on each Ingress host; domains those on the
	// hosts one label below each domain, for a wildcard request
	// (*.example.com) to find a.example.com.
	hosts   map[string]*hostIndex
	domains map[string]*hostIndex
	// inheriting holds the routes without hostnames by each parent they
	// attach to; derived the claims on the hostnames each inherits from its
	// parents' listeners, indexed in hosts like an Ingress's (gateways.go).
	// dirty lists the parents whose listeners changed since the derived
	// claims of their routes were made.
	inheriting map[objectKey]members
	derived    map[*claims]*claims
	dirty      []objectKey
	// taken counts node ports held by Services and host ports of any
	// protocol (a hostPort inside the NodePort range collides with a
	// nodePort), with a bit set mirroring count > 0 for fast free-port scans.
	taken     map[int32]int
	takenBits [65536 / 64]uint64
	// gone remembers when the informers showed an object's deletion, in
	// that order (goneQueue), for as long as a reservation of it may count
	// (SetRemember): a deleted object's reservation no longer does.
	gone      map[objectKey]time.Time
	goneQueue []objectKey
	remember  time.Duration
	// gen counts the claims added, each stamped with it (claims.gen).
	gen uint64
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{
		objects:    map[objectKey]*claims{},
		pending:    map[objectKey]*claims{},
		owners:     map[objectKey]ref{},
		owned:      map[objectKey]members{},
		hostPorts:  map[portKey]*portHolders{},
		nodePorts:  map[int32]members{},
		hosts:      map[string]*hostIndex{},
		domains:    map[string]*hostIndex{},
		inheriting: map[objectKey]members{},
		derived:    map[*claims]*claims{},
		taken:      map[int32]int{},
		gone:       map[objectKey]time.Time{},
	}
}

// SetRemember sets how long deletions are remembered.
func (x *Index) SetRemember(d time.Duration) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.remember = d
}

// Upsert replaces what the informers know of one object. A pending claim of
// the same object is dropped once the informer shows a newer version.
func (x *Index) Upsert(c *claims) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if resolvable(c.key.kind) {
		x.setOwner(c.key, c.owner)
	}
	if old, ok := x.objects[c.key]; ok {
		x.remove(old)
		delete(x.objects, c.key)
	}
	if p, ok := x.pending[c.key]; ok && (p.resourceVersion == "" || newerResourceVersion(c.resourceVersion, p.resourceVersion)) {
		x.remove(p)
		delete(x.pending, c.key)
	}
	defer x.settleLocked()
	if c.empty() {
		return
	}
	x.gen++
	c.gen = x.gen
	x.objects[c.key] = c
	x.add(c)
}

// Delete forgets an object the informers no longer show.
func (x *Index) Delete(key objectKey) { x.DeleteAt(key, time.Time{}) }

// DeleteAt forgets an object the informers showed deleted at now, and
// remembers when (a zero now remembers nothing).
func (x *Index) DeleteAt(key objectKey, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !now.IsZero() && x.remember > 0 {
		if _, ok := x.gone[key]; !ok {
			x.goneQueue = append(x.goneQueue, key)
		}
		x.gone[key] = now
	}
	x.setOwner(key, ref{})
	if old, ok := x.objects[key]; ok {
		x.remove(old)
		delete(x.objects, key)
	}
	x.settleLocked()
}

// AddPending records the claims of an admitted request until the informer
// shows the object, or until expires. It replaces an earlier pending claim of
// the same object.
func (x *Index) AddPending(c *claims, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expireLocked(now)
	x.putPendingLocked(c)
	x.settleLocked()
}

// putPendingLocked makes c the pending claim of its object, in place of an
// earlier one, stamped with the next generation (claims of nothing are
// dropped).
func (x *Index) putPendingLocked(c *claims) {
	if old, ok := x.pending[c.key]; ok {
		x.remove(old)
		delete(x.pending, c.key)
	}
	if c.empty() {
		return
	}
	c.pending = true
	x.gen++
	c.gen = x.gen
	x.pending[c.key] = c
	// In the order they expire, which is the order they came in unless two
	// requests took their time and the lock in different orders.
	i := len(x.queue)
	for i > 0 && c.expires.Before(x.queue[i-1].expires) {
		i--
	}
	x.queue = slices.Insert(x.queue, i, c)
	x.add(c)
}

// ReleaseTentative drops a tentative pending claim of the object.
func (x *Index) ReleaseTentative(key objectKey) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if p, ok := x.pending[key]; ok && p.tentative {
		x.remove(p)
		delete(x.pending, key)
	}
	x.settleLocked()
}

// Expire drops pending claims that expired before now.
func (x *Index) Expire(now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expireLocked(now)
	x.settleLocked()
}

func (x *Index) expireLocked(now time.Time) {
	x.forgetLocked(now)
	n := 0
	for _, c := range x.queue {
		if c.live(now) {
			break
		}
		n++
		if x.pending[c.key] == c {
			x.remove(c)
			delete(x.pending, c.key)
		}
	}
	if n > 0 {
		x.queue = append(x.queue[:0], x.queue[n:]...)
	}
}

// forgetLocked drops the deletions older than x.remember.
func (x *Index) forgetLocked(now time.Time) {
	n := 0
	for _, k := range x.goneQueue {
		if at, ok := x.gone[k]; ok && now.Sub(at) < x.remember {
			break
		}
		delete(x.gone, k)
		n++
	}
	if n > 0 {
		x.goneQueue = append(x.goneQueue[:0], x.goneQueue[n:]...)
	}
}

// Len returns how many objects and pending objects hold something.
func (x *Index) Len() (objects, pending int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.objects), len(x.pending)
}

// expireDue drops the pending claims that expired before now, if any did:
// a request then never meets one.
func (x *Index) expireDue(now time.Time) {
	x.mu.RLock()
	due := len(x.queue) > 0 && !x.queue[0].live(now)
	x.mu.RUnlock()
	if due {
		x.Expire(now)
	}
}

// resolvable reports whether objects of the kind may be named by their
// owner (a ReplicaSet by its Deployment, a Job by its CronJob).
func resolvable(kind string) bool { return kind == "ReplicaSet" || kind == "Job" }

// setOwner records the controller owner of a ReplicaSet or Job (ref{}: none)
// and moves the claims of its pods to the holder they now resolve to.
func (x *Index) setOwner(key objectKey, owner ref) {
	if old, ok := x.owners[key]; old == owner && ok == (owner.kind != "") {
		return
	}
	moved := slices.Collect(maps.Keys(x.owned[key]))
	for _, c := range moved {
		x.removeHostPorts(c)
	}
	if owner.kind != "" {
		x.owners[key] = owner
	} else {
		delete(x.owners, key)
	}
	for _, c := range moved {
		x.addHostPorts(c)
	}
}

func (x *Index) add(c *claims) {
	x.addHostPorts(c)
	for _, np := range c.nodePorts {
		if x.nodePorts[np.port] == nil {
			x.nodePorts[np.port] = members{}
		}
		x.nodePorts[np.port][c] = struct{}{}
		x.take(np.port, 1)
	}
	x.addHosts(c)
	x.addGatewayParts(c)
}

func (x *Index) remove(c *claims) {
	x.removeHostPorts(c)
	for _, np := range c.nodePorts {
		delete(x.nodePorts[np.port], c)
		if len(x.nodePorts[np.port]) == 0 {
			delete(x.nodePorts, np.port)
		}
		x.take(np.port, -1)
	}
	x.removeHosts(c)
	x.removeGatewayParts(c)
}

// addHostPorts indexes c's host ports under the holder its group resolves
// to now.
func (x *Index) addHostPorts(c *claims) {
	if len(c.hostPorts) == 0 {
		return
	}
	g := c.group()
	c.top = x.resolve(g)
	if resolvable(g.kind) {
		if x.owned[g] == nil {
			x.owned[g] = members{}
		}
		x.owned[g][c] = struct{}{}
	}
	for i, hp := range c.hostPorts {
		x.take(hp.port, 1)
		k := portKey{protocol: hp.protocol, port: hp.port}
		if slices.ContainsFunc(c.hostPorts[:i], func(o hostPort) bool { return o.port == k.port && o.protocol == k.protocol }) {
			continue
		}
		p := x.hostPorts[k]
		if p == nil {
			p = newPortHolders()
			x.hostPorts[k] = p
		}
		p.add(c, k)
	}
}

func (x *Index) removeHostPorts(c *claims) {
	if len(c.hostPorts) == 0 {
		return
	}
	if g := c.group(); resolvable(g.kind) {
		delete(x.owned[g], c)
		if len(x.owned[g]) == 0 {
			delete(x.owned, g)
		}
	}
	for i, hp := range c.hostPorts {
		x.take(hp.port, -1)
		k := portKey{protocol: hp.protocol, port: hp.port}
		if slices.ContainsFunc(c.hostPorts[:i], func(o hostPort) bool { return o.port == k.port && o.protocol == k.protocol }) {
			continue
		}
		if p := x.hostPorts[k]; p != nil {
			p.remove(c)
			if p.empty() {
				delete(x.hostPorts, k)
			}
		}
	}
}

func (x *Index) take(port int32, delta int) {
	if port <= 0 || port > 65535 {
		return
	}
	n := x.taken[port] + delta
	if n <= 0 {
		delete(x.taken, port)
		x.takenBits[port/64] &^= 1 << (port % 64)
		return
	}
	x.taken[port] = n
	x.takenBits[port/64] |= 1 << (port % 64)
}

// takenBit reports whether a claim holds port (any protocol, or a nodePort).
func (x *Index) takenBit(port int32) bool {
	return port > 0 && port <= 65535 && x.takenBits[port/64]&(1<<(port%64)) != 0
}

// nextFree returns the first port in [from, to] that is not taken and not
// excluded, or 0.
func (x *Index) nextFree(from, to int32, excluded func(int32) bool) int32 {
	for p := from; p <= to && p > 0 && p <= 65535; {
		// Skip the run of taken ports starting at p (to the end of its word at most).
		if skip := int32(bits.TrailingZeros64(^(x.takenBits[p/64] >> (p % 64)))); skip > 0 {
			p += skip
			continue
		}
		if !excluded(p) {
			return p
		}
		p++
	}
	return 0
}

func isWildcard(host string) bool { return len(host) > 2 && host[0] == '*' && host[1] == '.' }
