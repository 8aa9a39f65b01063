package policies

import (
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// decisionCache keeps the Decisions the compiled evaluator's results were
// read into, by the result's value. A policy has few distinct decisions
// (an allow per plan and route class, a deny per denial), yet every memo
// miss read its result again: a dozen lookups by name, a Go map for its
// headers, a slice for its limits with their periods parsed, and for a
// denial with a body a round trip through JSON. A result identical to a
// kept one (identical: the same types and the same values, number by
// number as written, so no two results a reading could tell apart) is
// read as that one was.
//
// A kept Decision is shared by every caller it is handed to, as a memo
// hit's is: its maps, limits and body are read-only (Decide's contract;
// the memo clones what it keeps). Only decisions read without an error are
// kept, and only small ones (maxKeptDecision). The table is direct-mapped
// by the value's hash and bounded (decisionSlots entries), a decision kept
// at its slot's second miss, so
// decisions seen once (a policy whose decisions name a key) neither
// allocate nor evict.
type decisionCache struct {
	slots [decisionSlots]atomic.Pointer[cachedDecision]
	seen  [decisionSlots]atomic.Uint64
}

type cachedDecision struct {
	v ast.Value
	d Decision
}

const decisionSlots = 1024

var readDecisions = &decisionCache{}

// read is parseDecisionValue(v), from the cache when v is identical to a
// value read before.
func (c *decisionCache) read(v ast.Value) (Decision, error) {
	h := uint64(v.Hash())
	i := h % decisionSlots
	if e := c.slots[i].Load(); e != nil && identical(v, e.v) {
		return e.d, nil
	}
	d, err := parseDecisionValue(v)
	if err == nil && c.seen[i].Swap(h) == h && valueBytes(v, maxKeptDecision) <= maxKeptDecision {
		// Measured only at its second miss: a result seen once is not
		// walked. A copy: the result's terms were cut from the evaluation's blocks,
		// which hold its other terms too. Sorted first: a result can be a
		// value other evaluations share (a rule of data alone, computed
		// once), whose keys OPA sorts in place at their first read (under
		// a sync.Once) while Copy reads them without one.
		c.slots[i].Store(&cachedDecision{v: sortKeys(ast.NewTerm(v)).Copy().Value, d: d})
	}
	return d, err
}

// maxKeptDecision bounds the results the cache keeps (a policy's decision
// may carry 32 headers of 4 KiB, a 16 KiB body, and fields keygate does
// not read): with decisionSlots, the cache holds a few MiB at most (the
// result and the decision read from it, each about this size).
const maxKeptDecision = 2 << 10

// valueBytes estimates the heap v takes: its strings and numbers' text and
// a word or two a term; it stops counting past limit.
func valueBytes(v ast.Value, limit int) int {
	n := 0
	ast.WalkTerms(v, func(t *ast.Term) bool {
		n += 32
		switch x := t.Value.(type) {
		case ast.String:
			n += len(x)
		case ast.Number:
			n += len(x)
		}
		return n > limit
	})
	return n
}

// identical reports whether a and b are the same value written the same
// way: numbers by their text (1 and 1.0 compare equal in Rego, and a
// Decision's reading of them differs), objects by string keys only. A
// value of any other kind (a set, a non-string key) is never identical:
// it is read every time.
func identical(a, b ast.Value) bool {
	switch x := a.(type) {
	case ast.String:
		y, ok := b.(ast.String)
		return ok && x == y
	case ast.Number:
		y, ok := b.(ast.Number)
		return ok && x == y
	case ast.Boolean:
		y, ok := b.(ast.Boolean)
		return ok && x == y
	case ast.Null:
		_, ok := b.(ast.Null)
		return ok
	case *ast.Array:
		y, ok := b.(*ast.Array)
		if !ok || x.Len() != y.Len() {
			return false
		}
		for i := range x.Len() {
			if !identical(x.Elem(i).Value, y.Elem(i).Value) {
				return false
			}
		}
		return true
	case ast.Object:
		y, ok := b.(ast.Object)
		if !ok || x.Len() != y.Len() {
			return false
		}
		c := comparers.Get().(*comparer)
		same := c.objects(x, y)
		comparers.Put(c)
		return same
	}
	return false
}

// comparer walks an object's items for identical without a closure per
// object (a func passed to Until escapes: an allocation each): its pair
// method is bound once, and objects nest through its other field.
type comparer struct {
	other ast.Object
	pair  func(k, v *ast.Term) bool
}

var comparers sync.Pool

func init() {
	comparers.New = func() any {
		c := &comparer{}
		c.pair = c.differs
		return c
	}
}

// objects: every item of y (kept; Until sorts its keys under OPA's lock
// if a reader has not yet) is in x, identical, by a string key; they have
// as many items.
func (c *comparer) objects(x, y ast.Object) bool {
	prev := c.other
	c.other = x
	differ := y.Until(c.pair)
	c.other = prev
	return !differ
}

func (c *comparer) differs(k, v *ast.Term) bool {
	if _, ok := k.Value.(ast.String); !ok {
		return true
	}
	w := c.other.Get(k)
	if w == nil {
		return true
	}
	if vo, ok := v.Value.(ast.Object); ok {
		wo, ok := w.Value.(ast.Object)
		return !ok || vo.Len() != wo.Len() || !c.objects(wo, vo)
	}
	return !identical(w.Value, v.Value)
}
