package policies

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestParseConfigErrorsNameTheKey(t *testing.T) {
	const head = "apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\n"
	tests := []struct {
		name, config, want string
	}{
		{"unknown top-level key", head + "rule: {}\n", "policy config: rule: unknown field, did you mean rules? (known: apiVersion, kind, rules, grants, exemptions, namespaceOptOut, gatewayAPI)"},
		{"unknown gatewayAPI key", head + "gatewayAPI: {internalClass: [x]}\n", "gatewayAPI.internalClass: unknown field, did you mean internalClasses?"},
		{"empty internal class", head + "gatewayAPI: {internalClasses: [\"\"]}\n", "gatewayAPI.internalClasses[0]: must be a GatewayClass name"},
		{"unknown grant key", head + "grants: [{name: a, namespaces: [a], hostPort: [\"80\"]}]\n", "grants[0].hostPort: unknown field, did you mean hostPorts? (known: name, namespaces, serviceAccounts, users"},
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
		{"bad loadBalancer", head + "grants: [{name: a, namespaces: [a], loadBalancer: {class: [x]}}]\n", "grants[0].loadBalancer.class: unknown field, did you mean classes? (known: classes, sourceRangesRequired)"},
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
	f.Add([]byte(everyKindOfProblem))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b, nil)
		if err == nil {
			_ = c.Data(RuleIDs())
			return
		}
		// One problem per line, each in the documented form.
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, "policy config: ") {
				t.Fatalf("line %q of\n%v", line, err)
			}
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

// everyKindOfProblem has an unknown key, values of the wrong type and values
// that Validate refuses, at several levels (docs/configuration.md shows it).
const everyKindOfProblem = `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  host-netwrok: {mode: deny}
  load-balancer: rewrite
  node-ports: {mode: on}
grants:
  - name: team-a
    namespace: [team-a]
    hostPorts: ["8000-8999"]
  - name: team-b
    namespaces: [team-b, no]
    hostPorts: "8080"
    nodePorts: ["30100-30199", "80-70"]
    loadBalancer: {classes: internal}
exemptions:
  - name: incident-42
    users: [alice]
`

func TestParseConfigReportsEverythingAtOnce(t *testing.T) {
	_, err := ParseConfig([]byte(everyKindOfProblem), nil)
	want := `policy config: exemptions[0].reason: is required: say why the exemption exists
policy config: grants[0]: names no subject: set namespaces, serviceAccounts, users or groups
policy config: grants[0].namespace: unknown field, did you mean namespaces? (known: name, namespaces, serviceAccounts, users, groups, hostNetwork, hostPorts, nodePorts, loadBalancer, externalIPs, ingressDomains, ingressClasses, expires, reason)
policy config: grants[1].hostPorts: must be a list of strings, got the string "8080"
policy config: grants[1].loadBalancer.classes: must be a list of strings, got the string "internal"
policy config: grants[1].namespaces[1]: must be a string, got the boolean false (YAML reads unquoted yes, no, on, off, y and n as booleans: quote the value)
policy config: grants[1].nodePorts[1]: "80-70": ports must lie in 1-65535 with the lower bound first
policy config: rules.host-netwrok: unknown rule, did you mean host-network? (known: ` + strings.Join(RuleIDs(), ", ") + `)
policy config: rules.load-balancer: must be an object such as {mode: deny}, got the string "rewrite"
policy config: rules.node-ports.mode: must be one of deny, warn, dryrun, rewrite, off; got the boolean true`
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Path != "exemptions[0].reason" {
		t.Fatalf("the problems are not *ConfigError: %#v", err)
	}
}

