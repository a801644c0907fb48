package exposure

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// nested returns the object at path, an empty one when it is missing, or
// says why it is not an object.
func nested(obj map[string]any, path []string) (map[string]any, error) {
	cur := obj
	for i, p := range path {
		next, ok := cur[p]
		if !ok || next == nil {
			return map[string]any{}, nil
		}
		m, ok := next.(map[string]any)
		if !ok {
			return nil, fieldError(strings.Join(path[:i+1], "."), "expected an object, got %s", typeName(next))
		}
		cur = m
	}
	return cur, nil
}

// listAt returns m[key] as a list (nil when absent), or says why it is not one.
func listAt(m map[string]any, key, field string) ([]any, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fieldError(field, "expected a list, got %s", typeName(v))
	}
	return l, nil
}

// intField reads m[key] as an integer (0 when absent), or says why it is not one.
func intField(m map[string]any, key, field string) (int, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return 0, nil
	}
	n, ok := Int(v)
	if !ok {
		return 0, fieldError(field+"."+key, "expected an integer, got %s", typeName(v))
	}
	return n, nil
}

// Int reads a JSON integer: json.Number (a decoder with UseNumber), int64
// (Kubernetes' unstructured decoding), float64 (encoding/json) or int.
func Int(v any) (int, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := strconv.Atoi(n.String())
		return i, err == nil
	case int64:
		return int(n), true
	case int:
		return n, true
	case int32:
		return int(n), true
	case float64:
		return int(n), n == float64(int(n))
	}
	return 0, false
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func typeName(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case json.Number:
		return "the number " + x.String()
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%T", v)
}
