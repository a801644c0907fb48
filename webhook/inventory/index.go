package inventory

import (
	"math/bits"
	"sync"
	"time"
)

// portKey is a host port's (protocol, port).
type portKey struct {
	protocol string
	port     int32
}

// members are the claims of one group (an owner and what it owns) at one key.
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
	// are named by their Deployment or CronJob.
	owners map[objectKey]ref

	hostPorts map[portKey]map[objectKey]members
	nodePorts map[int32]members
	hosts     map[string]members
	// children maps a domain to the hosts one label below it, for a wildcard
	// request (*.example.com) to find a.example.com.
	children map[string]map[string]int
	// taken counts node ports held by Services and host ports of any
	// protocol (a hostPort inside the NodePort range collides with a
	// nodePort), with a bit set mirroring count > 0 for fast free-port scans.
	taken     map[int32]int
	takenBits [65536 / 64]uint64
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{
		objects:   map[objectKey]*claims{},
		pending:   map[objectKey]*claims{},
		owners:    map[objectKey]ref{},
		hostPorts: map[portKey]map[objectKey]members{},
		nodePorts: map[int32]members{},
		hosts:     map[string]members{},
		children:  map[string]map[string]int{},
		taken:     map[int32]int{},
	}
}

// Upsert replaces what the informers know of one object. A pending claim of
// the same object is dropped once the informer shows a newer version.
func (x *Index) Upsert(c *claims) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if c.key.kind == "ReplicaSet" || c.key.kind == "Job" {
		if c.owner.kind != "" {
			x.owners[c.key] = c.owner
		} else {
			delete(x.owners, c.key)
		}
	}
	if old, ok := x.objects[c.key]; ok {
		x.remove(old)
		delete(x.objects, c.key)
	}
	if p, ok := x.pending[c.key]; ok && (p.resourceVersion == "" || newerResourceVersion(c.resourceVersion, p.resourceVersion)) {
		x.remove(p)
		delete(x.pending, c.key)
	}
	if c.empty() {
		return
	}
	x.objects[c.key] = c
	x.add(c)
}

// Delete forgets an object the informers no longer show.
func (x *Index) Delete(key objectKey) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.owners, key)
	if old, ok := x.objects[key]; ok {
		x.remove(old)
		delete(x.objects, key)
	}
}

// AddPending records the claims of an admitted request until the informer
// shows the object, or until expires. It replaces an earlier pending claim of
// the same object.
func (x *Index) AddPending(c *claims, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expireLocked(now)
	if old, ok := x.pending[c.key]; ok {
		x.remove(old)
		delete(x.pending, c.key)
	}
	if c.empty() {
		return
	}
	c.pending = true
	x.pending[c.key] = c
	x.queue = append(x.queue, c)
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
}

// Expire drops pending claims that expired before now.
func (x *Index) Expire(now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expireLocked(now)
}

func (x *Index) expireLocked(now time.Time) {
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

// Len returns how many objects and pending objects hold something.
func (x *Index) Len() (objects, pending int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.objects), len(x.pending)
}

func (x *Index) add(c *claims) {
	g := c.group()
	for _, hp := range c.hostPorts {
		k := portKey{protocol: hp.protocol, port: hp.port}
		groups := x.hostPorts[k]
		if groups == nil {
			groups = map[objectKey]members{}
			x.hostPorts[k] = groups
		}
		if groups[g] == nil {
			groups[g] = members{}
		}
		groups[g][c] = struct{}{}
		x.take(hp.port, 1)
	}
	for _, np := range c.nodePorts {
		if x.nodePorts[np.port] == nil {
			x.nodePorts[np.port] = members{}
		}
		x.nodePorts[np.port][c] = struct{}{}
		x.take(np.port, 1)
	}
	for _, h := range c.hosts {
		if x.hosts[h.host] == nil {
			x.hosts[h.host] = members{}
		}
		x.hosts[h.host][c] = struct{}{}
		if parent := parentDomain(h.host); parent != "" && !isWildcard(h.host) {
			if x.children[parent] == nil {
				x.children[parent] = map[string]int{}
			}
			x.children[parent][h.host]++
		}
	}
}

func (x *Index) remove(c *claims) {
	g := c.group()
	for _, hp := range c.hostPorts {
		k := portKey{protocol: hp.protocol, port: hp.port}
		if groups := x.hostPorts[k]; groups != nil {
			delete(groups[g], c)
			if len(groups[g]) == 0 {
				delete(groups, g)
			}
			if len(groups) == 0 {
				delete(x.hostPorts, k)
			}
		}
		x.take(hp.port, -1)
	}
	for _, np := range c.nodePorts {
		delete(x.nodePorts[np.port], c)
		if len(x.nodePorts[np.port]) == 0 {
			delete(x.nodePorts, np.port)
		}
		x.take(np.port, -1)
	}
	for _, h := range c.hosts {
		delete(x.hosts[h.host], c)
		if len(x.hosts[h.host]) == 0 {
			delete(x.hosts, h.host)
		}
		if parent := parentDomain(h.host); parent != "" && !isWildcard(h.host) {
			if x.children[parent][h.host]--; x.children[parent][h.host] <= 0 {
				delete(x.children[parent], h.host)
			}
			if len(x.children[parent]) == 0 {
				delete(x.children, parent)
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
