package policytest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/offline"
)

// CaseFileKind is the kind of a case file document.
const CaseFileKind = "PolicyTest"

// Suite is one PolicyTest document of a case file: settings shared by its
// cases, and the cases.
type Suite struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Name prefixes the names of the cases (default: the file name).
	Name string `json:"name,omitempty"`
	Settings
	Cases []Case `json:"cases"`

	file string
}

// Settings are what a case is judged with. A case's own settings replace
// its suite's, one key at a time.
type Settings struct {
	// Config is a PolicyConfig (apiVersion and kind may be left out);
	// ConfigFile names one relative to the case file. Default: the built-in one.
	Config     map[string]any `json:"config,omitempty"`
	ConfigFile string         `json:"configFile,omitempty"`
	// Namespace of objects that name none (default "default").
	Namespace string `json:"namespace,omitempty"`
	// NamespaceLabels are the labels of the object's namespace.
	NamespaceLabels map[string]string `json:"namespaceLabels,omitempty"`
	// User makes the request (default: portreeve:test in system:authenticated).
	User *policies.User `json:"user,omitempty"`
	// Facts are the inventory facts the rules see as input.facts (default:
	// none, {"ready": false}, as in the offline commands).
	Facts *policies.Facts `json:"facts,omitempty"`
}

// Case is one request and the outcome expected for it.
type Case struct {
	Name string `json:"name"`
	// Object is the object under review; File names a YAML file (relative to
	// the case file) whose every object is judged with this case's
	// expectations.
	Object map[string]any `json:"object,omitempty"`
	File   string         `json:"file,omitempty"`
	// OldObject makes the request an UPDATE from it.
	OldObject map[string]any `json:"oldObject,omitempty"`
	// DryRun marks a server-side dry run (input.dryRun).
	DryRun bool `json:"dryRun,omitempty"`
	Settings
	Expect Expect `json:"expect"`

	line int
}

// Expect is the outcome of a case. Keys left out are not checked; lists of
// rules are compared as sets, so `denied: []` means "no rule denies".
type Expect struct {
	// Allowed is the validating webhook's answer (after any rewrite).
	Allowed *bool `json:"allowed,omitempty"`
	// Denied, Warned and DryRun list the rules with a finding in that bucket.
	Denied *[]string `json:"denied,omitempty"`
	Warned *[]string `json:"warned,omitempty"`
	DryRun *[]string `json:"dryRun,omitempty"`
	// Errors lists the rules that failed to evaluate.
	Errors *[]string `json:"errors,omitempty"`
	// Messages must each occur in some denial or warning
	// ("<rule>: <message> (<field>); fix: <fix>").
	Messages []string `json:"messages,omitempty"`
	// Rewritten says whether the mutating webhook changed the object;
	// RewrittenBy lists the rules whose rewrites it applied.
	Rewritten   *bool     `json:"rewritten,omitempty"`
	RewrittenBy *[]string `json:"rewrittenBy,omitempty"`
	// Patch is the JSON Patch the rewrites amount to (the portreeve.io/rewrites
	// annotation left out), compared as a set of operations.
	Patch *[]PatchOp `json:"patch,omitempty"`
	// Object is the whole object after the rewrites (the annotation left out).
	Object map[string]any `json:"object,omitempty"`
}

// PatchOp is one JSON Patch operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

func (e Expect) empty() bool {
	return e.Allowed == nil && e.Denied == nil && e.Warned == nil && e.DryRun == nil && e.Errors == nil &&
		len(e.Messages) == 0 && e.Rewritten == nil && e.RewrittenBy == nil && e.Patch == nil && e.Object == nil
}

// IsCaseFile reports whether the YAML file's first document is a PolicyTest.
func IsCaseFile(b []byte) bool {
	docs := splitDocuments(b)
	if len(docs) == 0 {
		return false
	}
	var head struct {
		Kind string `json:"kind"`
	}
	return yaml.Unmarshal([]byte(docs[0].text), &head) == nil && head.Kind == CaseFileKind
}

