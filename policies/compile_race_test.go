package policies

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// TestPlanWhileTopdownDecides: a directory's policy decides with OPA's
// evaluator from the moment Compile returns, while its IR plan is made in
// the background on the same compiler (the planner sets the compiler's
// evaluation mode). Run under -race (make test does), decisions, memo
// lookups and explanations on several goroutines must not race with the
// planner, and decide the same before and after the plan is ready.
func TestPlanWhileTopdownDecides(t *testing.T) {
	dirs, err := filepath.Glob("examples/*")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n := 0
	var overlapped atomic.Int64
	for _, dir := range dirs {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		n++
		b, err := LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for round := range 2 {
			p, err := Compile(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			gen := newInputGen(p.Bundle.Documents)
			var wg sync.WaitGroup
			for g := range 2 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
					for range 40 {
						in := gen.input(rng)
						// Errors are the policy's (a deny), as they are
						// for the evaluators compared in compiled_diff_test.
						_, _ = p.decideTopdown(ctx, in.Value())
						_, _, _ = p.DecideMemo(ctx, in)
						p.Explain("key_route")
						select {
						case <-p.ir.done:
						default:
							overlapped.Add(1) // the planner was still running
						}
					}
				})
			}
			wg.Wait()
			p.WaitEvaluator(ctx)
		}
	}
	if n == 0 || overlapped.Load() == 0 {
		t.Fatalf("%d example policies, %d decisions made while planning: nothing overlapped", n, overlapped.Load())
	}
	t.Logf("%d decisions made while planning", overlapped.Load())
}
