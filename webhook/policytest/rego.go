package policytest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/portreeve/portreeve/policies"
)

// regoTestTimeout bounds each Rego test.
const regoTestTimeout = 30 * time.Second

// testingLibrary is the built-in test helper package authors may import
// (data.portreeve.lib.testing): it is a _test.rego file, so it ships with
// the built-in tests rather than the modules.
const testingLibrary = "policies/lib/testing_test.rego"

var parserOptions = ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}

// regoSources returns every module the tests compile with: the built-in
// modules, the testing library, the custom modules and the tests.
func regoSources(modules, tests map[string]string) (map[string]string, error) {
	all, err := policies.BuiltinModules()
	if err != nil {
		return nil, err
	}
	builtinTests, err := policies.BuiltinTestModules()
	if err != nil {
		return nil, err
	}
	if src, ok := builtinTests[testingLibrary]; ok {
		all[testingLibrary] = src
	}
	for _, set := range []map[string]string{modules, tests} {
		for name, src := range set {
			all[name] = src
		}
	}
	return all, nil
}

func parseAll(sources map[string]string) (map[string]*ast.Module, error) {
	out := make(map[string]*ast.Module, len(sources))
	for name, src := range sources {
		m, err := ast.ParseModuleWithOpts(name, src, parserOptions)
		if err != nil {
			return nil, err
		}
		out[name] = m
	}
	return out, nil
}

func newRunner(parsed map[string]*ast.Module, modules map[string]string) *tester.Runner {
	ids := append(policies.RuleIDs(), policies.CustomRuleIDs(modules)...)
	store := inmem.NewFromObject(map[string]any{"portreeve": map[string]any{"config": policies.DefaultConfig().Data(ids)}})
	return tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithCapabilities(policies.Capabilities()).WithEnablePrintStatements(true)).
		SetDefaultRegoVersion(ast.RegoV1).
		SetStore(store).
		SetTimeout(regoTestTimeout).
		CapturePrintOutput(true).
		SetModules(parsed)
}

// runRegoTests runs the tests with OPA's test runner. data.portreeve.config
// holds the built-in configuration unless a test replaces it (with ... as).
func runRegoTests(ctx context.Context, modules, tests map[string]string, cov *cover.Cover) ([]Result, error) {
	sources, err := regoSources(modules, tests)
	if err != nil {
		return nil, err
	}
	parsed, err := parseAll(sources)
	if err != nil {
		return nil, err
	}
	runner := newRunner(parsed, modules)
	if cov != nil {
		runner.SetCoverageQueryTracer(cov)
	}
	ch, err := runner.RunTests(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("compile tests: %w", err)
	}
	var raw []*tester.Result
	for r := range ch {
		raw = append(raw, r)
	}
	slices.SortFunc(raw, func(a, b *tester.Result) int {
		return strings.Compare(a.Package+"."+a.Name, b.Package+"."+b.Name)
	})
	out := make([]Result, 0, len(raw))
	for _, r := range raw {
		res := Result{Name: strings.TrimPrefix(r.Package, "data.") + "." + r.Name, Type: "rego", Status: Pass, Duration: r.Duration}
		if r.Location != nil {
			res.File, res.Line = r.Location.File, r.Location.Row
		}
		switch {
		case r.Skip:
			res.Status, res.Message = Skip, "todo_test_: skipped"
		case r.Error != nil:
			res.Status, res.Message = Fail, "error: "+r.Error.Error()
		case r.Fail:
			res.Status = Fail
			res.Message = failureTrace(ctx, r, sources, modules)
		}
		if len(r.Output) > 0 && res.Status == Fail {
			res.Message += "\nprint output:\n" + indent(string(r.Output), "  ")
		}
		out = append(out, res)
	}
	return out, nil
}

