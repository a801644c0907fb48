package inventory

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portreeve/portreeve/policies"
)

// Reservations let replicas agree (webhook/reservations): before a replica
// admits a request that claims a contested key, it publishes what the request
// claims under that key in the cluster, and learns what other replicas
// published there. This file converts between the inventory's claims and the
// published form.

// Reservation is what one object claims under one key, as published in the
// cluster. Field names are short: many fit in one Lease.
type Reservation struct {
	Kind      string `json:"k"`
	Namespace string `json:"ns,omitempty"`
	Name      string `json:"n"`
	OwnerKind string `json:"ok,omitempty"`
	OwnerName string `json:"on,omitempty"`
	// Version is the resource version the claims follow (UPDATE: the old
	// object's; CREATE: none): the informer's newer version replaces them.
	Version string `json:"rv,omitempty"`
	// Replica made the reservation, At it, Until it counts.
	Replica string    `json:"r"`
	At      time.Time `json:"at"`
	Until   time.Time `json:"until"`

	NodeName     string            `json:"node,omitempty"`
	NodeSelector map[string]string `json:"sel,omitempty"`
	HostPorts    []ReservedPort    `json:"hp,omitempty"`
	NodePorts    []ReservedPort    `json:"np,omitempty"`
	Hosts        []ReservedHost    `json:"h,omitempty"`
}

// ReservedPort is a host port (with its hostIP) or a node port.
type ReservedPort struct {
	Port     int32  `json:"p"`
	Protocol string `json:"proto,omitempty"`
	HostIP   string `json:"ip,omitempty"`
}

// ReservedHost is an Ingress host and path.
type ReservedHost struct {
	Host   string `json:"h"`
	Path   string `json:"p"`
	Prefix bool   `json:"x,omitempty"`
}

// SameObject reports whether r and o are reservations of one object.
func (r *Reservation) SameObject(o *Reservation) bool {
	return r.Kind == o.Kind && r.Namespace == o.Namespace && r.Name == o.Name
}

// Object names the reserved object: namespace/Kind/name.
func (r *Reservation) Object() string { return r.Namespace + "/" + r.Kind + "/" + r.Name }

// Reserve is one key a request reserves, and what it claims under it.
type Reserve struct {
	// Key names the key; it is a valid part of a Lease name.
	Key string
	// Domain, for an exact Ingress host, names its parent domain (a label
	// value), for wildcard requests to find it.
	Domain      string
	Reservation Reservation
}

// Plan is what one request reserves (Writes, in order), and what it reads
// once it has: an exact Ingress host reads its wildcard's key (Reads), a
// wildcard the keys of the exact hosts it covers (Domains). Of a wildcard
// and an exact host reserved at once, each writes before it reads, so at
// least one of them reads the other.
type Plan struct {
	Writes  []Reserve
	Reads   []string
	Domains []string
}

// Empty reports whether the plan reserves nothing.
func (p *Plan) Empty() bool { return len(p.Writes) == 0 }

