package irvm

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestFuseKeepsABlockWithNothingToFuse: most blocks of a plan have no make
// to fuse; fuse returns them as they are (it copied each, and a start of
// serve compiles a few thousand blocks before SERVING), and makes a fused
// block once, at its final size.
func TestFuseKeepsABlockWithNothingToFuse(t *testing.T) {
	plain := block{
		{op: opDot, target: 4, a: operand{local: 0}, b: operand{konst: ast.StringTerm("key")}},
		{op: opMakeNumber, target: 5, num: ast.InternedTerm(1)},
		{op: opAssignVar, target: 6, a: operand{local: 5}},
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = fuse(plain) }); allocs != 0 {
		t.Errorf("fuse of a block with nothing to fuse: %v allocations, want 0", allocs)
	}
	if got := fuse(plain); &got[0] != &plain[0] || len(got) != len(plain) {
		t.Errorf("fuse of a block with nothing to fuse made a new block")
	}

	fusable := append(plain[:len(plain):len(plain)],
		stmt{op: opMakeObject, target: 7},
		stmt{op: opObjectInsert, target: 7, a: operand{konst: ast.StringTerm("a")}, b: operand{local: 4}},
		stmt{op: opObjectInsert, target: 7, a: operand{konst: ast.StringTerm("b")}, b: operand{local: 6}},
		stmt{op: opResultSetAdd, a: operand{local: 7}},
	)
	var got block
	allocs := testing.AllocsPerRun(100, func() { got = fuse(fusable) })
	if len(got) != len(plain)+2 || got[len(plain)].op != opMakeObjectItems || got[len(plain)+1].op != opResultSetAdd {
		t.Fatalf("fuse = %v", got)
	}
	// The block once, and fill's items as they grow (it was 7: the block
	// grown by appends).
	if allocs > 4 {
		t.Errorf("fuse of a block with one make: %v allocations, want at most 4", allocs)
	}
}
