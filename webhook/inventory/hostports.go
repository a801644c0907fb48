package inventory

import (
	"slices"
	"strings"
)

// The hostPort index. The claims on one (protocol, hostPort) are grouped by
// holder (a holding), and the holdings by what decides a collision apart from
// node names: the hostIP and the node selector of their claims (a bucket).
// Inside a bucket, holdings with a claim on any node are in one ordered set,
// the others in one ordered set plus one per node they hold the port on. A
// request looks at each bucket once, keeps the buckets whose hostIP and
// selector it can collide with, and takes the sets its node name selects:
// their sizes add up to how many hold the port, and their first entries are
// the first holders by name. Holdings whose claims differ in hostIP or
// selector (a rollout that changed the nodeSelector) are judged claim by
// claim, as are the request's own objects.

// scopeClass is what decides whether a claim on a port collides with a
// request, apart from node names: the hostIP it binds ("" for every address)
// and its node selector in canonical form.
type scopeClass struct {
	ip       string
	selector string
}

// classOf returns the class of c's claim on k, and false when no single
// hostIP describes it (c binds k on several specific addresses).
func classOf(c *claims, k portKey) (scopeClass, bool) {
	ip, seen, regular := "", false, true
	for _, hp := range c.hostPorts {
		if hp.port != k.port || hp.protocol != k.protocol {
			continue
		}
		if wildcardIP(hp.hostIP) {
			return scopeClass{selector: selectorKey(c.scope.selector)}, true
		}
		if seen && hp.hostIP != ip {
			regular = false
		}
		ip, seen = hp.hostIP, true
	}
	return scopeClass{ip: ip, selector: selectorKey(c.scope.selector)}, regular
}

// selectorKey is a node selector in canonical form.
func selectorKey(sel map[string]string) string {
	if len(sel) == 0 {
		return ""
	}
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(sel[k])
		b.WriteByte(0)
	}
	return intern(b.String())
}

// portHolders is everything held on one (protocol, hostPort).
type portHolders struct {
	holdings map[objectKey]*holding
	buckets  map[scopeClass]*bucket
	// irregular holds the holdings whose claims differ in class.
	irregular map[*holding]struct{}
}

func newPortHolders() *portHolders {
	return &portHolders{holdings: map[objectKey]*holding{}, buckets: map[scopeClass]*bucket{}}
}

// holding is what one holder (the top owner the index knows) holds on one
// port: the claims of its objects there.
type holding struct {
	holder objectKey
	claims []holdingClaim
	// class is the class of one of its claims, main counts the claims of
	// that class, odd the others (and those without a class): the holding
	// is regular, and in the bucket of class, when odd is 0.
	class     scopeClass
	main, odd int
	anyNode   int // claims that name no node
	pending   int // pending claims
}

// holdingClaim is one claim of a holding, with its class.
type holdingClaim struct {
	*claims
	class   scopeClass
	regular bool
}

// placement says where a holding is indexed.
type placement struct {
	class scopeClass
	state uint8
}

const (
	placedNowhere uint8 = iota // no claims
	placedIrregular
	placedAnyNode
	placedNamed
)

func (h *holding) placement() placement {
	switch {
	case len(h.claims) == 0:
		return placement{}
	case h.odd > 0:
		return placement{state: placedIrregular}
	case h.anyNode > 0:
		return placement{class: h.class, state: placedAnyNode}
	}
	return placement{class: h.class, state: placedNamed}
}

// onNode reports whether a claim of h names node.
func (h *holding) onNode(node string) bool {
	return slices.ContainsFunc(h.claims, func(hc holdingClaim) bool { return hc.scope.nodeName == node })
}

// change adds (d = 1) or removes (d = -1) one claim of h.
func (h *holding) change(hc holdingClaim, d int) {
	if d > 0 {
		h.claims = append(h.claims, hc)
	} else {
		h.claims = slices.DeleteFunc(h.claims, func(o holdingClaim) bool { return o.claims == hc.claims })
	}
	if hc.scope.nodeName == "" {
		h.anyNode += d
	}
	if hc.pending {
		h.pending += d
	}
	switch {
	case d > 0 && len(h.claims) == 1:
		h.class, h.main, h.odd = hc.class, 0, 0
		if hc.regular {
			h.main = 1
		} else {
			h.odd = 1
		}
	case hc.regular && hc.class == h.class:
		h.main += d
	default:
		h.odd += d
	}
	if h.main == 0 && h.odd > 0 {
		// The first class is gone: count again from another claim's.
		h.class, h.main, h.odd = h.claims[0].class, 0, 0
		for _, o := range h.claims {
			if o.regular && o.class == h.class {
				h.main++
			} else {
				h.odd++
			}
		}
	}
}

