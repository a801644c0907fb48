// Package policytest runs policy authors' tests: their Rego unit tests, with
// the built-in modules and helper library loaded, and case files that name
// objects and the outcome the rules must reach for each, judged through the
// offline review (webhook/offline) that the webhooks' logic runs in.
package policytest

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/cover"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/offline"
	"github.com/portreeve/portreeve/webhook/review"
)

// DefaultUser makes the requests of cases that name no user: a user with no
// grants of its own.
var DefaultUser = policies.User{Username: "portreeve:test", Groups: []string{"system:authenticated"}}

// Status is the outcome of one test.
type Status string

// The outcomes of a test.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Result is one Rego unit test or one object of a case.
type Result struct {
	// Name is package.test_name for Rego tests, suite/case for cases.
	Name string `json:"name"`
	// Type is "rego" or "case".
	Type   string `json:"type"`
	File   string `json:"file"`
	Line   int    `json:"line,omitempty"`
	Status Status `json:"status"`
	// Message explains a failure (or a skip), in lines meant for people.
	Message  string        `json:"message,omitempty"`
	Duration time.Duration `json:"durationNs"`
}

// Report is the outcome of one directory.
type Report struct {
	Dir string `json:"dir"`
	// BuildError is set when the directory's modules, tests or case files
	// cannot be loaded or compiled; no test ran then.
	BuildError string         `json:"buildError,omitempty"`
	Results    []Result       `json:"results"`
	Coverage   []RuleCoverage `json:"coverage,omitempty"`
	Duration   time.Duration  `json:"durationNs"`
}

// Passed reports whether the directory built and no test failed.
func (r *Report) Passed() bool {
	if r.BuildError != "" {
		return false
	}
	for _, res := range r.Results {
		if res.Status == Fail {
			return false
		}
	}
	return true
}

// Options configure Run.
type Options struct {
	// Coverage computes the line coverage of every rule.
	Coverage bool
	// Modules are custom rules loaded with each directory's own (`test
	// --policy-dir`); a module identical to one of the directory's is
	// loaded once.
	Modules map[string]string
	// Defaults are the settings of the cases whose case file sets none.
	Defaults Defaults
}

// Defaults are what a case is judged with when neither it nor its suite
// says: the flags of `portreeve test` that shape a decision.
type Defaults struct {
	// Config is a PolicyConfig document (nil: the built-in configuration).
	Config []byte
	// Namespace of objects that name none ("": "default").
	Namespace string
	// NamespaceLabels are the labels of the object's namespace.
	NamespaceLabels map[string]string
	// User makes the requests (nil: DefaultUser).
	User *policies.User
	// NodePortRange is the cluster's NodePort range, input.facts.nodePortRange
	// of cases whose facts name none (zero: the default range).
	NodePortRange policies.PortSpan
}

// content is what a directory holds for Run.
type content struct {
	modules   map[string]string // custom rule modules
	tests     map[string]string // Rego tests (custom, and built-in ones found in the dir)
	caseFiles []string
}

// Run runs the Rego unit tests and the case files of dir (recursively).
func Run(ctx context.Context, dir string, opts Options) *Report {
	start := time.Now()
	rep := &Report{Dir: dir, Results: []Result{}}
	defer func() { rep.Duration = time.Since(start) }()
	c, err := load(dir)
	if err != nil {
		rep.BuildError = err.Error()
		return rep
	}
	for name, src := range opts.Modules {
		if !slices.Contains(slices.Collect(maps.Values(c.modules)), src) {
			c.modules[name] = src
		}
	}
	// The custom modules must load exactly as serve loads them.
	if _, err := policies.New(ctx, policies.Options{Modules: c.modules}); err != nil {
		rep.BuildError = err.Error()
		return rep
	}
	var cov *cover.Cover
	if opts.Coverage {
		cov = cover.New()
	}
	if len(c.tests) > 0 {
		results, err := runRegoTests(ctx, c.modules, c.tests, cov)
		if err != nil {
			rep.BuildError = err.Error()
			return rep
		}
		rep.Results = append(rep.Results, results...)
	}
	r := &caseRunner{modules: c.modules, defaults: opts.Defaults, tracer: cov, engines: map[string]*policies.Engine{}}
	for _, f := range c.caseFiles {
		suites, err := LoadCaseFile(f)
		if err != nil {
			rep.Results = append(rep.Results, Result{Name: filepath.Base(f), Type: "case", File: f, Status: Fail, Message: err.Error()})
			continue
		}
		for _, s := range suites {
			rep.Results = append(rep.Results, r.runSuite(ctx, s)...)
		}
	}
	if len(rep.Results) == 0 {
		rep.BuildError = "no tests: no *_test.rego file and no case file (kind: PolicyTest) in " + dir
	}
	if cov != nil {
		rep.Coverage, err = coverage(cov, c.modules)
		if err != nil {
			rep.BuildError = err.Error()
		}
	}
	return rep
}

