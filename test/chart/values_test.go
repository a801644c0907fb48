package chart

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// exampleConfig is the policy configuration from the design brief, as a values file.
const exampleConfig = `config:
  rules:
    host-network: {mode: deny}
    load-balancer: {mode: rewrite}
    node-port-conflicts: {mode: warn}
    ingress-host-conflicts: {mode: dryrun}
    external-ips: {mode: "off"}
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
    - name: dns
      groups: [system:node-agents]
      users: [bob]
      hostPorts: ["53/UDP", "53/TCP", "8000-8100"]
    - name: team-a
      namespaces: [team-a, "team-a-*"]
      nodePorts: ["30100-30199"]
      loadBalancer: {classes: [internal], sourceRangesRequired: true}
      externalIPs: ["203.0.113.0/24", "198.51.100.7"]
      ingressDomains: ["*.team-a.example.com", "team-a.example.com"]
      ingressClasses: [nginx]
  exemptions:
    - name: break-glass
      users: [alice]
      rules: [host-network]
      expires: "2026-12-31"
      reason: "incident 42"
    - name: legacy
      namespaces: [legacy]
      serviceAccounts: [legacy/app]
      groups: [legacy-admins]
`

// readmeGrants is the --set-json value of the README's install example.
const readmeGrants = `config.grants=[{"name":"system","namespaces":["kube-system"],"hostNetwork":true,"hostPorts":["1-65535"],"nodePorts":["30000-32767"],"loadBalancer":true},{"name":"team-a","namespaces":["team-a"],"nodePorts":["30100-30199"]}]`

