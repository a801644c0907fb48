package suggest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/offline"
	"github.com/portreeve/portreeve/webhook/review"
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
}

// groupKey is the holder group of a grant: a namespace, or a service
// account of a namespace.
type groupKey struct {
	namespace      string
	serviceAccount string
}

// hostPath is one Ingress host and path (for conflicts).
type hostPath struct {
	host   string
	path   string
	prefix bool
}

// record is one reviewed object and its exposure.
type record struct {
	ref    Ref
	source string
	raw    []byte
	group  groupKey
	items  []*item
	// active: the object runs pods now (or is a Service or Ingress), so it
	// holds its ports (for conflicts).
	active bool
	// nodeName and nodeSelector say which nodes a pod spec can run on.
	nodeName     string
	nodeSelector map[string]string
	// ingress: the Ingress's host and path claims and its class.
	ingress      bool
	paths        []hostPath
	ingressClass string
	// service: the Service opens node ports.
	opensNodePorts bool
}

// builtinOwners are the controller kinds that are read themselves: objects
// they control are skipped (their owner's template is reviewed instead).
var builtinOwners = map[string]bool{
	"apps/Deployment": true, "apps/DaemonSet": true, "apps/StatefulSet": true, "apps/ReplicaSet": true,
	"batch/Job": true, "batch/CronJob": true, "/ReplicationController": true,
}

// header is what every object is read for first.
type header struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
}

