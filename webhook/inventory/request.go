package inventory

import (
	"encoding/json"
	"fmt"

	"github.com/portreeve/portreeve/policies"
)

// request is what the object under review claims, read from the rules' input
// (the decoded object, the pod spec already defaulted by webhook/review).
type request struct {
	claims
	// holder is the top owner the object's claims belong to: another object
	// of the same holder never conflicts with it.
	holder objectKey
	// active is true when the object runs pods now (replicas above zero, a
	// Job not finished, a CronJob not suspended) or is a Service or Ingress:
	// only active objects are recorded as pending claims.
	active bool
	// opensNodePorts is true for NodePort Services, and LoadBalancers that
	// allocate node ports or ask for one.
	opensNodePorts bool
	// servicePorts counts the Service's ports.
	servicePorts int
}

// readRequest extracts the claims of the object in the input.
func readRequest(in *policies.Input) *request {
	md, _ := in.Object["metadata"].(map[string]any)
	r := &request{active: true}
	r.key = objectKey{kind: in.Kind.Kind, namespace: in.Namespace, name: in.Name}
	for _, o := range list(md["ownerReferences"]) {
		om, _ := o.(map[string]any)
		if c, _ := om["controller"].(bool); c {
			r.owner = ownerRef(str(om["kind"]), str(om["name"]))
			break
		}
	}
	if in.OldObject != nil {
		oldMD, _ := in.OldObject["metadata"].(map[string]any)
		r.resourceVersion = str(oldMD["resourceVersion"])
	}
	spec, _ := in.Object["spec"].(map[string]any)
	switch {
	case in.Pod != nil:
		r.readPodSpec(in.Pod.Path, in.Pod.Spec)
		r.active = podActive(in.Kind.Kind, in.Object, spec)
	case in.Kind.Kind == "Service":
		r.readService(spec)
	case in.Kind.Kind == "Ingress":
		r.readIngress(spec)
	}
	r.holder = r.group()
	return r
}

func (r *request) readPodSpec(path string, spec map[string]any) {
	for _, listName := range []string{"initContainers", "containers", "ephemeralContainers"} {
		for i, c := range list(spec[listName]) {
			cm, _ := c.(map[string]any)
			for j, p := range list(cm["ports"]) {
				pm, _ := p.(map[string]any)
				port := num(pm["hostPort"])
				if port <= 0 || port > 65535 {
					continue
				}
				r.hostPorts = append(r.hostPorts, hostPort{
					port:     int32(port),
					protocol: protocolOr(str(pm["protocol"])),
					hostIP:   str(pm["hostIP"]),
					field:    fmt.Sprintf("%s.%s[%d].ports[%d].hostPort", path, listName, i, j),
				})
			}
		}
	}
	if len(r.hostPorts) > 0 {
		r.scope.nodeName = str(spec["nodeName"])
		if sel, ok := spec["nodeSelector"].(map[string]any); ok && len(sel) > 0 {
			r.scope.selector = make(map[string]string, len(sel))
			for k, v := range sel {
				r.scope.selector[k] = str(v)
			}
		}
	}
}

// podActive mirrors the transforms: whether the object runs pods now.
func podActive(kind string, obj, spec map[string]any) bool {
	switch kind {
	case "Pod":
		status, _ := obj["status"].(map[string]any)
		phase := str(status["phase"])
		return phase != "Succeeded" && phase != "Failed"
	case "Deployment", "StatefulSet", "ReplicaSet", "ReplicationController":
		n, ok := spec["replicas"]
		return !ok || n == nil || num(n) > 0
	case "Job":
		status, _ := obj["status"].(map[string]any)
		for _, c := range list(status["conditions"]) {
			cm, _ := c.(map[string]any)
			if t := str(cm["type"]); (t == "Complete" || t == "Failed") && str(cm["status"]) == "True" {
				return false
			}
		}
		return true
	case "CronJob":
		s, _ := spec["suspend"].(bool)
		return !s
	case "PodTemplate":
		return false
	}
	return true
}

func (r *request) readService(spec map[string]any) {
	typ := str(spec["type"])
	ports := list(spec["ports"])
	r.servicePorts = len(ports)
	for i, p := range ports {
		pm, _ := p.(map[string]any)
		if n := num(pm["nodePort"]); n > 0 && n <= 65535 {
			r.nodePorts = append(r.nodePorts, nodePort{
				port: int32(n), protocol: protocolOr(str(pm["protocol"])), field: fmt.Sprintf("spec.ports[%d].nodePort", i),
			})
		}
	}
	if n := num(spec["healthCheckNodePort"]); n > 0 && n <= 65535 {
		r.nodePorts = append(r.nodePorts, nodePort{port: int32(n), protocol: "TCP", field: "spec.healthCheckNodePort"})
	}
	allocate, set := spec["allocateLoadBalancerNodePorts"].(bool)
	switch typ {
	case "NodePort":
		r.opensNodePorts = true
	case "LoadBalancer":
		r.opensNodePorts = !set || allocate || len(r.nodePorts) > 0
	}
	if !r.opensNodePorts {
		r.nodePorts = nil
	}
}

func (r *request) readIngress(spec map[string]any) {
	for i, rule := range list(spec["rules"]) {
		rm, _ := rule.(map[string]any)
		host := str(rm["host"])
		if host == "" {
			continue
		}
		field := fmt.Sprintf("spec.rules[%d].host", i)
		http, _ := rm["http"].(map[string]any)
		paths := list(http["paths"])
		if len(paths) == 0 {
			r.hosts = append(r.hosts, hostPath{host: host, path: "/", prefix: true, field: field})
			continue
		}
		for _, p := range paths {
			pm, _ := p.(map[string]any)
			hp := newHostPath(host, str(pm["path"]), str(pm["pathType"]) == "Exact")
			hp.field = field
			r.hosts = append(r.hosts, hp)
		}
	}
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// num reads a JSON number (json.Number from webhook/review, float64 or int
// from elsewhere); 0 when it is none.
func num(v any) int64 {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		if err != nil {
			return 0
		}
		return i
	case float64:
		return int64(n)
	case int:
		return int64(n)
	case int64:
		return n
	case int32:
		return int64(n)
	}
	return 0
}
