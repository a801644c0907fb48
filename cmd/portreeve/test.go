package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portreeve/portreeve/webhook/policytest"
)

func newTestCommand() *cobra.Command {
	var (
		output   string
		verbose  bool
		coverage bool
		df       decisionFlags
	)
	cmd := &cobra.Command{
		Use:   "test [DIR...]",
		Short: "Run policy authors' Rego unit tests and case files (default DIR: .)",
		Long: "Loads the *.rego files under each DIR (and its subfolders) as serve --policy-dir loads its folder, with the built-in\n" +
			"rules and helper library (data.portreeve.lib.*, and data.portreeve.lib.testing for tests), then runs:\n" +
			"  - the Rego unit tests (test_* rules in *_test.rego files) with OPA's test runner;\n" +
			"  - the case files (YAML documents with kind: PolicyTest): each object is reviewed as the mutating and\n" +
			"    then the validating webhook would, and the outcome is compared with the case's expectations.\n" +
			"The flags that shape a decision (--config, --policy-dir, --node-port-range, -n, --namespace-labels, --as,\n" +
			"--as-group) apply to the cases whose case file does not say; --policy-dir rules load with each DIR's.\n" +
			"Output follows go test: failures (every test with -v), then ok or FAIL per DIR.\n" +
			"Exit status: 0 when everything passes, 1 when a test fails or a DIR does not load, 2 on bad usage.",
		RunE: func(cmd *cobra.Command, dirs []string) error {
			if output != "text" && output != "json" && output != "junit" {
				return &exitError{code: 2, err: fmt.Errorf("-o must be text, json or junit, got %q", output)}
			}
			if len(dirs) == 0 {
				dirs = []string{"."}
			}
			modules, defaults, err := df.caseDefaults()
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			opts := policytest.Options{Coverage: coverage, Modules: modules, Defaults: defaults}
			reports := make([]*policytest.Report, 0, len(dirs))
			passed := true
			for _, dir := range dirs {
				rep := policytest.Run(cmd.Context(), dir, opts)
				reports = append(reports, rep)
				passed = passed && rep.Passed()
				if output == "text" {
					printTestReport(cmd.OutOrStdout(), rep, verbose)
				}
			}
			if output == "junit" {
				if err := testJUnit(reports).Write(cmd.OutOrStdout()); err != nil {
					return &exitError{code: 2, err: err}
				}
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(struct {
					Passed bool                 `json:"passed"`
					Dirs   []*policytest.Report `json:"dirs"`
				}{passed, reports}); err != nil {
					return &exitError{code: 2, err: err}
				}
			}
			if !passed {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or junit (a test suite per DIR, a test case per test)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list every test, not only the failures")
	cmd.Flags().BoolVar(&coverage, "coverage", false, "report the line coverage of every rule (Rego tests and cases together)")
	df.addFlags(cmd.Flags(), forCases, policytest.DefaultUser)
	return cmd
}

// printTestReport prints one directory's results in the style of go test.
func printTestReport(w io.Writer, rep *policytest.Report, verbose bool) {
	var b strings.Builder
	if rep.BuildError != "" {
		fmt.Fprintf(&b, "# %s\n%s\nFAIL\t%s [build failed]\n", rep.Dir, rep.BuildError, rep.Dir)
		_, _ = io.WriteString(w, b.String())
		return
	}
	for _, r := range rep.Results {
		if verbose {
			fmt.Fprintf(&b, "=== RUN   %s\n", r.Name)
		}
		if r.Status == policytest.Pass && !verbose || r.Status == policytest.Skip && !verbose {
			continue
		}
		fmt.Fprintf(&b, "--- %s: %s (%.2fs)\n", strings.ToUpper(string(r.Status)), r.Name, r.Duration.Seconds())
		if r.Status == policytest.Pass {
			continue
		}
		where := r.File
		if r.Line > 0 {
			where = fmt.Sprintf("%s:%d", r.File, r.Line)
		}
		fmt.Fprintf(&b, "    %s:\n", where)
		for l := range strings.SplitSeq(strings.TrimRight(r.Message, "\n"), "\n") {
			fmt.Fprintf(&b, "        %s\n", l)
		}
	}
	coverage := ""
	if len(rep.Coverage) > 0 {
		covered, total := 0, 0
		for _, c := range rep.Coverage {
			covered += c.CoveredLines
			total += c.CoveredLines + c.NotCoveredLines
		}
		if total > 0 {
			coverage = fmt.Sprintf("\tcoverage: %.1f%% of rule lines", 100*float64(covered)/float64(total))
		}
	}
	if rep.Passed() {
		if verbose {
			b.WriteString("PASS\n")
		}
		fmt.Fprintf(&b, "ok  \t%s\t%.3fs%s\n", rep.Dir, rep.Duration.Seconds(), coverage)
	} else {
		fmt.Fprintf(&b, "FAIL\nFAIL\t%s\t%.3fs%s\n", rep.Dir, rep.Duration.Seconds(), coverage)
	}
	for _, c := range rep.Coverage {
		kind := "custom  "
		if c.Builtin {
			kind = "built-in"
		}
		fmt.Fprintf(&b, "    %-24s %6.1f%%  %7s lines  %s  %s\n", c.Rule, c.Percent,
			fmt.Sprintf("%d/%d", c.CoveredLines, c.CoveredLines+c.NotCoveredLines), kind, strings.Join(c.Files, ", "))
		if verbose {
			for _, nc := range c.NotCovered {
				fmt.Fprintf(&b, "        not covered: %s\n", nc)
			}
		}
	}
	_, _ = io.WriteString(w, b.String())
}