// readObjects turns the objects into records, skipping (into res) those the
// webhooks would not review or that another object stands for.
func readObjects(objects []Object, opts Options, res *Result) ([]*record, error) {
	byKey := map[string]*record{}
	var records []*record
	for _, o := range objects {
		var h header
		if err := json.Unmarshal(o.JSON, &h); err != nil {
			return nil, fmt.Errorf("%s: not a Kubernetes object: %w", o.Source, err)
		}
		if h.APIVersion == "" || h.Kind == "" {
			return nil, fmt.Errorf("%s: object has no apiVersion or kind", o.Source)
		}
		group, version, found := strings.Cut(h.APIVersion, "/")
		if !found {
			group, version = "", h.APIVersion
		}
		gvk := policies.GroupVersionKind{Group: group, Version: version, Kind: h.Kind}
		ns := h.Metadata.Namespace
		if ns == "" {
			ns = opts.Namespace
		}
		ref := Ref{Namespace: ns, Kind: h.Kind, Name: h.Metadata.Name}
		skip := func(reason string) {
			res.Skipped = append(res.Skipped, Skipped{Object: ref, Source: o.Source, Reason: reason})
		}
		if !review.Supported(gvk) {
			skip("kind " + h.APIVersion + " " + h.Kind + " is not reviewed")
			continue
		}
		if why, ok := opts.SkipNamespaces[ns]; ok {
			if why != "" {
				why = " (" + why + ")"
			}
			skip("namespace " + ns + " is never reviewed" + why)
			continue
		}
		if c := metav1.GetControllerOfNoCopy(&h.Metadata); c != nil {
			ownerGroup, _, _ := strings.Cut(c.APIVersion, "/")
			if !strings.Contains(c.APIVersion, "/") {
				ownerGroup = ""
			}
			if builtinOwners[ownerGroup+"/"+c.Kind] {
				skip("controlled by " + c.Kind + "/" + c.Name + ", which is reviewed instead")
				continue
			}
		}
		r, err := newRecord(gvk, ref, o, &h.Metadata)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", o.Source, ref, err)
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
	return records, nil
}

// newRecord reads the exposure of one object; nil for a finished Pod.
func newRecord(gvk policies.GroupVersionKind, ref Ref, o Object, md *metav1.ObjectMeta) (*record, error) {
	r := &record{ref: ref, source: o.Source, raw: o.JSON, group: groupKey{namespace: ref.Namespace}, active: true}
	switch gvk.Kind {
	case "Service":
		var s corev1.Service
		if err := json.Unmarshal(o.JSON, &s); err != nil {
			return nil, err
		}
		r.readService(&s)
		return r, nil
	case "Ingress":
		var ing networkingv1.Ingress
		if err := json.Unmarshal(o.JSON, &ing); err != nil {
			return nil, err
		}
		r.readIngress(&ing, md)
		return r, nil
	}
	spec, path, active, err := podSpecOf(gvk.Kind, o.JSON)
	if err != nil {
		return nil, err
	}
	if spec == nil {
		return nil, nil
	}
	r.active = active
	r.readPodSpec(spec, path)
	return r, nil
}

// podSpecOf returns the pod spec of a kind that has one, its field path, and
// whether the object runs pods now. A nil spec is a Pod that has finished.
func podSpecOf(kind string, raw []byte) (spec *corev1.PodSpec, path string, active bool, err error) {
	replicas := func(n *int32) bool { return n == nil || *n > 0 }
	switch kind {
	case "Pod":
		var o corev1.Pod
		if err = json.Unmarshal(raw, &o); err != nil {
			return nil, "", false, err
		}
		if o.Status.Phase == corev1.PodSucceeded || o.Status.Phase == corev1.PodFailed {
			return nil, "", false, nil
		}
		return &o.Spec, "spec", true, nil
	case "PodTemplate":
		var o corev1.PodTemplate
		err = json.Unmarshal(raw, &o)
		return &o.Template.Spec, "template.spec", false, err
	case "ReplicationController":
		var o corev1.ReplicationController
		err = json.Unmarshal(raw, &o)
		if o.Spec.Template == nil {
			o.Spec.Template = &corev1.PodTemplateSpec{}
		}
		return &o.Spec.Template.Spec, "spec.template.spec", replicas(o.Spec.Replicas), err
	case "Deployment":
		var o appsv1.Deployment
		err = json.Unmarshal(raw, &o)
		return &o.Spec.Template.Spec, "spec.template.spec", replicas(o.Spec.Replicas), err
	case "StatefulSet":
		var o appsv1.StatefulSet
		err = json.Unmarshal(raw, &o)
		return &o.Spec.Template.Spec, "spec.template.spec", replicas(o.Spec.Replicas), err
	case "DaemonSet":
		var o appsv1.DaemonSet
		err = json.Unmarshal(raw, &o)
		return &o.Spec.Template.Spec, "spec.template.spec", true, err
	case "ReplicaSet":
		var o appsv1.ReplicaSet
		err = json.Unmarshal(raw, &o)
		return &o.Spec.Template.Spec, "spec.template.spec", replicas(o.Spec.Replicas), err
	case "Job":
		var o batchv1.Job
		err = json.Unmarshal(raw, &o)
		finished := slices.ContainsFunc(o.Status.Conditions, func(c batchv1.JobCondition) bool {
			return (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue
		})
		return &o.Spec.Template.Spec, "spec.template.spec", !finished, err
	case "CronJob":
		var o batchv1.CronJob
		err = json.Unmarshal(raw, &o)
		suspended := o.Spec.Suspend != nil && *o.Spec.Suspend
		return &o.Spec.JobTemplate.Spec.Template.Spec, "spec.jobTemplate.spec.template.spec", !suspended, err
	}
	return nil, "", false, fmt.Errorf("kind %s has no pod spec", kind)
}

// readPodSpec lists hostNetwork and every hostPort, as the rules count them:
// init, regular and ephemeral containers; on hostNetwork every containerPort
// is a hostPort; the protocol defaults to TCP.
func (r *record) readPodSpec(spec *corev1.PodSpec, path string) {
	sa := spec.ServiceAccountName
	if sa == "" {
		sa = spec.DeprecatedServiceAccount
	}
	if sa != "" && sa != "default" {
		r.group.serviceAccount = sa
	}
	r.nodeName, r.nodeSelector = spec.NodeName, spec.NodeSelector
	if spec.HostNetwork {
		r.items = append(r.items, &item{kind: hostNetworkItem, rule: "host-network", field: path + ".hostNetwork"})
	}
	type list struct {
		name  string
		ports [][]corev1.ContainerPort
	}
	lists := []list{{name: "initContainers"}, {name: "containers"}, {name: "ephemeralContainers"}}
	for _, c := range spec.InitContainers {
		lists[0].ports = append(lists[0].ports, c.Ports)
	}
	for _, c := range spec.Containers {
		lists[1].ports = append(lists[1].ports, c.Ports)
	}
	for _, c := range spec.EphemeralContainers {
		lists[2].ports = append(lists[2].ports, c.Ports)
	}
	for _, l := range lists {
		for i, ports := range l.ports {
			for j, p := range ports {
				port := p.HostPort
				if port == 0 && spec.HostNetwork {
					port = p.ContainerPort
				}
				if port <= 0 {
					continue
				}
				r.items = append(r.items, &item{
					kind: hostPortItem, rule: "host-ports",
					field:    fmt.Sprintf("%s.%s[%d].ports[%d].hostPort", path, l.name, i, j),
					port:     int(port),
					protocol: protocolOr(string(p.Protocol)),
					hostIP:   p.HostIP,
				})
			}
		}
	}
}

func protocolOr(p string) string {
	if p == "" {
		return "TCP"
	}
	return p
}

// readService lists node ports, the LoadBalancer and external addresses.
func (r *record) readService(s *corev1.Service) {
	typ := s.Spec.Type
	allocate := s.Spec.AllocateLoadBalancerNodePorts == nil || *s.Spec.AllocateLoadBalancerNodePorts
	explicit := slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.NodePort > 0 })
	r.opensNodePorts = typ == corev1.ServiceTypeNodePort || typ == corev1.ServiceTypeLoadBalancer && (allocate || explicit)
	if r.opensNodePorts {
		for i, p := range s.Spec.Ports {
			field := fmt.Sprintf("spec.ports[%d].nodePort", i)
			switch {
			case p.NodePort > 0:
				r.items = append(r.items, &item{kind: nodePortItem, rule: "node-ports", field: field, port: int(p.NodePort), protocol: protocolOr(string(p.Protocol))})
			case typ == corev1.ServiceTypeNodePort || allocate:
				r.items = append(r.items, &item{kind: anyNodePortItem, rule: "node-ports", field: field, port: int(p.Port), protocol: protocolOr(string(p.Protocol))})
			}
		}
		if s.Spec.HealthCheckNodePort > 0 {
			r.items = append(r.items, &item{kind: nodePortItem, rule: "node-ports", field: "spec.healthCheckNodePort", port: int(s.Spec.HealthCheckNodePort), protocol: "TCP"})
		}
	}
	if typ == corev1.ServiceTypeLoadBalancer {
		class := ""
		if s.Spec.LoadBalancerClass != nil {
			class = *s.Spec.LoadBalancerClass
		}
		r.items = append(r.items, &item{kind: loadBalancerItem, rule: "load-balancer", field: "spec.type", value: class})
		if s.Spec.LoadBalancerIP != "" {
			r.items = append(r.items, addressItem("spec.loadBalancerIP", s.Spec.LoadBalancerIP))
		}
	}
	for i, ip := range s.Spec.ExternalIPs {
		r.items = append(r.items, addressItem(fmt.Sprintf("spec.externalIPs[%d]", i), ip))
	}
}

