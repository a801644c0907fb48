package suggest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/portreeve/portreeve/policies"
)

// Marshal renders a configuration as YAML that policies.ParseConfig reads
// back unchanged: keys in the order of the Go types (sigs.k8s.io/yaml would
// sort them, burying each grant's name), lists of scalars and small objects
// in flow style as docs/configuration.md writes them, loadBalancer as true,
// false or an object. knownRules are custom rule ids the configuration may name.
// It checks the round trip and returns an error when it does not hold.
func Marshal(c *policies.Config, knownRules []string) ([]byte, error) {
	out, err := marshal(c)
	if err != nil {
		return nil, err
	}
	back, err := policies.ParseConfig(out, knownRules)
	if err != nil {
		return nil, err
	}
	again, err := marshal(back)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(out, again) {
		return nil, fmt.Errorf("the configuration does not read back unchanged:\n%s\nreads back as\n%s", out, again)
	}
	return out, nil
}

func marshal(c *policies.Config) ([]byte, error) {
	js, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	root, err := decodeNode(dec)
	if err != nil {
		return nil, err
	}
	// LoadBalancer's Allowed is not part of its JSON form: write what it means.
	if grants := root.get("grants"); grants != nil {
		for i, g := range c.Grants {
			lb := grants.items[i].get("loadBalancer")
			switch {
			case lb == nil:
			case !g.LoadBalancer.Allowed:
				*lb = node{scalar: "false"}
			case len(lb.keys) == 0:
				*lb = node{scalar: "true"}
			}
		}
	}
	var b bytes.Buffer
	writeMapping(&b, root, 0, "")
	return b.Bytes(), nil
}

// node is a JSON value with the order of its keys kept.
type node struct {
	object bool
	array  bool
	keys   []string
	vals   []*node
	items  []*node
	// scalar is the value rendered as YAML (objects and arrays: "").
	scalar string
	// str is the value of a string, which a block mapping may write unquoted.
	str    string
	isText bool
}

func (n *node) get(key string) *node {
	for i, k := range n.keys {
		if k == key {
			return n.vals[i]
		}
	}
	return nil
}

func decodeNode(dec *json.Decoder) (*node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		n := &node{object: t == '{', array: t == '['}
		for dec.More() {
			if n.object {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				n.keys = append(n.keys, k)
			}
			v, err := decodeNode(dec)
			if err != nil {
				return nil, err
			}
			if n.object {
				n.vals = append(n.vals, v)
			} else {
				n.items = append(n.items, v)
			}
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
		return n, nil
	case string:
		return &node{scalar: yamlString(t), str: t, isText: true}, nil
	case json.Number:
		return &node{scalar: t.String()}, nil
	case bool:
		return &node{scalar: strconv.FormatBool(t)}, nil
	case nil:
		return &node{scalar: "null"}, nil
	}
	return nil, errors.New("unexpected JSON token")
}

// plainString matches strings that YAML reads back as the same string unquoted.
var plainString = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._/-]*$`)

// yamlKeywords are the words YAML 1.1 reads as booleans or null.
var yamlKeywords = map[string]bool{
	"y": true, "n": true, "yes": true, "no": true, "true": true, "false": true, "on": true, "off": true, "null": true,
}

// blockString matches the strings a block mapping value may hold unquoted
// too: words with spaces and a little punctuation, never ": " or " #".
var blockString = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9 ._/,()-]*[A-Za-z0-9._/)])?$`)

func yamlString(s string) string {
	if plainString.MatchString(s) && !yamlKeywords[strings.ToLower(s)] {
		return s
	}
	return strconv.Quote(s)
}

const maxFlowWidth = 100

// flow renders a scalar, a list of scalars or an object of those on one
// line; ok is false when n holds more (or the line would be too long).
func flow(n *node) (string, bool) {
	switch {
	case n.array:
		parts := make([]string, len(n.items))
		for i, it := range n.items {
			if it.object || it.array {
				return "", false
			}
			parts[i] = it.scalar
		}
		s := "[" + strings.Join(parts, ", ") + "]"
		return s, len(s) <= maxFlowWidth || len(n.items) == 0
	case n.object:
		parts := make([]string, len(n.keys))
		for i, k := range n.keys {
			v := n.vals[i]
			if v.object {
				return "", false
			}
			s, ok := flow(v)
			if !ok {
				return "", false
			}
			parts[i] = yamlString(k) + ": " + s
		}
		s := "{" + strings.Join(parts, ", ") + "}"
		return s, len(s) <= maxFlowWidth/2 || len(n.keys) == 0
	}
	return n.scalar, true
}

// writeMapping writes the keys of an object at indent; first replaces the
// indentation of the first line (a sequence item's "- ").
func writeMapping(w io.Writer, n *node, indent int, first string) {
	pad := strings.Repeat(" ", indent)
	for i, k := range n.keys {
		lead := pad
		if i == 0 && first != "" {
			lead = first
		}
		v := n.vals[i]
		if v.isText && blockString.MatchString(v.str) && !yamlKeywords[strings.ToLower(v.str)] {
			fmt.Fprintf(w, "%s%s: %s\n", lead, yamlString(k), v.str)
			continue
		}
		if s, ok := flow(v); ok {
			fmt.Fprintf(w, "%s%s: %s\n", lead, yamlString(k), s)
			continue
		}
		fmt.Fprintf(w, "%s%s:\n", lead, yamlString(k))
		if v.object {
			writeMapping(w, v, indent+2, "")
		} else {
			writeSequence(w, v, indent+2)
		}
	}
}

func writeSequence(w io.Writer, n *node, indent int) {
	pad := strings.Repeat(" ", indent)
	for _, it := range n.items {
		switch {
		case it.object && len(it.keys) > 0:
			writeMapping(w, it, indent+2, pad+"- ")
		case it.array && len(it.items) > 0:
			if s, ok := flow(it); ok {
				fmt.Fprintf(w, "%s- %s\n", pad, s)
				continue
			}
			fmt.Fprintf(w, "%s-\n", pad)
			writeSequence(w, it, indent+2)
		default:
			s, _ := flow(it)
			fmt.Fprintf(w, "%s- %s\n", pad, s)
		}
	}
}