func chartValues(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func renderedConfig(t *testing.T, r *rendered) map[string]any {
	t.Helper()
	o, ok := r.find("ConfigMap", "portreeve-config")
	if !ok {
		t.Fatal("no ConfigMap portreeve-config")
	}
	cm := o.Typed.(*corev1.ConfigMap)
	if len(cm.Data) != 1 {
		t.Fatalf("ConfigMap %s with keys %v", cm.Name, slices.Collect(maps.Keys(cm.Data)))
	}
	// The configuration check validates exactly what the release installs.
	if o, ok := r.find("ConfigMap", "portreeve-config-check"); ok {
		if check := o.Typed.(*corev1.ConfigMap).Data["config.yaml"]; check != cm.Data["config.yaml"] {
			t.Errorf("the configuration check validates\n%s\nbut the release installs\n%s", check, cm.Data["config.yaml"])
		}
	}
	var got map[string]any
	if err := yaml.UnmarshalStrict([]byte(cm.Data["config.yaml"]), &got); err != nil {
		t.Fatalf("config.yaml does not parse: %v\n%s", err, cm.Data["config.yaml"])
	}
	return got
}

func TestConfigMap(t *testing.T) {
	defaults := chartValues(t)["config"].(map[string]any)
	var example map[string]any
	if err := yaml.Unmarshal([]byte(exampleConfig), &example); err != nil {
		t.Fatal(err)
	}
	exampleCfg := example["config"].(map[string]any)

	// Helm merges maps (rules) with the defaults and replaces lists (grants, exemptions).
	mergedRules := maps.Clone(defaults["rules"].(map[string]any))
	maps.Copy(mergedRules, exampleCfg["rules"].(map[string]any))

	var readme []map[string]any
	if err := yaml.Unmarshal([]byte(strings.TrimPrefix(readmeGrants, "config.grants=")), &readme); err != nil {
		t.Fatal(err)
	}
	readmeAny := make([]any, len(readme))
	for i := range readme {
		readmeAny[i] = readme[i]
	}

	tests := []struct {
		name string
		args func(t *testing.T) []string
		want map[string]any
	}{
		{"defaults", func(*testing.T) []string { return nil },
			map[string]any{"rules": defaults["rules"], "grants": defaults["grants"], "exemptions": []any{}}},
		{"brief example", func(t *testing.T) []string { return []string{"-f", writeValues(t, exampleConfig)} },
			map[string]any{"rules": mergedRules, "grants": exampleCfg["grants"], "exemptions": exampleCfg["exemptions"]}},
		{"README example", func(*testing.T) []string { return []string{"--set-json", readmeGrants} },
			map[string]any{"rules": defaults["rules"], "grants": readmeAny, "exemptions": []any{}}},
		{"empty", func(*testing.T) []string {
			return []string{"--set-json", "config.grants=[]", "--set-json", "config.exemptions=[]", "--set-json", "config.rules=null"}
		}, map[string]any{"rules": map[string]any{}, "grants": []any{}, "exemptions": []any{}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := renderedConfig(t, render(t, "", tc.args(t)...))
			want := maps.Clone(tc.want)
			want["apiVersion"] = "portreeve.io/v1alpha1"
			want["kind"] = "PolicyConfig"
			if !reflect.DeepEqual(got, want) {
				gb, _ := yaml.Marshal(got)
				wb, _ := yaml.Marshal(want)
				t.Errorf("config.yaml\n--- got\n%s--- want\n%s", gb, wb)
			}
		})
	}

	// The default grant gives kube-system everything, and every rule defaults to deny.
	rules := defaults["rules"].(map[string]any)
	wantIDs := []string{"external-ips", "gateway-addresses", "gateway-hosts", "gateway-load-balancer", "host-network", "host-port-conflicts", "host-ports",
		"ingress-host-conflicts", "ingress-hosts", "load-balancer", "node-port-conflicts", "node-ports"}
	if ids := slices.Sorted(maps.Keys(rules)); !reflect.DeepEqual(ids, wantIDs) {
		t.Errorf("default rules %v, want %v", ids, wantIDs)
	}
	for id, r := range rules {
		if r.(map[string]any)["mode"] != "deny" {
			t.Errorf("default mode of %s is %v", id, r)
		}
	}
}

func TestSchema(t *testing.T) {
	grant := func(extra string) []string {
		return []string{"--set-json", `config.grants=[{"name":"x","namespaces":["a"]` + extra + `}]`}
	}
	tests := []struct {
		name   string
		args   []string
		accept bool
		values string // optional values file
	}{
		{"defaults", nil, true, ""},
		{"brief example", nil, true, exampleConfig},
		{"unquoted date", nil, true, "config:\n  exemptions:\n    - {name: x, users: [a], expires: 2026-01-02}\n"},
		{"date in values file", nil, false, "config:\n  exemptions:\n    - {name: x, users: [a], expires: 2026-1-2}\n"},
		{"load balancer object", grant(`,"loadBalancer":{"classes":["internal"],"sourceRangesRequired":true}`), true, ""},
		{"url mode", []string{"--set", "webhook.url=https://127.0.0.1:9443", "--set", "webhook.caBundle=Zm9vYmFy"}, true, ""},
		{"minAvailable percentage", []string{"--set", "podDisruptionBudget.minAvailable=50%"}, true, ""},
		{"timeout bounds", []string{"--set", "webhook.validating.timeoutSeconds=1", "--set", "webhook.mutating.timeoutSeconds=30"}, true, ""},
		{"cluster issuer", []string{"--set", "certs.mode=cert-manager", "--set", "certs.certManager.issuerRef.name=x", "--set", "certs.certManager.issuerRef.kind=ClusterIssuer"}, true, ""},

		{"unknown top-level key", []string{"--set", "replica=2"}, false, ""},
		{"unknown nested key", []string{"--set", "webhook.failurePolicy=Fail"}, false, ""},
		{"bad mode", []string{"--set", "config.rules.host-network.mode=block"}, false, ""},
		{"unknown rule", []string{"--set", "config.rules.host-networking.mode=deny"}, false, ""},
		{"empty mode", []string{"--set-json", `config.rules={"host-ports":{"mode":""}}`}, false, ""},
		{"mode is case-sensitive", []string{"--set", "config.rules.host-ports.mode=Deny"}, false, ""},
		{"unknown rule field", []string{"--set", "config.rules.host-ports.ranges=80"}, false, ""},
		{"bad certs.mode", []string{"--set", "certs.mode=vault"}, false, ""},
		{"replicas zero", []string{"--set", "replicas=0"}, false, ""},
		{"bad validating failurePolicy", []string{"--set", "webhook.validating.failurePolicy=Deny"}, false, ""},
		{"bad mutating failurePolicy", []string{"--set", "webhook.mutating.failurePolicy=fail"}, false, ""},
		{"timeout zero", []string{"--set", "webhook.validating.timeoutSeconds=0"}, false, ""},
		{"timeout 31", []string{"--set", "webhook.mutating.timeoutSeconds=31"}, false, ""},
		{"http url", []string{"--set", "webhook.url=http://127.0.0.1:9443"}, false, ""},
		{"url without scheme", []string{"--set", "webhook.url=127.0.0.1:9443"}, false, ""},
		{"port string open range", grant(`,"hostPorts":["80-"]`), false, ""},
		{"port string bad protocol", grant(`,"hostPorts":["80/HTTP"]`), false, ""},
		{"port string name", grant(`,"nodePorts":["http"]`), false, ""},
		{"port number not string", grant(`,"hostPorts":[80]`), false, ""},
		{"port string too long", grant(`,"hostPorts":["123456"]`), false, ""},
		{"grant without subject", []string{"--set-json", `config.grants=[{"name":"x","hostNetwork":true}]`}, false, ""},
		{"grant without name", []string{"--set-json", `config.grants=[{"namespaces":["a"],"hostNetwork":true}]`}, false, ""},
		{"grant unknown field", grant(`,"hostNetworks":true`), false, ""},
		{"bad service account", grant(`,"serviceAccounts":["ingress-nginx"]`), false, ""},
		{"bad expiry", grant(`,"expires":"next week"`), false, ""},
		{"exemption unknown rule", []string{"--set-json", `config.exemptions=[{"name":"x","users":["a"],"rules":["everything"]}]`}, false, ""},
		{"bad duration", []string{"--set", "certs.caDuration=10years"}, false, ""},
		{"bad caBundle", []string{"--set", "webhook.url=https://x", "--set", "webhook.caBundle=-----BEGIN CERTIFICATE-----"}, false, ""},
		{"bad pullPolicy", []string{"--set", "image.pullPolicy=Sometimes"}, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.values != "" {
				args = append([]string{"-f", writeValues(t, tc.values)}, args...)
			}
			_, stderr, err := runHelm(t, templateArgs("", args...)...)
			switch {
			case tc.accept && err != nil:
				t.Errorf("rejected: %v\n%s", err, stderr)
			case !tc.accept && err == nil:
				t.Errorf("accepted %v", args)
			case !tc.accept && !strings.Contains(stderr, "schema"):
				t.Errorf("failed, but not by the schema:\n%s", stderr)
			}
		})
	}
}

