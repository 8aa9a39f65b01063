package policies

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// firstAndComplete compiles dp's bundle with CompileFirst, and completes
// it through an engine, the way serve starts.
func firstAndComplete(t *testing.T, dp diffPolicy) (first, full *Policy) {
	t.Helper()
	first, err := CompileFirst(context.Background(), dp.p.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(first)
	full = e.Complete(context.Background())
	if full == first || !full.Completed() || e.Current() != full {
		t.Fatal("Complete did not install a completed policy")
	}
	full.WaitEvaluator(context.Background())
	return first, full
}

// A policy from CompileFirst decides with OPA's evaluator and no memo; once
// completed it has them (for the built-in policy: memo, folded rules and
// the compiled evaluator). Every input is decided alike by both, through
// DecideMemo as requests are: SERVING before the analyses must never change
// an answer.
func TestFirstDecidesAsComplete(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 100
	}
	for _, dp := range diffPolicies(t) {
		first, full := firstAndComplete(t, dp)
		if first.Completed() || first.memo != nil || first.folded != nil || first.Evaluator() != EvalTopdown {
			t.Fatalf("%s: CompileFirst did more than the first decision needs", dp.name)
		}
		if dp.name == BuiltIn && (full.memo == nil || len(full.folded) == 0 || full.Evaluator() != EvalCompiled) {
			t.Fatalf("built-in: completed without memo (%v), folding (%d) or plan (%s)", full.memo != nil, len(full.folded), full.EvaluatorReason())
		}
		rng := rand.New(rand.NewPCG(21, uint64(len(dp.name))))
		for i := 0; i < n; i++ {
			in := dp.gen.input(rng)
			want, _, werr := full.DecideMemo(context.Background(), in)
			got, res, gerr := first.DecideMemo(context.Background(), in)
			if res != MemoOff {
				t.Fatalf("%s: first policy used the memo (%s)", dp.name, res)
			}
			if (werr != nil) != (gerr != nil) || werr == nil && !cmp.Equal(got, want) {
				t.Fatalf("%s: input %d %s: first %+v, %v; complete %+v, %v", dp.name, i, describe(in), got, gerr, want, werr)
			}
		}
	}
}

// Decisions keep running on the first policy while Complete analyses it
// (under -race: the analyses share its compiler and store).
func TestCompleteWhileDeciding(t *testing.T) {
	dp := diffPolicies(t)[0]
	first, err := CompileFirst(context.Background(), dp.p.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(first)
	rng := rand.New(rand.NewPCG(3, 3))
	inputs := make([]*Input, 32)
	want := make([]Decision, len(inputs))
	wantErr := make([]bool, len(inputs))
	for i := range inputs {
		inputs[i] = dp.gen.input(rng)
		var err error
		want[i], err = dp.p.Decide(context.Background(), inputs[i])
		wantErr[i] = err != nil
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for r := 0; ; r++ {
				select {
				case <-stop:
					return
				default:
				}
				i := (g*7 + r*13) % len(inputs)
				if d, err := e.Decide(context.Background(), inputs[i]); (err != nil) != wantErr[i] || err == nil && !cmp.Equal(d, want[i]) {
					errs <- describe(inputs[i])
					return
				}
			}
		}(g)
	}
	// Completions at once as well: they take turns (the analyses and the
	// plan share the first policy's compiler; two at once raced on it).
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.Complete(context.Background()).WaitEvaluator(context.Background())
		}()
	}
	e.Complete(context.Background()).WaitEvaluator(context.Background())
	close(stop)
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Errorf("decision changed while completing: %s", s)
	}
}

// A policy installed while Complete runs (a reload) stays installed: the
// completed start-up policy never replaces it.
func TestCompleteKeepsNewerPolicy(t *testing.T) {
	b := defaultBundle(t)
	first, err := CompileFirst(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(first)
	full := first.complete(context.Background())
	newer := defaultPolicy(t)
	e.Swap(newer)
	if got := e.replace(first, full); got != newer || e.Current() != newer {
		t.Fatal("the completed start-up policy replaced a newer one")
	}
	if got := e.Complete(context.Background()); got != newer {
		t.Fatal("Complete of a complete policy changed it")
	}
}

// LoadWithoutTests reads the same policy as Load, its _test.rego files
// left out.
func TestLoadWithoutTests(t *testing.T) {
	all := defaultBundle(t)
	b, err := LoadWithoutTests(Default(), BuiltIn)
	if err != nil {
		t.Fatal(err)
	}
	tests := 0
	for name := range all.Modules {
		_, ok := b.Modules[name]
		if isTestFile(name) {
			tests++
			if ok {
				t.Errorf("%s loaded", name)
			}
		} else if !ok {
			t.Errorf("%s missing", name)
		}
	}
	if tests == 0 || len(b.Modules)+tests != len(all.Modules) || !cmp.Equal(b.Documents, all.Documents) {
		t.Fatalf("bundles differ: %d modules + %d tests against %d", len(b.Modules), tests, len(all.Modules))
	}
}

// TestReadsHeaders: only a complete policy whose analysis proved headers
// unread says it does not read them; a first policy (no analysis yet) and
// one whose deny bodies echo x-request-id do.
func TestReadsHeaders(t *testing.T) {
	ctx := context.Background()
	b := defaultBundle(t)
	first, err := CompileFirst(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if !first.ReadsHeaders() {
		t.Error("a first policy, not analysed yet, says it reads no headers")
	}
	if full := NewEngine(first).Complete(ctx); full.ReadsHeaders() {
		t.Error("the built-in policy, complete, says it reads headers")
	}
	b.Documents["keygate"].(map[string]any)["config"].(map[string]any)["body_shape"] = "error_object"
	echo, err := Compile(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if !echo.ReadsHeaders() {
		t.Error("a policy echoing x-request-id says it reads no headers")
	}
}
