package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/report/junit"
	"github.com/portreeve/portreeve/webhook/offline"
	"github.com/portreeve/portreeve/webhook/policytest"
)

// evalJUnit is `portreeve eval -o junit`: a test suite per object, and in it
// a test case per rule the engine evaluates. A rule that denied the object
// fails its case (every denial of the rule in the failure's text); a rule in
// mode off is skipped; the rule's warnings, dry-run findings and rewrites
// are its case's output. A denial by something that is not a rule of the
// engine (a limit) fails a case of its own. An object Portreeve does not
// review is one skipped case, "review".
func evalJUnit(reports []*offline.Report, rules []policies.RuleInfo) *junit.Testsuites {
	doc := &junit.Testsuites{Name: "portreeve eval"}
	for _, r := range reports {
		object := fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name)
		suite := junit.Testsuite{Name: object, Properties: []junit.Property{
			{Name: "kind", Value: r.Kind}, {Name: "namespace", Value: r.Namespace}, {Name: "name", Value: r.Name},
			{Name: "verdict", Value: r.Verdict},
		}}
		if r.Source != "" {
			suite.Name = object + " (" + r.Source + ")"
			suite.Properties = append(suite.Properties, junit.Property{Name: "source", Value: r.Source})
		}
		file := sourceFile(r.Source)
		if r.Skipped != "" {
			c := junit.Testcase{Name: "review", Classname: suite.Name, File: file}
			c.Skip(r.Skipped)
			suite.Cases = append(suite.Cases, c)
			doc.Suites = append(doc.Suites, suite)
			continue
		}
		attributed := make([]bool, len(r.Warnings))
		caseOf := func(id string, mode policies.Mode) junit.Testcase {
			c := junit.Testcase{Name: id, Classname: suite.Name, File: file}
			var denials, out []string
			for _, v := range r.Violations {
				if v.Rule == id {
					denials = append(denials, v.Message)
				}
			}
			for i, w := range r.Warnings {
				if strings.HasPrefix(w, id+": ") || strings.Contains(w, "("+id+": ") {
					out = append(out, "warning: "+w)
					attributed[i] = true
				}
			}
			for _, d := range r.DryRun {
				if d.Rule == id {
					out = append(out, "dryrun: "+d.Message)
				}
			}
			switch {
			case len(denials) > 0:
				c.Fail("denied", strings.Join(denials, "\n"))
			case mode == policies.ModeOff:
				c.Skip("mode off")
			}
			c.SystemOut = strings.Join(out, "\n")
			return c
		}
		judged := map[string]bool{}
		for _, rule := range rules {
			judged[rule.ID] = true
			suite.Cases = append(suite.Cases, caseOf(rule.ID, rule.Mode))
		}
		for _, v := range r.Violations {
			if !judged[v.Rule] {
				judged[v.Rule] = true
				suite.Cases = append(suite.Cases, caseOf(v.Rule, ""))
			}
		}
		var rest []string
		for i, w := range r.Warnings {
			if !attributed[i] {
				rest = append(rest, "warning: "+w)
			}
		}
		suite.SystemOut = strings.Join(rest, "\n")
		doc.Suites = append(doc.Suites, suite)
	}
	return doc
}

// sourceFile is the file of a source "file#document" ("" for standard input).
func sourceFile(source string) string {
	file := source
	if i := strings.LastIndex(source, "#"); i >= 0 {
		file = source[:i]
	}
	if file == "<stdin>" {
		return ""
	}
	return filepath.ToSlash(file)
}

// testJUnit is `portreeve test -o junit`: a test suite per DIR, a test case
// per Rego test and per case object, failed, skipped or passed as in the text
// output. A DIR that does not build is one errored case, "build". The rules'
// coverage, when asked for, is in the suite's properties.
func testJUnit(reports []*policytest.Report) *junit.Testsuites {
	doc := &junit.Testsuites{Name: "portreeve test"}
	for _, rep := range reports {
		suite := junit.Testsuite{Name: rep.Dir, Time: junit.Seconds(rep.Duration)}
		if rep.BuildError != "" {
			c := junit.Testcase{Name: "build", Classname: rep.Dir}
			c.Err("build", rep.BuildError)
			suite.Cases = append(suite.Cases, c)
		}
		for _, r := range rep.Results {
			c := junit.Testcase{Name: r.Name, Classname: rep.Dir + " " + r.Type, Time: junit.Seconds(r.Duration),
				File: filepath.ToSlash(r.File), Line: r.Line}
			switch r.Status {
			case policytest.Fail:
				c.Fail(r.Type, r.Message)
				// The attribute is the first line that says what went wrong, not where the object came from.
				for _, l := range strings.Split(r.Message, "\n") {
					if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "object from ") {
						c.Failure.Message = l
						break
					}
				}
			case policytest.Skip:
				c.Skip(r.Message)
			}
			suite.Cases = append(suite.Cases, c)
		}
		for _, cov := range rep.Coverage {
			suite.Properties = append(suite.Properties, junit.Property{
				Name:  "coverage." + cov.Rule,
				Value: fmt.Sprintf("%.1f%% (%d/%d lines)", cov.Percent, cov.CoveredLines, cov.CoveredLines+cov.NotCoveredLines),
			})
		}
		doc.Suites = append(doc.Suites, suite)
	}
	return doc
}
