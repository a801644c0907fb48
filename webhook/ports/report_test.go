package ports

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/inventory"
)

func holder(ns, kind, name, claim string) policies.Holder {
	return policies.Holder{Namespace: ns, Kind: kind, Name: name, Claim: claim}
}

// testSnapshot holds a DaemonSet and a pod on 9100 (colliding on n1), a
// Deployment on 8080, two Services and two Ingresses whose hosts collide.
func testSnapshot() *inventory.Snapshot {
	hp9100 := "hostPort 9100/TCP"
	return &inventory.Snapshot{
		Synced:        true,
		NodePortRange: policies.PortSpan{From: 30000, To: 32767},
		HostPorts: []inventory.HostPortHolder{
			{Port: 8080, Protocol: "TCP", Holder: holder("team-a", "Deployment", "web", "hostPort 8080/TCP"),
				Nodes: []string{"n1", "n2", "n3", "n4"}, AnyNode: true, NodeSelectors: []string{"pool=web"}, Objects: 6},
			{Port: 9100, Protocol: "TCP", Holder: holder("monitoring", "DaemonSet", "exporter", hp9100), Nodes: []string{"n1"}, AnyNode: true, Objects: 2},
			{Port: 9100, Protocol: "TCP", Holder: holder("team-b", "Pod", "scraper", hp9100), Nodes: []string{"n1"}, Objects: 1},
			{Port: 30105, Protocol: "UDP", HostIP: "10.0.0.1", Holder: holder("team-b", "Pod", "in-range", "hostPort 30105/UDP"),
				Nodes: []string{"n2"}, Objects: 1, InNodePortRange: true},
		},
		NodePorts: []inventory.NodePortHolder{
			{Port: 30100, Protocol: "TCP", Holder: holder("team-a", "Service", "web", "nodePort 30100/TCP")},
			{Port: 30150, Protocol: "TCP", Holder: holder("team-b", "Service", "api", "nodePort 30150/TCP")},
		},
		Hosts: []inventory.HostHolder{
			{Host: "*.example.com", Path: "/api", Holder: holder("team-b", "Ingress", "all", "host *.example.com path /api")},
			{Host: "app.example.com", Path: "/", Holder: holder("team-a", "Ingress", "app", "host app.example.com path /")},
			{Host: "other.test", Path: "/x", Exact: true, Holder: holder("team-c", "Ingress", "x", "host other.test path /x")},
		},
		Conflicts: []inventory.StandingConflict{
			{Rule: "host-port-conflicts", Port: 9100, Protocol: "TCP", Node: "n1",
				Holders: [2]policies.Holder{holder("monitoring", "DaemonSet", "exporter", hp9100), holder("team-b", "Pod", "scraper", hp9100)}},
			{Rule: "ingress-host-conflicts", Host: "app.example.com", Path: "/api",
				Holders: [2]policies.Holder{holder("team-a", "Ingress", "app", "host app.example.com path /"), holder("team-b", "Ingress", "all", "host *.example.com path /api")}},
		},
	}
}

const testConfig = `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - name: monitoring
    namespaces: [monitoring]
    hostPorts: ["9100"]
  - name: team-a
    namespaces: [team-a]
    nodePorts: ["30100-30199"]
    hostPorts: ["8080"]
    ingressDomains: ["*.example.com"]
    expires: "2026-06-30"
  - name: lb
    serviceAccounts: [team-c/deployer]
    loadBalancer: {classes: [internal]}
`

