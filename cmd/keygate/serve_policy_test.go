package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/policies"
)

// The built-in policy starts compiled as far as its first decision needs
// (no memo, OPA's evaluator, decided alike) and without its tests; run
// completes it once serving.
func TestStartPolicyCompletesOnceServing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rt, err := startPolicy(ctx, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	first := rt.engine.Current()
	if first.Completed() || first.Evaluator() != policies.EvalTopdown {
		t.Fatalf("start-up policy completed before serving (evaluator %s)", first.Evaluator())
	}
	for name := range first.Bundle.Modules {
		if strings.HasSuffix(name, "_test.rego") {
			t.Fatal("start-up policy parsed its tests")
		}
	}
	served := make(chan struct{})
	done := make(chan struct{})
	go func() { rt.run(ctx, served); close(done) }()
	close(served)
	// A bound for a hang, not a speed assertion.
	for deadline := time.Now().Add(time.Minute); !rt.engine.Current().Completed(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not completed after SERVING")
		}
	}
	if p := rt.engine.Current(); p.WaitEvaluator(ctx) != policies.EvalCompiled {
		t.Fatalf("completed policy decides with %s: %s", p.Evaluator(), p.EvaluatorReason())
	}
	cancel()
	<-done
}
