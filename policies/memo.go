package policies

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
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

// newMemo analyses the policy; it returns nil (no memo) when the policy's
// answer may depend on more than its input and data.
//
// Which input fields the policy reads is decided on the policy as data
// leaves it: partial evaluation with only the input unknown drops the rules
// that the deployment's data switches off (the default policy reads
// x-request-id only when body_shape is error_object), and the residual
// program, with every original rule it still refers to, is searched for
// input refs. If partial evaluation fails, every module is searched.
func newMemo(ctx context.Context, compiler *ast.Compiler, modules []*ast.Module, documents map[string]any) *memo {
	var reads [][]string
	deterministic := true
	var dataRefs []ast.Ref
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Rule:
			// A rule that holds only without keygate's path classification
			// (a test's fallback) never reads anything when keygate decides.
			return withoutClassification(x.Body)
		case ast.Body:
			return withoutClassification(x)
		case ast.Ref:
			if name := builtinName(x); name != "" && !deterministicBuiltin(name) {
				deterministic = false
			}
			if x.HasPrefix(ast.DefaultRootRef) {
				dataRefs = append(dataRefs, x)
			}
			if !x.HasPrefix(ast.InputRootRef) {
				return false
			}
			reads = append(reads, constantPrefix(x[1:]))
			for _, t := range x[1:] {
				vis.Walk(t)
			}
			return true
		case ast.Var:
			// A bare `input` (passed whole to a function, say) reads everything.
			if x.Equal(ast.InputRootDocument.Value) {
				reads = append(reads, nil)
			}
		}
		return false
	})
	// Determinism is a property of every rule, reachable or not.
	for _, m := range modules {
		vis.Walk(m)
	}
	if !deterministic {
		return nil
	}
	residual, err := partialEval(ctx, compiler, documents)
	if err == nil {
		compiled := compiledModules(compiler)
		reads, dataRefs = nil, nil
		for _, x := range residual {
			vis.Walk(x)
		}
		// The residual refers to original rules it did not inline: search
		// them too, and what they refer to in turn. Compiled modules name
		// every rule by its full data path, as the residual does.
		seen := map[*ast.Rule]bool{}
		for len(dataRefs) > 0 {
			ref := dataRefs[len(dataRefs)-1]
			dataRefs = dataRefs[:len(dataRefs)-1]
			for _, m := range compiled {
				for _, r := range m.Rules {
					if !seen[r] && refersTo(ref, r) {
						seen[r] = true
						vis.Walk(r)
					}
				}
			}
		}
	}
	mm := &memo{entries: make(map[string]Decision)}
	mm.scratch.New = func() any { return &memoScratch{key: make([]byte, 0, 512)} }
	for _, f := range ignorable {
		if !readsPath(reads, f.path) {
			mm.ignore = append(mm.ignore, f.clear)
		}
	}
	return mm
}

// partialEval evaluates the decision with data known and the input unknown,
// returning the residual queries and support modules.
func partialEval(ctx context.Context, compiler *ast.Compiler, documents map[string]any) (_ []any, err error) {
	// The analysis only narrows what a memo key holds; if partial evaluation
	// breaks on some policy, the caller falls back to searching every module.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("policies: partial evaluation: %v", p)
		}
	}()
	if documents == nil {
		documents = map[string]any{}
	}
	opts := []func(*rego.Rego){
		rego.Query(Entrypoint),
		rego.Store(inmem.NewFromObject(documents)),
		rego.Capabilities(Capabilities()),
		rego.SetRegoVersion(ast.RegoV1),
		rego.Unknowns([]string{"input"}),
		rego.Compiler(compiler),
	}
	pq, err := rego.New(opts...).Partial(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, len(pq.Queries)+len(pq.Support))
	for _, q := range pq.Queries {
		out = append(out, q)
	}
	for _, m := range pq.Support {
		out = append(out, m)
	}
	return out, nil
}

// refersTo reports whether a data ref may reach rule r: the ref's constant
// prefix and the rule's path agree as far as both go. A rule outside a
// module is assumed reachable.
func refersTo(ref ast.Ref, r *ast.Rule) bool {
	if r.Module == nil {
		return true
	}
	path := r.Module.Package.Path.Extend(r.Head.Ref().GroundPrefix())
	n := 1 // both start with the data root
	for n < len(ref) && ref[n].IsGround() {
		n++
	}
	n = min(n, len(path))
	return ref[:n].Equal(path[:n])
}

// constantPrefix is the leading string keys of a ref: input.a.b[x].c → [a b].
func constantPrefix(ref ast.Ref) []string {
	var out []string
	for _, t := range ref {
		s, ok := t.Value.(ast.String)
		if !ok {
			break
		}
		out = append(out, string(s))
	}
	return out
}

// readsPath reports whether any read reaches path: a read of path itself, of
// something inside it, or of an ancestor (which hands the rule the whole
// subtree).
func readsPath(reads [][]string, path []string) bool {
	for _, r := range reads {
		n := min(len(r), len(path))
		if slices.Equal(r[:n], path[:n]) {
			return true
		}
	}
	return false
}

func builtinName(ref ast.Ref) string {
	if len(ref) == 0 {
		return ""
	}
	if _, ok := ref[0].Value.(ast.Var); !ok {
		return ""
	}
	for _, t := range ref[1:] {
		if _, ok := t.Value.(ast.String); !ok {
			return ""
		}
	}
	name := ref.String()
	if _, ok := ast.BuiltinMap[name]; !ok {
		return ""
	}
	return name
}

// deterministicBuiltin: same arguments, same answer, no side effect worth
// keeping (print and trace output would vanish on a memo hit).
func deterministicBuiltin(name string) bool {
	switch name {
	case "print", "internal.print", "trace",
		// Not flagged by OPA, but certificate verification reads the clock.
		"crypto.x509.parse_and_verify_certificates", "crypto.x509.parse_and_verify_certificates_with_options":
		return false
	}
	return !ast.BuiltinMap[name].Nondeterministic
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
		return d.clone(), nil, true
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
		b = append(b, 's')
		b = binary.AppendUvarint(b, uint64(v.Len()))
		return append(b, v.String()...), true
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

// clone gives every caller a Decision of its own, so that one that edits
// its headers (adding rate-limit headers, say) cannot change what the memo
// hands the next request. A field of reference type added to Decision must
// be cloned here; TestDecisionClone fails until it is.
func (d Decision) clone() Decision {
	d.Headers = maps.Clone(d.Headers)
	d.ResponseHeaders = maps.Clone(d.ResponseHeaders)
	d.Body = bytes.Clone(d.Body)
	d.Limits = slices.Clone(d.Limits) // Limit holds values only
	return d
}

// classificationRef is input.request.prefixes, which keygate always sets.
var classificationRef = ast.MustParseRef("input.request.prefixes")

// withoutClassification reports whether body holds only when input.request.
// prefixes is undefined: it has the expression `not input.request.prefixes`.
// keygate always sets that field when it decides, so such a body never
// holds then, and what it reads cannot matter to a remembered decision.
func withoutClassification(body ast.Body) bool {
	for _, e := range body {
		if t, ok := e.Terms.(*ast.Term); ok && e.Negated && len(e.With) == 0 {
			if r, ok := t.Value.(ast.Ref); ok && r.Equal(classificationRef) {
				return true
			}
		}
	}
	return false
}
