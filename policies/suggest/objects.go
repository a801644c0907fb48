package suggest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/policies/exposure"
	"github.com/portreeve/portreeve/webhook/offline"
)

// itemKind is a kind of exposure.
type itemKind int

const (
	hostNetworkItem itemKind = iota
	hostPortItem
	// nodePortItem is an explicit nodePort, or the healthCheckNodePort.
	nodePortItem
	// anyNodePortItem is a Service port without nodePort that will get one:
	// the apiserver picks it from the whole NodePort range.
	anyNodePortItem
	loadBalancerItem
	externalIPItem
	ingressHostItem
	ingressClassItem
)

// item is one piece of exposure of an object, with the rule that judges it
// and the field path the rule names when it denies it.
type item struct {
	kind  itemKind
	rule  string
	field string
	// port and protocol of a hostPort or nodePort; hostIP of a hostPort.
	port     int
	protocol string
	hostIP   string
	// value is a class (LoadBalancer or Ingress), an address or a host.
	value string
	// invalid says why the item cannot be granted at all ("" when it can).
	invalid string
	// needed: the rules deny it under the configuration added to.
	needed bool
	// conflict: no grant can fix it (a conflict); it is not granted.
	conflict bool
	// inherited: a hostname a route without hostnames inherits from its
	// parent's listener; the rule names the parentRef, and the host in its message.
	inherited bool
}

// groupKey is the holder group of a grant: a namespace, or a service
// account of a namespace.
type groupKey struct {
	namespace      string
	serviceAccount string
}

// record is one reviewed object and its exposure.
type record struct {
	ref    Ref
	source string
	raw    []byte
	group  groupKey
	items  []*item
	// active: the object runs pods now (or is a Service, an Ingress or a
	// Gateway API object), so it holds its ports (for conflicts).
	active bool
	// nodeName and nodeSelector say which nodes a pod spec can run on.
	nodeName     string
	nodeSelector map[string]string
	// ingress: an Ingress, and its class.
	ingress      bool
	ingressClass string
	// paths are the host and path claims of an Ingress or a route.
	paths []hostClaim
	// route: a Gateway API route, with the parents that name a Gateway or a
	// ListenerSet (resolved), whether it names other parents too, the paths
	// it claims on each hostname it inherits (nil when it has hostnames), and
	// its parents as the rules see them (facts).
	route        bool
	parents      []exposure.ParentRef
	otherParents bool
	inherit      []exposure.HostPath
	routeParents []policies.RouteParent
	// service: the Service opens node ports.
	opensNodePorts bool
}

// readObjects turns the objects into records, skipping (into res) those the
// webhooks would not review or that another object stands for, and indexes
// the listeners of every Gateway and ListenerSet read.
func readObjects(objects []Object, opts Options, res *Result) ([]*record, listenerIndex, error) {
	byKey := map[string]*record{}
	listeners := listenerIndex{}
	var records []*record
	for _, o := range objects {
		obj, err := decodeObject(o.JSON)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: not a Kubernetes object: %w", o.Source, err)
		}
		apiVersion, kind := str(obj["apiVersion"]), str(obj["kind"])
		if apiVersion == "" || kind == "" {
			return nil, nil, fmt.Errorf("%s: object has no apiVersion or kind", o.Source)
		}
		gvk := groupVersionKind(apiVersion, kind)
		md, _ := obj["metadata"].(map[string]any)
		ns := str(md["namespace"])
		if ns == "" {
			ns = opts.Namespace
		}
		ref := Ref{Namespace: ns, Kind: kind, Name: str(md["name"])}
		skip := func(reason string) {
			res.Skipped = append(res.Skipped, Skipped{Object: ref, Source: o.Source, Reason: reason})
		}
		k := exposure.Lookup(gvk)
		if k == nil {
			skip("kind " + apiVersion + " " + kind + " is not reviewed")
			continue
		}
		listeners.add(k, ns, ref.Name, obj)
		if why, ok := opts.SkipNamespaces[ns]; ok {
			if why != "" {
				why = " (" + why + ")"
			}
			skip("namespace " + ns + " is never reviewed" + why)
			continue
		}
		if c, ok := controller(md); ok && makesPods(c.gvk) {
			skip("controlled by " + c.gvk.Kind + "/" + c.name + ", which is reviewed instead")
			continue
		}
		r, err := newRecord(k, ref, o, obj)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %s: %w", o.Source, ref, err)
		}
		if r == nil {
			skip("a Pod that has finished holds no port")
			continue
		}
		key := gvk.Group + "/" + ref.String()
		if prev := byKey[key]; prev != nil {
			res.Skipped = append(res.Skipped, Skipped{Object: ref, Source: prev.source, Reason: "read again from " + o.Source + ", which counts"})
			*prev = *r
			continue
		}
		byKey[key] = r
		records = append(records, r)
	}
	slices.SortStableFunc(records, func(a, b *record) int { return compareRefs(a.ref, b.ref) })
	slices.SortStableFunc(res.Skipped, func(a, b Skipped) int {
		return cmp.Or(compareRefs(a.Object, b.Object), strings.Compare(a.Source, b.Source))
	})
	return records, listeners, nil
}

