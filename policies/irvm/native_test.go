package irvm

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// TestNativesMatchOPA: a native answers what OPA's builtin answers, and
// leaves to it what it does not handle, errors included.
func TestNativesMatchOPA(t *testing.T) {
	values := []string{`1`, `2.0`, `"a"`, `"b"`, `true`, `null`, `[1, 2]`, `["k"]`, `{"k": 1}`, `{"k": {"j": 2}}`, `{1, 2}`, `{}`,
		`10`, `16`, `-7`, `123456789012`, `1e3`, `[]`, `["a", "b"]`, `["a", "", "c"]`, `["a", 1]`, `{"a", "b"}`, `""`, `":"`}
	var terms []*ast.Term
	for _, v := range values {
		terms = append(terms, ast.MustParseTerm(v))
	}
	names := []string{ast.GreaterThan.Name, ast.GreaterThanEq.Name, ast.LessThan.Name, ast.LessThanEq.Name,
		ast.NotEqual.Name, ast.Equal.Name, ast.IsNumber.Name, ast.IsString.Name, ast.ObjectGet.Name,
		ast.Concat.Name, ast.FormatInt.Name}
	bctx := topdown.BuiltinContext{Context: context.Background()}
	for _, name := range names {
		nat := nativeFor(name)
		if nat == nil {
			t.Fatalf("no native for %s", name)
		}
		arity := len(ast.BuiltinMap[name].Decl.FuncArgs().Args)
		handled := 0
		each(terms, arity, func(ops []*ast.Term) {
			got, ok := nat(append([]*ast.Term(nil), ops...))
			var want *ast.Term
			err := topdown.GetBuiltin(name)(bctx, ops, func(t *ast.Term) error { want = t; return nil })
			switch {
			case !ok:
			case err != nil:
				t.Errorf("%s%v: native %v, OPA's error %v", name, ops, got, err)
			case want == nil || got.Value.Compare(want.Value) != 0:
				t.Errorf("%s%v: native %v, OPA's %v", name, ops, got, want)
			default:
				handled++
			}
		})
		if handled == 0 {
			t.Errorf("%s: the native handled nothing", name)
		}
	}
	if nativeFor("count") != nil {
		t.Error("a native for count")
	}
}

// each calls f with every tuple of n of terms (the same term allowed).
func each(terms []*ast.Term, n int, f func([]*ast.Term)) {
	ops := make([]*ast.Term, n)
	var rec func(i int)
	rec = func(i int) {
		if i == n {
			f(ops)
			return
		}
		for _, t := range terms {
			ops[i] = t
			rec(i + 1)
		}
	}
	rec(0)
}

// A plan's calls of builtins with natives answer as topdown does, an
// error from an operand a native leaves to OPA included.
func TestNativesEvaluate(t *testing.T) {
	prog, opts := prepare(t, `x := [object.get(input.o, "k", 0), object.get(input.o, ["k", "j"], 0), input.a > input.b, input.a <= input.b, is_number(input.a), input.a != input.b]`, "data.t.x")
	for _, in := range []string{`{"o": {"k": {"j": 1}}, "a": 1, "b": "s"}`, `{"o": {}, "a": 2, "b": 1}`, `{"o": "s", "a": 1, "b": 1}`, `{"o": {"k": 1}}`} {
		got, want := both(t, prog, opts, in)
		if normalize(got) != normalize(want) {
			t.Errorf("input %s: irvm %v, topdown %v", in, got, want)
		}
	}
}
