package irvm

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
)

// TestMarkPaths: a dot has a path when what its source holds is the same
// in every frame of an evaluation, never when a local can hold two things.
func TestMarkPaths(t *testing.T) {
	l := func(n int32) operand { return operand{local: n} }
	k := func(s string) operand { return operand{konst: ast.StringTerm(s)} }
	dot := func(src int32, key string, target int32) stmt {
		return stmt{op: opDot, a: l(src), b: k(key), target: target}
	}
	tests := []struct {
		name string
		plan block
		want []int32 // each dot's path, in order (0: none)
	}{
		{
			name: "input and its fields, again through a copy",
			plan: block{dot(0, "a", 3), dot(3, "b", 4), {op: opAssignVar, a: l(3), target: 5}, dot(5, "b", 6), dot(0, "a", 7)},
			want: []int32{1, 2, 2, 1},
		},
		{
			name: "a local set to one path in two places",
			plan: block{dot(0, "a", 3), {op: opBlock, blocks: []block{{dot(0, "a", 3)}}}, dot(3, "b", 4)},
			want: []int32{1, 1, 2},
		},
		{
			name: "a local set to two paths",
			plan: block{dot(0, "a", 3), dot(0, "b", 3), dot(3, "c", 4)},
			want: []int32{1, 2, 0},
		},
		{
			name: "a local an insert changes",
			plan: block{dot(0, "a", 3), {op: opObjectInsert, target: 3, a: k("x"), b: k("y")}, dot(3, "x", 4)},
			want: []int32{1, 0},
		},
		{
			name: "a scan's value",
			plan: block{dot(0, "a", 3), {op: opScan, a: l(3), target: 4, value: 5, blocks: []block{{dot(5, "b", 6)}}}},
			want: []int32{1, 0},
		},
		{
			name: "a dot by a local key",
			plan: block{dot(0, "a", 3), {op: opDot, a: l(0), b: l(3), target: 4}},
			want: []int32{1, 0},
		},
		{
			name: "a local reset",
			plan: block{dot(0, "a", 3), {op: opResetLocal, target: 3}, dot(3, "b", 4)},
			want: []int32{1, 0},
		},
		{
			name: "input set",
			plan: block{dot(0, "a", 3), {op: opAssignVar, a: l(3), target: 0}},
			want: []int32{0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			markPaths(nil, []block{tt.plan})
			var got []int32
			walkStmts([]block{tt.plan}, func(s *stmt) {
				if s.op == opDot {
					got = append(got, s.path)
				}
			})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("paths (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("a call that passes another input", func(t *testing.T) {
		f := &function{name: "f", params: []int32{0, 1}, nlocals: 3, memo: true,
			blocks: []block{{dot(0, "a", 2), {op: opReturn, a: l(2)}}}}
		plan := []block{{dot(0, "a", 3), {op: opCallFunc, fn: 0, args: []operand{l(3), l(1)}, target: 4}}}
		if n := markPaths([]*function{f}, plan); n != 0 || f.blocks[0][0].path != 0 || plan[0][0].path != 0 {
			t.Errorf("%d paths with a call that passes input.a as input", n)
		}
	})
}

// Paths read in several functions, through copies and a function's
// value, answer as topdown does, an undefined one included, and are
// read anew by each evaluation.
func TestPathsEvaluate(t *testing.T) {
	const src = `
k := input.key
f(x) := y if y := input.key[x]
mode := input.key.mode if input.key.live
else := "none"
x := {"id": input.key.id, "mode": mode, "m": k.mode, "f": f("id"), "n": object.get(input, ["key", "n"], 0), "r": input.request.path, "c": data.cfg.limits.x, "c2": data.cfg.limits.y}
`
	prog, opts := prepare(t, src, "data.t.x")
	if prog.npaths == 0 {
		t.Fatal("no paths: the test does not test them")
	}
	for _, in := range []string{
		`{"key": {"id": "a", "mode": "live", "live": true}, "request": {"path": "/p"}}`,
		`{"key": {"id": "b", "mode": "test"}}`,
		`{"key": "s"}`,
		`{}`,
	} {
		got, want := both(t, prog, opts, in)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("input %s: irvm and topdown differ (-topdown +irvm):\n%s", in, diff)
		}
	}
	// The next evaluation reads each path anew.
	st := prog.newState()
	st.begin(context.Background(), ast.MustParseTerm(`{"key": {"id": "a"}}`))
	if r := st.runBlocks(st.stack[:prog.nlocals], prog.plan); r != fell {
		t.Fatalf("run = %d", r)
	}
	st.end()
	for i, v := range st.paths {
		if v != nil {
			t.Fatalf("path %d kept after the evaluation: %v", i, v)
		}
	}
}

// TestMarkPathsLeavesNoneWhenAFunctionFails: a plan whose dots markPaths
// numbers before a function that writes input (local 0) rules paths out
// keeps no path on those dots either. It kept them, and every evaluation
// then indexed a slot it had not made (an error for every decision), and
// the Program's image was refused.
func TestMarkPathsLeavesNoneWhenAFunctionFails(t *testing.T) {
	local := func(l int) ir.Operand { return ir.Operand{Value: ir.Local(l)} }
	str := func(i int) ir.Operand { return ir.Operand{Value: ir.StringIndex(i)} }
	writesInput := &ir.Func{Name: "g", Params: []ir.Local{0, 1}, Return: 2, Blocks: []*ir.Block{{Stmts: []ir.Stmt{
		&ir.AssignVarStmt{Source: local(1), Target: 0},
		&ir.ReturnLocalStmt{Source: 0},
	}}}}
	plan := &ir.Plan{Name: "x", Blocks: []*ir.Block{{Stmts: []ir.Stmt{
		&ir.DotStmt{Source: local(0), Key: str(0), Target: 2},
		&ir.MakeObjectStmt{Target: 3},
		&ir.ObjectInsertStmt{Key: str(1), Value: local(2), Object: 3},
		&ir.ResultSetAddStmt{Value: 3},
	}}}}
	pol := &ir.Policy{
		Static: &ir.Static{Strings: []*ir.StringConst{{Value: "k"}, {Value: "a"}}},
		Plans:  &ir.Plans{Plans: []*ir.Plan{plan}},
		Funcs:  &ir.Funcs{Funcs: []*ir.Func{writesInput}},
	}
	caps := ast.CapabilitiesForThisVersion()
	prog, err := PrepareLazily(pol, ast.NewObject(), caps)
	if err != nil {
		t.Fatal(err)
	}
	if prog.npaths != 0 || prog.plan[0][0].path != 0 {
		t.Fatalf("npaths %d, the plan's dot reads path %d: want none", prog.npaths, prog.plan[0][0].path)
	}
	if _, _, err := prog.EvalValue(t.Context(), ast.MustParseTerm(`{"k": 1}`).Value); err != nil {
		t.Fatal(err)
	}
	img, err := prog.AppendImage(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadImage(string(img), ast.NewObject(), caps); err != nil {
		t.Fatal(err)
	}

	// The same when the dot marked first is in a function before the one
	// that writes input.
	readsKey := &ir.Func{Name: "f", Params: []ir.Local{0, 1}, Return: 2, Blocks: []*ir.Block{{Stmts: []ir.Stmt{
		&ir.DotStmt{Source: local(0), Key: str(0), Target: 2},
		&ir.ReturnLocalStmt{Source: 2},
	}}}}
	callsF := &ir.Plan{Name: "x", Blocks: []*ir.Block{{Stmts: []ir.Stmt{
		&ir.CallStmt{Func: "f", Args: []ir.Operand{local(0), local(1)}, Result: 2},
		&ir.MakeObjectStmt{Target: 3},
		&ir.ObjectInsertStmt{Key: str(1), Value: local(2), Object: 3},
		&ir.ResultSetAddStmt{Value: 3},
	}}}}
	pol = &ir.Policy{
		Static: pol.Static,
		Plans:  &ir.Plans{Plans: []*ir.Plan{callsF}},
		Funcs:  &ir.Funcs{Funcs: []*ir.Func{readsKey, writesInput}},
	}
	if prog, err = PrepareLazily(pol, ast.NewObject(), caps); err != nil {
		t.Fatal(err)
	}
	if prog.npaths != 0 || prog.funcs[0].blocks[0][0].path != 0 {
		t.Fatalf("npaths %d, f's dot reads path %d: want none", prog.npaths, prog.funcs[0].blocks[0][0].path)
	}
	if _, _, err := prog.EvalValue(t.Context(), ast.MustParseTerm(`{"k": 1}`).Value); err != nil {
		t.Fatal(err)
	}
}
