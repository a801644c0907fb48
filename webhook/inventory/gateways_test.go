package inventory

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/policies/exposure"
)

var gatewayKindV1 = policies.GroupVersionKind{Group: exposure.GatewayGroup, Version: "v1", Kind: "Gateway"}

// gatewayYAML is a Gateway whose listeners are given as "name=hostname"
// ("name=" for a listener without a hostname).
func gatewayYAML(ns, name string, listeners ...string) string {
	var ls []string
	for i, l := range listeners {
		n, host, _ := strings.Cut(l, "=")
		entry := "{name: " + n + ", port: " + []string{"80", "443", "8080"}[i%3] + ", protocol: HTTP"
		if host != "" {
			entry += `, hostname: "` + host + `"`
		}
		ls = append(ls, entry+"}")
	}
	return `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ` + name + `, namespace: ` + ns + `}
spec:
  gatewayClassName: shared
  listeners: [` + strings.Join(ls, ", ") + `]
`
}

// routeYAML is an HTTPRoute with the given parentRefs (YAML flow objects)
// and hostnames.
func routeYAML(ns, name, parents string, hosts ...string) string {
	return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ` + name + `, namespace: ` + ns + `}
spec:
  parentRefs: [` + parents + `]
  hostnames: [` + strings.Join(hosts, ", ") + `]
`
}

func holdersOf(f *policies.Facts) []string {
	var got []string
	for _, c := range f.IngressConflicts {
		for _, h := range c.Holders {
			got = append(got, h.Namespace+"/"+h.Kind+"/"+h.Name)
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(got)))
}

// TestRouteParentFacts: a route's facts list its parents with the
// listeners each selects (sectionName, port, or all), and say which
// parents the inventory does not hold.
func TestRouteParentFacts(t *testing.T) {
	now := testNow
	inv := newTestInventory(&now)
	feedCRD(t, inv.index, unstructuredOf(t, gatewayYAML("infra", "gw", "web=a.example.com", "tls=*.example.com", "all=")))
	cases := []struct {
		name, parents string
		want          []policies.RouteParent
	}{
		{"every listener", "{name: gw, namespace: infra}", []policies.RouteParent{{
			Field: "spec.parentRefs[0]", Kind: "Gateway", Namespace: "infra", Name: "gw", Known: true,
			Listeners: []policies.ParentListener{{Name: "web", Hostname: "a.example.com"}, {Name: "tls", Hostname: "*.example.com"}, {Name: "all"}},
		}}},
		{"a section", "{name: gw, namespace: infra, sectionName: tls}", []policies.RouteParent{{
			Field: "spec.parentRefs[0]", Kind: "Gateway", Namespace: "infra", Name: "gw", SectionName: "tls", Known: true,
			Listeners: []policies.ParentListener{{Name: "tls", Hostname: "*.example.com"}},
		}}},
		{"a port", "{name: gw, namespace: infra, port: 443}", []policies.RouteParent{{
			Field: "spec.parentRefs[0]", Kind: "Gateway", Namespace: "infra", Name: "gw", Known: true,
			Listeners: []policies.ParentListener{{Name: "tls", Hostname: "*.example.com"}},
		}}},
		{"an unknown Gateway and a mesh Service", "{name: other}, {kind: Service, group: '', name: svc}", []policies.RouteParent{{
			Field: "spec.parentRefs[0]", Kind: "Gateway", Namespace: "team-a", Name: "other", Listeners: []policies.ParentListener{},
		}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := inv.Facts(input(t, httpRouteKind, "team-a", routeYAML("team-a", "r", tc.parents)), nil)
			if !reflect.DeepEqual(f.RouteParents, tc.want) {
				t.Errorf("route parents %+v, want %+v", f.RouteParents, tc.want)
			}
		})
	}
}

// TestInheritedHostConflicts: a route without hostnames claims its
// listeners' hostnames, as a request (denials name the parentRef and the
// listener) and as a holder; a listener without a hostname gives "*", which
// meets only another "*" on a listener the routes share.
func TestInheritedHostConflicts(t *testing.T) {
	now := testNow
	inv := newTestInventory(&now)
	feedCRD(t, inv.index,
		unstructuredOf(t, gatewayYAML("infra", "gw", "web=a.example.com", "all=")),
		unstructuredOf(t, routeYAML("team-a", "web", "{name: gw, namespace: infra, sectionName: web}")),
		unstructuredOf(t, routeYAML("team-a", "catchall", "{name: gw, namespace: infra, sectionName: all}")),
	)
	cases := []struct {
		name, object string
		want         []string
	}{
		{"a hostname the inheriting route claims", routeYAML("team-b", "x", "{name: gw, namespace: infra}", "a.example.com"), []string{"team-a/HTTPRoute/web"}},
		{"a wildcard over it", routeYAML("team-b", "x", "{name: gw, namespace: infra}", `"*.example.com"`), []string{"team-a/HTTPRoute/web"}},
		{"another host", routeYAML("team-b", "x", "{name: gw, namespace: infra}", "b.example.com"), nil},
		{"inheriting the same listener", routeYAML("team-b", "x", "{name: gw, namespace: infra, sectionName: web}"), []string{"team-a/HTTPRoute/web"}},
		{"inheriting every host on the catch-all listener", routeYAML("team-b", "x", "{name: gw, namespace: infra, sectionName: all}"), []string{"team-a/HTTPRoute/catchall"}},
		{"an Ingress on the inherited host", `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: x}
