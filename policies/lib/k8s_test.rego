package portreeve.lib.k8s_test

import data.portreeve.lib.k8s
import data.portreeve.lib.testing

test_kinds if {
	k8s.is_service with input as testing.service({})
	not k8s.is_ingress with input as testing.service({})
	k8s.is_ingress with input as testing.ingress({})
	not k8s.is_service with input as testing.pod({})
	not k8s.is_ingress with input as object.union(testing.ingress({}), {"kind": {"group": "extensions"}})
}

test_containers_of_every_list if {
	spec := {
		"initContainers": [{"name": "i"}],
		"containers": [{"name": "a"}, {"name": "b"}],
		"ephemeralContainers": [{"name": "e"}],
	}
	[[c.list, c.index, c.container.name] | some c in k8s.containers] == [
		["initContainers", 0, "i"],
		["containers", 0, "a"],
		["containers", 1, "b"],
		["ephemeralContainers", 0, "e"],
	] with input as testing.pod(spec)
}

test_host_ports if {
	spec := {"containers": [testing.container("app", [
		{"containerPort": 80},
		{"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"},
	])]}
	k8s.host_ports == [{
		"port": 53,
		"protocol": "UDP",
		"hostIP": "10.0.0.1",
		"container": "app",
		"field": "spec.template.spec.containers[0].ports[1].hostPort",
		"pointer": "/spec/template/spec/containers/0/ports/1/hostPort",
	}] with input as testing.deployment(spec)
}

test_service_type_and_node_ports if {
	k8s.service_type == "ClusterIP" with input as testing.service({})
	not k8s.opens_node_ports with input as testing.service({})
	k8s.opens_node_ports with input as testing.service({"type": "NodePort"})
	k8s.opens_node_ports with input as testing.service({"type": "LoadBalancer"})
	k8s.opens_node_ports with input as testing.service({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": true})
	no_allocation := testing.service({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false})
	not k8s.opens_node_ports with input as no_allocation
	k8s.node_ports == [{"index": 1, "port": 30080, "field": "spec.ports[1].nodePort"}] with input as testing.service({
		"type": "NodePort",
		"ports": [{"port": 80}, {"port": 81, "nodePort": 30080}],
	})
}

test_in_ranges if {
	ranges := testing.port_ranges(["80", "8000-8100", "53/UDP"])
	k8s.in_ranges(80, "TCP", ranges)
	k8s.in_ranges(8100, "SCTP", ranges)
	k8s.in_ranges(53, "UDP", ranges)
	not k8s.in_ranges(53, "TCP", ranges)
	not k8s.in_ranges(81, "TCP", ranges)
	not k8s.in_ranges(80, "TCP", [])
}

test_ranges_text if {
	k8s.ranges_text([]) == "none"
	k8s.ranges_text(testing.port_ranges(["80", "53/UDP"])) == "80, 53/UDP"
}

test_remove_fields_only_set_ones if {
	k8s.remove_fields(["externalTrafficPolicy", "loadBalancerIP"]) == [
		{"op": "remove", "path": "/spec/externalTrafficPolicy"},
	] with input as testing.service({"externalTrafficPolicy": "Local"})
}

test_remove_node_ports if {
	k8s.remove_node_ports([{"index": 2, "port": 30000}]) == [{"op": "remove", "path": "/spec/ports/2/nodePort"}]
}
