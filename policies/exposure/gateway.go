package exposure

import "strconv"

// Gateway is the exposure of a Gateway API Gateway or ListenerSet: its
// listeners (each a port and protocol, and a hostname or every host) and
// the addresses a Gateway asks for.
type Gateway struct {
	// Class is spec.gatewayClassName (empty for a ListenerSet).
	Class     string
	Listeners []Listener
	Addresses []Address
	judged    any
}

// Listener is one listener of a Gateway or ListenerSet.
type Listener struct {
	Name string
	// Hostname is empty for a listener that accepts every host.
	Hostname, Protocol string
	Port               int
	Field              string
}

// Address is one of a Gateway's spec.addresses.
type Address struct {
	// Type is IPAddress (the default), Hostname or an implementation's own.
	Type, Value, Field string
}

// Route is the exposure of a Gateway API route with hostnames (HTTPRoute,
// GRPCRoute, TLSRoute): the hosts and paths it claims and the parents it
// attaches to.
type Route struct {
	// Hosts are the route's hostnames, each with the paths it matches: an
	// HTTPRoute's Exact and PathPrefix path matches, "/" as a prefix for a
	// rule without path matches (or with another match type), for GRPCRoute
	// and TLSRoute. A route without hostnames inherits its listeners' and
	// claims nothing here.
	Hosts []HostPath
	// Paths are the paths a route without hostnames claims on each hostname
	// it inherits (Host empty); nil when it has hostnames.
	Paths   []HostPath
	Parents []ParentRef
	judged  any
}

// ParentRef is one of a route's spec.parentRefs, as written: an empty
// Group, Kind or Namespace means gateway.networking.k8s.io, Gateway and the
// route's namespace (Resolved fills them in).
type ParentRef struct {
	Group, Kind, Namespace, Name, SectionName string
	Port                                      int
	Field                                     string
}

// Resolved returns p with the API's defaults filled in for a route in
// namespace ns.
func (p ParentRef) Resolved(ns string) ParentRef {
	if p.Group == "" && (p.Kind == "" || p.Kind == "Gateway" || p.Kind == "ListenerSet") {
		p.Group = GatewayGroup
	}
	if p.Kind == "" {
		p.Kind = "Gateway"
	}
	if p.Namespace == "" {
		p.Namespace = ns
	}
	return p
}

// Listeners reports whether p names an object with listeners (a Gateway or
// a ListenerSet), once resolved.
func (p ParentRef) Listeners() bool {
	return p.Group == GatewayGroup && (p.Kind == "Gateway" || p.Kind == "ListenerSet")
}

func extractGateway(obj map[string]any, lim Limits) (*Gateway, error) {
	spec, err := nested(obj, []string{"spec"})
	if err != nil {
		return nil, err
	}
	g := &Gateway{Class: str(spec["gatewayClassName"]), judged: spec}
	listeners, err := listAt(spec, "listeners", "spec.listeners")
	if err != nil {
		return nil, err
	}
	if err := lim.over("listeners", len(listeners), lim.IngressRules, "--max-ingress-rules"); err != nil {
		return nil, err
	}
	for i, l := range listeners {
		field := "spec.listeners[" + strconv.Itoa(i) + "]"
		lm, ok := l.(map[string]any)
		if !ok {
			return nil, fieldError(field, "expected an object, got %s", typeName(l))
		}
		port, err := intField(lm, "port", field)
		if err != nil {
			return nil, err
		}
		g.Listeners = append(g.Listeners, Listener{
			Name: str(lm["name"]), Hostname: str(lm["hostname"]), Protocol: str(lm["protocol"]), Port: port, Field: field,
		})
	}
	addresses, err := listAt(spec, "addresses", "spec.addresses")
	if err != nil {
		return nil, err
	}
	for i, a := range addresses {
		am, _ := a.(map[string]any)
		t := str(am["type"])
		if t == "" {
			t = "IPAddress"
		}
		g.Addresses = append(g.Addresses, Address{Type: t, Value: str(am["value"]), Field: "spec.addresses[" + strconv.Itoa(i) + "].value"})
	}
	return g, nil
}

