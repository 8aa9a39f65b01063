package irvm

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
)

// TestFuse: a make and the inserts that fill it become one make of all
// the items, with the statements in between that cannot leave the block
// run first; where a statement in between could change what the items
// are, or leave the block, the inserts after it stay.
func TestFuse(t *testing.T) {
	l := func(n int32) operand { return operand{local: n} }
	k := func(s string) operand { return operand{konst: ast.StringTerm(s)} }
	num := func(target int32, n int) stmt {
		return stmt{op: opMakeNumber, target: target, num: ast.InternedTerm(n)}
	}
	insert := func(obj int32, key string, v operand) stmt {
		return stmt{op: opObjectInsert, target: obj, a: k(key), b: v}
	}
	appendTo := func(arr int32, v operand) stmt { return stmt{op: opArrayAppend, target: arr, a: v} }
	tests := []struct {
		name string
		in   block
		want string
	}{
		{
			name: "a number set in between becomes a constant item",
			in:   block{{op: opMakeObject, target: 3}, insert(3, "a", l(0)), num(4, 200), insert(3, "s", l(4))},
			want: `number L4; object L3 ["a" L0 "s" 200]`,
		},
		{
			name: "a statement that can be undefined stops it",
			in:   block{{op: opMakeObject, target: 3}, insert(3, "a", l(0)), {op: opDot, target: 4, a: l(0), b: k("b")}, insert(3, "b", l(4))},
			want: `object L3 ["a" L0]; dot L4; insert L3`,
		},
		{
			name: "a statement that changes what an item read stops it",
			in:   block{{op: opMakeArray, target: 3}, appendTo(3, l(4)), {op: opAssignVar, target: 4, a: l(5)}, appendTo(3, l(4))},
			want: `array L3 [L4]; assign L4; append L3`,
		},
		{
			name: "a local set to two numbers in turn gives each item its own",
			in:   block{{op: opMakeObject, target: 3}, num(4, 1), insert(3, "a", l(4)), num(4, 2), insert(3, "b", l(4))},
			want: `number L4; number L4; object L3 ["a" 1 "b" 2]`,
		},
		{
			name: "a local an item reads set again stops it",
			in:   block{{op: opMakeObject, target: 3}, insert(3, "a", l(4)), num(4, 2), insert(3, "b", l(4))},
			want: `object L3 ["a" L4]; number L4; insert L3`,
		},
		{
			name: "a statement that reads the collection stops it",
			in:   block{{op: opMakeArray, target: 3}, {op: opAssignVar, target: 5, a: l(3)}, appendTo(3, k("x"))},
			want: `make L3; assign L5; append L3`,
		},
		{
			name: "statements in between not followed by an item stay after the make",
			in:   block{{op: opMakeArray, target: 3}, appendTo(3, l(0)), num(4, 1), {op: opDot, target: 5, a: l(0), b: k("b")}},
			want: `array L3 [L0]; number L4; dot L5`,
		},
		{
			name: "a nested collection is made first, at once too",
			in: block{{op: opMakeArray, target: 3}, {op: opMakeObject, target: 4}, num(6, 1), insert(4, "n", l(6)),
				insert(4, "a", l(0)), appendTo(3, l(4))},
			want: `number L6; object L4 ["n" 1 "a" L0]; array L3 [L4]`,
		},
		{
			name: "a set of constants",
			in:   block{{op: opMakeSet, target: 3}, {op: opSetAdd, target: 3, a: k("a")}, {op: opSetAdd, target: 3, a: k("b")}},
			want: `set L3 ["a" "b"]`,
		},
		{
			name: "a key inserted twice stays an insert",
			in:   block{{op: opMakeObject, target: 3}, insert(3, "a", l(0)), insert(3, "a", l(1))},
			want: `object L3 ["a" L0]; insert L3`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, describe(fuse(tt.in))); diff != "" {
				t.Errorf("fuse (-want +got):\n%s", diff)
			}
		})
	}
}

func describe(b block) string {
	names := map[opcode]string{opMakeNumber: "number", opDot: "dot", opAssignVar: "assign", opObjectInsert: "insert",
		opArrayAppend: "append", opMakeObject: "make", opMakeArray: "make", opMakeSet: "make",
		opMakeObjectItems: "object", opMakeArrayItems: "array", opMakeSetItems: "set"}
	var out []string
	for _, s := range b {
		d := fmt.Sprintf("%s L%d", names[s.op], s.target)
		if s.args != nil {
			var items []string
			for _, a := range s.args {
				if a.konst != nil {
					items = append(items, a.konst.String())
				} else {
					items = append(items, fmt.Sprintf("L%d", a.local))
				}
			}
			d += " [" + strings.Join(items, " ") + "]"
		}
		out = append(out, d)
	}
	return strings.Join(out, "; ")
}

// Collections the planner fills around other statements (a nested
// object, a number) or fills from constants (a set literal) evaluate as
// topdown does, and those of constants alone are shared.
func TestFusedCollections(t *testing.T) {
	const src = `
x := {"status": 200, "h": input.h, "l": [{"k": input.k, "n": 1, "o": {"p": 2}}], "member": member, "d": object.get(input, "d", {"rate": 1})}
member if input.s in {"a", "b"}
`
	prog, opts := prepare(t, src, "data.t.x")
	if prog.Shared() < 3 { // {"a", "b"}, {"p": 2}, {"rate": 1}
		t.Errorf("%d collections shared, want at least 3", prog.Shared())
	}
	for _, in := range []string{`{"h": "x", "k": 1, "s": "a"}`, `{"h": [1], "s": "c", "d": {"q": 1}}`, `{}`} {
		got, want := both(t, prog, opts, in)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("input %s: irvm and topdown differ (-topdown +irvm):\n%s", in, diff)
		}
	}
}
