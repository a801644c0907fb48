package exposure

import (
	"slices"
	"strconv"
	"strings"
)

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
