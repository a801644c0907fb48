package exposure

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Exposure is everything one object exposes outside the cluster, read once
// from the decoded object: the rules' input, the inventory's claims and the
// UPDATE skip are all computed from it.
type Exposure struct {
	Kind *Kind
	Meta
	// Active is false for objects that hold nothing now (Kind.Active).
	Active bool
	// One of Pod, Service and Ingress is set, by the kind's family.
	Pod     *Pod
	Service *Service
	Ingress *Ingress
}

// Meta is what the inventory needs of an object's metadata.
type Meta struct {
	Name, Namespace, ResourceVersion string
	// Owner is the controller owner (zero for none).
	Owner Owner
}

// Owner is an object's controller owner.
type Owner struct{ Kind, Name string }

// Pod is the exposure of a pod spec (of a Pod or of a workload's template).
type Pod struct {
	// Path is the dotted field path of the pod spec, Pointer its JSON Pointer.
	Path, Pointer string
	// Spec is the pod spec with hostPort defaulted to containerPort on a
	// hostNetwork pod, as the apiserver defaults Pods (but not templates), so
	// that both are judged alike. It shares what it does not change with the
	// object.
	Spec           map[string]any
	ServiceAccount string
	HostNetwork    bool
	// HostPorts lists every host port (init, regular and ephemeral
	// containers; a hostNetwork pod's container ports).
	HostPorts []HostPort
	// Where the pod may run decides which holders of its host ports it meets.
	NodeName     string
	NodeSelector map[string]string
	Affinity     any
	// Containers and Ports count what the spec declares (for Limits).
	Containers, Ports int
}

// HostPort is one host port of a pod spec.
type HostPort struct {
	Port                      int
	Protocol, HostIP          string
	Container, Field, Pointer string
}

// Service is the exposure of a Service.
type Service struct {
	Type string
	// Ports counts the Service's ports.
	Ports int
	// OpensNodePorts: a NodePort Service, or a LoadBalancer that allocates
	// node ports or names one.
	OpensNodePorts bool
	// NodePorts are the explicit node ports (nodePort values and an explicit
	// healthCheckNodePort) of a Service that opens node ports.
	NodePorts []NodePort
	// ImpliedHealthCheckNodePort: a LoadBalancer with externalTrafficPolicy
	// Local and no explicit healthCheckNodePort, for which the apiserver
	// allocates one, open on every node.
	ImpliedHealthCheckNodePort bool
	ExternalIPs                []string
	// judged is the spec without the fields that expose nothing.
	judged map[string]any
}

// NodePort is one explicit node port of a Service.
type NodePort struct {
	Port            int
	Protocol, Field string
}

// Ingress is the exposure of an Ingress.
type Ingress struct {
	// Class is spec.ingressClassName, else the kubernetes.io/ingress.class annotation.
	Class string
	// Hosts are the rules' hosts with each path (a host without paths claims "/").
	Hosts []HostPath
	// DefaultBackend: the Ingress sends every unmatched host somewhere.
	DefaultBackend bool
	// Rules counts the rules and TLS hosts, Paths the paths (for Limits).
	Rules, Paths int
	judged       []any
}

// HostPath is one host and path an Ingress routes.
type HostPath struct {
	Host, Path string
	// Prefix: the path matches its subpaths (pathType Prefix or
	// ImplementationSpecific); else it is Exact.
	Prefix bool
	Field  string
}

