package review

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/portreeve/portreeve/policies"
)

// Limits bound what one review may hold, far above any real workload: an
// object beyond them costs time and memory out of proportion (a Pod with
// 65,000 hostPorts took 1.6 s and 225 MB to judge) and is refused before the
// rules see it. Zero means no limit.
type Limits struct {
	// Containers bounds the containers of a pod spec (init, regular, ephemeral).
	Containers int
	// Ports bounds the ports of a pod spec (all containers) or of a Service.
	Ports int
	// IngressRules bounds the rules and TLS hosts of an Ingress.
	IngressRules int
	// IngressPaths bounds the paths of an Ingress (all rules).
	IngressPaths int
}

// DefaultLimits are the limits of serve's flags.
var DefaultLimits = Limits{Containers: 256, Ports: 1024, IngressRules: 1024, IngressPaths: 4096}

// LimitError is an object beyond a limit: refused, saying which.
type LimitError struct {
	What       string // "ports", "containers", ...
	Count, Max int
	Flag       string // the serve flag that sets the limit
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("the object has %d %s, more than the %d Portreeve reviews in one object (serve %s)", e.Count, e.What, e.Max, e.Flag)
}

// IsLimit reports whether err is an object beyond a limit.
func IsLimit(err error) bool {
	var le *LimitError
	return errors.As(err, &le)
}

// SetLimits sets the limits of the reviews (none when never called). Call it
// before serving.
func (r *Reviewer) SetLimits(l Limits) { r.limits = l }

// check counts what the limits bound, and checks on the way that the port
// numbers the rules read are numbers: the apiserver never sends anything else,
// so anything else was made by hand, and is refused rather than left unjudged.
func (l Limits) check(in *policies.Input) error {
	if in.Pod != nil {
		return l.checkPodSpec(in.Pod)
	}
	spec, _ := in.Object["spec"].(map[string]any)
	switch in.Family() {
	case policies.FamilyServices:
		ports, err := list(spec, "ports", "spec.ports")
		if err != nil {
			return err
		}
		for i, p := range ports {
			field := fmt.Sprintf("spec.ports[%d]", i)
			if err := numbers(p, field, "port", "nodePort"); err != nil {
				return err
			}
		}
		return over("ports", len(ports), l.Ports, "--max-ports")
	case policies.FamilyIngresses:
		rules, err := list(spec, "rules", "spec.rules")
		if err != nil {
			return err
		}
		tls, err := list(spec, "tls", "spec.tls")
		if err != nil {
			return err
		}
		hosts := len(rules)
		for _, t := range tls {
			tm, _ := t.(map[string]any)
			h, _ := tm["hosts"].([]any)
			hosts += len(h)
		}
		if err := over("rules and TLS hosts", hosts, l.IngressRules, "--max-ingress-rules"); err != nil {
			return err
		}
		paths := 0
		for _, r := range rules {
			rm, _ := r.(map[string]any)
			http, _ := rm["http"].(map[string]any)
			p, _ := http["paths"].([]any)
			paths += len(p)
		}
		return over("paths", paths, l.IngressPaths, "--max-ingress-paths")
	}
	return nil
}

func (l Limits) checkPodSpec(pod *policies.PodView) error {
	containers, ports := 0, 0
	for _, group := range []string{"initContainers", "containers", "ephemeralContainers"} {
		cs, err := list(pod.Spec, group, pod.Path+"."+group)
		if err != nil {
			return err
		}
		containers += len(cs)
		for i, c := range cs {
			cm, _ := c.(map[string]any)
			field := fmt.Sprintf("%s.%s[%d]", pod.Path, group, i)
			ps, err := list(cm, "ports", field+".ports")
			if err != nil {
				return err
			}
			ports += len(ps)
			if ports > l.Ports && l.Ports > 0 {
				break // counted far enough; the error below says so
			}
			for j, p := range ps {
				if err := numbers(p, fmt.Sprintf("%s.ports[%d]", field, j), "containerPort", "hostPort"); err != nil {
					return err
				}
			}
		}
	}
	if err := over("containers", containers, l.Containers, "--max-containers"); err != nil {
		return err
	}
	return over("ports", ports, l.Ports, "--max-ports")
}

func over(what string, n, max int, flag string) error {
	if max > 0 && n > max {
		return &LimitError{What: what, Count: n, Max: max, Flag: flag}
	}
	return nil
}

// list returns m[key] as a list (nil when absent), or says why it is not one.
func list(m map[string]any, key, field string) ([]any, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, badRequest("%s: expected a list, got %s", field, typeName(v))
	}
	return l, nil
}

// numbers checks that the keys of the object v, where present, are integers.
func numbers(v any, field string, keys ...string) error {
	m, ok := v.(map[string]any)
	if !ok {
		return badRequest("%s: expected an object, got %s", field, typeName(v))
	}
	for _, k := range keys {
		x, ok := m[k]
		if !ok || x == nil {
			continue
		}
		n, ok := x.(json.Number)
		if _, err := n.Int64(); !ok || err != nil {
			return badRequest("%s.%s: expected an integer, got %s", field, k, typeName(x))
		}
	}
	return nil
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