// failureTrace reruns one failed test with tracing and returns OPA's
// account of it: the failing expression and its local variables.
func failureTrace(ctx context.Context, failed *tester.Result, sources, modules map[string]string) string {
	// Fresh parses: the first run's compiler rewrote the modules it was given.
	parsed, err := parseAll(sources)
	if err != nil {
		return "test failed"
	}
	filter := "^" + strings.ReplaceAll(failed.Package+"."+failed.Name, ".", `\.`) + "$"
	ch, err := newRunner(parsed, modules).EnableTracing(true).Filter(filter).RunTests(ctx, nil)
	if err != nil {
		return "test failed"
	}
	var buf bytes.Buffer
	rep := tester.PrettyReporter{Output: &buf, FailureLine: true, LocalVars: true}
	if err := rep.Report(ch); err != nil {
		return "test failed"
	}
	// Keep OPA's account of the failure (its indented lines); drop its
	// headings and summary, which repeat the test's name.
	var keep []string
	for l := range strings.SplitSeq(buf.String(), "\n") {
		if l = strings.TrimRight(l, " \t"); strings.HasPrefix(l, "  ") {
			keep = append(keep, strings.ReplaceAll(strings.TrimPrefix(l, "  "), "\t", "    "))
		}
	}
	if len(keep) == 0 {
		return "test failed"
	}
	return "test failed:\n" + strings.Join(keep, "\n")
}

// RuleCoverage is the line coverage of one rule's modules.
type RuleCoverage struct {
	Rule    string   `json:"rule"`
	Builtin bool     `json:"builtin"`
	Files   []string `json:"files"`
	// Percent of the rule's lines that some test or case evaluated.
	Percent         float64 `json:"percent"`
	CoveredLines    int     `json:"coveredLines"`
	NotCoveredLines int     `json:"notCoveredLines"`
	// NotCovered lists, per file, the lines no test reached.
	NotCovered []string `json:"notCovered,omitempty"`
}

// coverage sums the coverage of the modules of each rule package.
func coverage(cov *cover.Cover, modules map[string]string) ([]RuleCoverage, error) {
	sources, err := policies.BuiltinModules()
	if err != nil {
		return nil, err
	}
	for name, src := range modules {
		sources[name] = src
	}
	parsed, err := parseAll(sources)
	if err != nil {
		return nil, err
	}
	byRule := map[string]*RuleCoverage{}
	rulesOf := map[string]string{}
	files := map[string]*ast.Module{}
	for name, m := range parsed {
		id, ok := ruleIDOf(m)
		if !ok {
			continue
		}
		_, custom := modules[name]
		if len(modules) > 0 && !custom {
			continue // a directory of custom rules reports their coverage only
		}
		files[name] = m
		rulesOf[name] = id
		if byRule[id] == nil {
			byRule[id] = &RuleCoverage{Rule: id, Builtin: !custom}
		}
	}
	report := cov.Report(files)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		rc := byRule[rulesOf[name]]
		rc.Files = append(rc.Files, name)
		fr := report.Files[name]
		if fr == nil {
			continue
		}
		rc.CoveredLines += fr.CoveredLines
		rc.NotCoveredLines += fr.NotCoveredLines
		var rows []string
		for _, r := range fr.NotCovered {
			rng := fmt.Sprint(r.Start.Row)
			if r.End.Row != r.Start.Row {
				rng += fmt.Sprintf("-%d", r.End.Row)
			}
			if !slices.Contains(rows, rng) {
				rows = append(rows, rng)
			}
		}
		if len(rows) > 0 {
			rc.NotCovered = append(rc.NotCovered, name+": lines "+strings.Join(rows, ", "))
		}
	}
	out := make([]RuleCoverage, 0, len(byRule))
	for _, rc := range byRule {
		if total := rc.CoveredLines + rc.NotCoveredLines; total > 0 {
			rc.Percent = 100 * float64(rc.CoveredLines) / float64(total)
		}
		out = append(out, *rc)
	}
	slices.SortFunc(out, func(a, b RuleCoverage) int { return strings.Compare(a.Rule, b.Rule) })
	return out, nil
}

// ruleIDOf returns the rule id of a rule package (portreeve.rules.host_ports -> host-ports).
func ruleIDOf(m *ast.Module) (string, bool) {
	rest, ok := strings.CutPrefix(m.Package.Path.String(), "data.portreeve.rules.")
	if !ok || strings.Contains(rest, ".") || strings.HasSuffix(rest, "_test") {
		return "", false
	}
	return strings.ReplaceAll(rest, "_", "-"), true
}
