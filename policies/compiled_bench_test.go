package policies

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// BenchmarkPlanDefault is what the compiled evaluator adds to loading the
// built-in policy (in the background): planning and preparing the plan.
func BenchmarkPlanDefault(b *testing.B) {
	bundle := defaultBundle(b)
	c, _, err := compileBundle(bundle)
	if err != nil {
		b.Fatal(err)
	}
	store := inmem.NewFromObjectWithOpts(bundle.Documents, inmem.OptReturnASTValuesOnRead(true))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := planCompiled(ctx, c, store); err != nil {
			b.Fatal(err)
		}
	}
}
