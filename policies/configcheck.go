package policies

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// ConfigError is one problem of a policy configuration: the key path at
// fault (grants[1].hostPorts[0]; empty for the document as a whole) and what
// is wrong there.
type ConfigError struct {
	Path    string
	Message string
}

func (e *ConfigError) Error() string {
	if e.Path == "" {
		return "policy config: " + e.Message
	}
	return "policy config: " + e.Path + ": " + e.Message
}

// joinConfigErrors sorts problems by key path (list indices in numeric
// order; problems of the document as a whole first; problems at one path in
// the order found) and joins them, one per line. No problems is nil.
func joinConfigErrors(problems []*ConfigError) error {
	slices.SortStableFunc(problems, func(a, b *ConfigError) int { return comparePaths(a.Path, b.Path) })
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// readTree reads YAML (or JSON) into the tree encoding/json makes of it,
// numbers kept as json.Number. Duplicate keys are problems, but the rest
// is still read (the last value wins) so that it can be judged too; ok is
// false when nothing could be read.
func readTree(data []byte) (tree any, problems []*ConfigError, ok bool) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		problems = yamlProblems(err)
		if j, err = yaml.YAMLToJSON(data); err != nil {
			return nil, problems, false
		}
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return nil, append(problems, &ConfigError{Message: err.Error()}), false
	}
	return tree, problems, true
}

// yamlProblems splits the YAML reader's error into one problem per line
// ("yaml: unmarshal errors:\n  line 4: ...\n  line 9: ...").
func yamlProblems(err error) []*ConfigError {
	lines := strings.Split(err.Error(), "\n")
	if len(lines) == 1 {
		return []*ConfigError{{Message: lines[0]}}
	}
	var out []*ConfigError
	for _, l := range lines[1:] {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, &ConfigError{Message: "yaml: " + l})
		}
	}
	return out
}

// typeChecker judges a tree against the Go type it decodes into.
type typeChecker struct {
	problems []*ConfigError
}

var (
	modeType         = reflect.TypeFor[Mode]()
	loadBalancerType = reflect.TypeFor[LoadBalancer]()
	ruleConfigType   = reflect.TypeFor[RuleConfig]()
	configType       = reflect.TypeFor[Config]()
)

func (tc *typeChecker) bad(path, format string, args ...any) {
	tc.problems = append(tc.problems, &ConfigError{Path: path, Message: fmt.Sprintf(format, args...)})
}

// covers says whether path lies at or below a value the checker rejected.
func (tc *typeChecker) covers(path string) bool {
	for _, p := range tc.problems {
		rest, ok := strings.CutPrefix(path, p.Path)
		if ok && (p.Path == "" || rest == "" || rest[0] == '.' || rest[0] == '[') {
			return true
		}
	}
	return false
}

// check reports where v does not fit t, the type encoding/json decodes it
// into (by the json tags, embedded structs inlined, keys matched exactly),
// and returns v with every misfit left out (a bad value becomes null), so
// that decoding the result always succeeds. Where a string is expected a
// number becomes its text, as sigs.k8s.io/yaml does (hostPorts: [80]).
func (tc *typeChecker) check(path string, v any, t reflect.Type) any {
	if v == nil {
		return nil // json.Unmarshal leaves the zero value
	}
	switch t {
	case modeType:
		if _, ok := v.(string); ok || v == false { // a bare off is false in YAML 1.1
			return v
		}
		tc.bad(path, "must be one of %s; got %s", modeList, describe(v))
		return nil
	case loadBalancerType:
		if _, ok := v.(bool); ok {
			return v
		}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return tc.check(path, v, t.Elem())
	case reflect.String:
		switch v := v.(type) {
		case string:
			return v
		case json.Number:
			return v.String()
		case bool:
			tc.bad(path, "must be a string, got %s (YAML reads unquoted yes, no, on, off, y and n as booleans: quote the value)", describe(v))
			return nil
		}
	case reflect.Bool:
		if _, ok := v.(bool); ok {
			return v
		}
	case reflect.Slice:
		if list, ok := v.([]any); ok {
			out := make([]any, len(list))
			for i, e := range list {
				out[i] = tc.check(fmt.Sprintf("%s[%d]", path, i), e, t.Elem())
			}
			return out
		}
	case reflect.Map:
		if obj, ok := v.(map[string]any); ok {
			out := make(map[string]any, len(obj))
			for _, k := range sortedKeys(obj) {
				out[k] = tc.check(keyPath(path, k), obj[k], t.Elem())
			}
			return out
		}
	case reflect.Struct:
		if obj, ok := v.(map[string]any); ok {
			return tc.checkFields(path, obj, t)
		}
	}
	tc.bad(path, "must be %s, got %s", typeName(t), describe(v))
	return nil
}

