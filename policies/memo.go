package policies

import (
	"bytes"
	"encoding/binary"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// memo remembers the decisions of one compiled policy by the input they
// were made on. It is sound because of what Compile proves about the
// policy before enabling it:
//
//   - the policy calls no non-deterministic builtin (time.now_ns, rand.*,
//     uuid.*, print, …), so its answer is a function of input and data;
//   - data is fixed for the life of a Policy (a reload builds a new Policy,
//     and with it a new, empty memo);
//   - the memo key encodes every field of Input, generically by reflection
//     (a field added to Input later is included without anyone remembering
//     to), except for request fields that no rule can reach: those the
//     policy never references, not as input.request.<field>, nor through a
//     shorter ref (input.request, input) or an import.
//
// Key facts that change over time reach the policy only as input fields
// (key.revoked, key.expired, site.active, …), so a revocation or an expiry
// changes the key instead of being hidden by it.
type memo struct {
	// ignore clears the request fields the policy provably never reads.
	ignore []func(*Input)
	// scratch pools *memoScratch: a key's buffer and the input copy it is
	// encoded from, reused so a lookup allocates nothing.
	scratch sync.Pool

	mu      sync.RWMutex
	entries map[string]Decision
}

// Bounds: a memo costs at most maxMemoEntries × (maxMemoKey + a decision).
const (
	maxMemoEntries = 10_000
	maxMemoKey     = 2048
)

// ignorable are the input fields that vary per request without usually
// mattering to a decision, with how to clear them from a key.
var ignorable = []struct {
	path  []string
	clear func(*Input)
}{
	{[]string{"request", "headers"}, func(in *Input) { in.Request.Headers = nil }},
	{[]string{"request", "query"}, func(in *Input) { in.Request.Query = "" }},
	{[]string{"request", "method"}, func(in *Input) { in.Request.Method = "" }},
	{[]string{"request", "origin"}, func(in *Input) { in.Request.Origin = nil }},
	{[]string{"request", "host"}, func(in *Input) { in.Request.Host = "" }},
	// A policy that reads input.request.prefixes and exact_path instead
	// (see pathIndex) is keyed on those: ids in paths then cost nothing.
	{[]string{"request", "path"}, func(in *Input) { in.Request.Path = "" }},
}

type memoScratch struct {
	key []byte
	in  Input
}

// get returns the remembered decision for in, or the key to put a new one
// under (nil when in cannot be memoized).
func (m *memo) get(in *Input) (Decision, *memoScratch, bool) {
	s := m.scratch.Get().(*memoScratch)
	s.in = *in
	for _, clear := range m.ignore {
		clear(&s.in)
	}
	if len(s.in.Request.Headers) > 0 {
		// The policy reads headers, and requests differ in some header
		// (x-request-id) every time: remembering would only evict.
		s.in = Input{}
		m.scratch.Put(s)
		return Decision{}, nil, false
	}
	var ok bool
	s.key, ok = appendKey(s.key[:0], reflect.ValueOf(&s.in).Elem())
	s.in = Input{} // keep no request alive in the pool
	if !ok || len(s.key) > maxMemoKey {
		m.scratch.Put(s)
		return Decision{}, nil, false
	}
	m.mu.RLock()
	d, hit := m.entries[string(s.key)]
	m.mu.RUnlock()
	if hit {
		m.scratch.Put(s)
		return d, nil, true // shared, read-only: see clone
	}
	return Decision{}, s, false
}

// put remembers d under the key get returned, and recycles the scratch.
func (m *memo) put(s *memoScratch, d Decision) {
	m.mu.Lock()
	if len(m.entries) >= maxMemoEntries {
		for k := range m.entries { // an arbitrary victim: map order is random
			delete(m.entries, k)
			break
		}
	}
	m.entries[string(s.key)] = d.clone()
	m.mu.Unlock()
	m.scratch.Put(s)
}

// appendKey encodes v injectively: every value is tagged with its kind and
// strings carry their length, so two different inputs never share a key.
// Maps are encoded by sorted key. Kinds it cannot encode faithfully
// (interfaces, funcs, maps with non-string keys) make the input
// unmemoizable.
func appendKey(b []byte, v reflect.Value) ([]byte, bool) {
	switch v.Kind() {
	case reflect.String:
		return appendString(b, v.String()), true
	case reflect.Bool:
		if v.Bool() {
			return append(b, 'T'), true
		}
		return append(b, 'F'), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return binary.AppendVarint(append(b, 'i'), v.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return binary.AppendUvarint(append(b, 'u'), v.Uint()), true
	case reflect.Float32, reflect.Float64:
		return binary.BigEndian.AppendUint64(append(b, 'f'), math.Float64bits(v.Float())), true
	case reflect.Pointer:
		if v.IsNil() {
			return append(b, 'n'), true
		}
		return appendKey(append(b, 'p'), v.Elem())
	case reflect.Struct:
		b = append(b, '{')
		for i := range v.NumField() {
			var ok bool
			if b, ok = appendKey(b, v.Field(i)); !ok {
				return b, false
			}
		}
		return append(b, '}'), true
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return append(b, 'n'), true
		}
		b = binary.AppendUvarint(append(b, '['), uint64(v.Len()))
		for i := range v.Len() {
			var ok bool
			if b, ok = appendKey(b, v.Index(i)); !ok {
				return b, false
			}
		}
		return b, true
	case reflect.Map:
		// nil and empty maps both give an empty object.
		b = binary.AppendUvarint(append(b, 'm'), uint64(v.Len()))
		if v.Len() == 0 {
			return b, true
		}
		if v.Type().Key().Kind() != reflect.String {
			return b, false
		}
		if m, ok := mapOfStrings(v); ok {
			return appendStringMap(b, m), true
		}
		// Map order is random: encode the entries by sorted key.
		keys := v.MapKeys()
		slices.SortFunc(keys, func(x, y reflect.Value) int { return strings.Compare(x.String(), y.String()) })
		for _, k := range keys {
			var ok bool
			if b, ok = appendKey(b, k); !ok {
				return b, false
			}
			if b, ok = appendKey(b, v.MapIndex(k)); !ok {
				return b, false
			}
		}
		return b, true
	}
	return b, false
}

// clone gives the memo a Decision of its own when it remembers one, so the
// caller of that miss shares nothing with later hits. A hit is not cloned:
// every hit of an entry shares its maps, slice and body (three allocations
// saved on the hot path), so callers treat a Decision as read-only and build
// new maps for what they add (rate-limit headers, the decision id);
// TestMemoHitUnchanged (extauthz) fails when one writes through. A field of
// reference type added to Decision must be cloned here; TestDecisionClone
// fails until it is.
func (d Decision) clone() Decision {
	d.Headers = maps.Clone(d.Headers)
	d.ResponseHeaders = maps.Clone(d.ResponseHeaders)
	d.Body = bytes.Clone(d.Body)
	d.Limits = slices.Clone(d.Limits) // Limit holds values only
	return d
}

// appendStringMap is appendKey's encoding of a map[string]string (request
// headers, the path classification) without reflection: sorted keys, each
// key and value as appendKey encodes a string. Small maps sort on the stack.
func appendStringMap(b []byte, m map[string]string) []byte {
	var buf [8]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, m[k])
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = append(b, 's')
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// mapOfStrings is v as a map[string]string, when it is one that can be read.
func mapOfStrings(v reflect.Value) (map[string]string, bool) {
	if !v.CanInterface() {
		return nil, false
	}
	m, ok := v.Interface().(map[string]string)
	return m, ok
}
