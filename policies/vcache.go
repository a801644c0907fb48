package policies

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// flatCache is the cache of evaluated rules (topdown.VirtualCache) of one
// evaluation. OPA's default keeps a hash map per reference segment and so
// allocates several maps for every rule it caches; this one keeps, per frame,
// one index keyed by the whole reference's hash over a slice of entries, and
// is pooled, so that a warm cache allocates nothing.
type flatCache struct {
	frames []*cacheFrame
	depth  int
}

type cacheFrame struct {
	// index maps a reference's hash to 1 + the index of the last entry with that hash.
	index   map[int]int32
	entries []cacheEntry
	// terms holds the entries' references: topdown reuses the slices it passes.
	terms []*ast.Term
}

type cacheEntry struct {
	ref       ast.Ref
	value     *ast.Term
	undefined bool
	// next is 1 + the index of the previous entry with the same hash, or 0.
	next int32
}

var _ topdown.VirtualCache = (*flatCache)(nil)

var cachePool = sync.Pool{New: func() any { return &flatCache{} }}

// newFlatCache takes a cache from the pool with one empty frame.
func newFlatCache() *flatCache {
	c := cachePool.Get().(*flatCache)
	c.Push()
	return c
}

// release empties the cache and returns it to the pool.
func (c *flatCache) release() {
	for c.depth > 0 {
		c.Pop()
	}
	cachePool.Put(c)
}

func (c *flatCache) Push() {
	if c.depth == len(c.frames) {
		c.frames = append(c.frames, &cacheFrame{index: make(map[int]int32, 32)})
	}
	c.depth++
}

func (c *flatCache) Pop() {
	f := c.frames[c.depth-1]
	clear(f.index)
	clear(f.entries)
	clear(f.terms)
	f.entries, f.terms = f.entries[:0], f.terms[:0]
	c.depth--
}

func (c *flatCache) top() *cacheFrame { return c.frames[c.depth-1] }

func (f *cacheFrame) find(ref ast.Ref, h int) *cacheEntry {
	for i := f.index[h]; i > 0; i = f.entries[i-1].next {
		if e := &f.entries[i-1]; e.ref.Equal(ref) {
			return e
		}
	}
	return nil
}

func (c *flatCache) Get(ref ast.Ref) (*ast.Term, bool) {
	if e := c.top().find(ref, ref.Hash()); e != nil {
		return e.value, e.undefined
	}
	return nil, false
}

func (c *flatCache) Put(ref ast.Ref, value *ast.Term) {
	f, h := c.top(), ref.Hash()
	if e := f.find(ref, h); e != nil {
		e.value, e.undefined = value, value == nil
		return
	}
	start := len(f.terms)
	f.terms = append(f.terms, ref...)
	// A full slice expression, so that a later append to terms never writes into this ref.
	owned := ast.Ref(f.terms[start:len(f.terms):len(f.terms)])
	f.entries = append(f.entries, cacheEntry{ref: owned, value: value, undefined: value == nil, next: f.index[h]})
	f.index[h] = int32(len(f.entries))
}

func (c *flatCache) Keys() []ast.Ref {
	f := c.top()
	keys := make([]ast.Ref, 0, len(f.entries))
	for _, e := range f.entries {
		if !e.undefined {
			keys = append(keys, e.ref)
		}
	}
	return keys
}