// LoadCaseFile reads and checks a case file.
func LoadCaseFile(path string) ([]*Suite, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*Suite
	for _, doc := range splitDocuments(b) {
		s := &Suite{file: path}
		var generic any
		if err := yaml.Unmarshal([]byte(doc.text), &generic); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, doc.line, err)
		}
		if err := unknownKeys(generic, reflect.TypeFor[Suite](), ""); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, doc.line, err)
		}
		if err := yaml.UnmarshalStrict([]byte(doc.text), s); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, doc.line, err)
		}
		if s.Kind != CaseFileKind || s.APIVersion != "portreeve.io/v1alpha1" {
			return nil, fmt.Errorf("%s:%d: want apiVersion portreeve.io/v1alpha1 and kind %s, got %s %s",
				path, doc.line, CaseFileKind, s.APIVersion, s.Kind)
		}
		if s.Name == "" {
			s.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		}
		lines := caseLines(doc.text, s.Cases)
		var errs []error
		seen := map[string]bool{}
		for i := range s.Cases {
			c := &s.Cases[i]
			c.line = doc.line + lines[i]
			where := fmt.Sprintf("%s:%d: case %q", path, c.line, c.Name)
			switch {
			case c.Name == "":
				errs = append(errs, fmt.Errorf("%s:%d: cases[%d] has no name", path, c.line, i))
			case seen[c.Name]:
				errs = append(errs, fmt.Errorf("%s: duplicate name", where))
			}
			seen[c.Name] = true
			if (c.Object == nil) == (c.File == "") {
				errs = append(errs, fmt.Errorf("%s: set exactly one of object and file", where))
			}
			if c.Expect.empty() {
				errs = append(errs, fmt.Errorf("%s: expect is empty: say what the rules must decide", where))
			}
		}
		if len(s.Cases) == 0 {
			errs = append(errs, fmt.Errorf("%s:%d: no cases", path, doc.line))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

type document struct {
	text string
	line int // 1-based line of the document's first line in the file
}

// splitDocuments splits YAML at "---" lines, skipping empty documents.
func splitDocuments(b []byte) []document {
	var out []document
	lines := strings.Split(string(b), "\n")
	start := 0
	flush := func(end int) {
		text := strings.Join(lines[start:end], "\n")
		if strings.TrimSpace(stripComments(text)) != "" {
			out = append(out, document{text: text, line: start + 1})
		}
	}
	for i, l := range lines {
		if strings.TrimRight(l, " \t\r") == "---" {
			flush(i)
			start = i + 1
		}
	}
	flush(len(lines))
	return out
}

func stripComments(text string) string {
	var b strings.Builder
	for l := range strings.SplitSeq(text, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

var nameLine = regexp.MustCompile(`^\s*-?\s*name:\s*(.*?)\s*$`)

// caseLines finds the 0-based line of each case's name in the document text,
// in order (0 when not found).
func caseLines(text string, cases []Case) []int {
	out := make([]int, len(cases))
	lines := strings.Split(text, "\n")
	from := 0
	for i, c := range cases {
		for j := from; j < len(lines); j++ {
			m := nameLine.FindStringSubmatch(lines[j])
			if m == nil {
				continue
			}
			if v := strings.Trim(m[1], `"'`); v == c.Name {
				out[i] = j
				from = j + 1
				break
			}
		}
	}
	return out
}

// objects returns the objects of a case as JSON, with where they come from,
// and the labels of the namespaces whose Namespace manifests the case's file
// holds (they are the context of the file's other objects, not judged).
func (c *Case) objects(caseFile string) ([][]byte, []string, map[string]map[string]string, error) {
	if c.Object != nil {
		b, err := json.Marshal(c.Object)
		return [][]byte{b}, []string{""}, nil, err
	}
	path := filepath.Join(filepath.Dir(caseFile), c.File)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, err
	}
	var objs [][]byte
	var from []string
	var namespaces map[string]map[string]string
	for _, doc := range splitDocuments(b) {
		j, err := yaml.YAMLToJSON([]byte(doc.text))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s:%d: %w", path, doc.line, err)
		}
		if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			continue
		}
		if name, labels, ok := offline.NamespaceManifest(j); ok {
			if namespaces == nil {
				namespaces = map[string]map[string]string{}
			}
			namespaces[name] = labels
			continue
		}
		objs = append(objs, j)
		from = append(from, fmt.Sprintf("%s:%d", path, doc.line))
	}
	if len(objs) == 0 {
		return nil, nil, nil, fmt.Errorf("%s holds no object to judge (Namespace manifests only give labels)", path)
	}
	return objs, from, namespaces, nil
}

// merged returns the case's settings over the suite's.
func (c *Case) merged(s *Suite) Settings {
	out := s.Settings
	if c.Config != nil || c.ConfigFile != "" {
		out.Config, out.ConfigFile = c.Config, c.ConfigFile
	}
	if c.Namespace != "" {
		out.Namespace = c.Namespace
	}
	if c.NamespaceLabels != nil {
		out.NamespaceLabels = c.NamespaceLabels
	}
	if c.User != nil {
		out.User = c.User
	}
	if c.Facts != nil {
		out.Facts = c.Facts
	}
	return out
}

// configBytes returns the settings' configuration as a document
// ParseConfig reads, or nil for the built-in configuration.
func (st Settings) configBytes(caseFile string) ([]byte, error) {
	if st.ConfigFile != "" {
		return os.ReadFile(filepath.Join(filepath.Dir(caseFile), st.ConfigFile))
	}
	if st.Config == nil {
		return nil, nil
	}
	cfg := map[string]any{"apiVersion": "portreeve.io/v1alpha1", "kind": "PolicyConfig"}
	for k, v := range st.Config {
		cfg[k] = v
	}
	return json.Marshal(cfg)
}

// unknownKeys names the first key of v (decoded YAML) that type t does not
// know, with its path, e.g. cases[0].expect: unknown key "deniedd".
func unknownKeys(v any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return nil // the decoder reports wrong types
		}
		fields := map[string]reflect.Type{}
		collectFields(t, fields)
		for _, k := range sortedKeys(m) {
			ft, known := fields[k]
			if !known {
				names := make([]string, 0, len(fields))
				for n := range fields {
					names = append(names, n)
				}
				slices.Sort(names)
				return fmt.Errorf("%sunknown key %q (known: %s)", prefix(path), k, strings.Join(names, ", "))
			}
			if err := unknownKeys(m[k], ft, join(path, k)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		l, _ := v.([]any)
		for i, x := range l {
			if err := unknownKeys(x, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func collectFields(t reflect.Type, out map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case f.Anonymous && name == "":
			collectFields(f.Type, out)
		case name == "-" || !f.IsExported():
		case name == "":
			out[f.Name] = f.Type
		default:
			out[name] = f.Type
		}
	}
}

func prefix(path string) string {
	if path == "" {
		return ""
	}
	return path + ": "
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