// decodeObject decodes one object as the webhooks do (numbers kept as
// json.Number).
func decodeObject(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	if obj == nil {
		return nil, errors.New("null")
	}
	if md, ok := obj["metadata"]; ok && md != nil {
		if _, ok := md.(map[string]any); !ok {
			return nil, errors.New("metadata is not an object")
		}
	}
	return obj, nil
}

func groupVersionKind(apiVersion, kind string) policies.GroupVersionKind {
	group, version, found := strings.Cut(apiVersion, "/")
	if !found {
		group, version = "", apiVersion
	}
	return policies.GroupVersionKind{Group: group, Version: version, Kind: kind}
}

// owner is an object's controller.
type owner struct {
	gvk  policies.GroupVersionKind
	name string
}

// controller returns the controller owner reference of metadata md.
func controller(md map[string]any) (owner, bool) {
	refs, _ := md["ownerReferences"].([]any)
	for _, ref := range refs {
		rm, _ := ref.(map[string]any)
		if c, _ := rm["controller"].(bool); c {
			return owner{gvk: groupVersionKind(str(rm["apiVersion"]), str(rm["kind"])), name: str(rm["name"])}, true
		}
	}
	return owner{}, false
}

// makesPods reports whether gvk, of any version, is a reviewed kind that
// makes pods from the template in its spec (a Deployment, a Job, ...): the
// objects it controls are skipped, since its template is reviewed instead.
// A Pod and a PodTemplate make none.
func makesPods(gvk policies.GroupVersionKind) bool {
	for _, k := range exposure.Kinds() {
		if k.Group == gvk.Group && k.Kind == gvk.Kind {
			return len(k.PodSpec) > 1 && k.PodSpec[0] == "spec"
		}
	}
	return false
}

// markNeeded marks the items the rules denied. A denial of node-ports on
// spec.type (no node ports granted at all) needs every node port of the
// Service; any load-balancer denial needs the LoadBalancer grant.
// A gateway-hosts denial of a hostname a route inherits names the parentRef,
// and the host in its message. Denials no item stands for (a custom rule, an
// Ingress rule without a host) are left to the final review, which reports them.
func (r *record) markNeeded(violations []offline.ReportFinding) {
	for _, v := range violations {
		if !slices.Contains(grantableRules, v.Rule) {
			continue
		}
		for _, it := range r.items {
			if it.rule != v.Rule {
				continue
			}
			switch {
			case it.field == v.Field && it.inherited:
				if !strings.Contains(v.Message, fmt.Sprintf("hostname %q (inherited", it.value)) {
					continue
				}
			case it.field == v.Field:
			case v.Rule == "node-ports" && (v.Field == "spec.type" || it.field == "spec.healthCheckNodePort"):
			case v.Rule == "load-balancer":
			default:
				continue
			}
			it.needed = true
		}
	}
}
