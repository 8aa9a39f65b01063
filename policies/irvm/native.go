package irvm

import "github.com/open-policy-agent/opa/v1/ast"

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
	}
	return nil
}
