package policytest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/portreeve/portreeve/policies"
)

const builtinCases = "../../policies/testdata/cases"

// TestBuiltinCases runs the built-in rules' case files through Run, the code
// path of `portreeve test` (make test-unit runs the command too).
func TestBuiltinCases(t *testing.T) {
	rep := Run(t.Context(), builtinCases, Options{})
	if rep.BuildError != "" {
		t.Fatal(rep.BuildError)
	}
	if len(rep.Results) < 40 {
		t.Fatalf("only %d cases ran", len(rep.Results))
	}
	for _, r := range rep.Results {
		t.Run(r.Name, func(t *testing.T) {
			if r.Status == Fail {
				t.Errorf("%s:%d:\n%s", r.File, r.Line, r.Message)
			}
		})
	}
}

// TestEveryBuiltinRuleHasCases fails when a built-in rule has no case that
// it denies, or, for rules with a rewrite set, none that it rewrites.
func TestEveryBuiltinRuleHasCases(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(builtinCases, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	denied, rewritten := map[string]bool{}, map[string]bool{}
	for _, f := range files {
		suites, err := LoadCaseFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range suites {
			for _, c := range s.Cases {
				if c.Expect.Denied != nil {
					for _, id := range *c.Expect.Denied {
						denied[id] = true
					}
				}
				if c.Expect.RewrittenBy != nil {
					for _, id := range *c.Expect.RewrittenBy {
						rewritten[id] = true
					}
				}
			}
		}
	}
	modules, err := policies.BuiltinModules()
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range modules {
		if !strings.HasPrefix(name, "policies/rules/") {
			continue
		}
		id := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(name), ".rego"), "_", "-")
		if !denied[id] {
			t.Errorf("rule %s: no case in %s expects it to deny", id, builtinCases)
		}
		if strings.Contains(src, "\nrewrite contains") && !rewritten[id] {
			t.Errorf("rule %s has a rewrite set, but no case expects rewrittenBy: [%s]", id, id)
		}
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func failures(rep *Report) []Result {
	var out []Result
	for _, r := range rep.Results {
		if r.Status == Fail {
			out = append(out, r)
		}
	}
	return out
}

// TestChangedExpectationFailsReadably changes one expectation of a shipped
// case file and checks what the author is told.
func TestChangedExpectationFailsReadably(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(builtinCases, "host_ports.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(b), "      denied: [host-ports]\n", "      denied: [host-network]\n", 1)
	src = strings.Replace(src, "        - {op: remove, path: /spec/containers/0/ports/1/hostPort}", "        - {op: remove, path: /spec/containers/0/ports/0/hostPort}", 1)
	dir := writeFiles(t, map[string]string{"host_ports.yaml": src})
	rep := Run(t.Context(), dir, Options{})
	if rep.Passed() {
		t.Fatal("a changed expectation passed")
	}
	fs := failures(rep)
	if len(fs) != 2 {
		t.Fatalf("want 2 failures, got %d: %+v", len(fs), fs)
	}
	first := fs[0]
	if first.Name != "host_ports/a hostPort outside every granted range is denied" || first.Line != 14 ||
		!strings.HasSuffix(first.File, "host_ports.yaml") {
		t.Errorf("failure names %s at %s:%d", first.Name, first.File, first.Line)
	}
	for _, want := range []string{
		"denied: want [host-network], got [host-ports]",
		"got: DENIED Pod team-a/web",
		`denied:  host-ports: hostPort 9090/TCP of container "web" is not in a range granted to namespace "team-a"`,
	} {
		if !strings.Contains(first.Message, want) {
			t.Errorf("message lacks %q:\n%s", want, first.Message)
		}
	}
	for _, want := range []string{
		"patch: differs",
		`missing:    {"op":"remove","path":"/spec/containers/0/ports/0/hostPort"}`,
		`unexpected: {"op":"remove","path":"/spec/containers/0/ports/1/hostPort"}`,
		"rewrite: portreeve rewrote /spec/containers/0/ports/1/hostPort: 9001 -> (removed)",
	} {
		if !strings.Contains(fs[1].Message, want) {
			t.Errorf("message lacks %q:\n%s", want, fs[1].Message)
		}
	}
}

const teamLabel = `# METADATA
# title: Pods carry a team label
# custom:
#   mode: deny
package portreeve.rules.team_label

deny contains {"msg": "pods need a team label", "field": "metadata.labels.team"} if {
	input.kind.kind == "Pod"
	not input.object.metadata.labels.team
}
`

const teamLabelTests = `package portreeve.rules.team_label_test

import data.portreeve.lib.testing
import data.portreeve.rules.team_label

test_denies_unlabelled if {
	count(team_label.deny) == 1 with input as testing.pod({"containers": []})
}

test_wrong if {
	count(team_label.deny) == 0 with input as testing.pod({"containers": []})
}
`

const teamLabelCases = `apiVersion: portreeve.io/v1alpha1
kind: PolicyTest
cases:
  - name: unlabelled
    file: pods.yaml
    expect:
      denied: [team-label]
  - name: labelled
    object: {apiVersion: v1, kind: Pod, metadata: {name: p, labels: {team: a}}, spec: {containers: [{name: c, image: x}]}}
    expect:
      allowed: true
`

const twoPods = `apiVersion: v1
kind: Pod
metadata: {name: one}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: two}
spec: {containers: [{name: c, image: x}]}
`

func TestRegoTestsAndCasesOfACustomRule(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"team_label.rego":      teamLabel,
		"team_label_test.rego": teamLabelTests,
		"cases/cases.yaml":     teamLabelCases,
		"cases/pods.yaml":      twoPods,
	})
	rep := Run(t.Context(), dir, Options{Coverage: true})
	if rep.BuildError != "" {
		t.Fatal(rep.BuildError)
	}
	var names []string
	for _, r := range rep.Results {
		names = append(names, string(r.Status)+" "+r.Name)
	}
	want := []string{
		"pass portreeve.rules.team_label_test.test_denies_unlabelled",
		"fail portreeve.rules.team_label_test.test_wrong",
		"pass cases/unlabelled/1",
		"pass cases/unlabelled/2",
		"pass cases/labelled",
	}
	if !slices.Equal(names, want) {
		t.Fatalf("results:\n%s\nwant:\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
	msg := rep.Results[1].Message
	if !strings.Contains(msg, "team_label_test.rego:11") || !strings.Contains(msg, "count(team_label.deny) == 0") {
		t.Errorf("the Rego failure does not show the failing expression:\n%s", msg)
	}
	i := slices.IndexFunc(rep.Coverage, func(c RuleCoverage) bool { return c.Rule == "team-label" })
	if i < 0 || rep.Coverage[i].Builtin || rep.Coverage[i].Percent != 100 {
		t.Fatalf("coverage: %+v", rep.Coverage)
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"shadowing module", map[string]string{"x.rego": "package portreeve.rules.host_ports\n"}, "x.rego:1: package portreeve.rules.host_ports shadows"},
		{"module that does not parse", map[string]string{"x.rego": "package portreeve.rules.x\n\ndeny contains if {\n"}, "x.rego:3"},
		{"nothing to test", map[string]string{"README.md": "hi"}, "no tests"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := Run(t.Context(), writeFiles(t, tc.files), Options{})
			if !strings.Contains(rep.BuildError, tc.want) {
				t.Fatalf("build error %q, want %q", rep.BuildError, tc.want)
			}
		})
	}
}

