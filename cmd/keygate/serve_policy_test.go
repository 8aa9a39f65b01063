package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/policies"
)

// The built-in policy starts from its build-time artifact (its plan
// decides, no memo, no Rego parsed or compiled, so no tests either); run
// completes it once serving.
func TestStartPolicyCompletesOnceServing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rt, err := startPolicy(ctx, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	first := rt.engine.Current()
	if first.Completed() || first.Evaluator() != policies.EvalCompiled {
		t.Fatalf("start-up policy completed before serving, or without its plan (evaluator %s)", first.Evaluator())
	}
	if len(first.Bundle.Modules) != 0 {
		t.Fatal("start-up policy parsed its Rego")
	}
	select {
	case <-rt.completed:
		t.Fatal("completed before serving")
	default:
	}
	served := make(chan struct{})
	done := make(chan struct{})
	go func() { rt.run(ctx, served); close(done) }()
	close(served)
	select {
	case <-rt.completed:
	case <-time.After(time.Minute): // a bound for a hang, not a speed assertion
		t.Fatal("not completed after SERVING")
	}
	if !rt.engine.Current().Completed() {
		t.Fatal("completed closed before the policy in use was complete")
	}
	for name := range rt.engine.Current().Bundle.Modules {
		if strings.HasSuffix(name, "_test.rego") {
			t.Fatal("the completed policy parsed its tests")
		}
	}
	if p := rt.engine.Current(); p.WaitEvaluator(ctx) != policies.EvalCompiled {
		t.Fatalf("completed policy decides with %s: %s", p.Evaluator(), p.EvaluatorReason())
	}
	cancel()
	<-done
}
