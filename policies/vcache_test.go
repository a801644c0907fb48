package policies

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestFlatCache(t *testing.T) {
	a, b := ast.MustParseRef("data.x.a"), ast.MustParseRef("data.x.b")
	one, two := ast.IntNumberTerm(1), ast.IntNumberTerm(2)
	type want struct {
		ref       ast.Ref
		value     *ast.Term
		undefined bool
	}
	tests := []struct {
		name string
		run  func(c *flatCache)
		want []want
	}{
		{"miss", func(*flatCache) {}, []want{{a, nil, false}}},
		{"hit", func(c *flatCache) { c.Put(a, one) }, []want{{a, one, false}, {b, nil, false}}},
		{"undefined", func(c *flatCache) { c.Put(a, nil) }, []want{{a, nil, true}}},
		{"overwrite", func(c *flatCache) { c.Put(a, one); c.Put(a, two) }, []want{{a, two, false}}},
		{"a prefix is not an entry", func(c *flatCache) { c.Put(a, one) }, []want{{ast.MustParseRef("data.x"), nil, false}}},
		{"push hides, pop drops", func(c *flatCache) {
			c.Put(a, one)
			c.Push()
			c.Put(b, two)
			c.Pop()
		}, []want{{a, one, false}, {b, nil, false}}},
		{"pushed frame is empty", func(c *flatCache) { c.Put(a, one); c.Push() }, []want{{a, nil, false}}},
		{"the caller may reuse its ref", func(c *flatCache) {
			r := ast.MustParseRef("data.x.a")
			c.Put(r, one)
			r[2] = ast.StringTerm("b")
		}, []want{{a, one, false}, {b, nil, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newFlatCache()
			defer c.release()
			tc.run(c)
			for _, w := range tc.want {
				v, undefined := c.Get(w.ref)
				if v != w.value || undefined != w.undefined {
					t.Errorf("Get(%v) = %v, %v; want %v, %v", w.ref, v, undefined, w.value, w.undefined)
				}
			}
		})
	}
}

func TestFlatCacheIsEmptyAfterRelease(t *testing.T) {
	c := newFlatCache()
	c.Put(ast.MustParseRef("data.x.a"), ast.IntNumberTerm(1))
	c.release()
	// The very cache, as the pool hands it out again.
	c.Push()
	defer c.release()
	if keys := c.Keys(); len(keys) != 0 {
		t.Fatalf("a reused cache holds %v", keys)
	}
	if v, _ := c.Get(ast.MustParseRef("data.x.a")); v != nil {
		t.Fatalf("a reused cache returns %v", v)
	}
}
