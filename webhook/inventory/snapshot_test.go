package inventory

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
)

// snapshotRows renders a snapshot one line per holder and conflict.
func snapshotRows(s *Snapshot) []string {
	out := []string{}
	for _, h := range s.HostPorts {
		line := fmt.Sprintf("hostPort %d/%s ip=%q %s nodes=%v any=%v sel=%v objects=%d", h.Port, h.Protocol, h.HostIP, h.Holder, h.Nodes, h.AnyNode, h.NodeSelectors, h.Objects)
		if h.InNodePortRange {
			line += " in-range"
		}
		out = append(out, line)
	}
	for _, h := range s.NodePorts {
		out = append(out, fmt.Sprintf("nodePort %d/%s %s", h.Port, h.Protocol, h.Holder))
	}
	for _, h := range s.Hosts {
		out = append(out, fmt.Sprintf("host %s%s exact=%v %s", h.Host, h.Path, h.Exact, h.Holder))
	}
	for _, c := range s.Conflicts {
		out = append(out, fmt.Sprintf("conflict %s %d/%s %s%s node=%q: %s (%s) vs %s (%s)", c.Rule, c.Port, c.Protocol, c.Host, c.Path, c.Node,
			c.Holders[0], c.Holders[0].Claim, c.Holders[1], c.Holders[1].Claim))
	}
	return out
}

func exactRule(host, path string) networkingv1.IngressRule {
	exact := networkingv1.PathTypeExact
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
		Paths: []networkingv1.HTTPIngressPath{{Path: path, PathType: &exact}},
	}}}
}