func TestParseConfigTypes(t *testing.T) {
	const head = "apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\n"
	tests := []struct {
		name, config string
		want         string // "" when the configuration is valid
	}{
		{"ports as numbers", "grants: [{name: a, namespaces: [a], hostPorts: [80, 443], nodePorts: [30100]}]", ""},
		{"numbers in subjects", "grants: [{name: a, users: [1000]}]", ""},
		{"null values", "rules:\ngrants: [{name: a, namespaces: [a], hostPorts: , loadBalancer: }]", ""},
		{"loadBalancer false", "grants: [{name: a, namespaces: [a], loadBalancer: false}]", ""},
		{"loadBalancer a list", "grants: [{name: a, namespaces: [a], loadBalancer: [x]}]",
			"policy config: grants[0].loadBalancer: must be true, false or an object with classes and sourceRangesRequired, got a list"},
		{"hostNetwork a string", "grants: [{name: a, namespaces: [a], hostNetwork: \"true\"}]",
			`policy config: grants[0].hostNetwork: must be true or false, got the string "true"`},
		{"grant not an object", "grants: [a]",
			`policy config: grants[0]: must be an object, got the string "a"`},
		{"grants an object", "grants: {name: a}",
			"policy config: grants: must be a list of objects, got an object"},
		{"rules a list", "rules: [host-network]",
			"policy config: rules: must be an object, got a list"},
		{"mode a number", "rules: {host-ports: {mode: 1}}",
			"policy config: rules.host-ports.mode: must be one of deny, warn, dryrun, rewrite, off; got the number 1"},
		{"wrong case", "grants: [{name: a, Namespaces: [a]}]",
			"policy config: grants[0]: names no subject: set namespaces, serviceAccounts, users or groups\n" +
				"policy config: grants[0].Namespaces: unknown field, did you mean namespaces? (known: name, namespaces, serviceAccounts, users, groups, hostNetwork, hostPorts, nodePorts, loadBalancer, externalIPs, ingressDomains, ingressClasses, expires, reason)"},
		{"odd key", "grants: [{name: a, namespaces: [a], \"host ports\": [\"80\"]}]",
			`policy config: grants[0]["host ports"]: unknown field, did you mean hostPorts? (known: name, namespaces, serviceAccounts, users, groups, hostNetwork, hostPorts, nodePorts, loadBalancer, externalIPs, ingressDomains, ingressClasses, expires, reason)`},
		{"a wrong name is not also missing", "grants: [{name: [a], namespaces: [a]}]",
			"policy config: grants[0].name: must be a string, got a list"},
		{"duplicate keys", "grants: [{name: a, namespaces: [a], name: b}]\nkind: PolicyConfig\n",
			"policy config: yaml: line 3: key \"name\" already set in map\npolicy config: yaml: line 4: key \"kind\" already set in map"},
		{"indices in numeric order", "grants: [" + strings.Repeat("{name: a, namespaces: [a]}, ", 10) + "{name: b, namespaces: [a], hostPorts: [x]}]",
			dupes(1, 10) + "\npolicy config: grants[10].hostPorts[0]: \"x\": not a port or port range such as 80 or 8000-8100"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(head+tc.config+"\n"), nil)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || err.Error() != tc.want) {
				t.Fatalf("got\n%v\nwant\n%s", err, tc.want)
			}
		})
	}
}

func dupes(from, to int) string {
	var lines []string
	for i := from; i < to; i++ {
		lines = append(lines, fmt.Sprintf("policy config: grants[%d].name: duplicate grant name \"a\"", i))
	}
	return strings.Join(lines, "\n")
}

// Documents that are not a PolicyConfig at all are errors, never panics.
func TestParseConfigOddDocuments(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"empty", "", "policy config: apiVersion: must be portreeve.io/v1alpha1"},
		{"null", "null", "policy config: apiVersion: must be portreeve.io/v1alpha1"},
		{"a list", "[1, 2]", "policy config: must be an object (a PolicyConfig document), got a list"},
		{"a scalar", "hello", `policy config: must be an object (a PolicyConfig document), got the string "hello"`},
		{"not YAML", "{", "policy config: yaml: line 1: did not find expected node content"},
		{"deep nesting", "grants: " + strings.Repeat("[", 100000), "policy config: yaml: exceeded max depth"},
		{"alias bomb", "a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n", "policy config: yaml: document contains excessive aliasing"},
		{"infinity", "kind: .inf", "policy config: json: unsupported value: +Inf"},
		{"huge number", "kind: 1" + strings.Repeat("0", 400), "policy config: apiVersion"},
		{"non-UTF-8", "kind: \xff\n", "policy config: yaml: invalid leading UTF-8 octet"},
		{"a line break in a key", "\"a\\nb\": 1\n", `policy config: ["a\nb"]: unknown field`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.doc), nil)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %.300v, want it to start with %q", err, tc.want)
			}
		})
	}
}

func TestComparePaths(t *testing.T) {
	paths := []string{"rules.a.mode", "grants[10]", "rules.a-b", "", "grants[2].name", "grants[2]", "apiVersion", `rules["a b"]`, "rules.a", "grants[2].hostPorts[0]"}
	slices.SortStableFunc(paths, comparePaths)
	want := []string{"", "apiVersion", "grants[2]", "grants[2].hostPorts[0]", "grants[2].name", "grants[10]", `rules["a b"]`, "rules.a", "rules.a.mode", "rules.a-b"}
	if !slices.Equal(paths, want) {
		t.Fatalf("sorted %q, want %q", paths, want)
	}
}

