package audit

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/portreeve/portreeve/policies"
)

var podsGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

func serve(t *testing.T, h http.HandlerFunc) rest.Interface {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := NewClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReadList(t *testing.T) {
	stop := errors.New("stop")
	for _, tc := range []struct {
		name, body string
		stopAt     int // fn fails on this item (1-based; 0: never)
		items      []string
		cont       string
		err        string
	}{
		{name: "page", body: `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7","continue":"c2"},"items":[{"a":1},{"b":[2]}]}`,
			items: []string{`{"a":1}`, `{"b":[2]}`}, cont: "c2"},
		{name: "last page, keys in another order", body: `{"items":[{"a":1}],"metadata":{},"extra":{"x":[1,2]}}`, items: []string{`{"a":1}`}},
		{name: "empty", body: `{"metadata":{},"items":[]}`},
		{name: "null items", body: `{"metadata":{},"items":null}`},
		{name: "cut short", body: `{"metadata":{"continue":"c2"},"items":[{"a":1},{"b"`, items: []string{`{"a":1}`}, err: "reading the response"},
		{name: "not a list", body: `[{"a":1}]`, err: "reading the response"},
		{name: "fn fails", body: `{"items":[{"a":1},{"b":2},{"c":3}]}`, stopAt: 2, items: []string{`{"a":1}`, `{"b":2}`}, err: "stop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			cont, err := readList(strings.NewReader(tc.body), func(item []byte) error {
				got = append(got, string(item))
				if len(got) == tc.stopAt {
					return stop
				}
				return nil
			})
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if tc.stopAt > 0 && !errors.Is(err, stop) {
				t.Errorf("fn's error %v is not returned as it is", err)
			}
			if strings.Join(got, " ") != strings.Join(tc.items, " ") || cont != tc.cont {
				t.Errorf("items %q continue %q, want %q %q", got, cont, tc.items, tc.cont)
			}
		})
	}
}

// TestListPagesReadsAPageAsItArrives: the first object of a page is
// reviewed before the rest of the page has been sent, so the audit never
// holds a page.
func TestListPagesReadsAPageAsItArrives(t *testing.T) {
	first := make(chan struct{})
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/pods" || r.URL.Query().Get("limit") != "500" {
			t.Errorf("asked for %s", r.URL)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[{"metadata":{"name":"a"}},`)
		w.(http.Flusher).Flush()
		select {
		case <-first:
		case <-time.After(10 * time.Second):
			t.Error("the first item was not read before the page ended")
		}
		fmt.Fprint(w, `{"metadata":{"name":"b"}}]}`)
	})
	var got []string
	err := listPages(t.Context(), c, podsGVR, 500, func(item []byte) error {
		if got = append(got, string(item)); len(got) == 1 {
			close(first)
		}
		return nil
	})
	if err != nil || len(got) != 2 {
		t.Fatalf("%v, items %q", err, got)
	}
}

func TestListPagesErrors(t *testing.T) {
	notFound := serve(t, func(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) })
	if err := listPages(t.Context(), notFound, podsGVR, 10, func([]byte) error { return nil }); !apierrors.IsNotFound(err) {
		t.Errorf("a kind the server does not serve: %v, want NotFound", err)
	}
	repeats := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"metadata":{"continue":"same"},"items":[]}`)
	})
	err := listPages(t.Context(), repeats, podsGVR, 10, func([]byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "repeated the continue token") {
		t.Errorf("a server that repeats its continue token: %v", err)
	}
}

func TestWithTypeFields(t *testing.T) {
	fields := Kind{GVK: Kinds[0].GVK}.typeFields()
	for in, want := range map[string]string{
		`{"metadata":{"name":"a"}}`: `{"metadata":{"name":"a"},"apiVersion":"v1","kind":"Pod"}`,
		` {} `:                      `{"apiVersion":"v1","kind":"Pod"}`,
		`{ }`:                       `{ "apiVersion":"v1","kind":"Pod"}`,
	} {
		got, err := withTypeFields([]byte(in), fields)
		if err != nil || string(got) != want {
			t.Errorf("%s: %s %v, want %s", in, got, err, want)
		}
	}
	if _, err := withTypeFields([]byte(`[1]`), fields); err == nil {
		t.Error("an item that is not an object was accepted")
	}
	ing := Kind{GVK: policies.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}}
	if got := string(ing.typeFields()); got != `"apiVersion":"networking.k8s.io/v1","kind":"Ingress"` {
		t.Errorf("Ingress: %s", got)
	}
}

func TestNamespaceLabels(t *testing.T) {
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/namespaces" {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("continue") == "" {
			fmt.Fprint(w, `{"metadata":{"continue":"2"},"items":[{"metadata":{"name":"a","labels":{"team":"a"}}}]}`)
			return
		}
		fmt.Fprint(w, `{"metadata":{},"items":[{"metadata":{"name":"b"}}]}`)
	})
	got, err := NamespaceLabels(t.Context(), c, 1)
	if err != nil || len(got) != 2 || got["a"]["team"] != "a" || got["b"] != nil {
		t.Fatalf("%v %v", got, err)
	}
}
