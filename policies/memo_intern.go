package policies

import "unsafe"

// memoIntern shares the parts of remembered decisions that many entries
// have in common. A decision of the built-in policy is unique to its key
// (its rate limit names the key), but its headers, its empty response
// headers, its rule, codes and limit kinds are the same for every key of a
// plan: kept once, an entry costs about half the memory.
//
// What is interned stays for the life of the memo (a policy's), so the
// interner has a budget of its own: past it, parts are kept per entry as
// before, and an unusual policy that puts per-key values in headers costs
// what it did.
type memoIntern struct {
	strs   map[string]string
	maps   map[string]map[string]string
	bodies map[string][]byte
	// bytes are what the interned values hold; none is added past budget.
	bytes, budget int64
	buf           []byte // a map's encoding, to look it up
}

// decision is a copy of d for the memo to keep, and the heap it holds of
// its own: it shares nothing with d, and its parts equal to those of
// decisions kept before are those same parts (read-only, as every part of
// a remembered decision is), which it does not count.
func (in *memoIntern) decision(d Decision) (Decision, int64) {
	c := d.clone() // every reference field: those interned below, and any other
	own := int64(cap(c.Limits)) * int64(unsafe.Sizeof(Limit{}))
	c.Headers = in.strMap(c.Headers, &own)
	c.ResponseHeaders = in.strMap(c.ResponseHeaders, &own)
	c.Body = in.body(c.Body, &own)
	c.Code, c.Message = in.str(c.Code, &own), in.str(c.Message, &own)
	c.ContentType, c.Rule = in.str(c.ContentType, &own), in.str(c.Rule, &own)
	for i := range c.Limits {
		l := &c.Limits[i]
		l.Kind, l.Code = in.str(l.Kind, &own), in.str(l.Code, &own)
		own += int64(len(l.Key))
	}
	return c, own
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
// (injective: equal encodings are equal maps, nil and empty told apart).
func (in *memoIntern) strMap(m map[string]string, own *int64) map[string]string {
	if m == nil {
		return nil
	}
	in.buf = appendStringMap(in.buf[:0], m)
	if v, ok := in.maps[string(in.buf)]; ok {
		return v
	}
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

func (in *memoIntern) body(b []byte, own *int64) []byte {
	if b == nil {
		return nil
	}
	if v, ok := in.bodies[string(b)]; ok {
		return v
	}
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