// Reservations plans what the request in reserves, for the conflict rules
// cfg enforces (deny or rewrite): a host port by protocol and number, a node
// port by number, an Ingress host by name (for a route without hostnames,
// each hostname it inherits from its parents' listeners known now; the
// entries carry no parents, so other replicas meet them on every listener). Objects without a name and
// objects that run no pods reserve nothing, as they claim nothing; nor do
// pods whose controller's stored claims cover theirs (the pods of a
// DaemonSet or a ReplicaSet add nothing their owner did not claim).
func (inv *Inventory) Reservations(in *policies.Input, cfg *policies.Config) Plan {
	req := readRequest(in)
	if req.key.name == "" || !req.active || req.empty() || inv.index.coveredByOwner(req) {
		return Plan{}
	}
	base := Reservation{
		Kind: req.key.kind, Namespace: req.key.namespace, Name: req.key.name,
		OwnerKind: req.owner.kind, OwnerName: req.owner.name, Version: req.resourceVersion,
	}
	byKey := map[string]*Reserve{}
	var plan Plan
	part := func(key string) *Reservation {
		r := byKey[key]
		if r == nil {
			r = &Reserve{Key: key, Reservation: base}
			byKey[key] = r
		}
		return &r.Reservation
	}
	if enforced(cfg, policies.RuleHostPortConflicts) {
		for _, hp := range req.hostPorts {
			r := part("hp-" + strings.ToLower(hp.protocol) + "-" + strconv.Itoa(int(hp.port)))
			r.NodeName, r.NodeSelector = req.scope.nodeName, req.scope.selector
			r.HostPorts = append(r.HostPorts, ReservedPort{Port: hp.port, Protocol: hp.protocol, HostIP: hp.hostIP})
		}
	}
	if enforced(cfg, policies.RuleNodePortConflicts) {
		for _, np := range req.nodePorts {
			r := part("np-" + strconv.Itoa(int(np.port)))
			r.NodePorts = append(r.NodePorts, ReservedPort{Port: np.port, Protocol: np.protocol})
		}
	}
	if enforced(cfg, policies.RuleIngressHostConflicts) {
		hosts := req.hosts
		if len(req.inherit) > 0 {
			// A route without hostnames claims its parents' listeners'.
			hosts = append(slices.Clip(hosts), inv.index.inheritedHostsOf(&req.claims)...)
		}
		for _, h := range hosts {
			key := hostKey(h.host)
			r := part(key)
			r.Hosts = append(r.Hosts, ReservedHost{Host: h.host, Path: h.path, Prefix: h.prefix})
			switch parent := parentDomain(h.host); {
			case parent == "":
			case isWildcard(h.host):
				plan.Domains = append(plan.Domains, hashed(parent))
			default:
				byKey[key].Domain = hashed(parent)
				plan.Reads = append(plan.Reads, hostKey("*."+parent))
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		plan.Writes = append(plan.Writes, *byKey[k])
	}
	plan.Reads = slices.Compact(slices.Sorted(slices.Values(plan.Reads)))
	plan.Domains = slices.Compact(slices.Sorted(slices.Values(plan.Domains)))
	return plan
}

// hostKey is the key of an Ingress host (a wildcard is a host of its own).
func hostKey(host string) string { return "h-" + hashed(host) }

// hashed names a host or domain in a Lease name or label value.
func hashed(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:10])
}

// coveredByOwner reports whether the informers show req's controller owner
// holding every host port req claims, on nodes that include req's.
func (x *Index) coveredByOwner(req *request) bool {
	if req.owner.kind == "" || len(req.hostPorts) == 0 || len(req.nodePorts) > 0 || len(req.hosts) > 0 {
		return false
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	o, ok := x.objects[objectKey{kind: req.owner.kind, namespace: req.key.namespace, name: req.owner.name}]
	if !ok || (o.scope.nodeName != "" && o.scope.nodeName != req.scope.nodeName) {
		return false
	}
	for k, v := range o.scope.selector {
		if w, ok := req.scope.selector[k]; !ok || w != v {
			return false
		}
	}
	for _, hp := range req.hostPorts {
		if !slices.ContainsFunc(o.hostPorts, hp.same) {
			return false
		}
	}
	return true
}

func enforced(cfg *policies.Config, rule string) bool {
	if cfg == nil {
		return true
	}
	m := cfg.Mode(rule)
	return m == policies.ModeDeny || m == policies.ModeRewrite
}

// Settled reports whether the informers show the reserved object (a version
// newer than the one the reservation followed), for longer than settle since
// it was reserved: every replica's informers have then most likely shown it,
// and the reservation has done its work.
func (inv *Inventory) Settled(r *Reservation, settle time.Duration) bool {
	if inv.opts.Now().Sub(r.At) < settle {
		return false
	}
	x := inv.index
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.outdates(r)
}

// outdates reports whether the informers have shown what followed the
// reservation r: its object at a newer version than the one r followed, or
// the object's deletion after r was made.
func (x *Index) outdates(r *Reservation) bool {
	key := objectKey{kind: r.Kind, namespace: r.Namespace, name: r.Name}
	if c, ok := x.objects[key]; ok && (r.Version == "" || newerResourceVersion(c.resourceVersion, r.Version)) {
		return true
	}
	at, ok := x.gone[key]
	return ok && at.After(r.At)
}