spec: {rules: [{host: a.example.com}]}`, []string{"team-a/HTTPRoute/web"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kind := httpRouteKind
			if strings.Contains(tc.object, "kind: Ingress") {
				kind = ingressKind
			}
			f := inv.Facts(input(t, kind, "team-b", tc.object), nil)
			if got := holdersOf(f); !slices.Equal(got, tc.want) {
				t.Errorf("holders %v, want %v (facts %+v)", got, tc.want, f.IngressConflicts)
			}
		})
	}
	f := inv.Facts(input(t, httpRouteKind, "team-b", routeYAML("team-b", "x", "{name: gw, namespace: infra, sectionName: web}")), nil)
	if len(f.IngressConflicts) != 1 || f.IngressConflicts[0].Field != "spec.parentRefs[0]" ||
		f.IngressConflicts[0].Via != "listener web of infra/Gateway/gw" || f.IngressConflicts[0].Host != "a.example.com" {
		t.Errorf("inherited conflict %+v", f.IngressConflicts)
	}
}

// TestConflictsPerParent: routes of two namespaces on one hostname meet
// when they can attach to one listener, or when either parent is unknown;
// Ingresses meet every route.
func TestConflictsPerParent(t *testing.T) {
	now := testNow
	inv := newTestInventory(&now)
	feedCRD(t, inv.index,
		unstructuredOf(t, gatewayYAML("infra", "gw", "web=", "api=")),
		unstructuredOf(t, gatewayYAML("infra", "other", "web=")),
		unstructuredOf(t, routeYAML("team-a", "web", "{name: gw, namespace: infra, sectionName: web}", "a.example.com")),
		unstructuredOf(t, routeYAML("team-a", "lost", "{name: nowhere, namespace: infra}", "lost.example.com")),
	)
	cases := []struct {
		name, parents, host string
		want                []string
	}{
		{"the same listener", "{name: gw, namespace: infra, sectionName: web}", "a.example.com", []string{"team-a/HTTPRoute/web"}},
		{"the whole Gateway", "{name: gw, namespace: infra}", "a.example.com", []string{"team-a/HTTPRoute/web"}},
		{"another listener", "{name: gw, namespace: infra, sectionName: api}", "a.example.com", nil},
		{"another Gateway", "{name: other, namespace: infra}", "a.example.com", nil},
		{"an unknown Gateway meets every listener", "{name: unknown, namespace: infra}", "a.example.com", []string{"team-a/HTTPRoute/web"}},
		{"a mesh parent is unknown too", "{kind: Service, group: '', name: svc}", "a.example.com", []string{"team-a/HTTPRoute/web"}},
		{"a holder whose parent is unknown meets every listener", "{name: other, namespace: infra}", "lost.example.com", []string{"team-a/HTTPRoute/lost"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := inv.Facts(input(t, httpRouteKind, "team-b", routeYAML("team-b", "x", tc.parents, tc.host)), nil)
			if got := holdersOf(f); !slices.Equal(got, tc.want) {
				t.Errorf("holders %v, want %v (facts %+v)", got, tc.want, f.IngressConflicts)
			}
		})
	}
}

// TestInheritedFollowListeners: when a parent's listeners change (informer
// update, admitted pending update, deletion), the hostnames its routes
// inherit follow.
func TestInheritedFollowListeners(t *testing.T) {
	now := testNow
	inv := newTestInventory(&now)
	probe := func() []string {
		return holdersOf(inv.Facts(input(t, httpRouteKind, "team-b", routeYAML("team-b", "x", "{name: unknown-gw, namespace: infra}", "b.example.com")), nil))
	}
	// The route comes first: its parent is unknown, it inherits nothing yet.
	feedCRD(t, inv.index, unstructuredOf(t, routeYAML("team-a", "web", "{name: gw, namespace: infra}")))
	if got := probe(); got != nil {
		t.Fatalf("before its Gateway: %v", got)
	}
	feedCRD(t, inv.index, unstructuredOf(t, gatewayYAML("infra", "gw", "web=a.example.com")))
	if got := probe(); got != nil {
		t.Errorf("a.example.com only: %v", got)
	}
	// An admitted update of the Gateway (pending) changes the hostname.
	inv.Claim(input(t, gatewayKindV1, "infra", gatewayYAML("infra", "gw", "web=b.example.com")), false)
	if got := probe(); !slices.Equal(got, []string{"team-a/HTTPRoute/web"}) {
		t.Errorf("after the pending update: %v", got)
	}
	if objs := inv.Snapshot(); !slices.ContainsFunc(objs.Hosts, func(h HostHolder) bool {
		return h.Host == "b.example.com" && h.Holder.Name == "web"
	}) {
		t.Errorf("the snapshot does not list the inherited host: %+v", objs.Hosts)
	}
	inv.index.DeleteAt(objectKey{kind: "Gateway", namespace: "infra", name: "gw"}, now)
	now = now.Add(time.Minute)
	inv.index.Expire(now)
	if got := probe(); got != nil {
		t.Errorf("after the Gateway is gone: %v", got)
	}
	if n := len(inv.index.derived); n != 0 {
		t.Errorf("%d derived claims left", n)
	}
}
