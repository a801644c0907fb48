package exposure

import "strconv"

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
