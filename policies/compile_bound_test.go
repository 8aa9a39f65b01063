package policies

import (
	"context"
	"testing"
)

// TestCompileStaysBounded guards the cost of loading the built-in policy,
// which every start and every hot reload pays. A rule that names a denial
// through an input-dependent value once made the memo's partial evaluation
// expand into one branch per config.errors entry: compile went from ~0.2M
// to ~4M allocations and a reload missed its one-second bound. Allocations,
// not time, so the test does not depend on the machine.
func TestCompileStaysBounded(t *testing.T) {
	bundle := defaultBundle(t)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1, func() {
		if _, err := Compile(ctx, bundle); err != nil {
			t.Fatal(err)
		}
	})
	const bound = 1_000_000 // ~5× today's figure
	if allocs > bound {
		t.Fatalf("compiling the built-in policy took %.0f allocations, want at most %d: look for a rule whose partial evaluation (input unknown) expands", allocs, bound)
	}
	t.Logf("compile: %.0f allocations", allocs)
}
