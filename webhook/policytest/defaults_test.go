package policytest

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/portreeve/portreeve/policies"
)

// defaultsCases say nothing of configuration, namespace, labels, user or
// facts but the last one, which names its own.
const defaultsCases = `apiVersion: portreeve.io/v1alpha1
kind: PolicyTest
name: defaults
cases:
  - name: hostNetwork by the default user in the default namespace, with its labels
    object: {apiVersion: v1, kind: Pod, metadata: {name: hn}, spec: {hostNetwork: true, containers: [{name: c}]}}
    expect: {denied: [team-label]}
  - name: a hostPort in the NodePort range
    object: {apiVersion: v1, kind: Pod, metadata: {name: hp}, spec: {containers: [{name: c, ports: [{containerPort: 80, hostPort: 20080}]}]}}
    expect: {denied: [host-port-conflicts, team-label]}
  - name: a case's own settings win
    namespace: other
    namespaceLabels: {team: a}
    user: {username: carol}
    facts: {ready: false, nodePortRange: {from: 30000, to: 32767}}
    object: {apiVersion: v1, kind: Pod, metadata: {name: hn}, spec: {hostNetwork: true, containers: [{name: c, ports: [{containerPort: 80, hostPort: 20080}]}]}}
    expect: {denied: [host-network, host-ports]}
`

// teamLabelRule denies a Pod in a namespace labelled team=z.
const teamLabelRule = `# METADATA
# title: no pods in team z
# custom:
#   mode: deny
package portreeve.rules.team_label

deny contains {"msg": "team z takes no pods", "field": "metadata"} if {
	input.kind.kind == "Pod"
	input.namespaceLabels.team == "z"
}
`

func TestDefaults(t *testing.T) {
	dir := writeFiles(t, map[string]string{"cases.yaml": defaultsCases})
	u := policies.User{Username: "bob", Groups: []string{"system:authenticated"}}
	opts := Options{
		Modules: map[string]string{"rules/team_label.rego": teamLabelRule},
		Defaults: Defaults{
			Config: []byte(`apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - {name: bob, users: [bob], hostNetwork: true}
  - {name: ns, namespaces: [ns], hostPorts: ["1-65535"]}
`),
			Namespace:       "ns",
			NamespaceLabels: map[string]string{"team": "z"},
			User:            &u,
			NodePortRange:   policies.PortSpan{From: 20000, To: 22767},
		},
	}
	rep := Run(t.Context(), dir, opts)
	if rep.BuildError != "" {
		t.Fatal(rep.BuildError)
	}
	if fs := failures(rep); len(fs) > 0 || len(rep.Results) != 3 {
		t.Fatalf("%d results, failures %+v", len(rep.Results), fs)
	}

	// Without the defaults every case but the last one fails.
	rep = Run(t.Context(), dir, Options{Modules: opts.Modules})
	var failed []string
	for _, f := range failures(rep) {
		failed = append(failed, strings.TrimPrefix(f.Name, "defaults/"))
	}
	want := []string{"hostNetwork by the default user in the default namespace, with its labels", "a hostPort in the NodePort range"}
	if rep.BuildError != "" || !slices.Equal(failed, want) {
		t.Fatalf("build error %q, failed %q, want %q", rep.BuildError, failed, want)
	}
}

// TestModulesLoadOnce: `test --policy-dir DIR DIR` loads each rule once.
func TestModulesLoadOnce(t *testing.T) {
	dir := writeFiles(t, map[string]string{"team_label.rego": teamLabelRule, "cases.yaml": `apiVersion: portreeve.io/v1alpha1
kind: PolicyTest
namespaceLabels: {team: z}
cases:
  - name: denied
    object: {apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: c}]}}
    expect: {denied: [team-label]}
`})
	src, err := os.ReadFile(dir + "/team_label.rego")
	if err != nil {
		t.Fatal(err)
	}
	rep := Run(t.Context(), dir, Options{Modules: map[string]string{"elsewhere/team_label.rego": string(src)}})
	if rep.BuildError != "" || len(failures(rep)) > 0 {
		t.Fatalf("build error %q, failures %+v", rep.BuildError, failures(rep))
	}
}
