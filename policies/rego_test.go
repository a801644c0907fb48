package policies

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/tester"
)

// regoParserOptions are the options the engine parses modules with.
var regoParserOptions = ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}

// minRuleTests is how many test_ rules each rule's _test.rego must hold at least.
const minRuleTests = 5

// regoSources returns every shipped .rego file (rules, lib, main and tests) by file name.
func regoSources(t *testing.T) (modules, tests map[string]string) {
	t.Helper()
	modules, err := BuiltinModules()
	if err != nil {
		t.Fatalf("BuiltinModules: %v", err)
	}
	tests, err = BuiltinTestModules()
	if err != nil {
		t.Fatalf("BuiltinTestModules: %v", err)
	}
	// embed.go embeds main.rego, lib/*.rego and rules/*.rego only, so
	// main_test.rego is read from the package directory.
	onDisk, err := readModules(os.DirFS("."), true)
	if err != nil {
		t.Fatalf("read *_test.rego files: %v", err)
	}
	for name, src := range onDisk {
		if _, ok := tests[name]; !ok {
			tests[name] = src
		}
	}
	if len(tests) == 0 {
		t.Fatal("BuiltinTestModules returned no *_test.rego files")
	}
	return modules, tests
}

// parseRego parses every source with the engine's parser options.
func parseRego(t *testing.T, sources ...map[string]string) map[string]*ast.Module {
	t.Helper()
	parsed := map[string]*ast.Module{}
	for _, src := range sources {
		for _, name := range sortedKeys(src) {
			m, err := ast.ParseModuleWithOpts(name, src[name], regoParserOptions)
			if err != nil {
				t.Fatalf("parse %s: %v", name, err)
			}
			parsed[name] = m
		}
	}
	return parsed
}

// newRegoRunner returns a test runner compiling with the engine's capabilities.
func newRegoRunner(modules map[string]*ast.Module) *tester.Runner {
	return tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithCapabilities(Capabilities())).
		SetDefaultRegoVersion(ast.RegoV1).
		SetTimeout(time.Minute).
		SetModules(modules)
}

// TestRego runs the Rego unit tests (policies/**/*_test.rego) with OPA's test
// runner and reports each one as a subtest. todo_test_ rules are reported as
// skipped: each marks a known bug in a rule.
func TestRego(t *testing.T) {
	modules, tests := regoSources(t)
	parsed := parseRego(t, modules, tests)

	ctx := context.Background()
	ch, err := newRegoRunner(parsed).RunTests(ctx, nil)
	if err != nil {
		t.Fatalf("compile rego tests: %v", err)
	}
	var results []*tester.Result
	for r := range ch {
		results = append(results, r)
	}
	if len(results) == 0 {
		t.Fatal("the runner found no Rego tests")
	}
	slices.SortFunc(results, func(a, b *tester.Result) int {
		return strings.Compare(a.Package+"."+a.Name, b.Package+"."+b.Name)
	})

	for _, r := range results {
		name := strings.TrimPrefix(r.Package, "data.") + "." + r.Name
		t.Run(name, func(t *testing.T) {
			switch {
			case r.Skip:
				t.Skipf("%s: todo (known bug, see the comment above the test)", regoTestLocation(r))
			case r.Error != nil:
				t.Fatalf("%s: error: %v", regoTestLocation(r), r.Error)
			case r.Fail:
				t.Fatalf("%s: failed\n%s", regoTestLocation(r), failureTrace(ctx, r, modules, tests))
			}
		})
	}
}

func regoTestLocation(r *tester.Result) string {
	if r.Location == nil {
		return r.Package + "." + r.Name
	}
	return fmt.Sprintf("%s:%d", r.Location.File, r.Location.Row)
}