func testUsage() []inventory.GrantUsage {
	end := time.Date(2026, 6, 30, 23, 59, 59, 0, time.UTC)
	return []inventory.GrantUsage{
		{Grant: "monitoring", HostPorts: &inventory.PortUsage{Granted: 1, Used: 1, Ranges: []inventory.RangeUsage{
			{Range: "9100", From: 9100, To: 9100, Granted: 1, Used: 1}}}},
		{Grant: "team-a", Expires: "2026-06-30", ExpiresAt: &end,
			HostPorts: &inventory.PortUsage{Granted: 1, Used: 1, Ranges: []inventory.RangeUsage{{Range: "8080", From: 8080, To: 8080, Granted: 1, Used: 1}}},
			NodePorts: &inventory.PortUsage{Granted: 100, Used: 3, Free: 97, Ranges: []inventory.RangeUsage{
				{Range: "30100-30199", From: 30100, To: 30199, Granted: 100, Used: 3, Free: 97, NextFree: []int{30101, 30102}}}}},
		{Grant: "lb"},
	}
}

func build(t *testing.T, f Filter) *Report {
	t.Helper()
	cfg, err := policies.ParseConfig([]byte(testConfig), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Build(testSnapshot(), cfg, testUsage(), f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const wantTable = `HOST PORTS
  PORT       HOST IP   NODES                                          HOLDER                         OBJECTS  CONFLICT
  8080/TCP   *         nodes with pool=web; pods on n1,n2,n3 +1 more  team-a/Deployment/web          6
  9100/TCP   *         every node; pods on n1                         monitoring/DaemonSet/exporter  2        CONFLICT
  9100/TCP   *         n1                                             team-b/Pod/scraper             1        CONFLICT
  30105/UDP  10.0.0.1  n2                                             team-b/Pod/in-range            1        in the NodePort range

NODE PORTS
  PORT       SERVICE             CONFLICT
  30100/TCP  team-a/Service/web
  30150/TCP  team-b/Service/api

INGRESS HOSTS
  HOST             PATH        NAMESPACE  INGRESS  CONFLICT
  *.example.com    /api        team-b     all      CONFLICT
  app.example.com  /           team-a     app      CONFLICT
  other.test       /x (exact)  team-c     x

GRANTS (node port range 30000-32767)
  monitoring (namespaces monitoring; no expiry)
    allows: hostPorts 9100
    hostPorts  granted 1  used 1  free 0
      9100     granted 1  used 1  free 0
    in use: hostPorts 9100: monitoring/DaemonSet/exporter (hostPort 9100/TCP)
    in use: hostPorts 9100: team-b/Pod/scraper (hostPort 9100/TCP; outside the grant's namespaces)
  team-a (namespaces team-a; expires 2026-06-30)
    allows: hostPorts 8080; nodePorts 30100-30199; ingressDomains *.example.com
    hostPorts      granted 1    used 1  free 0
      8080         granted 1    used 1  free 0
    nodePorts      granted 100  used 3  free 97
      30100-30199  granted 100  used 3  free 97  next free 30101, 30102
    in use: hostPorts 8080: team-a/Deployment/web (hostPort 8080/TCP)
    in use: nodePorts 30100: team-a/Service/web (nodePort 30100/TCP)
    in use: nodePorts 30105: team-b/Pod/in-range (hostPort 30105/UDP; outside the grant's namespaces)
    in use: nodePorts 30150: team-b/Service/api (nodePort 30150/TCP; outside the grant's namespaces)
    host: *.example.com/api by team-b/Ingress/all (CONFLICT)
    host: app.example.com/ by team-a/Ingress/app (CONFLICT)
  lb (service accounts team-c/deployer; no expiry)
    allows: loadBalancer (classes internal)

CONFLICTS
  host-port-conflicts: hostPort 9100/TCP on node n1: monitoring/DaemonSet/exporter (hostPort 9100/TCP) and team-b/Pod/scraper (hostPort 9100/TCP)
  ingress-host-conflicts: host app.example.com path /api: team-a/Ingress/app (host app.example.com path /) and team-b/Ingress/all (host *.example.com path /api)
`

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, build(t, Filter{}), "table"); err != nil {
		t.Fatal(err)
	}
	if b.String() != wantTable {
		t.Errorf("got\n%s\nwant\n%s", b.String(), wantTable)
	}
}

// summary is what a filtered report keeps, one word per entry.
func summary(r *Report) string {
	var parts []string
	for _, h := range r.HostPorts {
		parts = append(parts, "hp:"+h.Holder.Name)
	}
	for _, n := range r.NodePorts {
		parts = append(parts, "np:"+n.Holder.Name)
	}
	for _, h := range r.Hosts {
		parts = append(parts, "host:"+h.Holder.Name)
	}
	for _, g := range r.Grants {
		s := "grant:" + g.Config.Name
		for _, u := range g.InUse {
			s += "+" + u.Holder.Name
		}
		for _, h := range g.Hosts {
			s += "+" + h.Holder.Name
		}
		parts = append(parts, s)
	}
	for _, c := range r.Conflicts {
		parts = append(parts, "conflict:"+c.Rule)
	}
	return strings.Join(parts, " ")
}

func TestFilters(t *testing.T) {
	port := func(s string) *policies.PortRange {
		r, err := ParsePort(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		name string
		f    Filter
		want string
	}{
		{"none", Filter{}, "hp:web hp:exporter hp:scraper hp:in-range np:web np:api host:all host:app host:x " +
			"grant:monitoring+exporter+scraper grant:team-a+web+web+in-range+api+all+app grant:lb conflict:host-port-conflicts conflict:ingress-host-conflicts"},
		// The grants that may apply in team-b: none names it but lb, which names no namespace.
		{"namespace", Filter{Namespace: "team-b"}, "hp:scraper hp:in-range np:api host:all grant:lb conflict:host-port-conflicts conflict:ingress-host-conflicts"},
		{"grant", Filter{Grant: "team-a"}, "hp:web hp:in-range np:web np:api host:all host:app grant:team-a+web+web+in-range+api+all+app conflict:ingress-host-conflicts"},
		{"port", Filter{Port: port("9100")}, "hp:exporter hp:scraper grant:monitoring+exporter+scraper conflict:host-port-conflicts"},
		{"port range and protocol", Filter{Port: port("30100-30110/UDP")}, "hp:in-range grant:team-a+in-range"},
		{"host", Filter{Host: "app.example.com"}, "host:all host:app grant:team-a+all+app conflict:ingress-host-conflicts"},
		{"host no one holds", Filter{Host: "none.test"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := summary(build(t, tc.f)); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
	cfg, _ := policies.ParseConfig([]byte(testConfig), nil)
	if _, err := Build(testSnapshot(), cfg, testUsage(), Filter{Grant: "nope"}); err == nil || !strings.Contains(err.Error(), `no grant named "nope"`) {
		t.Errorf("unknown grant: %v", err)
	}
}

// TestWriteJSONAndYAML: the machine formats carry the same report, with
// conflicts flagged on the holders.
func TestWriteJSONAndYAML(t *testing.T) {
	r := build(t, Filter{Port: port9100(t)})
	var js, ys bytes.Buffer
	if err := Write(&js, r, "json"); err != nil {
		t.Fatal(err)
	}
	if err := Write(&ys, r, "yaml"); err != nil {
		t.Fatal(err)
	}
	fromYAML, err := yaml.YAMLToJSON(ys.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(js.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(fromYAML, &b); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Errorf("JSON and YAML differ:\n%s\n%s", ja, jb)
	}
	for _, want := range []string{
		`"hostPorts": [`, `"port": 9100`, `"conflict": true`, `"name": "exporter"`,
		`"grant": "monitoring"`, `"rule": "host-port-conflicts"`, `"node": "n1"`,
	} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON lacks %s:\n%s", want, js.String())
		}
	}
	if err := Write(&js, r, "xml"); err == nil {
		t.Error("xml accepted")
	}
}

func port9100(t *testing.T) *policies.PortRange {
	t.Helper()
	r, err := ParsePort("9100")
	if err != nil {
		t.Fatal(err)
	}
	return r
}
