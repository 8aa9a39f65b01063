package irvm

import (
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// A native is a builtin's answer computed here, for the cheap builtins a
// decision calls most: calling one of OPA's costs a copy of its
// BuiltinContext (about 35 words) twice, in the call and in OPA's error
// wrapper, more than the builtin's own work. A native answers exactly as
// OPA's builtin does (v1/topdown: comparison.go, type.go, object.go) or
// not at all (ok false: an operand it does not handle, an error), and then
// OPA's builtin is called. The same OPA version is checked by
// TestNativesMatchOPA.
type native func(ops []*ast.Term) (_ *ast.Term, ok bool)

// nativeFor is the native of OPA's builtin name, nil for none. It goes by
// name: a builtin re-registered with topdown.RegisterBuiltinFunc would be
// passed over (keygate registers none).
func nativeFor(name string) native {
	switch name {
	case ast.GreaterThan.Name:
		return func(o []*ast.Term) (*ast.Term, bool) {
			return ast.InternedTerm(o[0].Value.Compare(o[1].Value) > 0), true
		}
	case ast.GreaterThanEq.Name:
		return func(o []*ast.Term) (*ast.Term, bool) {
			return ast.InternedTerm(o[0].Value.Compare(o[1].Value) >= 0), true
		}
	case ast.LessThan.Name:
		return func(o []*ast.Term) (*ast.Term, bool) {
			return ast.InternedTerm(o[0].Value.Compare(o[1].Value) < 0), true
		}
	case ast.LessThanEq.Name:
		return func(o []*ast.Term) (*ast.Term, bool) {
			return ast.InternedTerm(o[0].Value.Compare(o[1].Value) <= 0), true
		}
	case ast.NotEqual.Name:
		return func(o []*ast.Term) (*ast.Term, bool) { return ast.InternedTerm(!o[0].Equal(o[1])), true }
	case ast.Equal.Name:
		return func(o []*ast.Term) (*ast.Term, bool) { return ast.InternedTerm(o[0].Equal(o[1])), true }
	case ast.IsNumber.Name:
		return func(o []*ast.Term) (*ast.Term, bool) {
			_, ok := o[0].Value.(ast.Number)
			return ast.InternedTerm(ok), true
		}
	case ast.IsString.Name:
		return func(o []*ast.Term) (*ast.Term, bool) {
			_, ok := o[0].Value.(ast.String)
			return ast.InternedTerm(ok), true
		}
	case ast.ObjectGet.Name:
		// By one key: a path (an array) or an operand that is not an
		// object (an error) is OPA's.
		return func(o []*ast.Term) (*ast.Term, bool) {
			obj, ok := o[0].Value.(ast.Object)
			if _, path := o[1].Value.(*ast.Array); !ok || path {
				return nil, false
			}
			if v := obj.Get(o[1]); v != nil {
				return v, true
			}
			return o[2], true
		}
	case ast.Concat.Name:
		return nativeConcat
	case ast.FormatInt.Name:
		// In base 10, of an integer: OPA's fast path, which interns the
		// small numbers' strings; anything else is OPA's.
		return func(o []*ast.Term) (*ast.Term, bool) {
			n, ok1 := o[0].Value.(ast.Number)
			base, ok2 := o[1].Value.(ast.Number)
			if !ok1 || !ok2 || base != "10" {
				return nil, false
			}
			if t := ast.InternedStringTermFromNumber(n); t != nil {
				return t, true
			}
			if i, ok := n.Int(); ok {
				return ast.InternedIntegerString(i), true
			}
			return nil, false
		}
	}
	return nil
}

// nativeConcat is concat of an array of two or more strings, joined in one
// allocation (OPA's goes through a bytes.Buffer behind an interface: three
// more). Fewer elements, a set, an element that is not a string: OPA's.
func nativeConcat(o []*ast.Term) (*ast.Term, bool) {
	sep, ok1 := o[0].Value.(ast.String)
	arr, ok2 := o[1].Value.(*ast.Array)
	if !ok1 || !ok2 || arr.Len() < 2 {
		return nil, false
	}
	n := len(sep) * (arr.Len() - 1)
	for i := range arr.Len() {
		s, ok := arr.Elem(i).Value.(ast.String)
		if !ok {
			return nil, false
		}
		n += len(s)
	}
	var b strings.Builder
	b.Grow(n)
	for i := range arr.Len() {
		if i > 0 {
			b.WriteString(string(sep))
		}
		b.WriteString(string(arr.Elem(i).Value.(ast.String)))
	}
	return ast.InternedTerm(b.String()), true
}
