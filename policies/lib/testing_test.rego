# METADATA
# title: Test helpers
# description: |
#   Builders for the normalised data.portreeve.config (as Config.Data produces it)
#   and for admission inputs (as policies/input.go builds them). Loaded only in tests.
package portreeve.lib.testing

import data.portreeve.lib.facts
import data.portreeve.lib.grants
import data.portreeve.lib.k8s

# rule_ids are the built-in rules; config gives each a mode.
rule_ids := [
	"external-ips", "gateway-addresses", "gateway-hosts", "gateway-load-balancer", "host-network", "host-port-conflicts", "host-ports",
	"ingress-host-conflicts", "ingress-hosts", "load-balancer", "node-port-conflicts", "node-ports",
]

# The clock tests run at (with time.now_ns as testing.now_ns), and expiries around it.
now_ns := 1800000000000000000

past_ns := 1700000000000000000

future_ns := 1900000000000000000

# grant is a normalised grant: every key present, fields override the defaults.
grant(fields) := object.union(
	{
		"name": "g",
		"namespaces": [],
		"serviceAccounts": [],
		"users": [],
		"groups": [],
		"hostNetwork": false,
		"hostPorts": [],
		"nodePorts": [],
		"loadBalancer": {"allowed": false, "classes": [], "sourceRangesRequired": false},
		"externalIPs": [],
		"ingressDomains": [],
		"ingressClasses": [],
		"expires": "",
		"expiresNs": 0,
		"reason": "test",
	},
	fields,
)

# exemption is a normalised exemption.
exemption(fields) := object.union(
	{
		"name": "e",
		"namespaces": [],
		"serviceAccounts": [],
		"users": [],
		"groups": [],
		"rules": [],
		"expires": "",
		"expiresNs": 0,
		"reason": "test",
	},
	fields,
)

# port_range parses "80", "8000-8100" or "53/UDP" as Config.Data does.
port_range(text) := {"from": from, "to": to, "protocol": protocol, "text": text} if {
	parts := split(text, "/")
	protocol := concat("", array.slice(parts, 1, 2))
	bounds := split(parts[0], "-")
	from := to_number(bounds[0])
	to := to_number(bounds[count(bounds) - 1])
}

port_ranges(texts) := [port_range(text) | some text in texts]

# config is data.portreeve.config with these grants and every rule in deny mode.
config(grants) := config_with(grants, [], {})

# config_with sets exemptions and rule modes ({"host-ports": "rewrite"}) too.
config_with(grants, exemptions, modes) := {
	"rules": {id: {"mode": object.get(modes, id, "deny")} | some id in rule_ids},
	"grants": grants,
	"exemptions": exemptions,
	"ingressDomainsConfigured": count([d | some g in grants; some d in g.ingressDomains]) > 0,
	"gatewayAPI": {"internalClasses": []},
}

# with_internal_classes names GatewayClasses that expose nothing outside the cluster.
with_internal_classes(cfg, classes) := object.union(cfg, {"gatewayAPI": {"internalClasses": classes}})

namespace := "team-a"

user := {"username": "alice", "groups": ["system:authenticated", "dev"]}

metadata := {"name": "x", "namespace": namespace}

# request is the input for an object of this kind, made by alice in team-a.
request(kind, obj) := {
	"operation": "CREATE",
	"kind": kind,
	"namespace": namespace,
	"name": "x",
	"user": user,
	"dryRun": false,
	"object": obj,
	"namespaceLabels": {},
}

pod_kind := {"group": "", "version": "v1", "kind": "Pod"}

deployment_kind := {"group": "apps", "version": "v1", "kind": "Deployment"}

service_kind := {"group": "", "version": "v1", "kind": "Service"}

ingress_kind := {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"}

# gateway_kind is a Gateway API kind (Gateway, ListenerSet, HTTPRoute, GRPCRoute, TLSRoute).
gateway_kind(kind) := {"group": "gateway.networking.k8s.io", "version": "v1", "kind": kind}

# gateway is the input for a Gateway with this spec.
gateway(spec) := gateway_api("Gateway", spec)

# route is the input for a route of this kind (HTTPRoute, GRPCRoute, TLSRoute) with this spec.
route(kind, spec) := gateway_api(kind, spec)

gateway_api(kind, spec) := request(
	gateway_kind(kind),
	{"apiVersion": "gateway.networking.k8s.io/v1", "kind": kind, "metadata": metadata, "spec": spec},
)

# pod is the input for a Pod with this spec.
pod(spec) := object.union(
	request(pod_kind, {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}),
	{"pod": pod_view("spec", "/spec", spec)},
)

# deployment is the input for a Deployment whose pod template has this spec.
deployment(spec) := object.union(
	request(
		deployment_kind,
		{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": {"template": {"spec": spec}}},
	),
	{"pod": pod_view("spec.template.spec", "/spec/template/spec", spec)},
)

# pod_view is input.pod as the engine builds it, hostPorts included.
pod_view(path, pointer, spec) := object.union(view, {"hostPorts": k8s.pod_host_ports(view)}) if {
	view := {"path": path, "pointer": pointer, "spec": spec, "serviceAccount": service_account(spec)}
}

# resolve adds what the engine resolves for every request: the grants of the
# configuration cfg that apply to req (input.grants), at the tests' clock, and
# the facts' defaults (no inventory, the default NodePort range).
resolve(req, cfg) := object.union(req, {
	"grants": grants.resolve(req, cfg, now_ns),
	"facts": object.union(facts.defaults, object.get(req, "facts", {})),
})

service_account(spec) := object.get(spec, "serviceAccountName", "default")

# service is the input for a Service with this spec.
service(spec) := request(service_kind, {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec})

# ingress is the input for an Ingress with this spec.
ingress(spec) := request(
	ingress_kind,
	{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata, "spec": spec},
)

# with_facts gives a request these facts from the inventory (ready unless they say).
with_facts(req, facts) := object.union(req, {"facts": object.union({"ready": true}, facts)})

# holder is a holder of a port or host as the inventory reports it.
holder(ns, kind, name, claim) := {"namespace": ns, "kind": kind, "name": name, "claim": claim, "pending": false}

# in_namespace moves a request to another namespace.
in_namespace(req, ns) := object.union(req, {"namespace": ns})

# as_user makes the request as another user.
as_user(req, username, groups) := object.union(req, {"user": {"username": username, "groups": groups}})

# container is a container with these ports.
container(name, ports) := {"name": name, "image": "registry.example/app:1", "ports": ports}

# host_port is a port with hostPort = containerPort.
host_port(port, protocol) := {"containerPort": port, "hostPort": port, "protocol": protocol}

# messages and fields of a set of findings.
messages_of(findings) := {f.msg | some f in findings}

fields_of(findings) := {f.field | some f in findings}

# any_message_contains is true when some finding's message contains text.
any_message_contains(findings, text) if {
	some f in findings
	contains(f.msg, text)
}
