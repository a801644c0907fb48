package inventory

import (
	"iter"
	"slices"
)

// maxChunk bounds the entries of one chunk of an ordered set.
const maxChunk = 64

// ordered is a set kept sorted by cmp, in chunks of at most maxChunk entries:
// inserting and deleting cost O(log n + maxChunk + n/maxChunk), finding an
// entry or a position O(log n), and the first entries are read in order
// without sorting anything. Entries that cmp finds equal are the same entry.
// A nil set is empty.
type ordered[T any] struct {
	cmp    func(a, b T) int
	chunks [][]T
	// starts[i] counts the entries of the chunks before chunks[i].
	starts []int
	n      int
}

func newOrdered[T any](cmp func(a, b T) int) *ordered[T] { return &ordered[T]{cmp: cmp} }

// len returns the number of entries.
func (s *ordered[T]) len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// find returns where v is, or would be inserted: its chunk and its index
// there.
func (s *ordered[T]) find(v T) (ci, j int, found bool) {
	ci, _ = slices.BinarySearchFunc(s.chunks, v, func(c []T, v T) int { return s.cmp(c[len(c)-1], v) })
	ci = min(ci, len(s.chunks)-1)
	j, found = slices.BinarySearchFunc(s.chunks[ci], v, s.cmp)
	return ci, j, found
}

// get returns the entry equal to v.
func (s *ordered[T]) get(v T) (T, bool) {
	if s.len() == 0 {
		var zero T
		return zero, false
	}
	ci, j, found := s.find(v)
	if !found {
		var zero T
		return zero, false
	}
	return s.chunks[ci][j], true
}

// insert adds v; false when it was there already.
func (s *ordered[T]) insert(v T) bool {
	if s.n == 0 {
		s.chunks, s.starts, s.n = [][]T{{v}}, []int{0}, 1
		return true
	}
	ci, j, found := s.find(v)
	if found {
		return false
	}
	c := slices.Insert(s.chunks[ci], j, v)
	s.shift(ci, 1)
	if len(c) > maxChunk {
		half := len(c) / 2
		right := slices.Clone(c[half:])
		clear(c[half:])
		c = c[:half]
		s.chunks = slices.Insert(s.chunks, ci+1, right)
		s.starts = slices.Insert(s.starts, ci+1, s.starts[ci]+half)
	}
	s.chunks[ci] = c
	s.n++
	return true
}

// delete removes v; false when it was not there.
func (s *ordered[T]) delete(v T) bool {
	if s.len() == 0 {
		return false
	}
	ci, j, found := s.find(v)
	if !found {
		return false
	}
	c := slices.Delete(s.chunks[ci], j, j+1)
	if len(c) == 0 {
		s.chunks = slices.Delete(s.chunks, ci, ci+1)
		s.starts = slices.Delete(s.starts, ci, ci+1)
		s.shift(ci-1, -1)
	} else {
		s.chunks[ci] = c
		s.shift(ci, -1)
	}
	s.n--
	return true
}

// shift adds d to the starts of the chunks after chunks[ci].
func (s *ordered[T]) shift(ci, d int) {
	for i := ci + 1; i < len(s.starts); i++ {
		s.starts[i] += d
	}
}

// seek returns the position of the first entry for which before is false
// (before must hold for a leading run of the order and for nothing after it).
func (s *ordered[T]) seek(before func(T) bool) (ci, j int) {
	ci, _ = slices.BinarySearchFunc(s.chunks, true, func(c []T, _ bool) int {
		if before(c[len(c)-1]) {
			return -1
		}
		return 1
	})
	if ci < len(s.chunks) {
		j, _ = slices.BinarySearchFunc(s.chunks[ci], true, func(e T, _ bool) int {
			if before(e) {
				return -1
			}
			return 1
		})
	}
	return ci, j
}

// rank returns how many entries before holds for (see seek).
func (s *ordered[T]) rank(before func(T) bool) int {
	if s.len() == 0 {
		return 0
	}
	ci, j := s.seek(before)
	if ci == len(s.chunks) {
		return s.n
	}
	return s.starts[ci] + j
}

// from yields the entries in order, starting at the first one for which
// before is false (see seek); nil starts at the first entry.
func (s *ordered[T]) from(before func(T) bool) iter.Seq[T] {
	return func(yield func(T) bool) {
		if s.len() == 0 {
			return
		}
		ci, j := 0, 0
		if before != nil {
			ci, j = s.seek(before)
		}
		for ; ci < len(s.chunks); ci, j = ci+1, 0 {
			for _, e := range s.chunks[ci][j:] {
				if !yield(e) {
					return
				}
			}
		}
	}
}

// cursor reads an ordered set in order, entry by entry.
type cursor[T any] struct {
	s     *ordered[T]
	ci, j int
}

// first returns a cursor at the first entry.
func (s *ordered[T]) first() cursor[T] { return cursor[T]{s: s} }

// ok reports whether the cursor is at an entry.
func (c *cursor[T]) ok() bool { return c.s != nil && c.ci < len(c.s.chunks) }

func (c *cursor[T]) value() T { return c.s.chunks[c.ci][c.j] }

func (c *cursor[T]) next() {
	if c.j++; c.j == len(c.s.chunks[c.ci]) {
		c.ci, c.j = c.ci+1, 0
	}
}