// failureTrace reruns one failed test with tracing on and returns OPA's
// report: the failing expression with its local variables, and with -v the
// whole evaluation trace too.
func failureTrace(ctx context.Context, failed *tester.Result, sources ...map[string]string) string {
	// Fresh parses: the first run's compiler has rewritten the modules it was given.
	fresh := map[string]*ast.Module{}
	for _, src := range sources {
		for name, text := range src {
			mod, err := ast.ParseModuleWithOpts(name, text, regoParserOptions)
			if err != nil {
				return fmt.Sprintf("(no trace: parse %s: %v)", name, err)
			}
			fresh[name] = mod
		}
	}
	filter := "^" + strings.ReplaceAll(failed.Package+"."+failed.Name, ".", `\.`) + "$"
	ch, err := newRegoRunner(fresh).EnableTracing(true).Filter(filter).RunTests(ctx, nil)
	if err != nil {
		return fmt.Sprintf("(no trace: %v)", err)
	}
	var buf bytes.Buffer
	rep := tester.PrettyReporter{Output: &buf, Verbose: testing.Verbose(), FailureLine: true, LocalVars: true}
	if err := rep.Report(ch); err != nil {
		return fmt.Sprintf("(no trace: %v)", err)
	}
	lines := strings.Split(buf.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

// TestRuleTests checks that every rule package in rules/ has a test file next
// to it, in package <rule package>_test, with at least minRuleTests tests.
func TestRuleTests(t *testing.T) {
	modules, tests := regoSources(t)
	parsedTests := parseRego(t, tests)
	rules := 0
	for _, name := range sortedKeys(modules) {
		if path.Dir(name) != "policies/rules" {
			continue
		}
		rules++
		m, err := ast.ParseModuleWithOpts(name, modules[name], regoParserOptions)
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		testName := strings.TrimSuffix(name, ".rego") + "_test.rego"
		t.Run(path.Base(name), func(t *testing.T) {
			tm, ok := parsedTests[testName]
			if !ok {
				t.Fatalf("%s has no test file %s", name, testName)
			}
			if want := m.Package.Path.String() + "_test"; tm.Package.Path.String() != want {
				t.Errorf("%s: package %s, want %s", testName, tm.Package.Path, want)
			}
			n := 0
			for _, r := range tm.Rules {
				if strings.HasPrefix(r.Head.Ref().String(), tester.TestPrefix) {
					n++
				}
			}
			if n < minRuleTests {
				t.Errorf("%s holds %d tests, want at least %d", testName, n, minRuleTests)
			}
			imported := false
			for _, imp := range tm.Imports {
				if imp.Path.String() == m.Package.Path.String() {
					imported = true
				}
			}
			if !imported {
				t.Errorf("%s does not import the package under test %s", testName, m.Package.Path)
			}
		})
	}
	if rules == 0 {
		t.Fatal("found no rule modules under policies/rules")
	}
}

// TestRegoFormat fails when `opa fmt` would change a .rego file.
func TestRegoFormat(t *testing.T) {
	modules, tests := regoSources(t)
	for _, src := range []map[string]string{modules, tests} {
		for _, name := range sortedKeys(src) {
			t.Run(name, func(t *testing.T) {
				got, err := format.SourceWithOpts(name, []byte(src[name]), format.Opts{RegoVersion: ast.RegoV1})
				if err != nil {
					t.Fatalf("format %s: %v", name, err)
				}
				if !bytes.Equal(got, []byte(src[name])) {
					t.Errorf("%s is not opa fmt clean (fix: go run ./hack/regofmt -w policies):\n%s",
						name, regoFirstDiff(src[name], string(got)))
				}
			})
		}
	}
}

// regoFirstDiff shows the first line where want and got differ, with a little context.
func regoFirstDiff(have, want string) string {
	a, b := strings.Split(have, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(a) || i < len(b); i++ {
		var la, lb string
		if i < len(a) {
			la = a[i]
		}
		if i < len(b) {
			lb = b[i]
		}
		if la != lb {
			return fmt.Sprintf("line %d:\n  have: %q\n  want: %q", i+1, la, lb)
		}
	}
	return "(only trailing whitespace differs)"
}

// TestRegoStrict compiles every module, tests included, in strict mode
// (`opa check --strict`): unused variables, arguments and imports, shadowed
// input/data and deprecated builtins are errors.
func TestRegoStrict(t *testing.T) {
	modules, tests := regoSources(t)
	parsed := parseRego(t, modules, tests)
	c := ast.NewCompiler().WithStrict(true).WithCapabilities(Capabilities())
	c.Compile(parsed)
	for _, e := range c.Errors {
		t.Errorf("strict: %v", e)
	}
}