func (tc *typeChecker) checkFields(path string, obj map[string]any, t reflect.Type) any {
	names, types := jsonFields(t, nil, map[string]reflect.Type{})
	out := make(map[string]any, len(obj))
	for _, k := range sortedKeys(obj) {
		ft, ok := types[k]
		if !ok {
			tc.bad(keyPath(path, k), "unknown field%s (known: %s)", didYouMean(k, names), strings.Join(names, ", "))
			continue
		}
		out[k] = tc.check(keyPath(path, k), obj[k], ft)
	}
	return out
}

// jsonFields appends the keys of struct t in declaration order, with the
// fields of embedded structs in place, and records the type of each.
func jsonFields(t reflect.Type, names []string, types map[string]reflect.Type) ([]string, map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported():
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			names, types = jsonFields(f.Type, names, types)
		default:
			if name == "" {
				name = f.Name
			}
			names = append(names, name)
			types[name] = f.Type
		}
	}
	return names, types
}

var modeList = func() string {
	s := make([]string, len(modes))
	for i, m := range modes {
		s[i] = string(m)
	}
	return strings.Join(s, ", ")
}()

// typeName says what a value of t is written as.
func typeName(t reflect.Type) string {
	switch t {
	case configType:
		return "an object (a PolicyConfig document)"
	case ruleConfigType:
		return "an object such as {mode: deny}"
	case loadBalancerType:
		return "true, false or an object with classes and sourceRangesRequired"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "a list of strings"
		}
		return "a list of objects"
	}
	return "an object"
}

// describe says what a value of a tree is, with a short excerpt of scalars.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("the boolean %t", v)
	case json.Number:
		return "the number " + excerpt(v.String())
	case string:
		return "the string " + strconv.Quote(excerpt(v))
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func excerpt(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// keyPath appends a key to a path: rules.host-network, or rules["a b"]
// for keys that are not plain names.
func keyPath(path, key string) string {
	plain := key != ""
	for _, r := range key {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return path + "[" + strconv.Quote(key) + "]"
	case path == "":
		return key
	}
	return path + "." + key
}

// comparePaths orders key paths segment by segment, list indices by number.
func comparePaths(a, b string) int {
	sa, sb := pathSegments(a), pathSegments(b)
	for i := range min(len(sa), len(sb)) {
		x, y := sa[i], sb[i]
		if isIndex(x) && isIndex(y) && len(x) != len(y) {
			return cmp.Compare(len(x), len(y))
		}
		if c := strings.Compare(x, y); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(sa), len(sb))
}

func isIndex(seg string) bool {
	return len(seg) > 2 && seg[0] == '[' && seg[1] >= '0' && seg[1] <= '9'
}

// pathSegments splits grants[1].hostPorts[0] into grants, [1], hostPorts, [0].
func pathSegments(p string) []string {
	var segs []string
	for p != "" {
		end := len(p)
		switch {
		case p[0] == '.':
			p = p[1:]
			continue
		case p[0] == '[':
			if q, err := strconv.QuotedPrefix(p[1:]); err == nil {
				end = min(len(p), len(q)+2)
			} else if i := strings.IndexByte(p, ']'); i >= 0 {
				end = i + 1
			}
		default:
			if i := strings.IndexAny(p, ".["); i >= 0 {
				end = i
			}
		}
		segs = append(segs, p[:end])
		p = p[end:]
	}
	return segs
}

// didYouMean is ", did you mean X?" when the candidate X is close to key.
func didYouMean(key string, candidates []string) string {
	if s := closest(key, candidates); s != "" {
		return ", did you mean " + s + "?"
	}
	return ""
}

// closest is the candidate a misspelt key most likely means, or "".
func closest(key string, candidates []string) string {
	if len(key) > 64 {
		return ""
	}
	best, bestDist := "", 3 // at most two edits
	for _, c := range candidates {
		d := editDistance(strings.ToLower(key), strings.ToLower(c))
		if d < bestDist && d < len(key)/2+1 {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(sub, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
