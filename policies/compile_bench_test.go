package policies

import (
	"context"
	"testing"
)

// BenchmarkCompileDefault is what loading the built-in policy costs at
// start (and on every reload): compiling it, preparing the decision query,
// evaluating the denial tables and analysing it for the memo.
func BenchmarkCompileDefault(b *testing.B) {
	bundle := defaultBundle(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(ctx, bundle); err != nil {
			b.Fatal(err)
		}
	}
}
