package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"

	"github.com/portreeve/portreeve/policies"
)

// runCLI runs the portreeve command line and returns its output and exit code.
func runCLI(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	if err == nil {
		return out.String(), 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			out.WriteString("error: " + ee.err.Error() + "\n")
		}
		return out.String(), ee.code
	}
	return out.String() + "error: " + err.Error() + "\n", 2
}

const (
	builtinCases   = "../../policies/testdata/cases"
	workedExample  = "../../examples/lb-internal"
	authoringGuide = "../../docs/policy-authoring.md"
)

// TestBuiltinCaseFiles is what make test-unit runs: portreeve test on the
// built-in rules' case files and on the worked example.
func TestBuiltinCaseFiles(t *testing.T) {
	out, code := runCLI(t, "", "test", builtinCases, workedExample)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{"ok  \t" + builtinCases + "\t", "ok  \t" + workedExample + "\t"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FAIL") {
		t.Errorf("output:\n%s", out)
	}
}

func TestTestCommandFailures(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(workedExample, "cases.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The author changes an expectation: the internal Service "is denied".
	src := strings.Replace(string(b), "  - name: an internal LoadBalancer is allowed\n    file: internal-service.yaml\n    expect:\n      allowed: true",
		"  - name: an internal LoadBalancer is allowed\n    file: internal-service.yaml\n    expect:\n      allowed: false", 1)
	for _, name := range []string{"lb_internal.rego", "lb_internal_test.rego", "public-service.yaml", "internal-service.yaml"} {
		copyFile(t, filepath.Join(workedExample, name), filepath.Join(dir, name))
	}
	if err := os.WriteFile(filepath.Join(dir, "cases.yaml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runCLI(t, "", "test", dir)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{
		"--- FAIL: cases/an internal LoadBalancer is allowed (",
		filepath.Join(dir, "cases.yaml") + ":23:",
		"object from " + filepath.Join(dir, "internal-service.yaml") + ":1",
		"allowed: want false, got true",
		"got: ALLOWED Service team-a/shop-internal",
		"\nFAIL\nFAIL\t" + dir + "\t",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "--- PASS") {
		t.Errorf("passing tests listed without -v:\n%s", out)
	}

	// -o json carries the same.
	out, code = runCLI(t, "", "test", "-o", "json", "--coverage", dir)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	var rep struct {
		Passed bool `json:"passed"`
		Dirs   []struct {
			Results []struct {
				Name, Status, Message string
			} `json:"results"`
			Coverage []struct {
				Rule    string  `json:"rule"`
				Percent float64 `json:"percent"`
			} `json:"coverage"`
		} `json:"dirs"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if rep.Passed || len(rep.Dirs) != 1 || len(rep.Dirs[0].Coverage) != 1 || rep.Dirs[0].Coverage[0].Rule != "lb-internal" {
		t.Fatalf("json report %+v", rep)
	}
	failed := 0
	for _, r := range rep.Dirs[0].Results {
		if r.Status == "fail" {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d failures in %+v", failed, rep.Dirs[0].Results)
	}

	// A module that shadows a built-in is a build failure, as in serve.
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "x.rego"), []byte("package portreeve.rules.host_network\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = runCLI(t, "", "test", bad)
	if code != 1 || !strings.Contains(out, "FAIL\t"+bad+" [build failed]") || !strings.Contains(out, "x.rego:1: package portreeve.rules.host_network shadows") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if _, code := runCLI(t, "", "test", "-o", "yaml", dir); code != 2 {
		t.Fatalf("bad -o: exit %d", code)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fileBlock is a fenced block the guide marks as the content of a file:
// <!-- file: examples/lb-internal/lb_internal.rego --> before the fence.
var fileBlock = regexp.MustCompile("(?s)<!-- file: ([^ ]+) -->\n```[a-z]*\n(.*?)```\n")

// TestAuthoringGuideShowsTheExampleFiles keeps docs/policy-authoring.md and
// the worked example's files (which TestBuiltinCaseFiles runs) identical.
func TestAuthoringGuideShowsTheExampleFiles(t *testing.T) {
	doc, err := os.ReadFile(authoringGuide)
	if err != nil {
		t.Fatal(err)
	}
	blocks := fileBlock.FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 4 {
		t.Fatalf("the guide shows %d example files, want the rule, its tests, its cases and the configuration", len(blocks))
	}
	seen := map[string]bool{}
	for _, b := range blocks {
		name, content := b[1], b[2]
		seen[name] = true
		file, err := os.ReadFile(filepath.Join("../..", name))
		if err != nil {
			t.Errorf("the guide shows %s: %v", name, err)
			continue
		}
		if string(file) != content {
			t.Errorf("the guide's %s differs from the file", name)
		}
	}
	for _, name := range []string{"lb_internal.rego", "lb_internal_test.rego", "cases.yaml"} {
		if !seen["examples/lb-internal/"+name] {
			t.Errorf("the guide does not show examples/lb-internal/%s", name)
		}
	}
}

// TestExampleRegoIsClean holds the example to the built-in rules' standard:
// opa fmt clean and opa check --strict.
func TestExampleRegoIsClean(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(workedExample, "*.rego"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%v %v", files, err)
	}
	modules, err := policies.BuiltinModules()
	if err != nil {
		t.Fatal(err)
	}
	tests, err := policies.BuiltinTestModules()
	if err != nil {
		t.Fatal(err)
	}
	parsed := map[string]*ast.Module{}
	add := func(name, src string) {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
		if err != nil {
			t.Fatal(err)
		}
		parsed[name] = m
	}
	for name, src := range modules {
		add(name, src)
	}
	add("policies/lib/testing_test.rego", tests["policies/lib/testing_test.rego"])
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := format.SourceWithOpts(f, b, format.Opts{RegoVersion: ast.RegoV1})
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s is not opa fmt clean (go run ./hack/regofmt -w examples): %v", f, err)
		}
		add(f, string(b))
	}
	c := ast.NewCompiler().WithStrict(true).WithCapabilities(policies.Capabilities())
	c.Compile(parsed)
	for _, e := range c.Errors {
		t.Errorf("strict: %v", e)
	}
}
