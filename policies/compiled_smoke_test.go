package policies

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCompiledSmoke(t *testing.T) {
	p := defaultPolicy(t)
	ctx := context.Background()
	if ev := p.WaitEvaluator(ctx); ev != EvalCompiled {
		t.Fatalf("evaluator %s: %s", ev, p.EvaluatorReason())
	}
	in := proInput()
	v := in.Value()
	want, werr := p.decideTopdown(ctx, v)
	got, gerr := decideCompiled(ctx, p.program(), v)
	if werr != nil || gerr != nil {
		t.Fatal(werr, gerr)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatal(diff)
	}
	t.Logf("%+v constants %d", got, p.program().Constants)
}
