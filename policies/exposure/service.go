package exposure

import (
	"slices"
	"strconv"
)

func extractService(obj map[string]any, lim Limits) (*Service, error) {
	spec, err := nested(obj, []string{"spec"})
	if err != nil {
		return nil, err
	}
	s := &Service{Type: str(spec["type"])}
	if s.Type == "" {
		s.Type = "ClusterIP"
	}
	ports, err := listAt(spec, "ports", "spec.ports")
	if err != nil {
		return nil, err
	}
	s.Ports = len(ports)
	if err := lim.over("ports", s.Ports, lim.Ports, "--max-ports"); err != nil {
		return nil, err
	}
	for i, port := range ports {
		field := "spec.ports[" + strconv.Itoa(i) + "]"
		pm, ok := port.(map[string]any)
		if !ok {
			return nil, fieldError(field, "expected an object, got %s", typeName(port))
		}
		if _, err := intField(pm, "port", field); err != nil {
			return nil, err
		}
		n, err := intField(pm, "nodePort", field)
		if err != nil {
			return nil, err
		}
		if n > 0 && n <= 65535 {
			protocol := str(pm["protocol"])
			if protocol == "" {
				protocol = "TCP"
			}
			s.NodePorts = append(s.NodePorts, NodePort{Port: n, Protocol: protocol, Field: field + ".nodePort"})
		}
	}
	hc, err := intField(spec, "healthCheckNodePort", "spec")
	if err != nil {
		return nil, err
	}
	if hc > 0 && hc <= 65535 {
		s.NodePorts = append(s.NodePorts, NodePort{Port: hc, Protocol: "TCP", Field: "spec.healthCheckNodePort"})
	}
	allocate, set := spec["allocateLoadBalancerNodePorts"].(bool)
	switch s.Type {
	case "NodePort":
		s.OpensNodePorts = true
	case "LoadBalancer":
		s.OpensNodePorts = !set || allocate || len(s.NodePorts) > 0
		s.ImpliedHealthCheckNodePort = hc == 0 && str(spec["externalTrafficPolicy"]) == "Local"
	}
	if !s.OpensNodePorts {
		s.NodePorts = nil
	}
	ips, err := listAt(spec, "externalIPs", "spec.externalIPs")
	if err != nil {
		return nil, err
	}
	for _, ip := range ips {
		s.ExternalIPs = append(s.ExternalIPs, str(ip))
	}
	s.judged = make(map[string]any, len(spec))
	for k, v := range spec {
		if !slices.Contains(serviceFieldsNotExposure, k) {
			s.judged[k] = v
		}
	}
	return s, nil
}

// serviceFieldsNotExposure are the Service spec fields that open nothing
// outside the cluster: changing them alone is not reviewed. Every other
// field is, so that a field added to the API, or newly judged by a rule, is
// reviewed rather than skipped.
var serviceFieldsNotExposure = []string{
	"selector", "clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "sessionAffinity",
	"sessionAffinityConfig", "publishNotReadyAddresses", "internalTrafficPolicy", "trafficDistribution",
}
