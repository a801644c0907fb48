// Package review is the admission logic shared by the webhooks and the offline
// commands: it turns a request into the rules' input, skips what cannot matter,
// applies and checks rewrites. It does no I/O.
package review

import (
	"errors"
	"fmt"
	"strings"

	"github.com/portreeve/portreeve/policies"
)

// ErrUnsupportedKind is returned for kinds Portreeve does not review.
var ErrUnsupportedKind = errors.New("unsupported kind")

// podSpecPaths says where the pod spec sits in each kind that has one.
var podSpecPaths = map[policies.GroupVersionKind][]string{
	{Group: "", Version: "v1", Kind: "Pod"}:                   {"spec"},
	{Group: "", Version: "v1", Kind: "PodTemplate"}:           {"template", "spec"},
	{Group: "", Version: "v1", Kind: "ReplicationController"}: {"spec", "template", "spec"},
	{Group: "apps", Version: "v1", Kind: "Deployment"}:        {"spec", "template", "spec"},
	{Group: "apps", Version: "v1", Kind: "StatefulSet"}:       {"spec", "template", "spec"},
	{Group: "apps", Version: "v1", Kind: "DaemonSet"}:         {"spec", "template", "spec"},
	{Group: "apps", Version: "v1", Kind: "ReplicaSet"}:        {"spec", "template", "spec"},
	{Group: "batch", Version: "v1", Kind: "Job"}:              {"spec", "template", "spec"},
	{Group: "batch", Version: "v1", Kind: "CronJob"}:          {"spec", "jobTemplate", "spec", "template", "spec"},
}

var otherKinds = map[policies.GroupVersionKind]bool{
	{Group: "", Version: "v1", Kind: "Service"}:                  true,
	{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}: true,
}

// Supported reports whether Portreeve reviews this kind.
func Supported(gvk policies.GroupVersionKind) bool {
	_, pod := podSpecPaths[gvk]
	return pod || otherKinds[gvk]
}

// SupportedKinds lists the reviewed kinds as group/version/Kind strings.
func SupportedKinds() []string {
	var out []string
	for k := range podSpecPaths {
		out = append(out, gvkString(k))
	}
	for k := range otherKinds {
		out = append(out, gvkString(k))
	}
	return out
}

func gvkString(k policies.GroupVersionKind) string {
	if k.Group == "" {
		return k.Version + "/" + k.Kind
	}
	return k.Group + "/" + k.Version + "/" + k.Kind
}

// podView extracts and defaults the pod spec of obj, or returns nil when the
// kind has none. A missing pod spec is an empty one.
func podView(gvk policies.GroupVersionKind, obj map[string]any) (*policies.PodView, error) {
	path, ok := podSpecPaths[gvk]
	if !ok {
		return nil, nil
	}
	spec, err := nested(obj, path)
	if err != nil {
		return nil, err
	}
	sa, _ := spec["serviceAccountName"].(string)
	if sa == "" {
		sa, _ = spec["serviceAccount"].(string)
	}
	if sa == "" {
		sa = "default"
	}
	return &policies.PodView{
		Path:           strings.Join(path, "."),
		Pointer:        "/" + strings.Join(path, "/"),
		Spec:           defaultHostNetworkPorts(spec),
		ServiceAccount: sa,
	}, nil
}

func nested(obj map[string]any, path []string) (map[string]any, error) {
	cur := obj
	for i, p := range path {
		next, ok := cur[p]
		if !ok || next == nil {
			return map[string]any{}, nil
		}
		m, ok := next.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: expected an object, got %T", strings.Join(path[:i+1], "."), next)
		}
		cur = m
	}
	return cur, nil
}

// defaultHostNetworkPorts sets hostPort = containerPort on every port of a
// hostNetwork pod spec, as the apiserver does for Pods (but not for pod
// templates), so both are judged alike. It copies what it changes.
func defaultHostNetworkPorts(spec map[string]any) map[string]any {
	if hn, _ := spec["hostNetwork"].(bool); !hn {
		return spec
	}
	out := make(map[string]any, len(spec))
	for k, v := range spec {
		out[k] = v
	}
	for _, list := range []string{"initContainers", "containers", "ephemeralContainers"} {
		containers, ok := spec[list].([]any)
		if !ok {
			continue
		}
		newContainers := make([]any, len(containers))
		for i, c := range containers {
			newContainers[i] = defaultContainerPorts(c)
		}
		out[list] = newContainers
	}
	return out
}

func defaultContainerPorts(c any) any {
	cm, ok := c.(map[string]any)
	if !ok {
		return c
	}
	ports, ok := cm["ports"].([]any)
	if !ok {
		return c
	}
	newPorts := make([]any, len(ports))
	for i, p := range ports {
		pm, ok := p.(map[string]any)
		if !ok || !isZero(pm["hostPort"]) {
			newPorts[i] = p
			continue
		}
		np := make(map[string]any, len(pm)+1)
		for k, v := range pm {
			np[k] = v
		}
		np["hostPort"] = pm["containerPort"]
		newPorts[i] = np
	}
	out := make(map[string]any, len(cm))
	for k, v := range cm {
		out[k] = v
	}
	out["ports"] = newPorts
	return out
}

func isZero(v any) bool {
	switch n := v.(type) {
	case nil:
		return true
	case float64:
		return n == 0
	case interface{ String() string }:
		return n.String() == "0"
	}
	return false
}
