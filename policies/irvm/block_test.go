package irvm

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Arrays take their elements from one block: an append past an array's
// capacity copies it rather than write over the next array's elements,
// and a pooled state keeps neither block once the evaluation ends.
func TestEvaluationBlocks(t *testing.T) {
	prog, opts := prepare(t, "x := {\"a\": [input.a, input.b], \"b\": [1 | some _ in input.c], \"s\": {input.a, 2}}", "data.t.x")
	st := prog.newState()
	a := st.newElems(0, 1)
	b := st.newElems(1, 1)
	b[0] = ast.StringTerm("b")
	arr := ast.NewArray(a...).Append(ast.StringTerm("a1")).Append(ast.StringTerm("a2"))
	if b[0].String() != `"b"` || arr.String() != `["a1", "a2"]` {
		t.Fatalf("an append wrote past its array: %v, %v", b, arr)
	}
	if t1, t2 := st.newTerm(ast.Null{}), st.newTerm(ast.Null{}); t1 == t2 {
		t.Fatal("one Term handed out twice")
	}
	for _, in := range []string{`{"a": 1, "b": 2, "c": [1, 2, 3]}`, `{"a": [1], "c": {"k": 1}}`} {
		got, want := both(t, prog, opts, in)
		if normalize(got) != normalize(want) {
			t.Errorf("input %s: irvm %v, topdown %v", in, got, want)
		}
	}
	st.begin(context.Background(), ast.MustParseTerm(`{"a": 1, "b": 2, "c": [1]}`))
	if r := st.runBlocks(st.stack[:prog.nlocals], prog.plan); r != fell {
		t.Fatalf("run = %d", r)
	}
	st.end()
	if st.terms != nil || st.elems != nil {
		t.Fatal("a pooled state keeps the evaluation's blocks")
	}
}
