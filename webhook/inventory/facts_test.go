package inventory

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portreeve/portreeve/policies"
)

// summary renders the facts as sorted lines for comparison.
func summary(f *policies.Facts) []string {
	var out []string
	holder := func(h policies.Holder) string {
		s := fmt.Sprintf("%s (%s)", h.String(), h.Claim)
		if h.Pending {
			s += " pending"
		}
		return s
	}
	for _, c := range f.HostPortConflicts {
		for _, h := range c.Holders {
			out = append(out, fmt.Sprintf("host %s: %s", c.Field, holder(h)))
		}
	}
	for _, c := range f.NodePortConflicts {
		out = append(out, fmt.Sprintf("node %s: %s", c.Field, holder(c.Holder)))
	}
	for _, c := range f.IngressConflicts {
		for _, h := range c.Holders {
			out = append(out, fmt.Sprintf("ingress %s %s%s: %s", c.Field, c.Host, c.Path, holder(h)))
		}
	}
	for g, ps := range f.FreeNodePorts {
		out = append(out, fmt.Sprintf("free-node %s: %v", g, ps))
	}
	for g, ps := range f.FreeHostPorts {
		out = append(out, fmt.Sprintf("free-host %s: %v", g, ps))
	}
	slices.Sort(out)
	return out
}

const podField = "spec.containers[0].ports[0].hostPort"

func hostPortPod(extra string) string {
	return `
apiVersion: v1
kind: Pod
metadata: {name: new}
spec:
  ` + extra + `
  containers:
  - name: app
    image: x
    ports: [{containerPort: 9100, hostPort: 9100}]
`
}

const hostPortDeployment = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      nodeSelector: {role: web}
      containers:
      - name: app
        image: x
        ports: [{containerPort: 9100, hostPort: 9100}]
