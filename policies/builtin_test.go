package policies

import (
	"context"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The built-in policy started from its build-time artifact decides every
// input as Compile's policy does: with its plan, with OPA's evaluator
// behind the plan (compiled on demand) and, once Engine.Complete ran,
// with the memo; its data, denials and explanations are Compile's too.
func TestStartBuiltinDecidesAsCompile(t *testing.T) {
	ctx := context.Background()
	full := defaultPolicy(t)
	gen := newInputGen(full.Bundle.Documents)
	started, err := StartBuiltin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if started.Completed() || started.memo != nil || started.Evaluator() != EvalCompiled {
		t.Fatalf("StartBuiltin: completed %v, memo %v, evaluator %s", started.Completed(), started.memo != nil, started.Evaluator())
	}
	if !reflect.DeepEqual(started.Bundle.Documents, full.Bundle.Documents) {
		t.Fatal("the artifact's data differs from data.yaml's")
	}
	if diff := cmp.Diff(full.denials, started.denials); diff != "" {
		t.Fatalf("denial tables (-Compile +StartBuiltin):\n%s", diff)
	}
	if started.sitePrefixes == nil || started.mintRoute != full.mintRoute || !cmp.Equal(started.sitePrefixes, full.sitePrefixes) {
		t.Fatal("the data's routes differ")
	}
	n := 300
	if testing.Short() {
		n = 100
	}
	rng := rand.New(rand.NewPCG(5, 12))
	decideAlike(t, "started", full, started, gen, rng, n)
	for i := 0; i < n/3; i++ {
		// OPA's evaluator behind the plan: the policy compiled on demand.
		v := gen.input(rng).Value()
		want, werr := full.decideTopdown(ctx, v)
		got, gerr := started.decideTopdown(ctx, v)
		if (werr != nil) != (gerr != nil) || werr == nil && !cmp.Equal(got, want) {
			t.Fatalf("topdown %d: started %+v, %v; Compile %+v, %v", i, got, gerr, want, werr)
		}
	}
	for _, rule := range []string{"plan_without_api", "key_route", "default", "quota_exceeded"} {
		if got, want := started.Explain(rule), full.Explain(rule); got != want {
			t.Fatalf("Explain(%q): started %+v, Compile %+v", rule, got, want)
		}
	}

	e := NewEngine(started)
	done := e.Complete(ctx)
	if !done.Completed() || done.memo == nil || len(done.folded) == 0 || done.Bundle.Modules == nil || e.Current() != done {
		t.Fatal("Complete did not install a completed policy")
	}
	if done.program() != started.program() {
		t.Fatal("Complete planned again instead of keeping the artifact's plan")
	}
	decideAlike(t, "completed", full, done, gen, rng, n)
}

func decideAlike(t *testing.T, name string, want, got *Policy, gen *inputGen, rng *rand.Rand, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		in := gen.input(rng)
		w, _, werr := want.DecideMemo(context.Background(), in)
		g, _, gerr := got.DecideMemo(context.Background(), in)
		if (werr != nil) != (gerr != nil) || werr == nil && !cmp.Equal(g, w) {
			t.Fatalf("%s: input %d %s: %+v, %v; Compile %+v, %v", name, i, describe(in), g, gerr, w, werr)
		}
	}
}

// A decision that needs OPA's evaluator before the policy is compiled
// waits for the compile, and is refused when its deadline comes first:
// never decided without the reference.
func TestStartBuiltinTopdownWaits(t *testing.T) {
	p, err := StartBuiltin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	in := &Input{Request: Request{Method: "GET", Path: "/v1/videos", PathOK: true}, Credential: Credential{Status: CredMissing}}
	if _, err := p.decideTopdown(ctx, in.Value()); err == nil {
		t.Fatal("a topdown decision past its deadline was made before the policy compiled")
	}
	d, err := p.decideTopdown(context.Background(), in.Value())
	if err != nil || d.Allow || d.Code != "MISSING_API_KEY" {
		t.Fatalf("topdown after the compile: %+v, %v", d, err)
	}
}

// BenchmarkStartBuiltin is what serve does for the built-in policy before
// SERVING; BenchmarkCompileFirstBuiltin what it did before the artifact.
func BenchmarkStartBuiltin(b *testing.B) {
	for b.Loop() {
		if _, err := StartBuiltin(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompileFirstBuiltin(b *testing.B) {
	for b.Loop() {
		bb, err := LoadWithoutTests(Default(), BuiltIn)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := CompileFirst(context.Background(), bb); err != nil {
			b.Fatal(err)
		}
	}
}

// Decisions keep running on the started policy, OPA's evaluator included,
// while Complete compiles and analyses the policy (under -race: they share
// the compile).
func TestStartBuiltinCompleteWhileDeciding(t *testing.T) {
	full := defaultPolicy(t)
	gen := newInputGen(full.Bundle.Documents)
	started, err := StartBuiltin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(started)
	done := make(chan *Policy)
	go func() { done <- e.Complete(context.Background()) }()
	rng := rand.New(rand.NewPCG(8, 8))
	for i := 0; i < 40; i++ {
		in := gen.input(rng)
		want, werr := full.Decide(context.Background(), in)
		got, gerr := e.Decide(context.Background(), in)
		td, terr := started.decideTopdown(context.Background(), classified(started, in).Value())
		if (werr != nil) != (gerr != nil) || werr == nil && !cmp.Equal(got, want) || terr != nil && werr == nil {
			t.Fatalf("input %d: engine %+v, %v; topdown %+v, %v; Compile %+v, %v", i, got, gerr, td, terr, want, werr)
		}
	}
	if full := <-done; !full.Completed() {
		t.Fatal("not completed")
	}
}
