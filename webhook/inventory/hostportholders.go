package inventory

import (
	"slices"
	"strconv"
	"time"

	"github.com/portreeve/portreeve/policies"
)

// admits reports whether claims of the bucket can collide with a request
// binding ip with this node selector, on some node.
func (b *bucket) admits(ip string, selector map[string]string) bool {
	return hostIPsOverlap(b.ip, ip) && (nodeScope{selector: b.selector}).overlaps(nodeScope{selector: selector})
}

// sets returns the sets of holdings that hold the port on the node a request
// names ("": any node).
func (b *bucket) sets(node string) [2]*ordered[*holding] {
	if node == "" {
		return [2]*ordered[*holding]{b.anyNode, b.named}
	}
	return [2]*ordered[*holding]{b.anyNode, b.onNode[node]}
}

// counted reports whether the bucket sets a request names node for hold h.
func (h *holding) counted(pl placement, node string) bool {
	switch pl.state {
	case placedAnyNode:
		return true
	case placedNamed:
		return node == "" || h.onNode(node)
	}
	return false
}

// conflicts judges h claim by claim: whether a claim other than the request's
// own object's holds hp on a node req can run on, and whether only pending
// claims do.
func (h *holding) conflicts(req *request, hp hostPort, now time.Time) (held, pending bool) {
	for _, c := range h.claims {
		if c.key == req.key || !c.live(now) || !c.scope.overlaps(req.scope) || !c.bindsOverlapping(hp) {
			continue
		}
		if !c.pending {
			return true, false
		}
		held = true
	}
	return held, held
}

// pendingOnly reports whether h holds the port on the node a request names
// only through pending claims (h's placement has been checked).
func (h *holding) pendingOnly(node string) bool {
	if h.pending == 0 {
		return false
	}
	for _, c := range h.claims {
		if !c.pending && (node == "" || c.scope.nodeName == "" || c.scope.nodeName == node) {
			return false
		}
	}
	return true
}

// bindsOverlapping reports whether c binds hp's (protocol, port) on an
// overlapping hostIP.
func (c *claims) bindsOverlapping(hp hostPort) bool {
	for _, o := range c.hostPorts {
		if o.port == hp.port && o.protocol == hp.protocol && hostIPsOverlap(o.hostIP, hp.hostIP) {
			return true
		}
	}
	return false
}

// hostPortHolders returns who else holds hp on a node req can run on: the
// first limit holders in the order of policies.SortHolders, and how many
// there are in all. Services whose nodePort is hp hold it on every node
// (kube-proxy listens there). The cost does not grow with the holders: it
// grows with the buckets of the port, plus the holdings judged claim by claim.
func (x *Index) hostPortHolders(req *request, self objectKey, hp hostPort, now time.Time, limit int) ([]policies.Holder, int) {
	first := firstHolders{limit: limit}
	total := 0
	claim := "" // the same for every holding: made once, when one is listed
	holder := func(h *holding, pending bool) policies.Holder {
		if claim == "" {
			claim = portClaim("hostPort ", hp, "")
		}
		return policies.Holder{Namespace: h.holder.namespace, Kind: h.holder.kind, Name: h.holder.name, Claim: claim, Pending: pending}
	}
	if p := x.hostPorts[portKey{protocol: hp.protocol, port: hp.port}]; p != nil {
		// Judged one by one: the request's own holder (never a conflict),
		// and the holders of the request's object as the index knows it
		// (its claims do not count).
		var judged [3]*holding
		skip := judged[:0]
		if h := p.holdings[self]; h != nil {
			skip = append(skip, h)
		}
		for _, c := range [2]*claims{x.objects[req.key], x.pending[req.key]} {
			if c != nil && c.top != self {
				if h := p.holdings[c.top]; h != nil && !slices.Contains(skip, h) {
					skip = append(skip, h)
				}
			}
		}
		// The sets of the buckets the request can collide with: each
		// holding is in one at most. Their first entries merge in order.
		node := req.scope.nodeName
		var buf [8]cursor[*holding]
		heads := buf[:0]
		for _, b := range p.buckets {
			if !b.admits(hp.hostIP, req.scope.selector) {
				continue
			}
			for _, s := range b.sets(node) {
				if s.len() > 0 {
					total += s.len()
					heads = append(heads, s.first())
				}
			}
		}
		for len(first.hs) < limit {
			next := -1
			for i := range heads {
				if heads[i].ok() && (next < 0 || compareHoldings(heads[i].value(), heads[next].value()) < 0) {
					next = i
				}
			}
			if next < 0 {
				break
			}
			h := heads[next].value()
			heads[next].next()
			if !slices.Contains(skip, h) {
				first.offer(holder(h, h.pendingOnly(node)))
			}
		}
		judge := func(h *holding) {
			if h.holder == self {
				return
			}
			if held, pending := h.conflicts(req, hp, now); held {
				total++
				first.offer(holder(h, pending))
			}
		}
		for _, h := range skip {
			if pl := h.placement(); pl.state != placedIrregular {
				if h.counted(pl, node) && p.buckets[pl.class].admits(hp.hostIP, req.scope.selector) {
					total--
				}
				judge(h)
			}
		}
		for h := range p.irregular {
			judge(h)
		}
	}
	for _, s := range x.nodePortServices(req, hp, now) {
		total++
		if !first.after(s.key) {
			first.offer(policies.Holder{
				Namespace: s.key.namespace, Kind: s.key.kind, Name: s.key.name,
				Claim: portClaim("nodePort ", hp, " on every node"), Pending: s.pending,
			})
		}
	}
	return first.hs, total
}

// portClaim renders a claim on hp for messages: "hostPort 9100/TCP".
func portClaim(prefix string, hp hostPort, suffix string) string {
	b := make([]byte, 0, 64)
	b = append(b, prefix...)
	b = strconv.AppendInt(b, int64(hp.port), 10)
	b = append(b, '/')
	b = append(b, hp.protocol...)
	return string(append(b, suffix...))
}

// serviceHold is a Service holding a port, pending when only pending claims
// of it do.
type serviceHold struct {
	key     objectKey
	pending bool
}

// nodePortServices lists the Services other than req whose nodePort is hp's
// port and protocol, once each. The allocator gives a port to one Service:
// this is one, or for a moment two.
func (x *Index) nodePortServices(req *request, hp hostPort, now time.Time) []serviceHold {
	var out []serviceHold
	for c := range x.nodePorts[hp.port] {
		if c.key == req.key || !c.live(now) {
			continue
		}
		for _, np := range c.nodePorts {
			if np.port != hp.port || np.protocol != hp.protocol {
				continue
			}
			if i := slices.IndexFunc(out, func(s serviceHold) bool { return s.key == c.key }); i >= 0 {
				out[i].pending = out[i].pending && c.pending
			} else {
				out = append(out, serviceHold{key: c.key, pending: c.pending})
			}
			break
		}
	}
	return out
}

// hostPortHeld reports whether anyone else holds hp on a node req can run on.
func (x *Index) hostPortHeld(req *request, self objectKey, hp hostPort, now time.Time) bool {
	if !x.takenBit(hp.port) {
		return false
	}
	_, n := x.hostPortHolders(req, self, hp, now, 0)
	return n > 0
}
