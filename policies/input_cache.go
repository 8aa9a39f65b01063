package policies

import (
	"hash/maphash"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// valueCache holds the input's parts in OPA's form, by their content: a
// key's, site's and account's facts, a request's classified fields and
// its prefixes. Every memo miss converted them again (an object costs OPA
// five allocations), yet the facts come from a cache whose entries change
// only when a key is edited, and with the ids the policy never reads
// cleared (memo.go) all keys of a plan share one set of facts: the same
// facts miss the memo on every route, site and host they are new on, and
// a decision the memo does not keep (the memo off, a key with uses left)
// is made of parts seen before.
//
// An entry is keyed by the part's memo-key encoding (memo_key.go), which is
// injective over every field the part's value is made of, so two parts
// share a value only when their values are equal (TestInputCacheEqual), a
// cleared id is keyed as cleared, and facts that change are new content
// and so a new entry: nothing is invalidated, nothing stale is served.
// Entries are the facts of the request being decided, as they are
// evaluated: the cache holds nothing the policy is not given anyway.
//
// The table is direct-mapped (one entry per slot, replaced on a
// collision), so it is bounded: valueSlots entries, each of a part whose
// encoding is at most maxKeptPart bytes (a key's facts are ~0.1–0.3 KB; a
// request with a long path or query is converted every time instead). A
// part is kept the second time it misses in its slot (the slot's
// doorkeeper remembers the last miss's hash), so parts seen once (a new
// host, a client address) neither allocate an entry nor evict one that
// comes back. A kept part is made from terms of its own, so that it holds
// nothing of the input it was first made for (that input's path, headers),
// and with the keys of its objects sorted before anyone else sees it: OPA
// sorts an object's keys in place at their first read (under a sync.Once),
// while its Copy, which topdown makes of the input for `with`, reads them
// without one. Readers and writers only load and store whole entries
// atomically, and a value is shared read-only, as the input's shared terms
// (vocabulary, credentials) already are: no evaluator writes into its
// input's values.
type valueCache struct {
	seed  maphash.Seed
	slots [valueSlots]atomic.Pointer[cachedPart]
	seen  [valueSlots]atomic.Uint64
}

type cachedPart struct {
	enc  string
	term *ast.Term
}

// valueSlots bounds the cache: at most this many parts live in it.
const valueSlots = 4096

// maxKeptPart bounds the encoding of a part the cache keeps (and so, with
// valueSlots, its memory: a few MiB at most).
const maxKeptPart = 1 << 10

// Kinds of part: the first byte of an entry's key.
const (
	partKey      = 'k'
	partSite     = 's'
	partAccount  = 'a'
	partRequest  = 'r'
	partPrefixes = 'p'
)

var inputParts = &valueCache{seed: maphash.MakeSeed()}

// get is the value kept for enc, nil if none, and enc's hash for put.
func (c *valueCache) get(enc []byte) (*ast.Term, uint64) {
	h := maphash.Bytes(c.seed, enc)
	if e := c.slots[h%valueSlots].Load(); e != nil && e.enc == string(enc) {
		return e.term, h
	}
	return nil, h
}

// again reports whether the part hashed h missed its slot last time too
// (it is then kept), and remembers h as the slot's last miss.
func (c *valueCache) again(h uint64) bool {
	return c.seen[h%valueSlots].Swap(h) == h
}

// put keeps v for enc (hashed h by get).
func (c *valueCache) put(h uint64, enc []byte, v *ast.Term) {
	c.slots[h%valueSlots].Store(&cachedPart{enc: string(enc), term: v})
}

// part is one part of an input: its kind and the facts or request it is
// made of (the others nil).
type part struct {
	kind    byte
	key     *Key
	site    *Site
	account *Account
	request *Request
}

// part is p's value: from the cache when enc is set, and for a request
// only without headers (which differ in every request that has them).
// The parts are encoded and made by a switch, not through a func value or
// an interface: the terms passed to either would escape, an allocation
// for every input.
func (t *terms) part(enc partBuffer, p part) *ast.Term {
	if enc == nil || p.kind == partRequest && len(p.request.Headers) > 0 {
		return t.term(t.make(enc, p))
	}
	start := len(*enc)
	*enc = append(*enc, p.kind)
	switch p.kind {
	case partKey:
		*enc = appendKeyFacts(*enc, p.key, 0)
	case partSite:
		*enc = appendSite(*enc, p.site, 0)
	case partAccount:
		*enc = appendAccount(*enc, p.account, 0)
	case partRequest:
		*enc = appendRequest(*enc, p.request, 0)
	case partPrefixes:
		*enc = appendStringMap(*enc, p.request.Prefixes)
	}
	// A request's make encodes its prefixes after its own encoding and
	// truncates back to it: (*enc)[start:] is this part's encoding again
	// after a make.
	v, h := inputParts.get((*enc)[start:])
	switch {
	case v != nil:
	case len(*enc)-start > maxKeptPart || !inputParts.again(h):
		v = t.term(t.make(enc, p))
	default:
		own := &terms{}
		v = sortKeys(own.term(own.make(enc, p)))
		inputParts.put(h, (*enc)[start:], v)
	}
	*enc = (*enc)[:start]
	return v
}

// sortKeys sorts the keys of every object (and set) in v, before v is
// shared (valueCache).
func sortKeys(v *ast.Term) *ast.Term {
	ast.WalkTerms(v, func(t *ast.Term) bool {
		switch x := t.Value.(type) {
		case ast.Object:
			x.Keys()
		case ast.Set:
			x.Sorted()
		}
		return false
	})
	return v
}

// make makes p's value.
func (t *terms) make(enc partBuffer, p part) ast.Value {
	switch p.kind {
	case partKey:
		return p.key.value(t)
	case partSite:
		return p.site.value(t)
	case partAccount:
		return p.account.value(t)
	case partRequest:
		return p.request.value(t, enc)
	}
	return p.request.prefixesValue(t)
}

// partBuffer is the scratch an input's conversion encodes its parts in
// (classifyScratch's, for a decision); nil converts without the cache.
type partBuffer = *[]byte
