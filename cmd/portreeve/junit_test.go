package main

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/portreeve/portreeve/policies"
)

// junitDoc is JUnit XML as CI systems read it, written out here rather than
// taken from report/junit, so that the output is checked against the format
// and not against the writer's own struct tags.
type junitDoc struct {
	XMLName  xml.Name `xml:"testsuites"`
	Name     string   `xml:"name,attr"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Skipped  int      `xml:"skipped,attr"`
	Suites   []struct {
		Name       string `xml:"name,attr"`
		Tests      int    `xml:"tests,attr"`
		Failures   int    `xml:"failures,attr"`
		Errors     int    `xml:"errors,attr"`
		Skipped    int    `xml:"skipped,attr"`
		Time       string `xml:"time,attr"`
		Properties []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"properties>property"`
		Cases     []junitCase `xml:"testcase"`
		SystemOut string      `xml:"system-out"`
	} `xml:"testsuite"`
}

type junitCase struct {
	Name      string `xml:"name,attr"`
	Classname string `xml:"classname,attr"`
	Time      string `xml:"time,attr"`
	File      string `xml:"file,attr"`
	Line      int    `xml:"line,attr"`
	Failure   *struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr"`
		Text    string `xml:",chardata"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"error"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
	SystemOut string `xml:"system-out"`
}

func parseJUnit(t *testing.T, out string) *junitDoc {
	t.Helper()
	if !strings.HasPrefix(out, "<?xml ") {
		t.Fatalf("no XML declaration:\n%s", out)
	}
	var doc junitDoc
	if err := xml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JUnit XML: %v\n%s", err, out)
	}
	// The counts agree with the cases.
	tests, failures, errors, skipped := 0, 0, 0, 0
	for _, s := range doc.Suites {
		f, e, sk := 0, 0, 0
		for _, c := range s.Cases {
			switch {
			case c.Failure != nil:
				f++
			case c.Error != nil:
				e++
			case c.Skipped != nil:
				sk++
			}
		}
		if s.Tests != len(s.Cases) || s.Failures != f || s.Errors != e || s.Skipped != sk {
			t.Errorf("suite %q counts tests=%d failures=%d errors=%d skipped=%d, its cases %d/%d/%d/%d",
				s.Name, s.Tests, s.Failures, s.Errors, s.Skipped, len(s.Cases), f, e, sk)
		}
		tests, failures, errors, skipped = tests+len(s.Cases), failures+f, errors+e, skipped+sk
	}
	if doc.Tests != tests || doc.Failures != failures || doc.Errors != errors || doc.Skipped != skipped {
		t.Errorf("document counts %d/%d/%d/%d, its cases %d/%d/%d/%d", doc.Tests, doc.Failures, doc.Errors, doc.Skipped, tests, failures, errors, skipped)
	}
	return &doc
}

func ruleIDs(t *testing.T) []string {
	t.Helper()
	e, err := policies.New(t.Context(), policies.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range e.Rules() {
		ids = append(ids, r.ID)
	}
	return ids
}

func TestEvalJUnit(t *testing.T) {
	ids := ruleIDs(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "manifests.yaml")
	if err := os.WriteFile(file, []byte(evalPlainPod+"---\n"+evalHostNetworkPod+"---\n"+evalList), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runSplit(t, "", "eval", "-f", file, "-o", "junit")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (a denial)\n%s\n%s", code, stdout, stderr)
	}
	doc := parseJUnit(t, stdout)
	// Objects: plain Pod (allowed), hostNetwork Pod (denied), ConfigMap (not reviewed), NodePort Service (denied).
	if doc.Name != "portreeve eval" || len(doc.Suites) != 4 {
		t.Fatalf("document %q with %d suites:\n%s", doc.Name, len(doc.Suites), stdout)
	}
	wantNames := []string{"Pod default/plain (" + file + "#1)", "Pod default/hn (" + file + "#2)",
		"ConfigMap default/cm (" + file + "#3)", "Service default/np (" + file + "#3)"} // the items of a List share its document
	for i, s := range doc.Suites {
		if s.Name != wantNames[i] {
			t.Errorf("suite %d named %q, want %q", i, s.Name, wantNames[i])
		}
	}
	cases := func(i int) map[string]junitCase {
		out := map[string]junitCase{}
		for _, c := range doc.Suites[i].Cases {
			if c.Classname != doc.Suites[i].Name || c.File != filepath.ToSlash(file) {
				t.Errorf("case %q: classname %q file %q", c.Name, c.Classname, c.File)
			}
			out[c.Name] = c
		}
		return out
	}
	// One case per rule, for each reviewed object.
	for _, i := range []int{0, 1, 3} {
		var names []string
		for _, c := range doc.Suites[i].Cases {
			names = append(names, c.Name)
		}
		if !slices.Equal(names, ids) {
			t.Errorf("suite %q has cases %v, want one per rule %v", doc.Suites[i].Name, names, ids)
		}
	}
	if s := doc.Suites[0]; s.Failures != 0 || s.Skipped != 0 {
		t.Errorf("the allowed Pod: %+v", s)
	}
	hn := cases(1)
	if f := hn["host-network"].Failure; f == nil || f.Type != "denied" || !strings.HasPrefix(f.Message, "host-network: ") ||
		!strings.Contains(f.Text, "(spec.hostNetwork)") {
		t.Errorf("host-network of the hostNetwork Pod: %+v", hn["host-network"])
	}
	if doc.Suites[1].Failures != 1 {
		t.Errorf("the hostNetwork Pod fails %d rules, want host-network alone", doc.Suites[1].Failures)
	}
	if f := cases(3)["node-ports"].Failure; f == nil || !strings.HasPrefix(f.Message, "node-ports: ") {
		t.Errorf("node-ports of the NodePort Service: %+v", cases(3)["node-ports"])
	}
	cm := doc.Suites[2]
	if len(cm.Cases) != 1 || cm.Cases[0].Name != "review" || cm.Cases[0].Skipped == nil || !strings.Contains(cm.Cases[0].Skipped.Message, "is not reviewed") {
		t.Errorf("the ConfigMap: %+v", cm)
	}
	props := map[string]string{}
	for _, p := range doc.Suites[1].Properties {
		props[p.Name] = p.Value
	}
	if props["verdict"] != "DENIED" || props["kind"] != "Pod" || props["name"] != "hn" || props["source"] != file+"#2" {
		t.Errorf("properties %v", props)
	}
	if doc.Failures != 2 || doc.Skipped != 1 || doc.Tests != 3*len(ids)+1 {
		t.Errorf("document: %d tests, %d failures, %d skipped", doc.Tests, doc.Failures, doc.Skipped)
	}
}

func TestEvalJUnitModes(t *testing.T) {
	// host-network warns, host-ports is off: a warning is its rule's output, a rule that is off is skipped.
	config := writeTemp(t, "modes.yaml", `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  host-network: {mode: warn}
  host-ports: {mode: "off"}
`)
	stdout, stderr, code := runSplit(t, evalHostNetworkPod, "eval", "-f", "-", "--config", config, "-o", "junit")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	doc := parseJUnit(t, stdout)
	if len(doc.Suites) != 1 || doc.Suites[0].Name != "Pod default/hn (<stdin>#1)" || doc.Failures != 0 {
		t.Fatalf("%+v", doc)
	}
	byName := map[string]junitCase{}
	for _, c := range doc.Suites[0].Cases {
		byName[c.Name] = c
		if c.File != "" {
			t.Errorf("case %q names file %q for standard input", c.Name, c.File)
		}
	}
	if c := byName["host-network"]; c.Failure != nil || c.Skipped != nil || !strings.HasPrefix(c.SystemOut, "warning: host-network: ") {
		t.Errorf("host-network: %+v", c)
	}
	if c := byName["host-ports"]; c.Skipped == nil || c.Skipped.Message != "mode off" {
		t.Errorf("host-ports: %+v", c)
	}
	if doc.Suites[0].SystemOut != "" {
		t.Errorf("warnings left unattributed: %q", doc.Suites[0].SystemOut)
	}
}

func TestTestJUnit(t *testing.T) {
	// The worked example, with one expectation changed (as in TestTestCommandFailures), and a DIR that does not build.
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(workedExample, "cases.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(b), "  - name: an internal LoadBalancer is allowed\n    file: internal-service.yaml\n    expect:\n      allowed: true",
		"  - name: an internal LoadBalancer is allowed\n    file: internal-service.yaml\n    expect:\n      allowed: false", 1)
	if src == string(b) {
		t.Fatal("the worked example's cases changed: update this test")
	}
	for _, name := range []string{"lb_internal.rego", "lb_internal_test.rego", "public-service.yaml", "internal-service.yaml"} {
		copyFile(t, filepath.Join(workedExample, name), filepath.Join(dir, name))
	}
	if err := os.WriteFile(filepath.Join(dir, "cases.yaml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "x.rego"), []byte("package portreeve.rules.host_network\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, code := runSplit(t, "", "test", "-o", "junit", "--coverage", dir, bad)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, stdout, stderr)
	}
	doc := parseJUnit(t, stdout)
	if doc.Name != "portreeve test" || len(doc.Suites) != 2 || doc.Suites[0].Name != dir || doc.Suites[1].Name != bad {
		t.Fatalf("suites %+v", doc.Suites)
	}
	s := doc.Suites[0]
	var failed []junitCase
	rego, cases := 0, 0
	for _, c := range s.Cases {
		switch c.Classname {
		case dir + " rego":
			rego++
		case dir + " case":
			cases++
		default:
			t.Errorf("case %q classname %q", c.Name, c.Classname)
		}
		if c.Failure != nil {
			failed = append(failed, c)
		}
	}
	if rego == 0 || cases < 2 {
		t.Errorf("%d Rego tests and %d cases in %+v", rego, cases, s.Cases)
	}
	if len(failed) != 1 {
		t.Fatalf("failed cases %+v", failed)
	}
	f := failed[0]
	if f.Name != "cases/an internal LoadBalancer is allowed" || f.File != filepath.ToSlash(filepath.Join(dir, "cases.yaml")) || f.Line != 23 ||
		f.Failure.Message != "allowed: want false, got true" || !strings.Contains(f.Failure.Text, "got: ALLOWED Service team-a/shop-internal") {
		t.Errorf("failed case %+v %+v", f, f.Failure)
	}
	coverage := ""
	for _, p := range s.Properties {
		if p.Name == "coverage.lb-internal" {
			coverage = p.Value
		}
	}
	if !strings.HasSuffix(coverage, " lines)") {
		t.Errorf("properties %+v", s.Properties)
	}
	// A DIR that does not build is one errored case.
	if b := doc.Suites[1]; len(b.Cases) != 1 || b.Cases[0].Name != "build" || b.Cases[0].Error == nil ||
		!strings.Contains(b.Cases[0].Error.Message, "shadows") || b.Errors != 1 {
		t.Errorf("the DIR that does not build: %+v", b)
	}
	if doc.Failures != 1 || doc.Errors != 1 {
		t.Errorf("document: %d failures, %d errors", doc.Failures, doc.Errors)
	}

	// The built-in cases pass: no failure, no error, as many cases as the text output runs.
	stdout, _, code = runSplit(t, "", "test", "-o", "junit", builtinCases)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stdout)
	}
	if doc := parseJUnit(t, stdout); doc.Failures != 0 || doc.Errors != 0 || doc.Tests < 20 {
		t.Errorf("built-in cases: %d tests, %d failures, %d errors", doc.Tests, doc.Failures, doc.Errors)
	}
	if _, _, code := runSplit(t, "", "test", "-o", "xml", builtinCases); code != 2 {
		t.Errorf("-o xml: exit %d, want 2", code)
	}
}
