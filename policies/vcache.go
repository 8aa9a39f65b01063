package policies

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// ruleCache is a decision's virtual-document cache: the value of every rule
// the evaluation has computed, so each is computed once per decision.
//
// OPA's own cache is a trie with a hash map per level, built afresh for
// every evaluation: remembering one rule's value cost about five
// allocations, and a decision of the built-in policy evaluates dozens of
// rules. This one keeps the values in a flat list indexed by a hash of the
// rule's path, and is recycled between decisions, so remembering costs
// nothing once warm. It starts each decision with the folded data-only
// values (fold.go).
//
// Under `with` (a pushed frame) OPA's semantics are kept by handing the
// frames above the first to OPA's own cache: an empty frame each, and the
// folded values stand aside, as they may not hold there.
type ruleCache struct {
	folded []foldedValue
	// index maps a ref's hash to its newest entry; entries chain to older
	// entries of the same hash.
	index   map[uint64]int32
	entries []cacheEntry
	// arena holds the entries' refs: OPA reuses the slice it passes to Put.
	arena []*ast.Term
	// inner serves the frames pushed by `with`; nil at the first frame.
	inner  topdown.VirtualCache
	frames int
}

type cacheEntry struct {
	ref       ast.Ref
	value     *ast.Term
	undefined bool
	next      int32 // older entry with the same hash, or -1
}

var ruleCaches = sync.Pool{New: func() any {
	return &ruleCache{index: make(map[uint64]int32, 64), entries: make([]cacheEntry, 0, 64), arena: make([]*ast.Term, 0, 512)}
}}

// newRuleCache is a cleared cache seeded with folded; release it when the
// evaluation is over.
func newRuleCache(folded []foldedValue) *ruleCache {
	c := ruleCaches.Get().(*ruleCache)
	c.folded = folded
	for i := range folded {
		c.Put(folded[i].ref, folded[i].value)
	}
	return c
}

// release recycles c. The values it held stay valid: they belong to the
// evaluation's result, not to the cache.
func (c *ruleCache) release() {
	clear(c.index)
	clear(c.entries)
	clear(c.arena)
	c.entries, c.arena = c.entries[:0], c.arena[:0]
	c.folded, c.inner, c.frames = nil, nil, 0
	ruleCaches.Put(c)
}

func refHash(ref ast.Ref) uint64 {
	h := uint64(len(ref))
	for _, t := range ref[max(0, len(ref)-2):] {
		h = h*31 + uint64(t.Hash())
	}
	return h
}

func (c *ruleCache) find(ref ast.Ref) int32 {
	i, ok := c.index[refHash(ref)]
	if !ok {
		return -1
	}
	for ; i >= 0; i = c.entries[i].next {
		if c.entries[i].ref.Equal(ref) {
			return i
		}
	}
	return -1
}

// Push starts a frame for a `with`: empty, as OPA's cache starts one.
func (c *ruleCache) Push() {
	c.frames++
	if c.frames == 1 {
		c.inner = topdown.NewVirtualCache()
		return
	}
	c.inner.Push()
}

// Pop ends a `with`'s frame.
func (c *ruleCache) Pop() {
	c.frames--
	if c.frames == 0 {
		c.inner = nil
		return
	}
	c.inner.Pop()
}

// Get is the value remembered for ref: (nil, true) when it was undefined,
// (nil, false) when it is not known.
func (c *ruleCache) Get(ref ast.Ref) (*ast.Term, bool) {
	if c.frames > 0 {
		return c.inner.Get(ref)
	}
	if i := c.find(ref); i >= 0 {
		return c.entries[i].value, c.entries[i].undefined
	}
	return nil, false
}

// Put remembers ref's value; nil marks it undefined.
func (c *ruleCache) Put(ref ast.Ref, value *ast.Term) {
	if c.frames > 0 {
		c.inner.Put(ref, value)
		return
	}
	if i := c.find(ref); i >= 0 {
		c.entries[i].value, c.entries[i].undefined = value, value == nil
		return
	}
	start := len(c.arena)
	c.arena = append(c.arena, ref...)
	h := refHash(ref)
	next, ok := c.index[h]
	if !ok {
		next = -1
	}
	c.index[h] = int32(len(c.entries))
	c.entries = append(c.entries, cacheEntry{ref: c.arena[start:len(c.arena):len(c.arena)], value: value, undefined: value == nil, next: next})
}

// Keys are the refs of the current frame that have a value.
func (c *ruleCache) Keys() []ast.Ref {
	if c.frames > 0 {
		return c.inner.Keys()
	}
	var keys []ast.Ref
	for _, e := range c.entries {
		if e.value != nil {
			keys = append(keys, e.ref.Copy())
		}
	}
	return keys
}
