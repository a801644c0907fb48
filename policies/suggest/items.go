package suggest

import (
	"fmt"
	"net/netip"

	"github.com/portreeve/portreeve/policies/exposure"
)

// newRecord reads the exposure of obj, an object of the reviewed kind k,
// through the one extraction (policies/exposure); nil for a finished Pod.
func newRecord(k *exposure.Kind, ref Ref, o Object, obj map[string]any) (*record, error) {
	x, err := exposure.Extract(k, obj, exposure.Limits{})
	if err != nil {
		return nil, err
	}
	r := &record{ref: ref, source: o.Source, raw: o.JSON, group: groupKey{namespace: ref.Namespace}, active: x.Active}
	spec, _ := obj["spec"].(map[string]any)
	switch {
	case x.Pod != nil:
		if !x.Active && k.Kind == "Pod" {
			return nil, nil
		}
		r.readPod(x.Pod)
	case x.Service != nil:
		r.readService(x.Service, spec)
	case x.Ingress != nil:
		r.readIngress(x.Ingress, spec)
	case x.Gateway != nil:
		r.readGateway(k, x.Gateway)
	case x.Route != nil:
		r.readRoute(x.Route)
	}
	return r, nil
}

// readPod lists hostNetwork and every hostPort, as the rules count them
// (exposure.Pod: init, regular and ephemeral containers; on hostNetwork
// every containerPort is a hostPort; the protocol defaults to TCP).
func (r *record) readPod(p *exposure.Pod) {
	if p.ServiceAccount != "default" {
		r.group.serviceAccount = p.ServiceAccount
	}
	r.nodeName, r.nodeSelector = p.NodeName, p.NodeSelector
	if p.HostNetwork {
		r.items = append(r.items, &item{kind: hostNetworkItem, rule: "host-network", field: p.Path + ".hostNetwork"})
	}
	for _, hp := range p.HostPorts {
		r.items = append(r.items, &item{
			kind: hostPortItem, rule: "host-ports", field: hp.Field,
			port: hp.Port, protocol: hp.Protocol, hostIP: hp.HostIP,
		})
	}
}

// readService lists node ports, the LoadBalancer and external addresses.
// Besides the exposure it reads what only a grant names: the port of a
// Service port that will get a node port, the load balancer class and IP.
func (r *record) readService(s *exposure.Service, spec map[string]any) {
	r.opensNodePorts = s.OpensNodePorts
	if s.OpensNodePorts {
		explicit := map[string]exposure.NodePort{}
		for _, np := range s.NodePorts {
			explicit[np.Field] = np
		}
		allocate, set := spec["allocateLoadBalancerNodePorts"].(bool)
		allocate = allocate || !set
		ports, _ := spec["ports"].([]any)
		for i, p := range ports {
			field := fmt.Sprintf("spec.ports[%d].nodePort", i)
			if np, ok := explicit[field]; ok {
				r.items = append(r.items, &item{kind: nodePortItem, rule: "node-ports", field: field, port: np.Port, protocol: np.Protocol})
			} else if s.Type == "NodePort" || allocate {
				pm, _ := p.(map[string]any)
				port, _ := exposure.Int(pm["port"])
				r.items = append(r.items, &item{kind: anyNodePortItem, rule: "node-ports", field: field, port: port, protocol: protocolOr(str(pm["protocol"]))})
			}
		}
		if np, ok := explicit["spec.healthCheckNodePort"]; ok {
			r.items = append(r.items, &item{kind: nodePortItem, rule: "node-ports", field: np.Field, port: np.Port, protocol: np.Protocol})
		}
	}
	if s.Type == "LoadBalancer" {
		r.items = append(r.items, &item{kind: loadBalancerItem, rule: "load-balancer", field: "spec.type", value: str(spec["loadBalancerClass"])})
		if ip := str(spec["loadBalancerIP"]); ip != "" {
			r.items = append(r.items, addressItem("spec.loadBalancerIP", ip))
		}
	}
	for i, ip := range s.ExternalIPs {
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

// readIngress lists hosts (rules and TLS) and the class, and keeps the
// rules' host and path claims for conflicts.
func (r *record) readIngress(ing *exposure.Ingress, spec map[string]any) {
	r.ingress = true
	for i, h := range ing.Hosts {
		if i == 0 || h.Field != ing.Hosts[i-1].Field { // one item per rule, whatever its paths
			r.items = append(r.items, &item{kind: ingressHostItem, rule: "ingress-hosts", field: h.Field, value: h.Host})
		}
	}
	for _, h := range ing.Hosts {
		r.paths = append(r.paths, hostClaim{HostPath: h})
	}
	tls, _ := spec["tls"].([]any)
	for i, t := range tls {
		tm, _ := t.(map[string]any)
		hosts, _ := tm["hosts"].([]any)
		for j, h := range hosts {
			if h := str(h); h != "" {
				r.items = append(r.items, &item{kind: ingressHostItem, rule: "ingress-hosts", field: fmt.Sprintf("spec.tls[%d].hosts[%d]", i, j), value: h})
			}
		}
	}
	r.ingressClass = ing.Class
	r.items = append(r.items, &item{kind: ingressClassItem, rule: "ingress-hosts", field: "spec.ingressClassName", value: r.ingressClass})
}

func protocolOr(p string) string {
	if p == "" {
		return "TCP"
	}
	return p
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