func TestBadCaseFiles(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"unknown key", "apiVersion: portreeve.io/v1alpha1\nkind: PolicyTest\ncases:\n  - name: a\n    object: {apiVersion: v1, kind: Pod}\n    expect: {deniedd: []}\n", `c.yaml:1: cases[0].expect: unknown key "deniedd" (known: allowed, denied, dryRun, errors, messages, object, patch, rewritten, rewrittenBy, warned)`},
		{"no expectation", "apiVersion: portreeve.io/v1alpha1\nkind: PolicyTest\ncases:\n  - name: a\n    object: {apiVersion: v1, kind: Pod}\n    expect: {}\n", `:4: case "a": expect is empty`},
		{"object and file", "apiVersion: portreeve.io/v1alpha1\nkind: PolicyTest\ncases:\n  - name: a\n    object: {apiVersion: v1, kind: Pod}\n    file: x.yaml\n    expect: {allowed: true}\n", "set exactly one of object and file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := Run(t.Context(), writeFiles(t, map[string]string{"c.yaml": tc.src}), Options{})
			fs := failures(rep)
			if len(fs) != 1 || !strings.Contains(fs[0].Message, tc.want) {
				t.Fatalf("failures %+v, want one containing %q", fs, tc.want)
			}
		})
	}
}

