package irvm

import (
	"bytes"
	"fmt"
	"reflect"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Diff is the first difference between two Programs as prepared: their
// functions, blocks and statements field by field, "" for none. It is for
// tests of images (LoadImage of AppendImage against Prepare), in this
// package and in the one that keeps the built-in policy's image. Values
// set while evaluating (a pure function's value, a shared make's value)
// are left out; a shared make is compared by its place, a builtin by its
// name, flags and implementation, a function called by its number.
func Diff(a, b *Program) string {
	d := &differ{strings: map[*ast.Term]*ast.Term{}}
	switch {
	case len(a.funcs) != len(b.funcs):
		return fmt.Sprintf("%d functions, %d", len(a.funcs), len(b.funcs))
	case a.nlocals != b.nlocals || a.maxStack != b.maxStack || a.memoN != b.memoN || a.npaths != b.npaths || a.lazy != b.lazy:
		return fmt.Sprintf("program (locals, stack, memo, paths, lazy) %d %d %d %d %v, %d %d %d %d %v",
			a.nlocals, a.maxStack, a.memoN, a.npaths, a.lazy, b.nlocals, b.maxStack, b.memoN, b.npaths, b.lazy)
	}
	for i, fa := range a.funcs {
		fb := b.funcs[i]
		if fa.name != fb.name || !reflect.DeepEqual(fa.params, fb.params) || fa.ret != fb.ret || fa.nlocals != fb.nlocals ||
			fa.memo != fb.memo || fa.slot != fb.slot || fa.pure != fb.pure {
			return fmt.Sprintf("function %d: %+v, %+v", i, fa, fb)
		}
		if s := d.blocks(fa.name, fa.blocks, fb.blocks); s != "" {
			return s
		}
	}
	return d.blocks("plan", a.plan, b.plan)
}

// differ compares constants: a string of one Program is one Term where it
// is one in the other (as Prepare makes one per static string).
type differ struct{ strings map[*ast.Term]*ast.Term }

func (d *differ) blocks(where string, a, b []block) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%s: %d blocks, %d", where, len(a), len(b))
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return fmt.Sprintf("%s: block %d: %d statements, %d", where, i, len(a[i]), len(b[i]))
		}
		for j := range a[i] {
			at := fmt.Sprintf("%s: block %d: statement %d", where, i, j)
			if s := d.stmt(at, &a[i][j], &b[i][j]); s != "" {
				return s
			}
		}
	}
	return ""
}

func (d *differ) stmt(at string, a, b *stmt) string {
	if a.op != b.op || a.path != b.path || a.target != b.target || a.value != b.value || a.index != b.index || a.fn != b.fn ||
		(a.share == nil) != (b.share == nil) {
		return fmt.Sprintf("%s: %+v, %+v", at, *a, *b)
	}
	if !d.operands(append([]operand{a.a, a.b, {konst: a.num}}, a.args...), append([]operand{b.a, b.b, {konst: b.num}}, b.args...)) {
		return fmt.Sprintf("%s: operands %v %v %v %v, %v %v %v %v", at, a.a, a.b, a.num, a.args, b.a, b.b, b.num, b.args)
	}
	if s := diffCallee(a.builtin, b.builtin); s != "" {
		return at + ": " + s
	}
	if (a.loc == nil) != (b.loc == nil) || (a.loc != nil && (a.loc.Row != b.loc.Row || a.loc.Col != b.loc.Col ||
		!bytes.Equal(a.loc.Text, b.loc.Text) || a.loc.File != b.loc.File || a.loc.Offset != b.loc.Offset || a.loc.Tabs != nil || b.loc.Tabs != nil)) {
		return fmt.Sprintf("%s: location %v, %v", at, a.loc, b.loc)
	}
	return d.blocks(at, a.blocks, b.blocks)
}

func (d *differ) operands(a, b []operand) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		ka, kb := a[i].konst, b[i].konst
		if a[i].local != b[i].local || (ka == nil) != (kb == nil) {
			return false
		}
		if ka == nil {
			continue
		}
		if ka.Value.Compare(kb.Value) != 0 || reflect.TypeOf(ka.Value) != reflect.TypeOf(kb.Value) || ka.Location != nil || kb.Location != nil {
			return false
		}
		// One Term in a where one in b: strings shared alike. (A number
		// a fused item took from a MakeNumberRef shares its Term in a
		// prepared Program, not in a loaded one: neither changes it.)
		if _, ok := ka.Value.(ast.String); !ok {
			continue
		}
		if prev, ok := d.strings[ka]; ok && prev != kb {
			return false
		}
		d.strings[ka] = kb
	}
	return true
}

func diffCallee(a, b *callee) string {
	switch {
	case a == nil && b == nil:
		return ""
	case a == nil || b == nil:
		return fmt.Sprintf("builtin %v, %v", a, b)
	case a.name != b.name || a.relation != b.relation || a.clock != b.clock || (a.native == nil) != (b.native == nil) ||
		reflect.ValueOf(a.f).Pointer() != reflect.ValueOf(b.f).Pointer():
		return fmt.Sprintf("builtin %s %v %v, %s %v %v", a.name, a.relation, a.clock, b.name, b.relation, b.clock)
	}
	return ""
}
