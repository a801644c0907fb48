package inventory

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portreeve/portreeve/policies"
)

func TestReservationsPlan(t *testing.T) {
	enforcing := `{}`
	cases := []struct {
		name    string
		rules   string
		kind    string
		object  string
		held    []any    // what the informers show first
		crds    []string // and of the Gateway API kinds (YAML)
		writes  []string
		reads   []string
		domains int
	}{
		{name: "pod hostPort", kind: "pod", object: hostPortPod("nodeName: n1"), writes: []string{"hp-tcp-9100"}},
		{name: "pod two hostPorts", kind: "pod", object: strings.Replace(hostPortPod(""), "hostPort: 9100}", "hostPort: 9100}, {containerPort: 53, hostPort: 9153, protocol: UDP}", 1),
			writes: []string{"hp-tcp-9100", "hp-udp-9153"}},
		{name: "rule off", rules: `{host-port-conflicts: {mode: "off"}}`, kind: "pod", object: hostPortPod("")},
		{name: "rule in dryrun", rules: `{host-port-conflicts: {mode: dryrun}}`, kind: "pod", object: hostPortPod("")},
		{name: "explicit nodePort", kind: "service", object: service("s", ", nodePort: 30100"), writes: []string{"np-30100"}},
		{name: "allocated nodePort", kind: "service", object: service("s", "")},
		{name: "exact host", kind: "ingress", object: ingressYAML("i", "a.example.com/"),
			writes: []string{hostKey("a.example.com")}, reads: []string{hostKey("*.example.com")}},
		{name: "wildcard host", kind: "ingress", object: ingressYAML("i", "*.example.com/"),
			writes: []string{hostKey("*.example.com")}, domains: 1},
		{name: "pod of a DaemonSet that holds the port", kind: "pod",
			object: strings.Replace(hostPortPod("nodeName: n1"), "metadata: {name: new}",
				"metadata: {name: new, ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: agent, uid: u, controller: true}]}", 1),
			held: []any{daemonSet(meta("team-a", "agent"), podSpec("", nil, hp(9100)))}},
		{name: "pod of a DaemonSet pinned elsewhere", kind: "pod",
			object: strings.Replace(hostPortPod("nodeName: n1"), "metadata: {name: new}",
				"metadata: {name: new, ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: agent, uid: u, controller: true}]}", 1),
			held:   []any{daemonSet(meta("team-a", "agent"), podSpec("n2", nil, hp(9100)))},
			writes: []string{"hp-tcp-9100"}},
		{name: "route without hostnames: its parent's listener hostnames", kind: "route",
			object: routeYAML("team-a", "r", "{name: gw, namespace: infra}"),
			crds:   []string{gatewayYAML("infra", "gw", "web=shop.example.com", "other=a.example.org")},
			writes: []string{hostKey("a.example.org"), hostKey("shop.example.com")}, reads: []string{hostKey("*.example.com"), hostKey("*.example.org")}},
		{name: "route without hostnames: the listener its sectionName picks", kind: "route",
			object: routeYAML("team-a", "r", "{name: gw, namespace: infra, sectionName: web}"),
			crds:   []string{gatewayYAML("infra", "gw", "web=shop.example.com", "other=a.example.org")},
			writes: []string{hostKey("shop.example.com")}, reads: []string{hostKey("*.example.com")}},
		{name: "route without hostnames whose parent is unknown", kind: "route", object: routeYAML("team-a", "r", "{name: gw, namespace: infra}")},
		{name: "route with hostnames", kind: "route", object: routeYAML("team-a", "r", "{name: gw, namespace: infra}", "b.example.com"),
			crds:   []string{gatewayYAML("infra", "gw", "web=shop.example.com")},
			writes: []string{hostKey("b.example.com")}, reads: []string{hostKey("*.example.com")}},
		{name: "deployment scaled to zero", kind: "deployment", object: strings.Replace(hostPortDeployment, "spec:\n  template", "spec:\n  replicas: 0\n  template", 1)},
	}
	kinds := map[string]policies.GroupVersionKind{"pod": podKind, "service": serviceKind, "ingress": ingressKind, "deployment": deploymentKind,
		"route": httpRouteKind}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := testNow
			inv := newTestInventory(&now)
			feed(t, inv.index, tc.held...)
			for _, y := range tc.crds {
				feedCRD(t, inv.index, unstructuredOf(t, y))
			}
			rules := tc.rules
			if rules == "" {
				rules = enforcing
			}
			cfg := config(t, "rules: "+rules+"\n")
			plan := inv.Reservations(input(t, kinds[tc.kind], "team-a", tc.object), cfg)
			var writes []string
			for _, w := range plan.Writes {
				writes = append(writes, w.Key)
				if w.Reservation.Namespace != "team-a" || w.Reservation.Name == "" {
					t.Errorf("reservation names no object: %+v", w.Reservation)
				}
			}
			if !slices.Equal(writes, tc.writes) {
				t.Errorf("writes %q, want %q", writes, tc.writes)
			}
			if !slices.Equal(plan.Reads, tc.reads) {
				t.Errorf("reads %q, want %q", plan.Reads, tc.reads)
			}
			if len(plan.Domains) != tc.domains {
				t.Errorf("domains %q, want %d", plan.Domains, tc.domains)
			}
		})
	}
}

