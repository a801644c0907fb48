package inventory

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	fakedynamic "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/policies/exposure"
)

var httpRouteKind = policies.GroupVersionKind{Group: exposure.GatewayGroup, Version: "v1", Kind: "HTTPRoute"}

func httpRouteYAML(ns, name, paths string, hosts ...string) string {
	return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ` + name + `, namespace: ` + ns + `}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  hostnames: [` + strings.Join(hosts, ", ") + `]
  rules: [{matches: [` + paths + `]}]
`
}

func unstructuredOf(t testing.TB, y string) *unstructured.Unstructured {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		t.Fatal(err)
	}
	return u
}

// feedCRD passes unstructured objects through the transform of their kind
// and the event handler, as the informers of crds.go do.
func feedCRD(t testing.TB, idx *Index, objs ...*unstructured.Unstructured) {
	t.Helper()
	h := handler{index: idx}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		k := exposure.Lookup(policies.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind})
		slim, err := TransformUnstructured(k)(o)
		if err != nil {
			t.Fatal(err)
		}
		h.OnAdd(slim, true)
	}
}

// TestRouteHostConflicts: an HTTPRoute's hostnames are host claims like an
// Ingress's: a route or an Ingress of another namespace on the same host
// (or under a wildcard either way) and an overlapping path conflicts,
// naming the route; the holder's own namespace may add to it.
func TestRouteHostConflicts(t *testing.T) {
	now := testNow
	inv := newTestInventory(&now)
	feedCRD(t, inv.index, unstructuredOf(t, httpRouteYAML("team-a", "web", "{path: {type: PathPrefix, value: /shop}}", "a.team-a.example.com")))
	cases := []struct {
		name   string
		kind   policies.GroupVersionKind
		ns     string
		object string
		want   []string // holders named, "" for none
	}{
		{"a route on the same host and path", httpRouteKind, "team-b", httpRouteYAML("team-b", "x", "", "a.team-a.example.com"), []string{"team-a/HTTPRoute/web"}},
		{"a route under a wildcard", httpRouteKind, "team-b", httpRouteYAML("team-b", "x", "", `"*.team-a.example.com"`), []string{"team-a/HTTPRoute/web"}},
		{"an Ingress on the same host", ingressKind, "team-b", `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: x}
spec: {rules: [{host: a.team-a.example.com}]}`, []string{"team-a/HTTPRoute/web"}},
		{"a route on another exact path", httpRouteKind, "team-b", httpRouteYAML("team-b", "x", "{path: {type: Exact, value: /other}}", "a.team-a.example.com"), nil},
		{"a route below the prefix", httpRouteKind, "team-b", httpRouteYAML("team-b", "x", "{path: {type: PathPrefix, value: /shop/cart}}", "a.team-a.example.com"), []string{"team-a/HTTPRoute/web"}},
		{"the holder's own namespace", httpRouteKind, "team-a", httpRouteYAML("team-a", "more", "", "a.team-a.example.com"), nil},
		{"a route without hostnames", httpRouteKind, "team-b", httpRouteYAML("team-b", "x", ""), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := inv.Facts(input(t, tc.kind, tc.ns, tc.object), nil)
			var got []string
			for _, c := range f.IngressConflicts {
				for _, h := range c.Holders {
					got = append(got, h.Namespace+"/"+h.Kind+"/"+h.Name)
				}
			}
			got = slices.Compact(slices.Sorted(slices.Values(got)))
			if !slices.Equal(got, tc.want) {
				t.Errorf("holders %v, want %v (facts %+v)", got, tc.want, f.IngressConflicts)
			}
		})
	}
}

// TestCRDKindsStartWhenServed: without the Gateway API in discovery nothing
// is watched and nothing fails; once discovery serves HTTPRoutes, a poll
// starts their informer and the routes join the index.
func TestCRDKindsStartWhenServed(t *testing.T) {
	now := testNow
	inv := newTestInventory(&now)
	gvr := schema.GroupVersionResource{Group: exposure.GatewayGroup, Version: "v1", Resource: "httproutes"}
	route := unstructuredOf(t, httpRouteYAML("team-a", "web", "", "a.team-a.example.com"))
	dyn := fakedynamic.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{gvr: "HTTPRouteList"}, route)
	disc := &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{}}
	c := inv.WatchCRDKinds(disc, dyn, time.Hour, logr.Discard())
	absent := map[string]bool{}
	if inv.Synced() {
		t.Fatal("the inventory is ready before discovery was asked which CRD kinds to list")
	}

	c.poll(t.Context(), absent)
	if !inv.Synced() {
		t.Fatal("the inventory is not ready once discovery showed no CRD kind to list")
	}
	if w := c.Watching(); len(w) != 0 {
		t.Fatalf("watching %v before the CRDs exist", w)
	}
	if !absent["gateway.networking.k8s.io/v1/HTTPRoute"] {
		t.Errorf("the absent kind was not noted: %v", absent)
	}

	disc.Resources = []*metav1.APIResourceList{{GroupVersion: "gateway.networking.k8s.io/v1",
		APIResources: []metav1.APIResource{{Name: "httproutes", Kind: "HTTPRoute", Namespaced: true}}}}
	c.poll(t.Context(), absent)
	if w := c.Watching(); !slices.Equal(w, []string{"gateway.networking.k8s.io/v1/HTTPRoute"}) {
		t.Fatalf("watching %v, want HTTPRoute only", w)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := inv.Facts(input(t, httpRouteKind, "team-b", httpRouteYAML("team-b", "x", "", "a.team-a.example.com")), nil)
		if len(f.IngressConflicts) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the route listed by the started informer never reached the index")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !c.Synced() {
		t.Error("the started informer is not synced after its list")
	}

	// The CRD is deleted (and every route with it): the informer stops and
	// the routes leave the index; applied again, it is watched again.
	disc.Resources = nil
	c.poll(t.Context(), absent)
	if w := c.Watching(); len(w) != 0 {
		t.Fatalf("still watching %v after the CRD was deleted", w)
	}
	if f := inv.Facts(input(t, httpRouteKind, "team-b", httpRouteYAML("team-b", "x", "", "a.team-a.example.com")), nil); len(f.IngressConflicts) > 0 {
		t.Errorf("a route of a deleted CRD still conflicts: %+v", f.IngressConflicts)
	}
	if !inv.Synced() {
		t.Error("the inventory stopped being ready when a CRD was deleted")
	}
	disc.Resources = []*metav1.APIResourceList{{GroupVersion: "gateway.networking.k8s.io/v1",
		APIResources: []metav1.APIResource{{Name: "httproutes", Kind: "HTTPRoute", Namespaced: true}}}}
	c.poll(t.Context(), absent)
	if w := c.Watching(); !slices.Equal(w, []string{"gateway.networking.k8s.io/v1/HTTPRoute"}) {
		t.Fatalf("watching %v after the CRD came back, want HTTPRoute", w)
	}
}