`

func TestFactsHostPorts(t *testing.T) {
	edge := map[string]string{"role": "edge"}
	tests := []struct {
		name     string
		existing []any
		kind     policies.GroupVersionKind
		ns       string
		object   string
		want     []string
	}{
		{
			name:     "a DaemonSet's template holds its port everywhere it may run",
			existing: []any{daemonSet(meta("monitoring", "node-exporter"), podSpec("", nil, hp(9100)))},
			kind:     podKind, ns: "team-a", object: hostPortPod(""),
			want: []string{"free-host team-a: [9101 9102 9103 9104 9105]", "host " + podField + ": monitoring/DaemonSet/node-exporter (hostPort 9100/TCP)"},
		},
		{
			name:     "a node selector that cannot overlap frees the port",
			existing: []any{daemonSet(meta("monitoring", "node-exporter"), podSpec("", edge, hp(9100)))},
			kind:     deploymentKind, ns: "team-a", object: hostPortDeployment,
		},
		{
			name: "the DaemonSet's pods are named by the DaemonSet, once",
			existing: []any{
				daemonSet(meta("monitoring", "node-exporter"), podSpec("", edge, hp(9100))),
				pod(meta("monitoring", "node-exporter-1", "DaemonSet", "node-exporter"), podSpec("n1", edge, hp(9100))),
				pod(meta("monitoring", "node-exporter-2", "DaemonSet", "node-exporter"), podSpec("n2", edge, hp(9100))),
			},
			kind: podKind, ns: "team-a", object: hostPortPod(""),
			want: []string{"free-host team-a: [9101 9102 9103 9104 9105]", "host " + podField + ": monitoring/DaemonSet/node-exporter (hostPort 9100/TCP)"},
		},
		{
			name:     "a pod on another node does not conflict",
			existing: []any{pod(meta("team-b", "agent"), podSpec("n1", nil, hp(9100)))},
			kind:     podKind, ns: "team-a", object: hostPortPod("nodeName: n2"),
		},
		{
			name:     "a pod on the same node conflicts",
			existing: []any{pod(meta("team-b", "agent"), podSpec("n1", nil, hp(9100)))},
			kind:     podKind, ns: "team-a", object: hostPortPod("nodeName: n1"),
			want: []string{"free-host team-a: [9101 9102 9103 9104 9105]", "host " + podField + ": team-b/Pod/agent (hostPort 9100/TCP)"},
		},
		{
			name: "pods of a ReplicaSet of a Deployment are named by the Deployment",
			existing: []any{
				replicaSet(meta("team-b", "agent-5d4f", "Deployment", "agent"), 1, podSpec("", nil, hp(9100))),
				pod(meta("team-b", "agent-5d4f-x", "ReplicaSet", "agent-5d4f"), podSpec("n1", nil, hp(9100))),
			},
			kind: podKind, ns: "team-a", object: hostPortPod(""),
			want: []string{"free-host team-a: [9101 9102 9103 9104 9105]", "host " + podField + ": team-b/Deployment/agent (hostPort 9100/TCP)"},
		},
		{
			name: "a workload never conflicts with its own ReplicaSets and pods",
			existing: []any{
				deployment(meta("team-a", "web"), 2, podSpec("", map[string]string{"role": "web"}, hp(9100))),
				replicaSet(meta("team-a", "web-5d4f", "Deployment", "web"), 2, podSpec("", map[string]string{"role": "web"}, hp(9100))),
				pod(meta("team-a", "web-5d4f-x", "ReplicaSet", "web-5d4f"), podSpec("n1", map[string]string{"role": "web"}, hp(9100))),
			},
			kind: deploymentKind, ns: "team-a", object: hostPortDeployment,
		},
		{
			name: "workloads that run no pods hold nothing",
			existing: []any{
				deployment(meta("team-b", "idle"), 0, podSpec("", nil, hp(9100))),
				job(meta("team-b", "done"), true, podSpec("", nil, hp(9100))),
				withPhase(pod(meta("team-b", "finished"), podSpec("n1", nil, hp(9100))), "Succeeded"),
			},
			kind: podKind, ns: "team-a", object: hostPortPod(""),
		},
		{
			name:     "a NodePort Service holds its port on every node",
			existing: []any{nodePortService(meta("team-a", "web"), 30080)},
			kind:     podKind, ns: "team-a",
			object: strings.ReplaceAll(hostPortPod(""), "9100", "30080"),
			want: []string{
				"free-host team-a: [9100 9101 9102 9103 9104]",
				"host " + podField + ": team-a/Service/web (nodePort 30080/TCP on every node)",
			},
		},
		{
			name:     "different host IPs do not collide, a wildcard collides with any",
			existing: []any{pod(meta("team-b", "a"), podSpec("", nil, hpIP(9100, "10.0.0.1")))},
			kind:     podKind, ns: "team-a",
			object: strings.Replace(hostPortPod(""), "hostPort: 9100}", "hostPort: 9100, hostIP: 10.0.0.2}", 1),
		},
		{
			name: "suggests free host ports in the granted ranges",
			existing: []any{
				daemonSet(meta("monitoring", "node-exporter"), podSpec("", nil, hp(9100))),
				daemonSet(meta("monitoring", "other"), podSpec("", nil, hp(9101), hp(9103))),
			},
			kind: podKind, ns: "team-a", object: hostPortPod(""),
			want: []string{
				"free-host team-a: [9102 9104 9105 9106 9107]",
				"host " + podField + ": monitoring/DaemonSet/node-exporter (hostPort 9100/TCP)",
			},
		},
	}
	cfg := config(t, `
grants:
  - {name: team-a, namespaces: [team-a], hostPorts: ["9100-9199", "30080-30090"], nodePorts: ["30100-30199"]}
  - {name: team-b, namespaces: [team-b], hostPorts: ["9200-9299"]}
`)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := testNow
			inv := newTestInventory(&now)
			feed(t, inv.index, tc.existing...)
			f := inv.Facts(input(t, tc.kind, tc.ns, tc.object), cfg)
			if !f.Ready {
				t.Fatal("facts not ready")
			}
			if got := summary(f); !slices.Equal(got, tc.want) {
				t.Errorf("facts:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

func service(name string, ports ...string) string {
	s := "apiVersion: v1\nkind: Service\nmetadata: {name: " + name + "}\nspec:\n  type: NodePort\n  ports:\n"
	for i, p := range ports {
		s += fmt.Sprintf("  - {port: %d%s}\n", 80+i, p)
	}
	return s
}

func TestFactsNodePorts(t *testing.T) {
	cfg := config(t, `