// reservation is another replica's reservation of a pod holding hostPort
// 9100 on node (any node when "").
func reservation(ns, name, node string, at time.Time) Reservation {
	return Reservation{Kind: "Pod", Namespace: ns, Name: name, Replica: "other", At: at, Until: at.Add(30 * time.Second),
		NodeName: node, HostPorts: []ReservedPort{{Port: 9100, Protocol: "TCP"}}}
}

func TestLearn(t *testing.T) {
	now := testNow
	inv := newTestInventory(&now)
	cfg := config(t, "grants:\n  - {name: a, namespaces: [team-a, team-b], hostPorts: [\"9100\"]}\n")
	own := inv.Reservations(input(t, podKind, "team-a", hostPortPod("nodeName: n1")), cfg).Writes
	if len(own) != 1 {
		t.Fatalf("own reservations: %+v", own)
	}
	ownR := []Reservation{own[0].Reservation}

	gen := inv.index.generation
	elsewhere := reservation("team-b", "far", "n2", now)
	if inv.Learn([]Reservation{elsewhere}, ownR, gen()) {
		t.Error("a pod on another node was news that may conflict")
	}
	judged := gen() // the request's facts are computed here
	same := reservation("team-b", "near", "n1", now)
	if !inv.Learn([]Reservation{same}, ownR, judged) {
		t.Fatal("a pod on the same node was not news")
	}
	if inv.Learn([]Reservation{same}, ownR, gen()) {
		t.Error("news again after the request was judged with it")
	}
	// Learnt by another request after this one was judged: still news to it.
	if !inv.Learn([]Reservation{same}, ownR, judged) {
		t.Error("a holder learnt after the request was judged was not news to it")
	}
	f := inv.Facts(input(t, podKind, "team-a", hostPortPod("nodeName: n1")), cfg)
	if got := summary(f); !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "team-b/Pod/near") }) {
		t.Errorf("facts after learning do not name the reserved pod: %q", got)
	}
	if f.Seen != gen() {
		t.Errorf("facts seen at generation %d, index at %d", f.Seen, gen())
	}

	expired := reservation("team-b", "old", "n1", now.Add(-time.Minute))
	if inv.Learn([]Reservation{expired}, ownR, 0) {
		t.Error("an expired reservation was news")
	}

	// The informers show the object: its reservation is news only to a
	// request judged before they did, and once settled it can be dropped.
	judged = gen()
	feed(t, inv.index, pod(meta("team-b", "shown"), podSpec("n1", nil, hp(9100))))
	shown := reservation("team-b", "shown", "n1", now)
	if inv.Learn([]Reservation{shown}, ownR, gen()) {
		t.Error("a reservation of an object the informers showed before the request was judged was news")
	}
	if !inv.Learn([]Reservation{shown}, ownR, judged) {
		t.Error("a reservation of an object the informers showed after the request was judged was not news")
	}
	if inv.Settled(&shown, 5*time.Second) {
		t.Error("settled before the settle time")
	}
	now = now.Add(6 * time.Second)
	if !inv.Settled(&shown, 5*time.Second) {
		t.Error("not settled although the informers show the object")
	}

	// A deleted object's reservation made before the deletion no longer counts.
	gone := reservation("team-b", "gone", "n1", now.Add(-time.Second))
	inv.index.DeleteAt(objectKey{kind: "Pod", namespace: "team-b", name: "gone"}, now)
	if inv.Learn([]Reservation{gone}, ownR, 0) {
		t.Error("a reservation of a deleted object was news")
	}
	recreated := reservation("team-b", "gone", "n1", now.Add(time.Second))
	if !inv.Learn([]Reservation{recreated}, ownR, gen()) {
		t.Error("a reservation made after the deletion (the object made again) was not news")
	}
}

