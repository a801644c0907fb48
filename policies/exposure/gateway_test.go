package exposure

import (
	"errors"
	"reflect"
	"testing"
)

func gatewayKind(kind string) *Kind {
	return Lookup(GroupVersionKind{Group: GatewayGroup, Version: "v1", Kind: kind})
}

func TestGatewayKindsInTheTable(t *testing.T) {
	for kind, family := range map[string]string{
		"Gateway": FamilyGateways, "ListenerSet": FamilyGateways,
		"HTTPRoute": FamilyRoutes, "GRPCRoute": FamilyRoutes, "TLSRoute": FamilyRoutes,
	} {
		k := gatewayKind(kind)
		if k == nil || k.Family != family || !k.CRD {
			t.Errorf("%s: %+v, want family %s served by a CRD", kind, k, family)
		}
	}
	if k := Lookup(GroupVersionKind{"networking.k8s.io", "v1", "Ingress"}); k.CRD {
		t.Error("Ingress marked as served by a CRD")
	}
}

func TestExtractGateway(t *testing.T) {
	obj := decode(t, `{"metadata":{"name":"gw","namespace":"infra"},"spec":{"gatewayClassName":"shared",
		"listeners":[{"name":"web","hostname":"a.example.com","port":443,"protocol":"HTTPS"},{"name":"all","port":80,"protocol":"HTTP"}],
		"addresses":[{"value":"203.0.113.1"},{"type":"Hostname","value":"lb.example.com"}]}}`)
	x, err := Extract(gatewayKind("Gateway"), obj, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	want := &Gateway{Class: "shared",
		Listeners: []Listener{
			{Name: "web", Hostname: "a.example.com", Protocol: "HTTPS", Port: 443, Field: "spec.listeners[0]"},
			{Name: "all", Protocol: "HTTP", Port: 80, Field: "spec.listeners[1]"},
		},
		Addresses: []Address{
			{Type: "IPAddress", Value: "203.0.113.1", Field: "spec.addresses[0].value"},
			{Type: "Hostname", Value: "lb.example.com", Field: "spec.addresses[1].value"},
		},
	}
	x.Gateway.judged = nil
	if !reflect.DeepEqual(x.Gateway, want) || x.Name != "gw" || x.Namespace != "infra" || !x.Active {
		t.Errorf("got %+v, want %+v", x.Gateway, want)
	}
	bad := decode(t, `{"spec":{"listeners":[{"name":"x","port":"eighty"}]}}`)
	var fe *FieldError
	if _, err := Extract(gatewayKind("Gateway"), bad, DefaultLimits); !errors.As(err, &fe) || fe.Field != "spec.listeners[0].port" {
		t.Errorf("a port of the wrong type: %v", err)
	}
}

func TestExtractRouteHosts(t *testing.T) {
	cases := []struct {
		name, kind, spec string
		want             []HostPath
	}{
		{"HTTPRoute path matches", "HTTPRoute", `{"hostnames":["a.example.com"],"rules":[
			{"matches":[{"path":{"type":"Exact","value":"/x"}},{"path":{"type":"PathPrefix","value":"/api"}}]},
			{"matches":[{"path":{"type":"PathPrefix","value":"/api"}},{"headers":[{"name":"h","value":"v"}]}]}]}`,
			[]HostPath{
				{Host: "a.example.com", Path: "/x", Field: "spec.hostnames[0]"},
				{Host: "a.example.com", Path: "/api", Prefix: true, Field: "spec.hostnames[0]"},
				{Host: "a.example.com", Path: "/", Prefix: true, Field: "spec.hostnames[0]"},
			}},
		{"HTTPRoute regular expression claims everything", "HTTPRoute", `{"hostnames":["a.example.com"],"rules":[
			{"matches":[{"path":{"type":"RegularExpression","value":"/x.*"}}]}]}`,
			[]HostPath{{Host: "a.example.com", Path: "/", Prefix: true, Field: "spec.hostnames[0]"}}},
		{"HTTPRoute rule without matches", "HTTPRoute", `{"hostnames":["a.example.com","*.b.example.com"],"rules":[{}]}`,
			[]HostPath{
				{Host: "a.example.com", Path: "/", Prefix: true, Field: "spec.hostnames[0]"},
				{Host: "*.b.example.com", Path: "/", Prefix: true, Field: "spec.hostnames[1]"},
			}},
		{"GRPCRoute", "GRPCRoute", `{"hostnames":["g.example.com"],"rules":[{"matches":[{"method":{"service":"s"}}]}]}`,
			[]HostPath{{Host: "g.example.com", Path: "/", Prefix: true, Field: "spec.hostnames[0]"}}},
		{"TLSRoute", "TLSRoute", `{"hostnames":["t.example.com"]}`,
			[]HostPath{{Host: "t.example.com", Path: "/", Prefix: true, Field: "spec.hostnames[0]"}}},
		{"no hostnames", "HTTPRoute", `{"parentRefs":[{"name":"gw"}],"rules":[{}]}`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x, err := Extract(gatewayKind(tc.kind), decode(t, `{"spec":`+tc.spec+`}`), DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(x.Route.Hosts, tc.want) {
				t.Errorf("hosts %+v, want %+v", x.Route.Hosts, tc.want)
			}
		})
	}
}

func TestExtractRouteParentsAndSame(t *testing.T) {
	k := gatewayKind("HTTPRoute")
	read := func(js string) *Exposure {
		x, err := Extract(k, decode(t, js), DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	a := read(`{"metadata":{"labels":{"v":"1"}},"spec":{"parentRefs":[{"name":"gw","namespace":"infra","sectionName":"web","port":443}],"hostnames":["a.example.com"]}}`)
	if want := []ParentRef{{Namespace: "infra", Name: "gw", SectionName: "web", Port: 443, Field: "spec.parentRefs[0]"}}; !reflect.DeepEqual(a.Route.Parents, want) {
		t.Errorf("parents %+v, want %+v", a.Route.Parents, want)
	}
	relabeled := read(`{"metadata":{"labels":{"v":"2"}},"spec":{"parentRefs":[{"name":"gw","namespace":"infra","sectionName":"web","port":443}],"hostnames":["a.example.com"]}}`)
	added := read(`{"spec":{"parentRefs":[{"name":"gw","namespace":"infra","sectionName":"web","port":443}],"hostnames":["a.example.com","b.example.com"]}}`)
	if !Same(a, relabeled) {
		t.Error("a label change is exposure")
	}
	if Same(a, added) {
		t.Error("an added hostname is not exposure")
	}
}

// TestExtractRouteInheritedPaths: a route without hostnames keeps the paths
// it claims on the hostnames it inherits from its listeners; a route with
// hostnames keeps none apart.
func TestExtractRouteInheritedPaths(t *testing.T) {
	cases := []struct {
		name, kind, spec string
		want             []HostPath
	}{
		{"HTTPRoute without hostnames", "HTTPRoute", `{"parentRefs":[{"name":"gw"}],"rules":[
			{"matches":[{"path":{"type":"Exact","value":"/x"}}]}]}`, []HostPath{{Path: "/x"}}},
		{"GRPCRoute without hostnames", "GRPCRoute", `{"parentRefs":[{"name":"gw"}]}`, []HostPath{{Path: "/", Prefix: true}}},
		{"HTTPRoute with hostnames", "HTTPRoute", `{"hostnames":["a.example.com"],"rules":[{}]}`, nil},
		{"empty hostnames only", "TLSRoute", `{"hostnames":[""]}`, []HostPath{{Path: "/", Prefix: true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x, err := Extract(gatewayKind(tc.kind), decode(t, `{"spec":`+tc.spec+`}`), DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(x.Route.Paths, tc.want) {
				t.Errorf("paths %+v, want %+v", x.Route.Paths, tc.want)
			}
		})
	}
}

func TestParentRefResolved(t *testing.T) {
	cases := []struct {
		name      string
		ref       ParentRef
		want      ParentRef
		listeners bool
	}{
		{"defaults", ParentRef{Name: "gw"}, ParentRef{Group: GatewayGroup, Kind: "Gateway", Namespace: "team-a", Name: "gw"}, true},
		{"another namespace", ParentRef{Namespace: "infra", Name: "gw"}, ParentRef{Group: GatewayGroup, Kind: "Gateway", Namespace: "infra", Name: "gw"}, true},
		{"a ListenerSet", ParentRef{Kind: "ListenerSet", Name: "ls"}, ParentRef{Group: GatewayGroup, Kind: "ListenerSet", Namespace: "team-a", Name: "ls"}, true},
		{"a mesh Service", ParentRef{Kind: "Service", Name: "svc"}, ParentRef{Kind: "Service", Namespace: "team-a", Name: "svc"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.ref.Resolved("team-a")
			if got != tc.want || got.Listeners() != tc.listeners {
				t.Errorf("got %+v (listeners %v), want %+v (%v)", got, got.Listeners(), tc.want, tc.listeners)
			}
		})
	}
}

func TestRouteLimits(t *testing.T) {
	lim := Limits{IngressPaths: 2}
	_, err := Extract(gatewayKind("HTTPRoute"), decode(t, `{"spec":{"hostnames":["a.example.com","b.example.com","c.example.com"]}}`), lim)
	var le *LimitError
	if !errors.As(err, &le) {
		t.Errorf("3 hostnames over a limit of 2 host paths: %v", err)
	}
}