func TestLint(t *testing.T) {
	tests := []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"defaults", func(*testing.T) []string { return nil }},
		{"cert-manager", func(*testing.T) []string { return []string{"--set", "certs.mode=cert-manager"} }},
		{"cert-manager with issuer", func(*testing.T) []string {
			return []string{"--set", "certs.mode=cert-manager", "--set", "certs.certManager.issuerRef.name=corp"}
		}},
		{"url mode", func(*testing.T) []string { return []string{"--set", "webhook.url=https://127.0.0.1:9443"} }},
		{"brief example", func(t *testing.T) []string { return []string{"-f", writeValues(t, exampleConfig)} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"lint", "--strict", chartDir, "--namespace", releaseNamespace}, tc.args(t)...)
			out, stderr, err := runHelm(t, args...)
			if err != nil {
				t.Fatalf("helm lint --strict: %v\n%s%s", err, out, stderr)
			}
			if strings.Contains(out, "[WARNING]") || strings.Contains(out, "[ERROR]") {
				t.Errorf("lint findings:\n%s", out)
			}
		})
	}
}

var readmeRow = regexp.MustCompile("^\\| `([^`]+)` \\|")

// TestReadmeDocumentsEveryValue: the README's values table names only keys that exist, and covers
// every leaf of values.yaml (a row for a key covers the keys below it).
func TestReadmeDocumentsEveryValue(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	_, table, ok := strings.Cut(readme, "\n## Values\n")
	if !ok {
		t.Fatal("README has no Values section")
	}
	var documented []string
	for _, line := range strings.Split(table, "\n") {
		if m := readmeRow.FindStringSubmatch(line); m != nil {
			documented = append(documented, m[1])
		}
	}
	paths, leaves := map[string]bool{}, []string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if prefix != "" {
			paths[prefix] = true
		}
		m, ok := v.(map[string]any)
		if !ok || len(m) == 0 {
			leaves = append(leaves, prefix)
			return
		}
		for k, c := range m {
			if prefix != "" {
				k = prefix + "." + k
			}
			walk(k, c)
		}
	}
	walk("", chartValues(t))
	for _, d := range documented {
		if !paths[d] {
			t.Errorf("README documents %s, which values.yaml does not have", d)
		}
	}
	slices.Sort(leaves)
	for _, l := range leaves {
		if !slices.ContainsFunc(documented, func(d string) bool { return l == d || strings.HasPrefix(l, d+".") }) {
			t.Errorf("README does not document %s", l)
		}
	}
	if !strings.Contains(readme, "--set-json '"+readmeGrants+"'") {
		t.Error("README install example differs from the one this test renders")
	}
}