// bucket holds the holdings of one class on one port.
type bucket struct {
	ip       string
	selector map[string]string
	// anyNode holds the holdings with a claim that names no node; named the
	// others, which onNode has again per node they hold the port on.
	anyNode *ordered[*holding]
	named   *ordered[*holding]
	onNode  map[string]*ordered[*holding]
}

func compareHoldings(a, b *holding) int { return compareKeys(a.holder, b.holder) }

// compareKeys orders objects as policies.SortHolders orders holders.
func compareKeys(a, b objectKey) int {
	if c := strings.Compare(a.namespace, b.namespace); c != 0 {
		return c
	}
	if c := strings.Compare(a.kind, b.kind); c != 0 {
		return c
	}
	return strings.Compare(a.name, b.name)
}

func (p *portHolders) empty() bool { return len(p.holdings) == 0 }

// add records c's claim on k for c.top.
func (p *portHolders) add(c *claims, k portKey) {
	h := p.holdings[c.top]
	if h == nil {
		h = &holding{holder: c.top}
		p.holdings[c.top] = h
	}
	class, regular := classOf(c, k)
	p.change(h, holdingClaim{claims: c, class: class, regular: regular}, 1)
}

// remove forgets c's claim on the port.
func (p *portHolders) remove(c *claims) {
	h := p.holdings[c.top]
	if h == nil {
		return
	}
	i := slices.IndexFunc(h.claims, func(hc holdingClaim) bool { return hc.claims == c })
	if i < 0 {
		return
	}
	p.change(h, h.claims[i], -1)
	if len(h.claims) == 0 {
		delete(p.holdings, c.top)
	}
}

// change adds (d = 1) or removes (d = -1) one claim of h and moves h where it
// now belongs: only into or out of the claim's node set when its placement
// stays the same.
func (p *portHolders) change(h *holding, hc holdingClaim, d int) {
	before := h.placement()
	h.change(hc, d)
	after := h.placement()
	node := hc.scope.nodeName
	if before != after {
		p.unplace(h, before, node)
		p.place(h, after)
		return
	}
	if after.state != placedNamed || node == "" {
		return
	}
	b := p.buckets[after.class]
	if d > 0 {
		b.addOnNode(node, h)
	} else if !h.onNode(node) {
		b.dropOnNode(node, h)
	}
}

func (b *bucket) addOnNode(node string, h *holding) {
	s := b.onNode[node]
	if s == nil {
		if b.onNode == nil {
			b.onNode = map[string]*ordered[*holding]{}
		}
		s = newOrdered(compareHoldings)
		b.onNode[node] = s
	}
	s.insert(h)
}

func (b *bucket) dropOnNode(node string, h *holding) {
	if s := b.onNode[node]; s != nil {
		s.delete(h)
		if s.len() == 0 {
			delete(b.onNode, node)
		}
	}
}

func (p *portHolders) place(h *holding, pl placement) {
	switch pl.state {
	case placedIrregular:
		if p.irregular == nil {
			p.irregular = map[*holding]struct{}{}
		}
		p.irregular[h] = struct{}{}
	case placedAnyNode, placedNamed:
		b := p.buckets[pl.class]
		if b == nil {
			b = &bucket{
				ip: pl.class.ip, selector: h.claims[0].scope.selector,
				anyNode: newOrdered(compareHoldings), named: newOrdered(compareHoldings),
			}
			p.buckets[pl.class] = b
		}
		if pl.state == placedAnyNode {
			b.anyNode.insert(h)
			return
		}
		b.named.insert(h)
		for _, hc := range h.claims {
			b.addOnNode(hc.scope.nodeName, h)
		}
	}
}

// unplace removes h from where pl put it, and from the set of node also (a
// node h may have just left).
func (p *portHolders) unplace(h *holding, pl placement, also string) {
	switch pl.state {
	case placedIrregular:
		delete(p.irregular, h)
	case placedAnyNode, placedNamed:
		b := p.buckets[pl.class]
		if pl.state == placedAnyNode {
			b.anyNode.delete(h)
		} else {
			b.named.delete(h)
			for _, hc := range h.claims {
				b.dropOnNode(hc.scope.nodeName, h)
			}
			if also != "" {
				b.dropOnNode(also, h)
			}
		}
		if b.anyNode.len()+b.named.len() == 0 {
			delete(p.buckets, pl.class)
		}
	}
}