func TestLoadBalancerRoundTrip(t *testing.T) {
	tests := []struct {
		lb   LoadBalancer
		want string
	}{
		{LoadBalancer{}, `false`},
		{LoadBalancer{Classes: []string{"internal"}}, `false`}, // conditions of nothing allowed
		{LoadBalancer{Allowed: true}, `true`},
		{LoadBalancer{Allowed: true, Classes: []string{"internal"}}, `{"classes":["internal"]}`},
		{LoadBalancer{Allowed: true, SourceRangesRequired: true}, `{"sourceRangesRequired":true}`},
	}
	for _, tc := range tests {
		b, err := json.Marshal(tc.lb)
		if err != nil || string(b) != tc.want {
			t.Errorf("Marshal(%+v) = %s, %v; want %s", tc.lb, b, err, tc.want)
			continue
		}
		var back LoadBalancer
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if back.Allowed != tc.lb.Allowed || (tc.lb.Allowed && !slices.Equal(back.Classes, tc.lb.Classes)) {
			t.Errorf("%s read back as %+v, want %+v", b, back, tc.lb)
		}
	}
}

func TestNamespaceOptOut(t *testing.T) {
	const head = "apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\n"
	tests := []struct {
		name    string
		config  string
		user    User
		allowed bool
		says    string
	}{
		{"by default a superuser may", "", User{Username: "root", Groups: []string{"system:masters", "system:authenticated"}}, true, "groups system:masters"},
		{"by default nobody else may", "", User{Username: "alice", Groups: []string{"system:authenticated"}}, false, "groups system:masters"},
		{"a named user", "namespaceOptOut: {users: [alice]}\n", User{Username: "alice"}, true, "users alice"},
		{"naming someone replaces the default", "namespaceOptOut: {users: [alice]}\n", User{Username: "root", Groups: []string{"system:masters"}}, false, "users alice"},
		{"a named group", "namespaceOptOut: {groups: [platform]}\n", User{Username: "bob", Groups: []string{"platform"}}, true, "groups platform"},
		{"a named service account", "namespaceOptOut: {serviceAccounts: [argocd/argocd-application-controller]}\n",
			User{Username: "system:serviceaccount:argocd:argocd-application-controller"}, true, "service accounts argocd/argocd-application-controller"},
		{"another service account", "namespaceOptOut: {serviceAccounts: [argocd/argocd-application-controller]}\n",
			User{Username: "system:serviceaccount:team-a:argocd-application-controller"}, false, ""},
		{"nobody", "namespaceOptOut: {}\n", User{Username: "root", Groups: []string{"system:masters"}}, false, "nobody"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(head+tc.config), nil)
			if err != nil {
				t.Fatal(err)
			}
			o := c.OptOut()
			if got := o.Allows(tc.user); got != tc.allowed {
				t.Errorf("Allows(%+v) = %v", tc.user, got)
			}
			if !strings.Contains(o.String(), tc.says) {
				t.Errorf("String() = %q, want %q", o.String(), tc.says)
			}
		})
	}
	if _, err := ParseConfig([]byte(head+"namespaceOptOut: {serviceAccounts: [argocd], user: [x]}\n"), nil); err == nil ||
		!strings.Contains(err.Error(), "namespaceOptOut.serviceAccounts[0]: must be namespace/name") || !strings.Contains(err.Error(), "namespaceOptOut.user: unknown field") {
		t.Errorf("bad namespaceOptOut: %v", err)
	}
}

// TestEveryHostDomain: "*" in ingressDomains is the grant of every host (a
// Gateway listener without a hostname, an Ingress rule without a host);
// other wildcards stay refused.
func TestEveryHostDomain(t *testing.T) {
	head := "apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\n"
	if _, err := ParseConfig([]byte(head+"grants: [{name: a, namespaces: [a], ingressDomains: [\"*\"]}]\n"), nil); err != nil {
		t.Errorf("ingressDomains [*]: %v", err)
	}
	for _, d := range []string{"*.*", "**", "*example.com"} {
		if _, err := ParseConfig([]byte(head+"grants: [{name: a, namespaces: [a], ingressDomains: [\""+d+"\"]}]\n"), nil); err == nil {
			t.Errorf("ingressDomains [%s] accepted", d)
		}
	}
}
