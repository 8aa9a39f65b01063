package policies

import (
	"bytes"
	"maps"
	"reflect"
	"unsafe"
)

// memoIntern shares the parts of remembered decisions that many entries
// have in common. A decision of the built-in policy is unique to its key
// (its rate limit names the key), but its headers, its empty response
// headers, its rule, codes and limit kinds are the same for every key of a
// plan: kept once, and the decision apart from its limits (its shape) kept
// once, an entry costs ~460 bytes instead of ~1,090 (BenchmarkMemoKeys).
//
// What is interned stays for the life of the memo (a policy's), so the
// interner has a budget of its own: past it, parts are kept per entry as
// before, and an unusual policy that puts per-key values in headers costs
// what it did.
type memoIntern struct {
	strs   map[string]string
	maps   map[string]map[string]string
	bodies map[string][]byte
	shapes map[decisionShape]*Decision
	// bytes are what the interned values hold; none is added past budget.
	bytes, budget int64
	buf           []byte // a map's encoding, to look it up
}

// decisionShape is a Decision but for its limits, comparable so that equal
// shapes are one map entry: maps by the identity of their interned copy (a
// map not interned is unique, and so is its shape). TestDecisionShape fails
// when Decision gains a field this does not hold.
type decisionShape struct {
	allow, keepCredentials, spendUse bool
	status                           int
	code, message, contentType, rule string
	body                             string
	headers, responseHeaders         unsafe.Pointer
	hasBody                          bool
}

// decision is what the memo keeps of d: its shape (all but the limits),
// shared with every kept decision of that shape, its own copy of the
// limits, and the heap the entry holds of its own. Nothing is shared with
// d, and what is shared between entries is read-only, as every part of a
// remembered decision is.
func (in *memoIntern) decision(d Decision) (*Decision, []Limit, int64) {
	// Every reference field is cloned: those interned below only when kept
	// (most decisions' are found interned), any other here.
	c := d
	c.Headers, c.ResponseHeaders, c.Body = nil, nil, nil
	c = c.clone()
	limits := c.Limits
	own := int64(cap(limits)) * int64(unsafe.Sizeof(Limit{}))
	for i := range limits {
		l := &limits[i]
		l.Kind, l.Code = in.str(l.Kind, &own), in.str(l.Code, &own)
		own += int64(len(l.Key))
	}
	c.Limits = nil
	c.Headers = in.strMap(d.Headers, &own)
	c.ResponseHeaders = in.strMap(d.ResponseHeaders, &own)
	c.Body = in.body(d.Body, &own)
	c.Code, c.Message = in.str(c.Code, &own), in.str(c.Message, &own)
	c.ContentType, c.Rule = in.str(c.ContentType, &own), in.str(c.Rule, &own)
	return in.shape(c, &own), limits, own
}

// shape is the interned d (a Decision without limits), or a copy of its
// own, counted in own.
func (in *memoIntern) shape(d Decision, own *int64) *Decision {
	k := decisionShape{allow: d.Allow, keepCredentials: d.KeepCredentials, spendUse: d.SpendUse,
		status: d.Status, code: d.Code, message: d.Message, contentType: d.ContentType, rule: d.Rule,
		body: string(d.Body), hasBody: d.Body != nil,
		headers: mapIdentity(d.Headers), responseHeaders: mapIdentity(d.ResponseHeaders)}
	if v, ok := in.shapes[k]; ok {
		return v
	}
	// A copy made here, not &d: d would then be on the heap for every
	// call, most of which find their shape.
	kept := new(Decision)
	*kept = d
	size := int64(unsafe.Sizeof(d)) + int64(unsafe.Sizeof(k)) + int64(len(k.body))
	if !in.admit(size) {
		*own += int64(unsafe.Sizeof(d))
		return kept
	}
	if in.shapes == nil {
		in.shapes = make(map[decisionShape]*Decision)
	}
	in.shapes[k] = kept
	return kept
}

func mapIdentity(m map[string]string) unsafe.Pointer {
	return reflect.ValueOf(m).UnsafePointer()
}

// str is the interned s when it is or can be; else s, its bytes added to
// the entry's own.
func (in *memoIntern) str(s string, own *int64) string {
	if s == "" {
		return s
	}
	if v, ok := in.strs[s]; ok {
		return v
	}
	if !in.admit(stringCost(s)) {
		*own += int64(len(s))
		return s
	}
	if in.strs == nil {
		in.strs = make(map[string]string)
	}
	in.strs[s] = s
	return s
}

// strMap is the interned m, found by its encoding in the memo key's form
// (injective: equal encodings are equal maps, nil and empty told apart),
// or a copy of m.
func (in *memoIntern) strMap(m map[string]string, own *int64) map[string]string {
	if m == nil {
		return nil
	}
	in.buf = appendStringMap(in.buf[:0], m)
	if v, ok := in.maps[string(in.buf)]; ok {
		return v
	}
	m = maps.Clone(m)
	if !in.admit(stringCost(string(in.buf)) + mapCost(m)) {
		*own += mapCost(m)
		return m
	}
	if in.maps == nil {
		in.maps = make(map[string]map[string]string)
	}
	in.maps[string(in.buf)] = m
	return m
}

// body is the interned b, or a copy of b.
func (in *memoIntern) body(b []byte, own *int64) []byte {
	if b == nil {
		return nil
	}
	if v, ok := in.bodies[string(b)]; ok {
		return v
	}
	b = bytes.Clone(b)
	if !in.admit(stringCost(string(b)) + int64(len(b))) {
		*own += int64(len(b))
		return b
	}
	if in.bodies == nil {
		in.bodies = make(map[string][]byte)
	}
	in.bodies[string(b)] = b
	return b
}

// admit charges n bytes to the interner if its budget has room for them.
func (in *memoIntern) admit(n int64) bool {
	if in.bytes+n > in.budget {
		return false
	}
	in.bytes += n
	return true
}

// The costs below are estimates of the heap a value holds, close enough
// for a budget (BenchmarkMemoKeys prints what an entry really costs): a
// string header and its bytes, a map's header and table with its load.
const (
	stringHeader  = int64(unsafe.Sizeof(""))
	mapHeader     = 48
	mapSlotFactor = 2 // a table is at most 7/8 full and grows by doubling
)

func stringCost(s string) int64 { return stringHeader + int64(len(s)) }

func mapCost(m map[string]string) int64 {
	n := int64(mapHeader)
	for k, v := range m {
		n += mapSlotFactor*2*stringHeader + int64(len(k)+len(v))
	}
	return n
}