grants:
  - {name: team-a, namespaces: [team-a], nodePorts: ["30100-30105", "30110"]}
  - {name: teams, namespaces: ["team-*"], nodePorts: ["30200-30299"]}
  - {name: team-b, namespaces: [team-b], nodePorts: ["30150-30199"]}
  - {name: old, namespaces: [team-a], nodePorts: ["30300-30399"], expires: "2020-01-01"}
`)
	existing := []any{
		nodePortService(meta("team-b", "web"), 30101),
		nodePortService(meta("team-a", "api"), 30103, 30200),
		pod(meta("kube-system", "proxy"), podSpec("", nil, hp(30104))),
	}
	tests := []struct {
		name   string
		ns     string
		object string
		want   []string
	}{
		{
			name: "free ports skip taken node ports and host ports, one per Service port",
			ns:   "team-a", object: service("new", "", ""),
			want: []string{"free-node team-a: [30100 30102]", "free-node teams: [30201 30202]"},
		},
		{
			name: "an explicit port held by another Service conflicts and is not offered",
			ns:   "team-a", object: service("new", ", nodePort: 30101", ", nodePort: 30100", ""),
			want: []string{
				"free-node team-a: [30102 30105 30110]",
				"free-node teams: [30201 30202 30203]",
				"node spec.ports[0].nodePort: team-b/Service/web (nodePort 30101)",
			},
		},
		{
			name: "a Service's own ports do not conflict with itself",
			ns:   "team-a", object: service("api", ", nodePort: 30103"),
			want: []string{"free-node team-a: [30100]", "free-node teams: [30201]"},
		},
		{
			name: "other namespaces get their grants' free ports",
			ns:   "team-b", object: service("new", ""),
			want: []string{"free-node team-b: [30150]", "free-node teams: [30201]"},
		},
		{
			name: "a ClusterIP Service opens no node port",
			ns:   "team-a", object: "apiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec: {ports: [{port: 80, nodePort: 30101}]}",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := testNow
			inv := newTestInventory(&now)
			feed(t, inv.index, existing...)
			f := inv.Facts(input(t, serviceKind, tc.ns, tc.object), cfg)
			if got := summary(f); !slices.Equal(got, tc.want) {
				t.Errorf("facts:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

func ingressYAML(name string, hosts ...string) string {
	s := "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: " + name + "}\nspec:\n  rules:\n"
	for _, h := range hosts {
		host, path, _ := strings.Cut(h, "/")
		s += "  - host: \"" + host + "\"\n"
		if path != "" {
			s += "    http: {paths: [{path: /" + path + ", pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}\n"
		}
	}
	return s
}

func TestFactsIngressHosts(t *testing.T) {
	existing := []any{
		ingress(meta("team-a", "app"), rule("app.team-a.example.com", "/")),
		ingress(meta("team-a", "api"), rule("api.team-a.example.com", "/v1")),
		ingress(meta("team-c", "all"), rule("*.shop.example.com")),
	}
	tests := []struct {
		name   string
		ns     string
		object string
		want   []string
	}{
		{
			name: "the same host in another namespace",
			ns:   "team-b", object: ingressYAML("x", "app.team-a.example.com/"),
			want: []string{"ingress spec.rules[0].host app.team-a.example.com/: team-a/Ingress/app (host app.team-a.example.com path /)"},
		},
		{
			name: "a wildcard covering claimed hosts",
			ns:   "team-b", object: ingressYAML("x", "*.team-a.example.com/"),
			want: []string{
				"ingress spec.rules[0].host *.team-a.example.com/: team-a/Ingress/api (host api.team-a.example.com path /v1)",
				"ingress spec.rules[0].host *.team-a.example.com/: team-a/Ingress/app (host app.team-a.example.com path /)",
			},
		},
		{
			name: "a host under a claimed wildcard",
			ns:   "team-b", object: ingressYAML("x", "cart.shop.example.com"),
			want: []string{"ingress spec.rules[0].host cart.shop.example.com/: team-c/Ingress/all (host *.shop.example.com path /)"},
		},
		{
			name: "a wildcard covers one label only",
			ns:   "team-b", object: ingressYAML("x", "a.cart.shop.example.com", "*.example.com"),
		},
		{
			name: "paths that do not overlap",
			ns:   "team-b", object: ingressYAML("x", "api.team-a.example.com/v2"),
		},
		{
			name: "the owner's own namespace shares its hosts",
			ns:   "team-a", object: ingressYAML("x", "app.team-a.example.com/", "*.team-a.example.com/"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := testNow
			inv := newTestInventory(&now)
			feed(t, inv.index, existing...)
			f := inv.Facts(input(t, ingressKind, tc.ns, tc.object), nil)
			if got := summary(f); !slices.Equal(got, tc.want) {
				t.Errorf("facts:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

func TestPendingClaims(t *testing.T) {
	now := testNow
	inv := newTestInventory(&now)
	first := input(t, podKind, "team-a", hostPortPod(""))
	second := input(t, podKind, "team-a", strings.Replace(hostPortPod(""), "name: new", "name: second", 1))
	want := []string{"host " + podField + ": team-a/Pod/new (hostPort 9100/TCP) pending"}

	inv.Claim(first, false)
	if got := summary(inv.Facts(second, nil)); !slices.Equal(got, want) {
		t.Fatalf("after Claim: %q, want %q", got, want)
	}
	if got := summary(inv.Facts(first, nil)); len(got) != 0 {
		t.Errorf("an object conflicts with its own pending claim: %q", got)
	}

	// The informer shows the object: the pending claim is replaced.
	feed(t, inv.index, pod(meta("team-a", "new"), podSpec("", nil, hp(9100))))
	if objects, pending := inv.index.Len(); objects != 1 || pending != 0 {
		t.Errorf("after the informer saw it: %d objects, %d pending; want 1, 0", objects, pending)
	}
	inv.index.Delete(objectKey{kind: "Pod", namespace: "team-a", name: "new"})

	// Claims expire after the TTL.
	inv.Claim(first, false)
	now = now.Add(31 * time.Second)
	if got := summary(inv.Facts(second, nil)); len(got) != 0 {
		t.Errorf("expired claim still counts: %q", got)
	}
	inv.index.Expire(now)
	if _, pending := inv.index.Len(); pending != 0 {
		t.Errorf("%d pending after Expire, want 0", pending)
	}

	// Tentative claims go when the validating webhook refuses the object.
	inv.Claim(first, true)
	inv.Release(first)
	if got := summary(inv.Facts(second, nil)); len(got) != 0 {
		t.Errorf("released tentative claim still counts: %q", got)
	}
	// ... but an admitted claim stays.
	inv.Claim(first, false)
	inv.Release(first)
	if got := summary(inv.Facts(second, nil)); !slices.Equal(got, want) {
		t.Errorf("Release dropped an admitted claim: %q", got)
	}

	// An UPDATE's claim stays until the informer shows a newer version.
	update := updateInput(t, podKind, "team-a", "metadata: {resourceVersion: \"20\"}", hostPortPod(""))
	inv.Claim(update, false)
	feed(t, inv.index, pod(meta("team-a", "new"), podSpec("", nil))) // rv 10: older
	if _, pending := inv.index.Len(); pending != 1 {
		t.Errorf("an older informer version dropped the pending claim")
	}
}

func TestFactsNotReady(t *testing.T) {
	inv := New(Options{NotReady: NotReadyAllow})
	f := inv.Facts(input(t, podKind, "team-a", hostPortPod("")), nil)
	if f.Ready || f.NotReady != NotReadyAllow || f.NodePortRange != DefaultNodePortRange {
		t.Errorf("facts before sync = %+v", f)
	}
	if err := inv.ReadyCheck(nil); err == nil {
		t.Error("ReadyCheck passes before sync")
	}
	inv.MarkSynced()
	if err := inv.ReadyCheck(nil); err != nil {
		t.Errorf("ReadyCheck after sync: %v", err)
	}
}
