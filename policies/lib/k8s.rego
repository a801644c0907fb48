# METADATA
# title: Kubernetes helpers
# description: |
#   Accessors for the admission input: which kind of object is under review,
#   its pod spec (already defaulted as the apiserver defaults Pods) and field paths.
package portreeve.lib.k8s

# is_service is true for core/v1 Services.
is_service if {
	input.kind.group == ""
	input.kind.kind == "Service"
}

# is_ingress is true for networking.k8s.io Ingresses.
is_ingress if {
	input.kind.group == "networking.k8s.io"
	input.kind.kind == "Ingress"
}

# is_gateway is true for Gateway API Gateways and ListenerSets (objects with listeners).
is_gateway if {
	input.kind.group == "gateway.networking.k8s.io"
	input.kind.kind in {"Gateway", "ListenerSet"}
}

# is_route is true for the Gateway API routes with hostnames.
is_route if {
	input.kind.group == "gateway.networking.k8s.io"
	input.kind.kind in {"HTTPRoute", "GRPCRoute", "TLSRoute"}
}

# claims_hosts is true for the objects whose hosts the inventory holds: Ingresses and routes.
claims_hosts if is_ingress

claims_hosts if is_route

# spec is the object's spec, or an empty object.
spec := object.get(input.object, "spec", {})

# pod_spec is the pod spec of a Pod or of a workload's pod template.
pod_spec := input.pod.spec

# host_network is true when the pod shares the node's network namespace.
host_network if pod_spec.hostNetwork == true

# containers lists every container of the pod spec with where it sits:
# {"list": "containers", "index": 0, "container": {...}}.
containers := [c |
	some list in ["initContainers", "containers", "ephemeralContainers"]
	some i, container in object.get(pod_spec, list, [])
	c := {"list": list, "index": i, "container": container}
]

# host_ports lists every hostPort of every container with its field path and
# JSON pointer: {"port", "protocol", "hostIP", "container", "field", "pointer"}.
# On hostNetwork pods every containerPort is a hostPort. The engine computes
# them once per request into input.pod.hostPorts, as pod_host_ports states.
host_ports := input.pod.hostPorts

# pod_host_ports states what the engine puts in input.pod.hostPorts for the
# pod view pod (input.pod without hostPorts); tests of the engine hold its Go
# implementation to this one, and Rego tests build inputs with it.
pod_host_ports(pod) := [p |
	some list in ["initContainers", "containers", "ephemeralContainers"]
	some i, container in object.get(pod.spec, list, [])
	some j, port in object.get(container, "ports", [])
	number := object.get(port, "hostPort", 0)
	number > 0
	p := {
		"port": number,
		"protocol": object.get(port, "protocol", "TCP"),
		"hostIP": object.get(port, "hostIP", ""),
		"container": object.get(container, "name", ""),
		"field": sprintf("%s.%s[%d].ports[%d].hostPort", [pod.path, list, i, j]),
		"pointer": sprintf("%s/%s/%d/ports/%d/hostPort", [pod.pointer, list, i, j]),
	}
]

# pod_field is the dotted path of a field of the pod spec.
pod_field(suffix) := concat(".", [pod_path, suffix])

pod_path := object.get(input.pod, "path", "spec")

pod_pointer := object.get(input.pod, "pointer", "/spec")

# service_type is the Service's type (ClusterIP when unset).
service_type := object.get(spec, "type", "ClusterIP")

# opens_node_ports is true when the Service opens a port on every node:
# NodePort, and LoadBalancer unless allocateLoadBalancerNodePorts is false.
# (It reads spec.type directly: service_type is ClusterIP when it is unset,
# and this runs on every Service.)
opens_node_ports if input.object.spec.type == "NodePort"

opens_node_ports if {
	input.object.spec.type == "LoadBalancer"
	object.get(input.object.spec, "allocateLoadBalancerNodePorts", true) != false
}

# externalTrafficPolicy: Local gives a LoadBalancer a healthCheckNodePort, a
# port open on every node, whatever allocateLoadBalancerNodePorts says.
opens_node_ports if {
	input.object.spec.type == "LoadBalancer"
	input.object.spec.externalTrafficPolicy == "Local"
}

# An explicit nodePort is opened whatever allocateLoadBalancerNodePorts says.
opens_node_ports if {
	input.object.spec.type == "LoadBalancer"
	count(node_ports) > 0
}

# node_ports lists the explicit nodePort values of the Service.
node_ports := [p |
	some i, port in object.get(spec, "ports", [])
	number := object.get(port, "nodePort", 0)
	number > 0
	p := {"index": i, "port": number, "field": sprintf("spec.ports[%d].nodePort", [i])}
]

# in_ranges is true when port (with protocol) lies in one of the ranges.
in_ranges(port, protocol, ranges) if {
	some r in ranges
	r.from <= port
	port <= r.to
	r.protocol in {"", protocol}
}

# ranges_text renders ranges for a message: "30100-30199, 53/UDP".
ranges_text(ranges) := concat(", ", [r.text | some r in ranges]) if {
	count(ranges) > 0
} else := "none"

# has_field is true when obj sets key, whatever its value.
has_field(obj, key) if {
	_ := obj[key]
}

# remove_node_ports is the JSON Patch that drops the given nodePort values.
remove_node_ports(node_ports) := [{"op": "remove", "path": sprintf("/spec/ports/%d/nodePort", [p.index])} |
	some p in node_ports
]

# remove_fields is the JSON Patch that drops the spec fields that are set.
remove_fields(fields) := [{"op": "remove", "path": concat("/", ["/spec", f])} |
	some f in fields
	has_field(spec, f)
]