func TestMayConflict(t *testing.T) {
	at := testNow
	pod := func(ns, name, node, ip string) Reservation {
		r := reservation(ns, name, node, at)
		r.HostPorts[0].HostIP = ip
		return r
	}
	svc := func(ns, name string, port int32) Reservation {
		return Reservation{Kind: "Service", Namespace: ns, Name: name, NodePorts: []ReservedPort{{Port: port, Protocol: "TCP"}}}
	}
	ing := func(ns, name, host, path string) Reservation {
		return Reservation{Kind: "Ingress", Namespace: ns, Name: name, Hosts: []ReservedHost{{Host: host, Path: path, Prefix: true}}}
	}
	owned := func(r Reservation, kind, name string) Reservation { r.OwnerKind, r.OwnerName = kind, name; return r }
	cases := []struct {
		name string
		a, b Reservation
		want bool
	}{
		{"same node", pod("a", "x", "n1", ""), pod("b", "y", "n1", ""), true},
		{"any node", pod("a", "x", "", ""), pod("b", "y", "n1", ""), true},
		{"other node", pod("a", "x", "n1", ""), pod("b", "y", "n2", ""), false},
		{"other hostIPs", pod("a", "x", "n1", "10.0.0.1"), pod("b", "y", "n1", "10.0.0.2"), false},
		{"wildcard hostIP", pod("a", "x", "n1", "0.0.0.0"), pod("b", "y", "n1", "10.0.0.2"), true},
		{"same object", pod("a", "x", "n1", ""), pod("a", "x", "n1", ""), false},
		{"same owner", owned(pod("a", "x", "n1", ""), "DaemonSet", "d"), owned(pod("a", "y", "n1", ""), "DaemonSet", "d"), false},
		{"nodePort", svc("a", "x", 30100), svc("a", "y", 30100), true},
		{"other nodePort", svc("a", "x", 30100), svc("b", "y", 30101), false},
		{"host across namespaces", ing("a", "x", "h.example.com", "/"), ing("b", "y", "h.example.com", "/api"), true},
		{"host in one namespace", ing("a", "x", "h.example.com", "/"), ing("a", "y", "h.example.com", "/"), false},
		{"wildcard over host", ing("a", "x", "*.example.com", "/"), ing("b", "y", "h.example.com", "/"), true},
		{"wildcard one level only", ing("a", "x", "*.example.com", "/"), ing("b", "y", "h.sub.example.com", "/"), false},
		{"other paths", ing("a", "x", "h.example.com", "/a"), ing("b", "y", "h.example.com", "/b"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := mayConflict(&tc.a, &tc.b); got != tc.want {
				t.Errorf("mayConflict = %v, want %v", got, tc.want)
			}
			if got := mayConflict(&tc.b, &tc.a); got != tc.want {
				t.Errorf("mayConflict reversed = %v, want %v", got, tc.want)
			}
		})
	}
}