// addressItem grants exactly one address: /32, or /128 for IPv6.
func addressItem(field, ip string) *item {
	it := &item{kind: externalIPItem, rule: "external-ips", field: field, value: ip}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		it.invalid = fmt.Sprintf("%q is not an IP address", ip)
		return it
	}
	it.value = netip.PrefixFrom(addr, addr.BitLen()).String()
	return it
}

// readIngress lists hosts (rules and TLS) and the class.
func (r *record) readIngress(ing *networkingv1.Ingress, md *metav1.ObjectMeta) {
	r.ingress = true
	for i, rule := range ing.Spec.Rules {
		if rule.Host == "" {
			continue
		}
		r.items = append(r.items, &item{kind: ingressHostItem, rule: "ingress-hosts", field: fmt.Sprintf("spec.rules[%d].host", i), value: rule.Host})
		if rule.HTTP == nil || len(rule.HTTP.Paths) == 0 {
			r.paths = append(r.paths, hostPath{host: rule.Host, path: "/", prefix: true})
			continue
		}
		for _, p := range rule.HTTP.Paths {
			path := p.Path
			if path == "" {
				path = "/"
			}
			exact := p.PathType != nil && *p.PathType == networkingv1.PathTypeExact
			r.paths = append(r.paths, hostPath{host: rule.Host, path: path, prefix: !exact})
		}
	}
	for i, tls := range ing.Spec.TLS {
		for j, h := range tls.Hosts {
			if h != "" {
				r.items = append(r.items, &item{kind: ingressHostItem, rule: "ingress-hosts", field: fmt.Sprintf("spec.tls[%d].hosts[%d]", i, j), value: h})
			}
		}
	}
	if ing.Spec.IngressClassName != nil {
		r.ingressClass = *ing.Spec.IngressClassName
	} else {
		r.ingressClass = md.Annotations["kubernetes.io/ingress.class"]
	}
	r.items = append(r.items, &item{kind: ingressClassItem, rule: "ingress-hosts", field: "spec.ingressClassName", value: r.ingressClass})
}

// markNeeded marks the items the rules denied. A denial of node-ports on
// spec.type (no node ports granted at all) needs every node port of the
// Service; any load-balancer denial needs the LoadBalancer grant.
// Denials no item stands for (a custom rule, an Ingress rule without a host)
// are left to the final review, which reports them.
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