// FieldError is an object whose field does not have the type the API gives
// it: the apiserver never sends one, so it was made by hand.
type FieldError struct{ Field, Msg string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldError(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Extract reads the exposure of obj, an object of kind k. It checks on the
// way that the fields it reads have their API types (FieldError), and stops
// at the first bound of lim that the object passes (LimitError).
func Extract(k *Kind, obj map[string]any, lim Limits) (*Exposure, error) {
	md, _ := obj["metadata"].(map[string]any)
	x := &Exposure{Kind: k, Meta: readMeta(md), Active: k.Active(obj)}
	var err error
	switch {
	case k.PodSpec != nil:
		x.Pod, err = extractPod(k, obj, lim)
	case k.Family == FamilyServices:
		x.Service, err = extractService(obj, lim)
	case k.Family == FamilyIngresses:
		x.Ingress, err = extractIngress(obj, md, lim)
	}
	if err != nil {
		return nil, err
	}
	return x, nil
}

func readMeta(md map[string]any) Meta {
	m := Meta{Name: str(md["name"]), Namespace: str(md["namespace"]), ResourceVersion: str(md["resourceVersion"])}
	refs, _ := md["ownerReferences"].([]any)
	for _, r := range refs {
		rm, _ := r.(map[string]any)
		if c, _ := rm["controller"].(bool); c {
			m.Owner = Owner{Kind: str(rm["kind"]), Name: str(rm["name"])}
			break
		}
	}
	return m
}

var containerLists = [...]string{"initContainers", "containers", "ephemeralContainers"}

func extractPod(k *Kind, obj map[string]any, lim Limits) (*Pod, error) {
	spec, err := nested(obj, k.PodSpec)
	if err != nil {
		return nil, err
	}
	return podSpec(k.PodSpec, spec, lim)
}

// ExtractPodSpec reads the exposure of a pod spec found at the dotted path
// (no limits): for views of a pod spec made without its object.
func ExtractPodSpec(path string, spec map[string]any) (*Pod, error) {
	if spec == nil {
		spec = map[string]any{}
	}
	return podSpec(strings.Split(path, "."), spec, Limits{})
}

func podSpec(at []string, spec map[string]any, lim Limits) (*Pod, error) {
	var err error
	path := strings.Join(at, ".")
	p := &Pod{Path: path, Pointer: "/" + strings.Join(at, "/"), Spec: spec}
	p.HostNetwork, _ = spec["hostNetwork"].(bool)
	p.ServiceAccount = str(spec["serviceAccountName"])
	if p.ServiceAccount == "" {
		p.ServiceAccount = str(spec["serviceAccount"])
	}
	if p.ServiceAccount == "" {
		p.ServiceAccount = "default"
	}
	p.NodeName = str(spec["nodeName"])
	if sel, ok := spec["nodeSelector"].(map[string]any); ok && len(sel) > 0 {
		p.NodeSelector = make(map[string]string, len(sel))
		for key, v := range sel {
			p.NodeSelector[key] = str(v)
		}
	}
	p.Affinity = spec["affinity"]
	lists := [len(containerLists)][]any{}
	for l, name := range containerLists {
		if lists[l], err = listAt(spec, name, path+"."+name); err != nil {
			return nil, err
		}
		p.Containers += len(lists[l])
	}
	if err := lim.over("containers", p.Containers, lim.Containers, "--max-containers"); err != nil {
		return nil, err
	}
	w := podWalk{pod: p, spec: spec}
	for l, name := range containerLists {
		for i, c := range lists[l] {
			if err := w.container(name, i, c, lim); err != nil {
				return nil, err
			}
		}
	}
	if w.copied != nil {
		p.Spec = w.copied
	}
	return p, nil
}

// podWalk is the one walk of a pod spec's containers and their ports.
type podWalk struct {
	pod  *Pod
	spec map[string]any
	// copied is the defaulted copy of the spec, once a hostNetwork port
	// needs its hostPort set.
	copied map[string]any
	cloned map[string]bool
}

func (w *podWalk) container(list string, i int, c any, lim Limits) error {
	p := w.pod
	field := p.Path + "." + list + "[" + strconv.Itoa(i) + "]"
	cm, ok := c.(map[string]any)
	if !ok {
		return fieldError(field, "expected an object, got %s", typeName(c))
	}
	ports, err := listAt(cm, "ports", field+".ports")
	if err != nil {
		return err
	}
	p.Ports += len(ports)
	if err := lim.over("ports", p.Ports, lim.Ports, "--max-ports"); err != nil {
		return err
	}
	name := str(cm["name"])
	for j, port := range ports {
		pfield := field + ".ports[" + strconv.Itoa(j) + "]"
		pm, ok := port.(map[string]any)
		if !ok {
			return fieldError(pfield, "expected an object, got %s", typeName(port))
		}
		containerPort, err := intField(pm, "containerPort", pfield)
		if err != nil {
			return err
		}
		hostPort, err := intField(pm, "hostPort", pfield)
		if err != nil {
			return err
		}
		if hostPort == 0 && p.HostNetwork && containerPort > 0 {
			hostPort = containerPort
			w.setHostPort(list, i, j, pm)
		}
		if hostPort <= 0 {
			continue
		}
		protocol := str(pm["protocol"])
		if protocol == "" {
			protocol = "TCP"
		}
		idx, jdx := strconv.Itoa(i), strconv.Itoa(j)
		p.HostPorts = append(p.HostPorts, HostPort{
			Port: hostPort, Protocol: protocol, HostIP: str(pm["hostIP"]), Container: name,
			Field:   pfield + ".hostPort",
			Pointer: p.Pointer + "/" + list + "/" + idx + "/ports/" + jdx + "/hostPort",
		})
	}
	return nil
}

// setHostPort sets hostPort = containerPort on port j of container i of
// list l in the defaulted copy of the spec, copying what it changes (the
// spec, the list, the container and its ports, once each).
func (w *podWalk) setHostPort(list string, i, j int, pm map[string]any) {
	if w.copied == nil {
		w.copied = cloneMap(w.spec)
		w.cloned = map[string]bool{}
	}
	if !w.cloned[list] {
		w.copied[list] = slices.Clone(w.copied[list].([]any))
		w.cloned[list] = true
	}
	containers := w.copied[list].([]any)
	key := list + "/" + strconv.Itoa(i)
	if !w.cloned[key] {
		cm := cloneMap(containers[i].(map[string]any))
		cm["ports"] = slices.Clone(cm["ports"].([]any))
		containers[i] = cm
		w.cloned[key] = true
	}
	np := cloneMap(pm)
	np["hostPort"] = pm["containerPort"]
	containers[i].(map[string]any)["ports"].([]any)[j] = np
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

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

func extractIngress(obj, md map[string]any, lim Limits) (*Ingress, error) {
	spec, err := nested(obj, []string{"spec"})
	if err != nil {
		return nil, err
	}
	annotations, _ := md["annotations"].(map[string]any)
	ing := &Ingress{Class: str(spec["ingressClassName"]), DefaultBackend: spec["defaultBackend"] != nil}
	if ing.Class == "" {
		ing.Class = str(annotations["kubernetes.io/ingress.class"])
	}
	rules, err := listAt(spec, "rules", "spec.rules")
	if err != nil {
		return nil, err
	}
	tls, err := listAt(spec, "tls", "spec.tls")
	if err != nil {
		return nil, err
	}
	ing.Rules = len(rules)
	for i, t := range tls {
		tm, _ := t.(map[string]any)
		hosts, err := listAt(tm, "hosts", "spec.tls["+strconv.Itoa(i)+"].hosts")
		if err != nil {
			return nil, err
		}
		ing.Rules += len(hosts)
	}
	if err := lim.over("rules and TLS hosts", ing.Rules, lim.IngressRules, "--max-ingress-rules"); err != nil {
		return nil, err
	}
	for i, r := range rules {
		field := "spec.rules[" + strconv.Itoa(i) + "]"
		rm, ok := r.(map[string]any)
		if !ok {
			return nil, fieldError(field, "expected an object, got %s", typeName(r))
		}
		http, _ := rm["http"].(map[string]any)
		paths, err := listAt(http, "paths", field+".http.paths")
		if err != nil {
			return nil, err
		}
		ing.Paths += len(paths)
		if err := lim.over("paths", ing.Paths, lim.IngressPaths, "--max-ingress-paths"); err != nil {
			return nil, err
		}
		host := str(rm["host"])
		if host == "" {
			continue
		}
		if len(paths) == 0 {
			ing.Hosts = append(ing.Hosts, HostPath{Host: host, Path: "/", Prefix: true, Field: field + ".host"})
			continue
		}
		for _, p := range paths {
			pm, _ := p.(map[string]any)
			path := str(pm["path"])
			if path == "" {
				path = "/"
			}
			ing.Hosts = append(ing.Hosts, HostPath{Host: host, Path: path, Prefix: str(pm["pathType"]) != "Exact", Field: field + ".host"})
		}
	}
	ing.judged = []any{spec, annotations["kubernetes.io/ingress.class"]}
	return ing, nil
}

// Same reports whether a and b, two versions of one object, expose the
// same: an UPDATE from one to the other changes nothing the built-in rules
// judge. Of a pod spec that is the host network, the service account, the
// host ports and where the pod may run (an image change is not exposure); of
// a Service every spec field but those that expose nothing; of an Ingress its
// whole spec and class.
func Same(a, b *Exposure) bool {
	if a == nil || b == nil || a.Kind != b.Kind {
		return false
	}
	switch {
	case a.Pod != nil && b.Pod != nil:
		x, y := a.Pod, b.Pod
		return x.HostNetwork == y.HostNetwork && x.ServiceAccount == y.ServiceAccount &&
			slices.Equal(x.HostPorts, y.HostPorts) && x.NodeName == y.NodeName &&
			reflect.DeepEqual(x.NodeSelector, y.NodeSelector) && reflect.DeepEqual(x.Affinity, y.Affinity)
	case a.Service != nil && b.Service != nil:
		return reflect.DeepEqual(a.Service.judged, b.Service.judged)
	case a.Ingress != nil && b.Ingress != nil:
		return reflect.DeepEqual(a.Ingress.judged, b.Ingress.judged)
	}
	return false
}

// nested returns the object at path, an empty one when it is missing, or
// says why it is not an object.
func nested(obj map[string]any, path []string) (map[string]any, error) {
	cur := obj
	for i, p := range path {
		next, ok := cur[p]
		if !ok || next == nil {
			return map[string]any{}, nil
		}
		m, ok := next.(map[string]any)
		if !ok {
			return nil, fieldError(strings.Join(path[:i+1], "."), "expected an object, got %s", typeName(next))
		}
		cur = m
	}
	return cur, nil
}

// listAt returns m[key] as a list (nil when absent), or says why it is not one.
func listAt(m map[string]any, key, field string) ([]any, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fieldError(field, "expected a list, got %s", typeName(v))
	}
	return l, nil
}

// intField reads m[key] as an integer (0 when absent), or says why it is not one.
func intField(m map[string]any, key, field string) (int, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return 0, nil
	}
	n, ok := Int(v)
	if !ok {
		return 0, fieldError(field+"."+key, "expected an integer, got %s", typeName(v))
	}
	return n, nil
}

// Int reads a JSON integer: json.Number (a decoder with UseNumber), int64
// (Kubernetes' unstructured decoding), float64 (encoding/json) or int.
func Int(v any) (int, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := strconv.Atoi(n.String())
		return i, err == nil
	case int64:
		return int(n), true
	case int:
		return n, true
	case int32:
		return int(n), true
	case float64:
		return int(n), n == float64(int(n))
	}
	return 0, false
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func typeName(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case json.Number:
		return "the number " + x.String()
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%T", v)
}