func TestStaticFactsDropResolvedConflicts(t *testing.T) {
	facts := &policies.Facts{Ready: true, NodePortConflicts: []policies.NodePortConflict{
		{Port: 30150, Field: "spec.ports[0].nodePort"},
		{Port: 30151, Field: "spec.ports[1].nodePort"},
	}, HostPortConflicts: []policies.HostPortConflict{{Port: 80, Field: "spec.template.spec.containers[0].ports[0].hostPort"}}}
	svc := &policies.Input{Object: map[string]any{"spec": map[string]any{"ports": []any{
		map[string]any{"nodePort": 30100}, map[string]any{"nodePort": 30151},
	}}}}
	got := StaticFacts{Value: facts}.Facts(svc, nil)
	if len(got.NodePortConflicts) != 1 || got.NodePortConflicts[0].Port != 30151 || len(facts.NodePortConflicts) != 2 {
		t.Fatalf("node port conflicts %+v", got.NodePortConflicts)
	}
	dep := &policies.Input{Pod: &policies.PodView{Path: "spec.template.spec", Spec: map[string]any{"containers": []any{
		map[string]any{"ports": []any{map[string]any{"hostPort": 80}}},
	}}}}
	if got := (StaticFacts{Value: facts}).Facts(dep, nil); len(got.HostPortConflicts) != 1 {
		t.Fatalf("host port conflicts %+v", got.HostPortConflicts)
	}
}

func TestDiff(t *testing.T) {
	before := "a: 1\nb: 2\nc: 3\nd: 4\ne: 5\nf: 6\ng: 7\nh: 8\n"
	after := "a: 1\nb: 2\nc: 3\nd: 4\ne: 50\nf: 6\ng: 7\nh: 8\ni: 9\n"
	want := "  ...\n  b: 2\n  c: 3\n  d: 4\n- e: 5\n+ e: 50\n  f: 6\n  g: 7\n  h: 8\n+ i: 9"
	if got := Diff(before, after); got != want {
		t.Fatalf("diff:\n%s\nwant:\n%s", got, want)
	}
	if Diff(before, before) != "" {
		t.Fatal("equal texts differ")
	}
}

// TestNamespaceManifestInACaseFile: a Namespace manifest in a case's file is
// not judged; its labels are those of the file's objects in that namespace,
// instead of the case's namespaceLabels.
func TestNamespaceManifestInACaseFile(t *testing.T) {
	const rule = `# METADATA
# title: namespace team label
# custom:
#   id: ns-team
package portreeve.rules.ns_team

deny contains {"msg": "the namespace has no team label"} if not input.namespaceLabels.team
`
	const cases = `apiVersion: portreeve.io/v1alpha1
kind: PolicyTest
namespace: team-a
namespaceLabels: {}
cases:
  - name: labelled by the render's Namespace
    file: render.yaml
    expect: {allowed: true}
  - name: another namespace keeps the case's labels
    file: other.yaml
    expect: {denied: [ns-team]}
`
	const pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: %s}\nspec: {containers: [{name: c, image: x}]}\n"
	dir := writeFiles(t, map[string]string{
		"ns_team.rego":      rule,
		"ns_team_test.rego": "package portreeve.rules.ns_team_test\n\nimport data.portreeve.rules.ns_team\n\ntest_denies if {\n\tcount(ns_team.deny) == 1 with input as {}\n}\n",
		"cases/cases.yaml":  cases,
		"cases/render.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, labels: {team: a}}\n---\n" + fmt.Sprintf(pod, "team-a"),
		"cases/other.yaml":  "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, labels: {team: a}}\n---\n" + fmt.Sprintf(pod, "team-b"),
	})
	rep := Run(t.Context(), dir, Options{})
	if rep.BuildError != "" {
		t.Fatal(rep.BuildError)
	}
	var names []string
	for _, r := range rep.Results {
		names = append(names, string(r.Status)+" "+r.Name)
		if r.Status != Pass {
			t.Errorf("%s: %s", r.Name, r.Message)
		}
	}
	// One result per case: the Namespace manifests are not judged.
	if want := []string{"pass portreeve.rules.ns_team_test.test_denies", "pass cases/labelled by the render's Namespace", "pass cases/another namespace keeps the case's labels"}; !slices.Equal(names, want) {
		t.Errorf("results %q, want %q", names, want)
	}
}
