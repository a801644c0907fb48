package inventory

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/portreeve/portreeve/policies"
)

// What a request that needs the inventory gets before the caches synced
// (serve --inventory-not-ready).
const (
	NotReadyDeny  = "deny"
	NotReadyAllow = "allow"
)

// DefaultPendingTTL is how long an admitted request's claims count before the
// informers show its object (they usually do within a second).
const DefaultPendingTTL = 30 * time.Second

// DefaultNodePortRange is the kube-apiserver's default --service-node-port-range.
var DefaultNodePortRange = policies.DefaultNodePortRange

// Options configure an Inventory.
type Options struct {
	// NodePortRange is the cluster's Service NodePort range.
	NodePortRange policies.PortSpan
	// NotReady is NotReadyDeny or NotReadyAllow.
	NotReady string
	// PendingTTL bounds how long admitted claims count without the informers
	// showing them (DefaultPendingTTL when zero).
	PendingTTL time.Duration
	// Remember is how long deletions are remembered, for other replicas'
	// reservations of deleted objects not to count (PendingTTL when zero:
	// set it to the reservations' TTL when that is longer).
	Remember time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Inventory is the live inventory: an Index fed by informers (Register),
// plus the claims of requests Portreeve admitted that the informers have not
// shown yet. It implements review.FactsSource.
type Inventory struct {
	index  *Index
	opts   Options
	synced atomic.Pointer[func() bool]
	// crds, when set (WatchCRDKinds), must have synced too.
	crds   atomic.Pointer[CRDKinds]
	grants atomic.Pointer[grantCache]
}

type grantCache struct {
	cfg    *policies.Config
	grants []grant
}

// New returns an empty inventory that is not ready until Register's informers
// have synced (or MarkSynced is called, in tests).
func New(opts Options) *Inventory {
	if opts.NodePortRange.From == 0 {
		opts.NodePortRange = DefaultNodePortRange
	}
	if opts.NotReady == "" {
		opts.NotReady = NotReadyDeny
	}
	if opts.PendingTTL <= 0 {
		opts.PendingTTL = DefaultPendingTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Remember <= 0 {
		opts.Remember = opts.PendingTTL
	}
	inv := &Inventory{index: NewIndex(), opts: opts}
	inv.index.SetRemember(opts.Remember)
	never := func() bool { return false }
	inv.synced.Store(&never)
	return inv
}

// ParseNodePortRange reads "30000-32767".
func ParseNodePortRange(s string) (policies.PortSpan, error) {
	r, err := policies.ParsePortRange(s, false)
	if err != nil {
		return policies.PortSpan{}, err
	}
	if r.From == r.To {
		return policies.PortSpan{}, fmt.Errorf("%q: a NodePort range needs two bounds, such as 30000-32767", s)
	}
	return policies.PortSpan{From: r.From, To: r.To}, nil
}

// MarkSynced makes the inventory ready without informers (tests, benchmarks).
func (inv *Inventory) MarkSynced() {
	ready := func() bool { return true }
	inv.synced.Store(&ready)
}

// Synced reports whether every informer has delivered its initial list,
// those of the CRD kinds (WatchCRDKinds) included.
func (inv *Inventory) Synced() bool {
	if c := inv.crds.Load(); c != nil && !c.Synced() {
		return false
	}
	return (*inv.synced.Load())()
}

// ReadyCheck is the /readyz check: it fails until the caches synced.
func (inv *Inventory) ReadyCheck(*http.Request) error {
	if !inv.Synced() {
		return errors.New("inventory of ports and hosts not synced yet")
	}
	return nil
}

// Facts computes the facts of the request in: conflicts with what the
// cluster holds and free ports in cfg's grants.
func (inv *Inventory) Facts(in *policies.Input, cfg *policies.Config) *policies.Facts {
	f := &policies.Facts{NodePortRange: inv.opts.NodePortRange}
	if !inv.Synced() {
		f.NotReady = inv.opts.NotReady
		return f
	}
	f.Ready = true
	f.Seen = inv.index.generation()
	inv.index.computeFacts(readRequest(in), inv.grantsOf(cfg), inv.opts.NodePortRange, inv.opts.Now(), f)
	return f
}

func (inv *Inventory) grantsOf(cfg *policies.Config) []grant {
	if c := inv.grants.Load(); c != nil && c.cfg == cfg {
		return c.grants
	}
	c := &grantCache{cfg: cfg, grants: parseGrants(cfg)}
	inv.grants.Store(c)
	return c.grants
}

// Claim records what the admitted request in claims, so that the next
// request sees it before the informers do. Tentative claims (the mutating
// webhook's chosen ports) are dropped by Release when the validating webhook
// refuses the object. Objects without a name yet, and objects that run no
// pods now, claim nothing.
func (inv *Inventory) Claim(in *policies.Input, tentative bool) {
	req := readRequest(in)
	if req.key.name == "" || !req.active {
		return
	}
	c := req.claims
	c.tentative = tentative
	now := inv.opts.Now()
	c.expires = now.Add(inv.opts.PendingTTL)
	inv.index.AddPending(&c, now)
}

// Release drops the tentative claims of the object in in.
func (inv *Inventory) Release(in *policies.Input) {
	inv.index.ReleaseTentative(objectKey{kind: in.Kind.Kind, namespace: in.Namespace, name: in.Name})
}

// Start drops expired pending claims until ctx ends (a manager.Runnable).
// Once the informers have synced it returns the memory of their initial
// lists (whole objects, decoded at once) to the operating system.
func (inv *Inventory) Start(ctx context.Context) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for !inv.Synced() {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	debug.FreeOSMemory()
	t.Reset(max(inv.opts.PendingTTL/4, time.Second))
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			inv.index.Expire(inv.opts.Now())
		}
	}
}

// NeedLeaderElection is false: every replica keeps its own inventory.
func (inv *Inventory) NeedLeaderElection() bool { return false }
