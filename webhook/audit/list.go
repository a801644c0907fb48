package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// NewClient returns the REST client the audit lists with: JSON, as the
// dynamic client asks for it (never CBOR or protobuf: the audit reads each
// object's JSON as it arrives and hands that JSON to the review).
func NewClient(cfg *rest.Config) (rest.Interface, error) {
	c := dynamic.ConfigFor(cfg)
	c.AcceptContentTypes = "application/json"
	c.GroupVersion, c.APIPath = nil, ""
	return rest.UnversionedRESTClientFor(c)
}

// listPages calls fn with the JSON of every object of resource gvr, one page
// (limit/continue) at a time. Each page is read from the response as it
// arrives, one object at a time: neither a whole page nor a decoded copy of
// one is ever held, so the audit's memory grows neither with the page size
// nor with the cluster.
func listPages(ctx context.Context, c rest.Interface, gvr schema.GroupVersionResource, limit int64, fn func(item []byte) error) error {
	cont := ""
	for {
		next, err := listPage(ctx, c, gvr, limit, cont, fn)
		switch {
		case err != nil:
			return err
		case next == "":
			return nil
		case next == cont:
			return fmt.Errorf("list %s: the server repeated the continue token", gvr.Resource)
		}
		cont = next
	}
}

// listPage reads one page and returns its continue token.
func listPage(ctx context.Context, c rest.Interface, gvr schema.GroupVersionResource, limit int64, cont string, fn func([]byte) error) (string, error) {
	req := c.Get().AbsPath(listPath(gvr))
	if limit > 0 {
		req = req.Param("limit", strconv.FormatInt(limit, 10))
	}
	if cont != "" {
		req = req.Param("continue", cont)
	}
	body, err := req.Stream(ctx)
	if err != nil {
		return "", err
	}
	defer body.Close()
	return readList(body, fn)
}

// listPath is the path of a resource's list across all namespaces.
func listPath(gvr schema.GroupVersionResource) string {
	if gvr.Group == "" {
		return "/api/" + gvr.Version + "/" + gvr.Resource
	}
	return "/apis/" + gvr.Group + "/" + gvr.Version + "/" + gvr.Resource
}

// readList reads a list ({"metadata": {"continue": ...}, "items": [...]}, in
// any order of keys) from r, calls fn with each item's JSON as soon as it is
// read (valid only during the call), and returns the continue token. Errors
// of fn are returned as they are; the others say what could not be read.
func readList(r io.Reader, fn func([]byte) error) (string, error) {
	dec := json.NewDecoder(r)
	var meta struct {
		Continue string `json:"continue"`
	}
	var fnErr error
	err := func() error {
		if err := expect(dec, json.Delim('{')); err != nil {
			return err
		}
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				return err
			}
			switch key {
			case "metadata":
				err = dec.Decode(&meta)
			case "items":
				err = readItems(dec, func(item []byte) error {
					fnErr = fn(item)
					return fnErr
				})
			default:
				var skip json.RawMessage
				err = dec.Decode(&skip)
			}
			if err != nil {
				return err
			}
		}
		return expect(dec, json.Delim('}'))
	}()
	switch {
	case fnErr != nil:
		return "", fnErr
	case err != nil:
		return "", fmt.Errorf("reading the response: %w", err)
	}
	return meta.Continue, nil
}

// readItems reads an array of items (or null) and calls fn with each.
func readItems(dec *json.Decoder, fn func([]byte) error) error {
	tok, err := dec.Token()
	switch {
	case err != nil:
		return err
	case tok == nil:
		return nil
	case tok != json.Delim('['):
		return fmt.Errorf("found %v where the items were expected", tok)
	}
	var item json.RawMessage
	for dec.More() {
		if err := dec.Decode(&item); err != nil {
			return err
		}
		if err := fn(item); err != nil {
			return err
		}
	}
	return expect(dec, json.Delim(']'))
}

// expect reads the next token, which must be want.
func expect(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("found %v where %v was expected", tok, want)
	}
	return nil
}

// typeFields are the kind's apiVersion and kind as JSON object members.
func (k Kind) typeFields() []byte {
	apiVersion := k.GVK.Version
	if k.GVK.Group != "" {
		apiVersion = k.GVK.Group + "/" + apiVersion
	}
	v, _ := json.Marshal(apiVersion)
	kind, _ := json.Marshal(k.GVK.Kind)
	return fmt.Appendf(nil, `"apiVersion":%s,"kind":%s`, v, kind)
}

// withTypeFields returns a copy of item, a JSON object, with the members
// fields added last (so that they win over any of the same name).
func withTypeFields(item, fields []byte) ([]byte, error) {
	item = bytes.TrimSpace(item)
	if len(item) < 2 || item[0] != '{' || item[len(item)-1] != '}' {
		return nil, errors.New("a listed item is not a JSON object")
	}
	out := make([]byte, 0, len(item)+len(fields)+1)
	out = append(out, item[:len(item)-1]...)
	if len(bytes.TrimSpace(item[1:len(item)-1])) > 0 {
		out = append(out, ',')
	}
	out = append(out, fields...)
	return append(out, '}'), nil
}