// load collects the modules, tests and case files of dir. Files identical to
// built-in modules are skipped and identical built-in tests run as built-in
// tests, so that the repository's policies folder can be tested as it is.
func load(dir string) (*content, error) {
	builtinModules, err := policies.BuiltinModules()
	if err != nil {
		return nil, err
	}
	builtinTests, err := policies.BuiltinTestModules()
	if err != nil {
		return nil, err
	}
	sameAs := func(src string, set map[string]string) string {
		for name, s := range set {
			if s == src {
				return name
			}
		}
		return ""
	}
	c := &content{modules: map[string]string{}, tests: map[string]string{}}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		switch ext := filepath.Ext(path); ext {
		case ".rego":
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			src := string(b)
			if strings.HasSuffix(path, "_test.rego") {
				if name := sameAs(src, builtinTests); name != "" {
					c.tests[name] = src
				} else {
					c.tests[path] = src
				}
			} else if sameAs(src, builtinModules) == "" {
				c.modules[path] = src
			}
		case ".yaml", ".yml":
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if IsCaseFile(b) {
				c.caseFiles = append(c.caseFiles, path)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(c.caseFiles)
	return c, nil
}

// caseRunner judges cases with engines built per configuration.
type caseRunner struct {
	modules  map[string]string
	defaults Defaults
	tracer   *cover.Cover
	engines  map[string]*policies.Engine
}

func (r *caseRunner) engine(ctx context.Context, cfgBytes []byte) (*policies.Engine, error) {
	key := string(cfgBytes)
	if e, ok := r.engines[key]; ok {
		return e, nil
	}
	cfg := policies.DefaultConfig()
	if cfgBytes != nil {
		var err error
		if cfg, err = policies.ParseConfig(cfgBytes, policies.CustomRuleIDs(r.modules)); err != nil {
			return nil, err
		}
	}
	opts := policies.Options{Config: cfg, Modules: r.modules}
	if r.tracer != nil {
		opts.Tracer = r.tracer
	}
	e, err := policies.New(ctx, opts)
	if err != nil {
		return nil, err
	}
	r.engines[key] = e
	return e, nil
}

func (r *caseRunner) runSuite(ctx context.Context, s *Suite) []Result {
	var out []Result
	for i := range s.Cases {
		c := &s.Cases[i]
		name := s.Name + "/" + c.Name
		fail := func(format string, args ...any) {
			out = append(out, Result{Name: name, Type: "case", File: s.file, Line: c.line, Status: Fail,
				Message: fmt.Sprintf(format, args...)})
		}
		st := c.merged(s)
		cfgBytes, err := st.configBytes(s.file)
		if err != nil {
			fail("config: %v", err)
			continue
		}
		if cfgBytes == nil {
			cfgBytes = r.defaults.Config
		}
		engine, err := r.engine(ctx, cfgBytes)
		if err != nil {
			fail("config: %v", err)
			continue
		}
		objs, from, namespaces, err := c.objects(s.file)
		if err != nil {
			fail("%v", err)
			continue
		}
		var old []byte
		if c.OldObject != nil {
			if old, err = jsonOf(c.OldObject); err != nil {
				fail("oldObject: %v", err)
				continue
			}
		}
		user := DefaultUser
		switch {
		case st.User != nil:
			user = *st.User
		case r.defaults.User != nil:
			user = *r.defaults.User
		}
		for j, obj := range objs {
			start := time.Now()
			res := Result{Name: name, Type: "case", File: s.file, Line: c.line, Status: Pass}
			if len(objs) > 1 {
				res.Name = fmt.Sprintf("%s/%d", name, j+1)
			}
			problems, got, err := r.judge(ctx, engine, st, c, obj, old, user, namespaces)
			res.Duration = time.Since(start)
			switch {
			case err != nil:
				res.Status, res.Message = Fail, err.Error()
			case len(problems) > 0:
				res.Status = Fail
				res.Message = strings.Join(problems, "\n") + "\n" + got
			}
			if res.Message != "" && from[j] != "" {
				res.Message = "object from " + from[j] + "\n" + res.Message
			}
			out = append(out, res)
		}
	}
	return out
}

// judge reviews one object of case c. The labels of its namespace are those
// of a Namespace manifest in the case's file, else the settings'.
func (r *caseRunner) judge(ctx context.Context, e *policies.Engine, st Settings, c *Case, obj, old []byte, user policies.User, namespaces map[string]map[string]string) ([]string, string, error) {
	namespace, labels := st.Namespace, st.NamespaceLabels
	if namespace == "" {
		namespace = r.defaults.Namespace
	}
	if labels == nil {
		labels = r.defaults.NamespaceLabels
	}
	req, err := offline.NewRequest(obj, old, namespace, user)
	if err != nil {
		return nil, "", err
	}
	req.NamespaceLabels = labels
	if ls, ok := namespaces[req.Namespace]; ok {
		req.NamespaceLabels = ls
	}
	req.DryRun = c.DryRun
	rv := review.NewReviewer(e)
	rv.UseFacts(StaticFacts{Value: withNodePortRange(st.Facts, r.defaults.NodePortRange)})
	out, err := offline.Review(ctx, rv, req)
	if err != nil {
		return nil, "", err
	}
	problems, err := check(c.Expect, out)
	if err != nil {
		return nil, "", err
	}
	return problems, Describe(out, "got: "), nil
}

// withNodePortRange returns the facts of a case with the NodePort range
// span when they name none: no facts at all become the facts of no inventory
// in a cluster with that range (unless span is zero or the default range).
func withNodePortRange(f *policies.Facts, span policies.PortSpan) *policies.Facts {
	if f == nil {
		if offline.NodePortRangeFacts(span) == nil {
			return nil
		}
		return &policies.Facts{NodePortRange: span}
	}
	if f.NodePortRange.From == 0 && span.From != 0 {
		g := *f
		g.NodePortRange = span
		return &g
	}
	return f
}
