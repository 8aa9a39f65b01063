package irvm

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
)

// TestPathKeysAreDistinct: a key holding the separator a joined path would
// use names another value than the path it spells (review of the path
// cache: "a\x00b" and a.b shared one slot).
func TestPathKeysAreDistinct(t *testing.T) {
	for _, src := range []string{
		"x := [input[\"a\\u0000b\"], input.a.b]",
		"x := [input.a.b, input[\"a\\u0000b\"]]",
	} {
		prog, opts := prepare(t, src, "data.t.x")
		in := `{"a": {"b": 1}, "a\u0000b": 2}`
		got, want := both(t, prog, opts, in)
		if normalize(got) != normalize(want) {
			t.Errorf("%s: irvm %v, topdown %v", src, got, want)
		}
	}
}

// A hand-made plan: f(input, data, arg) writes its parameter 2 in a branch
// it does not take, then reads arg.j.
//
// A function's arguments besides input and data are each call's own:
// one the body also writes (here in a branch it does not take) still has no
// path, and a dot on it reads the argument.
func TestPathNotForArguments(t *testing.T) {
	L := func(l int) ir.Operand { return ir.Operand{Value: ir.Local(l)} }
	S := func(i int) ir.Operand { return ir.Operand{Value: ir.StringIndex(i)} }
	// strings: 0 "k", 1 "j", 2 "o", 3 "a", 4 "b", 5 "x"
	strs := []*ir.StringConst{{Value: "k"}, {Value: "j"}, {Value: "o"}, {Value: "a"}, {Value: "b"}, {Value: "x"}}
	f := &ir.Func{Name: "f", Params: []ir.Local{0, 1, 2}, Return: 3, Blocks: []*ir.Block{
		{Stmts: []ir.Stmt{&ir.BlockStmt{Blocks: []*ir.Block{{Stmts: []ir.Stmt{
			&ir.EqualStmt{A: S(3), B: S(4)}, // "a" == "b": not taken
			&ir.DotStmt{Source: L(0), Key: S(0), Target: 2},
		}}}}}},
		{Stmts: []ir.Stmt{
			&ir.DotStmt{Source: L(2), Key: S(1), Target: 3},
			&ir.ReturnLocalStmt{Source: 3},
		}},
	}}
	plan := &ir.Plan{Name: "x", Blocks: []*ir.Block{{Stmts: []ir.Stmt{
		&ir.DotStmt{Source: L(0), Key: S(0), Target: 2}, // input.k
		&ir.DotStmt{Source: L(2), Key: S(1), Target: 3}, // input.k.j
		&ir.DotStmt{Source: L(0), Key: S(2), Target: 4}, // input.o
		&ir.CallStmt{Func: "f", Args: []ir.Operand{L(0), L(1), L(4)}, Result: 5},
		&ir.MakeObjectStmt{Target: 6},
		&ir.ObjectInsertStmt{Key: S(3), Value: L(3), Object: 6},
		&ir.ObjectInsertStmt{Key: S(4), Value: L(5), Object: 6},
		&ir.MakeObjectStmt{Target: 7},
		&ir.ObjectInsertStmt{Key: S(5), Value: L(6), Object: 7},
		&ir.ResultSetAddStmt{Value: 7},
	}}}}
	pol := &ir.Policy{Static: &ir.Static{Strings: strs}, Plans: &ir.Plans{Plans: []*ir.Plan{plan}}, Funcs: &ir.Funcs{Funcs: []*ir.Func{f}}}
	prog, err := Prepare(t.Context(), pol, ast.NewObject(), ast.CapabilitiesForThisVersion())
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := prog.EvalValue(t.Context(), ast.MustParseTerm(`{"k": {"j": "from input.k"}, "o": {"j": "from the argument"}}`).Value)
	want := ast.MustParseTerm(`{"a": "from input.k", "b": "from the argument"}`).Value
	if err != nil || res == nil || ast.Compare(res, want) != 0 {
		t.Fatalf("%v, %v; want %v", res, err, want)
	}
}
