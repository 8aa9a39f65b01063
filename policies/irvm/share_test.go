package irvm

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestShareFollowsValues: a constant collection is shared only when no
// change can reach it, however its value travels to the changed local.
func TestShareFollowsValues(t *testing.T) {
	k := operand{konst: ast.StringTerm("k")}
	l := func(n int32) operand { return operand{local: n} }
	insert := func(target int32) stmt { return stmt{op: opObjectInsert, target: target, a: k, b: k} }
	f := func() *function { return &function{name: "f", params: []int32{0, 1}, ret: 2, nlocals: 3} }
	tests := []struct {
		name   string
		funcs  []*function
		plan   block
		shared []bool // per make of the plan, in order
	}{
		{
			name:   "never changed",
			plan:   block{{op: opMakeObject, target: 3}, {op: opResultSetAdd, a: l(3)}},
			shared: []bool{true},
		},
		{
			name:   "changed where made",
			plan:   block{{op: opMakeObject, target: 3}, insert(3)},
			shared: []bool{false},
		},
		{
			name:   "copied, then the copy changed",
			plan:   block{{op: opMakeObject, target: 3}, {op: opAssignVar, a: l(3), target: 4}, insert(4)},
			shared: []bool{false},
		},
		{
			name: "put in an array, taken out by a dot, changed",
			plan: block{{op: opMakeObject, target: 3}, {op: opMakeArrayItems, target: 4, args: []operand{l(3)}},
				{op: opDot, a: l(4), b: k, target: 5}, insert(5)},
			shared: []bool{false, false}, // the array has a local item: no candidate
		},
		{
			name:   "answered by a builtin, changed",
			plan:   block{{op: opMakeObject, target: 3}, {op: opCallBuiltin, args: []operand{l(3)}, target: 4}, insert(4)},
			shared: []bool{false},
		},
		{
			name: "added to a set, taken out by a scan, changed",
			plan: block{{op: opMakeArray, target: 3}, {op: opMakeSet, target: 4}, {op: opSetAdd, target: 4, a: l(3)},
				{op: opScan, a: l(4), target: 5, value: 6, blocks: []block{{{op: opArrayAppend, target: 6, a: k}}}}},
			shared: []bool{false, false},
		},
		{
			name:   "passed to a function that changes it",
			funcs:  []*function{f()},
			plan:   block{{op: opMakeObject, target: 3}, {op: opCallFunc, fn: 0, args: []operand{l(3), l(1)}, target: 4}},
			shared: []bool{false},
		},
		{
			name:   "returned by a function, changed by the caller",
			funcs:  []*function{f()},
			plan:   block{{op: opCallFunc, fn: 0, args: []operand{l(0), l(1)}, target: 4}, insert(4)},
			shared: []bool{}, // the function's make, checked below
		},
		{
			name: "a local reused: the first value is never changed",
			plan: block{{op: opMakeObject, target: 3}, {op: opResultSetAdd, a: l(3)},
				{op: opMakeObject, target: 3}, insert(3)},
			shared: []bool{true, false},
		},
		{
			name:   "a statement the analysis does not know",
			plan:   block{{op: opMakeObject, target: 3}, {op: opcode(200), a: l(3), target: 4}},
			shared: []bool{false},
		},
		{
			name: "changed on a later turn of a scan",
			plan: block{{op: opMakeObject, target: 3}, {op: opScan, a: l(0), target: 5, value: 6, blocks: []block{{
				insert(4), {op: opAssignVar, a: l(3), target: 4},
			}}}},
			shared: []bool{false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, fn := range tt.funcs {
				switch tt.name {
				case "passed to a function that changes it":
					fn.blocks = []block{{insert(0), {op: opReturn, a: l(0)}}}
				default:
					fn.blocks = []block{{{op: opMakeObject, target: 2}, {op: opReturn, a: l(2)}}}
				}
			}
			plan := []block{tt.plan}
			markConstantMakes(tt.funcs, plan)
			shareConstants(tt.funcs, plan, 8)
			got := []bool{}
			for i := range tt.plan {
				switch s := &tt.plan[i]; s.op {
				case opMakeObject, opMakeArray, opMakeSet, opMakeArrayItems:
					got = append(got, shared(s) != nil)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.shared) {
				t.Errorf("shared = %v, want %v", got, tt.shared)
			}
			for _, fn := range tt.funcs {
				if shared(&fn.blocks[0][0]) != nil {
					t.Error("the function's make is shared")
				}
			}
		})
	}
}

// shareSrc uses constant collections that are shared (literals, defaults)
// beside collections the plan fills (a comprehension, a partial set):
// those must be made anew by each evaluation.
const shareSrc = `
kinds contains "a" if input.a
kinds contains "b" if input.b
names := {n | some n in input.names}
opts := object.union(object.get(input, "opts", {}), {"fixed": [1, 2]})
x := {"kinds": kinds, "names": names, "opts": opts, "empty": [], "set": set()}
`

// TestSharedConstantsConcurrent evaluates a plan on many goroutines at
// once while Fold makes its constants shared: a write through a shared
// value is a data race under -race, and a collection shared by mistake
// carries one evaluation's items into another's result.
func TestSharedConstantsConcurrent(t *testing.T) {
	prog, opts := prepareAs(t, shareSrc, "data.t.x", true)
	if prog.Shared() != 0 {
		t.Fatal("a lazy Program shared before its Fold")
	}
	inputs := []string{
		`{"a": true, "names": ["x"], "opts": {"o": 1}}`,
		`{"b": true, "names": ["y", "z"]}`,
		`{"names": []}`,
	}
	want := make([]string, len(inputs))
	for i, in := range inputs {
		got, w := both(t, prog, opts, in)
		if normalize(got) != normalize(w) {
			t.Fatalf("input %s: irvm %v, topdown %v", in, got, w)
		}
		want[i] = normalize(w)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		prog.Fold(context.Background())
		if prog.Shared() == 0 {
			t.Error("nothing shared: the test does not test sharing")
		}
	}()
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				n := (g + i) % len(inputs)
				res, _, err := prog.Eval(context.Background(), ast.MustParseTerm(inputs[n]).Value)
				if err != nil {
					t.Error(err)
					return
				}
				var v any
				res.Value.(ast.Object).Foreach(func(_, t *ast.Term) { v, _ = ast.JSON(t.Value) })
				if got := normalize(v); got != want[n] {
					t.Errorf("input %s: %s, want %s", inputs[n], got, want[n])
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestSharePanicSharesNothing: an analysis that fails on a plan it
// misreads (here a call of a function the plan lacks) shares nothing and
// does not end the process: Fold runs on a goroutine of its own.
func TestSharePanicSharesNothing(t *testing.T) {
	plan := []block{{{op: opMakeObject, target: 2}, {op: opCallFunc, fn: 5, args: []operand{{local: 2}}, target: 3}}}
	markConstantMakes(nil, plan)
	p := &Program{plan: plan, nlocals: 4}
	p.Fold(context.Background())
	if p.Shared() != 0 || shared(&plan[0][0]) != nil {
		t.Fatalf("shared %d after a failed analysis", p.Shared())
	}
}

// Values reach a change across blocks and calls too: out of a nested
// block, through a function that passes its parameter on to one that
// changes it, through a set a callee adds to and its caller scans, and
// through a set's dot, which answers with the key it was given.
func TestShareFollowsValuesAcross(t *testing.T) {
	k := operand{konst: ast.StringTerm("k")}
	l := func(n int32) operand { return operand{local: n} }
	insert := func(target int32) stmt { return stmt{op: opObjectInsert, target: target, a: k, b: k} }
	t.Run("made in a block, changed after it", func(t *testing.T) {
		inner := stmt{op: opBlock, blocks: []block{{{op: opMakeObject, target: 3}}}}
		plan := []block{{{op: opBlock, blocks: []block{{inner}}}, insert(3)}}
		markConstantMakes(nil, plan)
		shareConstants(nil, plan, 8)
		if shared(&plan[0][0].blocks[0][0].blocks[0][0]) != nil {
			t.Error("shared, and changed after the block")
		}
	})
	t.Run("passed on by a function to one that changes it", func(t *testing.T) {
		f0 := &function{name: "f0", params: []int32{0, 1}, nlocals: 3,
			blocks: []block{{insert(0), {op: opReturn, a: l(1)}}}}
		f1 := &function{name: "f1", params: []int32{0, 1}, nlocals: 4,
			blocks: []block{{{op: opMakeObject, target: 2}, {op: opCallFunc, fn: 0, args: []operand{l(2), l(1)}, target: 3}, {op: opReturn, a: l(1)}}}}
		plan := []block{{{op: opCallFunc, fn: 1, args: []operand{l(0), l(1)}, target: 3}}}
		funcs := []*function{f0, f1}
		markConstantMakes(funcs, plan)
		shareConstants(funcs, plan, 8)
		if shared(&f1.blocks[0][0]) != nil {
			t.Error("shared, and changed by f0")
		}
	})
	t.Run("added by a callee to the caller's set, scanned and changed by the caller", func(t *testing.T) {
		f0 := &function{name: "f0", params: []int32{0, 1}, nlocals: 4,
			blocks: []block{{{op: opMakeObject, target: 2}, {op: opSetAdd, target: 0, a: l(2)}, {op: opReturn, a: l(1)}}}}
		plan := []block{{{op: opMakeSet, target: 3}, {op: opCallFunc, fn: 0, args: []operand{l(3), l(1)}, target: 4},
			{op: opScan, a: l(3), target: 5, value: 6, blocks: []block{{insert(6)}}}}}
		funcs := []*function{f0}
		markConstantMakes(funcs, plan)
		shareConstants(funcs, plan, 8)
		if shared(&f0.blocks[0][0]) != nil {
			t.Error("shared, and changed by the plan")
		}
	})
	t.Run("a set's dot answers with the key", func(t *testing.T) {
		plan := []block{{{op: opMakeObject, target: 3}, {op: opMakeSet, target: 4}, {op: opMakeObject, target: 5},
			{op: opSetAdd, target: 4, a: l(5)}, {op: opDot, a: l(4), b: l(3), target: 6}, insert(6)}}
		markConstantMakes(nil, plan)
		shareConstants(nil, plan, 8)
		if shared(&plan[0][0]) != nil {
			t.Error("shared, and changed through the dot")
		}
	})
}

// A shared object made with its keys out of order is sorted before any
// evaluation reads it: OPA sorts at the first read under a sync.Once that
// Copy does not take, so sorting later would be a write racing a Copy.
func TestSharedObjectSortedBeforeShared(t *testing.T) {
	items := []operand{{konst: ast.StringTerm("b")}, {konst: ast.IntNumberTerm(2)}, {konst: ast.StringTerm("a")}, {konst: ast.IntNumberTerm(1)}}
	plan := []block{{{op: opMakeObjectItems, target: 3, args: items}, {op: opResultSetAdd, a: operand{local: 3}}}}
	markConstantMakes(nil, plan)
	shareConstants(nil, plan, 8)
	obj, ok := shared(&plan[0][0]).Value.(ast.Object)
	if !ok {
		t.Fatal("not shared")
	}
	var wg sync.WaitGroup
	wg.Go(func() { obj.Copy() })
	wg.Go(func() { obj.Keys() })
	wg.Wait()
	if got := obj.String(); got != `{"a": 1, "b": 2}` {
		t.Fatal(got)
	}
}