// TestSnapshot: holders named by their top owner, with their nodes or node
// selection, and the conflicts that exist now.
func TestSnapshot(t *testing.T) {
	pool := map[string]string{"pool": "monitoring"}
	web := map[string]string{"pool": "web"}
	tests := []struct {
		name    string
		objects []any
		want    []string
	}{
		{
			name: "a Deployment's template, ReplicaSet and pods are one holder",
			objects: []any{
				deployment(meta("team-a", "web"), 2, podSpec("", pool, hp(8080))),
				replicaSet(meta("team-a", "web-1", "Deployment", "web"), 2, podSpec("", pool, hp(8080))),
				pod(meta("team-a", "web-1-a", "ReplicaSet", "web-1"), podSpec("n2", pool, hp(8080))),
				pod(meta("team-a", "web-1-b", "ReplicaSet", "web-1"), podSpec("n1", pool, hp(8080))),
			},
			want: []string{`hostPort 8080/TCP ip="" team-a/Deployment/web nodes=[n1 n2] any=true sel=[pool=monitoring] objects=4`},
		},
		{
			name: "a DaemonSet's template against a pod on a node it selects",
			objects: []any{
				daemonSet(meta("monitoring", "exporter"), podSpec("", nil, hp(9100))),
				pod(meta("monitoring", "exporter-x", "DaemonSet", "exporter"), podSpec("n1", nil, hp(9100))),
				pod(meta("team-b", "scraper"), podSpec("n1", nil, hp(9100))),
				pod(meta("team-c", "other-ip"), podSpec("n1", nil, hpIP(9100, "10.0.0.1"))),
			},
			want: []string{
				`hostPort 9100/TCP ip="" monitoring/DaemonSet/exporter nodes=[n1] any=true sel=[] objects=2`,
				`hostPort 9100/TCP ip="" team-b/Pod/scraper nodes=[n1] any=false sel=[] objects=1`,
				`hostPort 9100/TCP ip="10.0.0.1" team-c/Pod/other-ip nodes=[n1] any=false sel=[] objects=1`,
				`conflict host-port-conflicts 9100/TCP  node="n1": monitoring/DaemonSet/exporter (hostPort 9100/TCP) vs team-b/Pod/scraper (hostPort 9100/TCP)`,
				`conflict host-port-conflicts 9100/TCP  node="n1": monitoring/DaemonSet/exporter (hostPort 9100/TCP) vs team-c/Pod/other-ip (hostPort 9100/TCP)`,
				`conflict host-port-conflicts 9100/TCP  node="n1": team-b/Pod/scraper (hostPort 9100/TCP) vs team-c/Pod/other-ip (hostPort 9100/TCP)`,
			},
		},
		{
			name: "no conflict across node pools, nodes or hostIPs",
			objects: []any{
				daemonSet(meta("monitoring", "exporter"), podSpec("", pool, hp(9100))),
				pod(meta("team-b", "web-pool"), podSpec("", web, hpIP(9100, "10.0.0.3"))),
				pod(meta("team-b", "on-n1"), podSpec("n1", web, hpIP(9100, "10.0.0.1"))),
				pod(meta("team-b", "on-n1-b"), podSpec("n1", web, hpIP(9100, "10.0.0.2"))),
				pod(meta("team-c", "on-n2"), podSpec("n2", web, hpIP(9100, "10.0.0.1"))),
			},
			want: []string{
				`hostPort 9100/TCP ip="" monitoring/DaemonSet/exporter nodes=[] any=true sel=[pool=monitoring] objects=1`,
				`hostPort 9100/TCP ip="10.0.0.1" team-b/Pod/on-n1 nodes=[n1] any=false sel=[] objects=1`,
				`hostPort 9100/TCP ip="10.0.0.1" team-c/Pod/on-n2 nodes=[n2] any=false sel=[] objects=1`,
				`hostPort 9100/TCP ip="10.0.0.2" team-b/Pod/on-n1-b nodes=[n1] any=false sel=[] objects=1`,
				`hostPort 9100/TCP ip="10.0.0.3" team-b/Pod/web-pool nodes=[] any=true sel=[pool=web] objects=1`,
			},
		},
		{
			name: "a hostPort held by a NodePort Service, and a nodePort held twice",
			objects: []any{
				nodePortService(meta("team-a", "web"), 30080),
				nodePortService(meta("team-b", "copy"), 30080),
				pod(meta("team-c", "hp"), podSpec("n1", nil, hp(30080))),
			},
			want: []string{
				`hostPort 30080/TCP ip="" team-c/Pod/hp nodes=[n1] any=false sel=[] objects=1 in-range`,
				`nodePort 30080/TCP team-a/Service/web`,
				`nodePort 30080/TCP team-b/Service/copy`,
				`conflict host-port-conflicts 30080/TCP  node="": team-c/Pod/hp (hostPort 30080/TCP) vs team-a/Service/web (nodePort 30080/TCP on every node)`,
				`conflict host-port-conflicts 30080/TCP  node="": team-c/Pod/hp (hostPort 30080/TCP) vs team-b/Service/copy (nodePort 30080/TCP on every node)`,
				`conflict node-port-conflicts 30080/  node="": team-a/Service/web (nodePort 30080) vs team-b/Service/copy (nodePort 30080)`,
			},
		},
		{
			name: "Ingress hosts across namespaces, exactly and through a wildcard",
			objects: []any{
				ingress(meta("team-a", "app"), rule("app.example.com", "/")),
				ingress(meta("team-b", "all"), rule("*.example.com", "/api")),
				ingress(meta("team-b", "exact"), exactRule("app.example.com", "/other")),
				ingress(meta("team-a", "same-ns"), rule("app.example.com", "/")),
				ingress(meta("team-c", "deep"), rule("a.b.example.com", "/")),
			},
			want: []string{
				`host *.example.com/api exact=false team-b/Ingress/all`,
				`host a.b.example.com/ exact=false team-c/Ingress/deep`,
				`host app.example.com/ exact=false team-a/Ingress/app`,
				`host app.example.com/ exact=false team-a/Ingress/same-ns`,
				`host app.example.com/other exact=true team-b/Ingress/exact`,
				`conflict ingress-host-conflicts 0/ app.example.com/api node="": team-a/Ingress/app (host app.example.com path /) vs team-b/Ingress/all (host *.example.com path /api)`,
				`conflict ingress-host-conflicts 0/ app.example.com/api node="": team-a/Ingress/same-ns (host app.example.com path /) vs team-b/Ingress/all (host *.example.com path /api)`,
				`conflict ingress-host-conflicts 0/ app.example.com/other node="": team-a/Ingress/app (host app.example.com path /) vs team-b/Ingress/exact (host app.example.com path /other)`,
				`conflict ingress-host-conflicts 0/ app.example.com/other node="": team-a/Ingress/same-ns (host app.example.com path /) vs team-b/Ingress/exact (host app.example.com path /other)`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := testNow
			inv := newTestInventory(&now)
			feed(t, inv.index, tc.objects...)
			got := snapshotRows(inv.Snapshot())
			if !slices.Equal(got, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestSnapshotPending: an admitted request's claims are listed (pending)
// until they expire.
func TestSnapshotPending(t *testing.T) {
	now := testNow
	inv := newTestInventory(&now)
	feed(t, inv.index, pod(meta("team-a", "held"), podSpec("n1", nil, hp(9100))))
	inv.Claim(input(t, podKind, "team-b", "apiVersion: v1\nkind: Pod\nmetadata: {name: new}\nspec:\n  nodeName: n1\n  containers:\n  - name: a\n    ports: [{containerPort: 9100, hostPort: 9100}]\n"), false)
	want := []string{
		`hostPort 9100/TCP ip="" team-a/Pod/held nodes=[n1] any=false sel=[] objects=1`,
		`hostPort 9100/TCP ip="" team-b/Pod/new (pending) nodes=[n1] any=false sel=[] objects=1`,
		`conflict host-port-conflicts 9100/TCP  node="n1": team-a/Pod/held (hostPort 9100/TCP) vs team-b/Pod/new (pending) (hostPort 9100/TCP)`,
	}
	// Holder.String() does not say pending: mark it as names() does.
	s := inv.Snapshot()
	for i := range s.HostPorts {
		if s.HostPorts[i].Holder.Pending {
			s.HostPorts[i].Holder.Name += " (pending)"
		}
	}
	for i := range s.Conflicts {
		for j := range s.Conflicts[i].Holders {
			if s.Conflicts[i].Holders[j].Pending {
				s.Conflicts[i].Holders[j].Name += " (pending)"
			}
		}
	}
	if got := snapshotRows(s); !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	now = now.Add(time.Minute)
	if got := inv.Snapshot(); len(got.HostPorts) != 1 || len(got.Conflicts) != 0 {
		t.Errorf("after the claim expired: %v", snapshotRows(got))
	}
}
