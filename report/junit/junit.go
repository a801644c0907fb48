// Package junit writes test results as JUnit XML, the format CI systems
// (GitLab, Jenkins, GitHub Actions reporters, Azure Pipelines, CircleCI)
// read natively: <testsuites> holding <testsuite>s holding <testcase>s, each
// passed, failed (<failure>), errored (<error>) or skipped (<skipped>).
//
// The counts of every suite and of the whole document are computed from the
// cases when the document is written, so they always agree.
package junit

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Testsuites is the document.
type Testsuites struct {
	XMLName  xml.Name    `xml:"testsuites"`
	Name     string      `xml:"name,attr,omitempty"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     Seconds     `xml:"time,attr"`
	Suites   []Testsuite `xml:"testsuite"`
}

// Testsuite groups test cases: the rules judged for one object, or the
// tests of one directory.
type Testsuite struct {
	Name       string     `xml:"name,attr"`
	Tests      int        `xml:"tests,attr"`
	Failures   int        `xml:"failures,attr"`
	Errors     int        `xml:"errors,attr"`
	Skipped    int        `xml:"skipped,attr"`
	Time       Seconds    `xml:"time,attr"`
	File       string     `xml:"file,attr,omitempty"`
	Properties []Property `xml:"properties>property,omitempty"`
	Cases      []Testcase `xml:"testcase"`
	SystemOut  string     `xml:"system-out,omitempty"`
}

// Property is a name and a value attached to a suite.
type Property struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// Testcase is one test. At most one of Failure, Error and Skipped is set;
// none means it passed.
type Testcase struct {
	Name      string  `xml:"name,attr"`
	Classname string  `xml:"classname,attr"`
	Time      Seconds `xml:"time,attr"`
	File      string  `xml:"file,attr,omitempty"`
	Line      int     `xml:"line,attr,omitempty"`
	Failure   *Result `xml:"failure,omitempty"`
	Error     *Result `xml:"error,omitempty"`
	Skipped   *Result `xml:"skipped,omitempty"`
	SystemOut string  `xml:"system-out,omitempty"`
}

// Result is a failure, an error or a skip: a one-line message, its type
// and the full text.
type Result struct {
	Message string `xml:"message,attr,omitempty"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// Seconds is a duration written as seconds with millisecond precision.
type Seconds time.Duration

// MarshalXMLAttr writes the duration as JUnit's time attribute.
func (s Seconds) MarshalXMLAttr(name xml.Name) (xml.Attr, error) {
	return xml.Attr{Name: name, Value: fmt.Sprintf("%.3f", time.Duration(s).Seconds())}, nil
}

// UnmarshalXMLAttr reads a time attribute (seconds, possibly fractional).
func (s *Seconds) UnmarshalXMLAttr(attr xml.Attr) error {
	if attr.Value == "" {
		*s = 0
		return nil
	}
	var f float64
	if _, err := fmt.Sscanf(attr.Value, "%g", &f); err != nil {
		return fmt.Errorf("time %q: %w", attr.Value, err)
	}
	*s = Seconds(time.Duration(f * float64(time.Second)))
	return nil
}

// Fail marks the case failed with a message (its first line is the
// attribute, the whole of it the text).
func (c *Testcase) Fail(typ, message string) {
	c.Failure = &Result{Message: firstLine(message), Type: typ, Text: message}
}

// Err marks the case errored: it could not be run.
func (c *Testcase) Err(typ, message string) {
	c.Error = &Result{Message: firstLine(message), Type: typ, Text: message}
}

// Skip marks the case skipped.
func (c *Testcase) Skip(message string) {
	c.Skipped = &Result{Message: firstLine(message)}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// count fills in the counts and times of every suite and of the document
// from their cases. A suite's time is the sum of its cases' unless set.
func (d *Testsuites) count() {
	d.Tests, d.Failures, d.Errors, d.Skipped = 0, 0, 0, 0
	var total time.Duration
	for i := range d.Suites {
		s := &d.Suites[i]
		s.Tests, s.Failures, s.Errors, s.Skipped = len(s.Cases), 0, 0, 0
		var sum time.Duration
		for _, c := range s.Cases {
			switch {
			case c.Failure != nil:
				s.Failures++
			case c.Error != nil:
				s.Errors++
			case c.Skipped != nil:
				s.Skipped++
			}
			sum += time.Duration(c.Time)
		}
		if s.Time == 0 {
			s.Time = Seconds(sum)
		}
		total += time.Duration(s.Time)
		d.Tests += s.Tests
		d.Failures += s.Failures
		d.Errors += s.Errors
		d.Skipped += s.Skipped
	}
	if d.Time == 0 {
		d.Time = Seconds(total)
	}
}

// Write writes the document, with its counts computed, as indented XML with
// an XML declaration. Text that XML 1.0 cannot hold (control characters,
// invalid UTF-8) is replaced, so that the output always parses.
func (d *Testsuites) Write(w io.Writer) error {
	d.count()
	clean := *d
	clean.Suites = make([]Testsuite, len(d.Suites))
	for i, s := range d.Suites {
		s.Name, s.File, s.SystemOut = xmlText(s.Name), xmlText(s.File), xmlText(s.SystemOut)
		props := make([]Property, len(s.Properties))
		for j, p := range s.Properties {
			props[j] = Property{Name: xmlText(p.Name), Value: xmlText(p.Value)}
		}
		s.Properties = props
		cases := make([]Testcase, len(s.Cases))
		for j, c := range s.Cases {
			c.Name, c.Classname, c.File, c.SystemOut = xmlText(c.Name), xmlText(c.Classname), xmlText(c.File), xmlText(c.SystemOut)
			c.Failure, c.Error, c.Skipped = cleanResult(c.Failure), cleanResult(c.Error), cleanResult(c.Skipped)
			cases[j] = c
		}
		s.Cases = cases
		clean.Suites[i] = s
	}
	clean.Name = xmlText(clean.Name)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(&clean); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func cleanResult(r *Result) *Result {
	if r == nil {
		return nil
	}
	return &Result{Message: xmlText(r.Message), Type: xmlText(r.Type), Text: xmlText(r.Text)}
}

// xmlText replaces what XML 1.0 cannot carry (invalid UTF-8, control
// characters but tab, newline and carriage return) with U+FFFD.
func xmlText(s string) string {
	ok := true
	for _, r := range s {
		if !isXMLChar(r) {
			ok = false
			break
		}
	}
	if ok && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s { // invalid UTF-8 ranges as utf8.RuneError, which is U+FFFD
		if !isXMLChar(r) {
			r = utf8.RuneError
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isXMLChar(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' ||
		r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}
