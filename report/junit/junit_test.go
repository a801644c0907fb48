package junit

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
	"time"
)

func TestWriteCountsAndParses(t *testing.T) {
	pass := Testcase{Name: "host-network", Classname: "Pod default/a", Time: Seconds(1500 * time.Millisecond)}
	fail := Testcase{Name: "host-ports", Classname: "Pod default/a", Time: Seconds(250 * time.Millisecond)}
	fail.Fail("denied", "host-ports: hostPort 80 is not granted (spec.containers[0].ports[0].hostPort); fix: ask\nsecond line")
	errored := Testcase{Name: "build", Classname: "dir"}
	errored.Err("build", "x.rego:1: parse error")
	skipped := Testcase{Name: "review", Classname: "ConfigMap default/cm"}
	skipped.Skip("kind v1/ConfigMap is not reviewed")
	doc := &Testsuites{Name: "portreeve eval", Suites: []Testsuite{
		{Name: "Pod default/a", File: "a.yaml", Cases: []Testcase{pass, fail}, SystemOut: "warning: x",
			Properties: []Property{{Name: "source", Value: "a.yaml#1"}}},
		{Name: "dir", Cases: []Testcase{errored}},
		{Name: "ConfigMap default/cm", Cases: []Testcase{skipped}},
		{Name: "empty"},
	}}
	var b bytes.Buffer
	if err := doc.Write(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.HasPrefix(out, `<?xml version="1.0" encoding="UTF-8"?>`+"\n<testsuites ") {
		t.Errorf("no XML declaration or root:\n%s", out)
	}
	var got Testsuites
	if err := xml.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("does not parse: %v\n%s", err, out)
	}
	if got.Name != "portreeve eval" || got.Tests != 4 || got.Failures != 1 || got.Errors != 1 || got.Skipped != 1 ||
		time.Duration(got.Time) != 1750*time.Millisecond {
		t.Errorf("document counts %+v", got)
	}
	if len(got.Suites) != 4 {
		t.Fatalf("%d suites", len(got.Suites))
	}
	s := got.Suites[0]
	if s.Tests != 2 || s.Failures != 1 || s.Errors != 0 || s.Skipped != 0 || time.Duration(s.Time) != 1750*time.Millisecond ||
		s.File != "a.yaml" || s.SystemOut != "warning: x" || len(s.Properties) != 1 || s.Properties[0] != (Property{"source", "a.yaml#1"}) {
		t.Errorf("suite 0 %+v", s)
	}
	if c := s.Cases[1]; c.Failure == nil || c.Failure.Type != "denied" ||
		c.Failure.Message != "host-ports: hostPort 80 is not granted (spec.containers[0].ports[0].hostPort); fix: ask" ||
		!strings.HasSuffix(c.Failure.Text, "\nsecond line") || c.Error != nil || c.Skipped != nil {
		t.Errorf("failed case %+v", c)
	}
	if c := s.Cases[0]; c.Failure != nil || c.Error != nil || c.Skipped != nil || c.Name != "host-network" || c.Classname != "Pod default/a" {
		t.Errorf("passed case %+v", c)
	}
	if s := got.Suites[1]; s.Errors != 1 || s.Cases[0].Error == nil || s.Cases[0].Error.Message != "x.rego:1: parse error" {
		t.Errorf("errored suite %+v", s)
	}
	if s := got.Suites[2]; s.Skipped != 1 || s.Cases[0].Skipped == nil || s.Cases[0].Skipped.Message != "kind v1/ConfigMap is not reviewed" {
		t.Errorf("skipped suite %+v", s)
	}
	if s := got.Suites[3]; s.Tests != 0 || len(s.Cases) != 0 {
		t.Errorf("empty suite %+v", s)
	}
	// Writing again gives the same document: the counts are recomputed, not added to.
	var again bytes.Buffer
	if err := doc.Write(&again); err != nil {
		t.Fatal(err)
	}
	if again.String() != out {
		t.Errorf("a second write differs:\n%s\n%s", out, again.String())
	}
}

func TestWriteKeepsTheOutputParseable(t *testing.T) {
	c := Testcase{Name: "bell\a and <tags> & \"quotes\"", Classname: "bad \xff utf-8"}
	c.Fail("denied", "nul \x00 here\nand ]]> there")
	doc := &Testsuites{Suites: []Testsuite{{Name: "s\x1b[31m", Cases: []Testcase{c}, SystemOut: "esc \x1b"}}}
	var b bytes.Buffer
	if err := doc.Write(&b); err != nil {
		t.Fatal(err)
	}
	var got Testsuites
	if err := xml.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("does not parse: %v\n%s", err, b.String())
	}
	gc := got.Suites[0].Cases[0]
	if gc.Name != "bell\uFFFD and <tags> & \"quotes\"" || gc.Classname != "bad \uFFFD utf-8" ||
		gc.Failure.Text != "nul \uFFFD here\nand ]]> there" || got.Suites[0].Name != "s\uFFFD[31m" {
		t.Errorf("got %+v / %+v", got.Suites[0], gc)
	}
	// The caller's document is left as it was.
	if doc.Suites[0].Cases[0].Name != "bell\a and <tags> & \"quotes\"" {
		t.Error("Write changed the caller's cases")
	}
}

func TestSecondsAttr(t *testing.T) {
	var s Seconds
	for in, want := range map[string]time.Duration{"": 0, "0.001": time.Millisecond, "12.5": 12500 * time.Millisecond, "3": 3 * time.Second} {
		if err := s.UnmarshalXMLAttr(xml.Attr{Value: in}); err != nil || time.Duration(s) != want {
			t.Errorf("%q: %v %v", in, time.Duration(s), err)
		}
	}
	if err := s.UnmarshalXMLAttr(xml.Attr{Value: "soon"}); err == nil {
		t.Error("accepted a time that is not a number")
	}
}