func extractRoute(k *Kind, obj map[string]any, lim Limits) (*Route, error) {
	spec, err := nested(obj, []string{"spec"})
	if err != nil {
		return nil, err
	}
	r := &Route{judged: []any{spec["hostnames"], spec["parentRefs"], spec["rules"]}}
	hostnames, err := listAt(spec, "hostnames", "spec.hostnames")
	if err != nil {
		return nil, err
	}
	refs, err := listAt(spec, "parentRefs", "spec.parentRefs")
	if err != nil {
		return nil, err
	}
	for i, p := range refs {
		pm, _ := p.(map[string]any)
		port, _ := Int(pm["port"])
		r.Parents = append(r.Parents, ParentRef{
			Group: str(pm["group"]), Kind: str(pm["kind"]), Namespace: str(pm["namespace"]), Name: str(pm["name"]),
			SectionName: str(pm["sectionName"]), Port: port, Field: "spec.parentRefs[" + strconv.Itoa(i) + "]",
		})
	}
	paths := []HostPath{{Path: "/", Prefix: true}}
	if k.Kind == "HTTPRoute" {
		if paths, err = httpRoutePaths(spec, lim); err != nil {
			return nil, err
		}
	} else if k.Kind != "TLSRoute" {
		// Only the judged fields matter for an UPDATE; a GRPCRoute's rules route
		// services and methods, not paths.
		r.judged = []any{spec["hostnames"], spec["parentRefs"]}
	}
	if err := lim.over("hostnames and paths", len(hostnames)*len(paths), lim.IngressPaths, "--max-ingress-paths"); err != nil {
		return nil, err
	}
	for i, h := range hostnames {
		host := str(h)
		if host == "" {
			continue
		}
		for _, p := range paths {
			r.Hosts = append(r.Hosts, HostPath{Host: host, Path: p.Path, Prefix: p.Prefix, Field: "spec.hostnames[" + strconv.Itoa(i) + "]"})
		}
	}
	if len(r.Hosts) == 0 {
		r.Paths = paths
	}
	return r, nil
}

// httpRoutePaths lists the distinct paths an HTTPRoute's rules match:
// Exact and PathPrefix as they are; a rule without path matches, a match
// without a path, or a RegularExpression (which may match anything) claims
// "/" as a prefix.
func httpRoutePaths(spec map[string]any, lim Limits) ([]HostPath, error) {
	rules, err := listAt(spec, "rules", "spec.rules")
	if err != nil {
		return nil, err
	}
	var out []HostPath
	seen := map[HostPath]bool{}
	add := func(p HostPath) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	everything := HostPath{Path: "/", Prefix: true}
	for i, rule := range rules {
		rm, _ := rule.(map[string]any)
		matches, err := listAt(rm, "matches", "spec.rules["+strconv.Itoa(i)+"].matches")
		if err != nil {
			return nil, err
		}
		if len(matches) == 0 {
			add(everything)
		}
		for _, m := range matches {
			mm, _ := m.(map[string]any)
			pm, ok := mm["path"].(map[string]any)
			if !ok {
				add(everything) // the API defaults the path to PathPrefix "/"
				continue
			}
			value, typ := str(pm["value"]), str(pm["type"])
			if value == "" {
				value = "/"
			}
			switch typ {
			case "Exact":
				add(HostPath{Path: value})
			case "", "PathPrefix":
				add(HostPath{Path: value, Prefix: true})
			default:
				add(everything)
			}
		}
		if err := lim.over("paths", len(out), lim.IngressPaths, "--max-ingress-paths"); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		add(everything) // a route without rules: the API requires one, but claim all if none
	}
	return out, nil
}
