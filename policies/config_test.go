package policies

import (
	"strings"
	"testing"
)

func TestParseConfigErrorsNameTheKey(t *testing.T) {
	const head = "apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\n"
	tests := []struct {
		name, config, want string
	}{
		{"unknown top-level key", head + "rule: {}\n", `unknown field "rule"`},
		{"unknown grant key", head + "grants: [{name: a, namespaces: [a], hostPort: [\"80\"]}]\n", `unknown field "hostPort"`},
		{"wrong apiVersion", "apiVersion: v1\nkind: PolicyConfig\n", "apiVersion: must be"},
		{"unknown rule", head + "rules: {host-netwrok: {mode: deny}}\n", "rules.host-netwrok: unknown rule"},
		{"bad mode", head + "rules: {host-network: {mode: block}}\n", "rules.host-network.mode: must be one of"},
		{"bad port", head + "grants: [{name: a, namespaces: [a], hostPorts: [\"80-70\"]}]\n", "grants[0].hostPorts[0]"},
		{"port out of range", head + "grants: [{name: a, namespaces: [a], hostPorts: [\"70000\"]}]\n", "grants[0].hostPorts[0]"},
		{"bad protocol", head + "grants: [{name: a, namespaces: [a], hostPorts: [\"53/ICMP\"]}]\n", "protocol must be"},
		{"protocol on node ports", head + "grants: [{name: a, namespaces: [a], nodePorts: [\"30000/UDP\"]}]\n", "grants[0].nodePorts[0]"},
		{"bad CIDR", head + "grants: [{name: a, namespaces: [a], externalIPs: [\"10.0.0.0/33\"]}]\n", "grants[0].externalIPs[0]"},
		{"bad expiry", head + "grants: [{name: a, namespaces: [a], expires: tomorrow}]\n", "grants[0].expires"},
		{"no subject", head + "grants: [{name: a, hostNetwork: true}]\n", "grants[0]: names no subject"},
		{"bad service account", head + "grants: [{name: a, serviceAccounts: [nons]}]\n", "grants[0].serviceAccounts[0]"},
		{"duplicate grant", head + "grants: [{name: a, namespaces: [a]}, {name: a, namespaces: [b]}]\n", "grants[1].name: duplicate"},
		{"bad domain", head + "grants: [{name: a, namespaces: [a], ingressDomains: [\"a.*.com\"]}]\n", "grants[0].ingressDomains[0]"},
		{"exemption without reason", head + "exemptions: [{name: e, users: [bob]}]\n", "exemptions[0].reason: is required"},
		{"bad loadBalancer", head + "grants: [{name: a, namespaces: [a], loadBalancer: {class: [x]}}]\n", `unknown field "class"`},
		{"not YAML", "{", "policy config"},
		{"mode on", head + "rules: {host-network: {mode: on}}\n", "must be one of"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.config), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseConfigAcceptsTheDocumentedExample(t *testing.T) {
	c, err := ParseConfig([]byte(`
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  host-network: {mode: deny}
  load-balancer: {mode: rewrite}
grants:
  - name: system
    namespaces: [kube-system]
    hostNetwork: true
    hostPorts: ["1-65535"]
    nodePorts: ["30000-32767"]
    loadBalancer: true
  - name: ingress-controller
    serviceAccounts: [ingress-nginx/ingress-nginx]
    hostPorts: ["80", "443"]
    expires: "2027-06-30"
    reason: "edge proxy on every node"
  - name: team-a
    namespaces: [team-a]
    nodePorts: ["30100-30199"]
    loadBalancer: {classes: [internal], sourceRangesRequired: true}
    externalIPs: ["203.0.113.0/24"]
    ingressDomains: ["*.team-a.example.com"]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode("load-balancer") != ModeRewrite || c.Mode("node-ports") != ModeDeny {
		t.Fatalf("modes: %v", c.Rules)
	}
	lb := c.Grants[2].LoadBalancer
	if lb == nil || !lb.Allowed || !lb.SourceRangesRequired || lb.Classes[0] != "internal" {
		t.Fatalf("loadBalancer object form: %+v", lb)
	}
	if !c.Grants[0].LoadBalancer.Allowed {
		t.Fatal("loadBalancer: true not read")
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in   string
		want PortRange
	}{
		{"80", PortRange{80, 80, ""}},
		{"8000-8100", PortRange{8000, 8100, ""}},
		{"53/UDP", PortRange{53, 53, "UDP"}},
		{"1-65535/SCTP", PortRange{1, 65535, "SCTP"}},
	}
	for _, tc := range tests {
		got, err := ParsePortRange(tc.in, true)
		if err != nil || got != tc.want {
			t.Errorf("ParsePortRange(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(defaultConfigYAML))
	f.Add([]byte("apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\ngrants: [{name: a, namespaces: ['['], hostPorts: ['1-']}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b, nil)
		if err == nil {
			_ = c.Data(RuleIDs())
		}
	})
}

// YAML 1.1 reads a bare off as false: the mode must still be off.
func TestModeOffUnquoted(t *testing.T) {
	for _, doc := range []string{"{mode: off}", `{mode: "off"}`, "{mode: false}"} {
		cfg, err := ParseConfig([]byte("apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\nrules: {host-ports: "+doc+"}\n"), nil)
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		if m := cfg.Mode("host-ports"); m != ModeOff {
			t.Errorf("%s: mode %q, want off", doc, m)
		}
	}
}
