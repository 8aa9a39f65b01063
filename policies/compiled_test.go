package policies

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// A reload installs a policy that decides with the compiled evaluator, and
// says so in the log.
func TestReloadUsesCompiledEvaluator(t *testing.T) {
	r, logs := newReloader(t, map[string]string{"data.yaml": layerData, "layer_test.rego": proTest})
	if ev := r.Engine.Current().Evaluator(); ev != EvalCompiled {
		t.Fatalf("evaluator %s after Load (%s)", ev, r.Engine.Current().EvaluatorReason())
	}
	writeFiles(t, r.Dir, map[string]string{"data.yaml": strings.Replace(layerData, "concurrency: 4", "concurrency: 7", 1)})
	if changed, err := r.Reload(context.Background()); !changed || err != nil {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	if ev := r.Engine.Current().Evaluator(); ev != EvalCompiled {
		t.Fatalf("evaluator %s after Reload", ev)
	}
	if got := concurrency(t, r.Engine); got != "7" {
		t.Errorf("concurrency after reload = %q, want 7", got)
	}
	if n := strings.Count(logs.String(), "evaluator=compiled"); n != 2 {
		t.Errorf("%d evaluator lines in the log, want 2:\n%s", n, logs)
	}
}

// A policy the compiled evaluator does not run (here: a non-deterministic
// builtin, and `with`) decides with topdown, and says why.
func TestTopdownFallback(t *testing.T) {
	for name, rule := range map[string]string{
		"non-deterministic": `decision := {"allow": true, "rule": sprintf("%d", [count([time.now_ns()])])}`,
		"with":              "x := input.credential.status\ndecision := {\"allow\": true, \"rule\": \"with\"} if { x == \"y\" with input.credential.status as \"y\" }",
	} {
		t.Run(name, func(t *testing.T) {
			src := "package keygate.authz\n\nimport rego.v1\n\n" + rule + "\n"
			e := engineFor(t, fstest.MapFS{"authz.rego": {Data: []byte(src)}})
			p := e.Current()
			if p.Evaluator() != EvalTopdown || !strings.Contains(p.EvaluatorReason(), "unsupported") {
				t.Fatalf("evaluator %s (%s), want topdown as unsupported", p.Evaluator(), p.EvaluatorReason())
			}
			d, err := e.Decide(context.Background(), proInput())
			if err != nil || !d.Allow {
				t.Fatalf("Decide = %+v, %v", d, err)
			}
		})
	}
}

// Errors stay errors and an undefined decision stays ErrPolicy with the
// compiled evaluator: never an allow.
func TestCompiledFailsClosed(t *testing.T) {
	for name, rule := range map[string]string{
		"undefined":     "",
		"conflict":      "decision := {\"allow\": true} if input.request.method\ndecision := {\"allow\": false, \"status\": 403, \"code\": \"X\"} if input.request.method",
		"builtin error": `decision := {"allow": true, "status": to_number(input.request.method)}`,
		"malformed":     `decision := {"allow": "yes"}`,
	} {
		t.Run(name, func(t *testing.T) {
			src := "package keygate.authz\n\nimport rego.v1\n\nother := 1\n" + rule + "\n"
			e := engineFor(t, fstest.MapFS{"authz.rego": {Data: []byte(src)}})
			if ev := e.Current().Evaluator(); ev != EvalCompiled {
				t.Fatalf("evaluator %s (%s)", ev, e.Current().EvaluatorReason())
			}
			d, err := e.Decide(context.Background(), proInput())
			if err == nil || d.Allow {
				t.Fatalf("Decide = %+v, %v; want an error", d, err)
			}
		})
	}
}

// Concurrent decisions share the compiled evaluator's constants and pooled
// states: each must still get its own input's decision (run with -race).
func TestCompiledConcurrent(t *testing.T) {
	dps := diffPolicies(t)[:1]
	p, gen := dps[0].p, dps[0].gen
	// The evaluations share the plan's constant collections: under -race,
	// a write through one is a data race here.
	if p.program().Shared() == 0 {
		t.Fatal("the plan shares no constant collection: nothing here tests sharing")
	}
	rng := rand.New(rand.NewPCG(7, 7))
	inputs := make([]*Input, 64)
	want := make([]Decision, len(inputs))
	wantErr := make([]bool, len(inputs))
	for i := range inputs {
		inputs[i] = classified(p, gen.input(rng))
		d, err := p.decideTopdown(context.Background(), inputs[i].Value())
		want[i], wantErr[i] = d, err != nil
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for r := 0; r < 20; r++ {
				i := (g*7 + r*13) % len(inputs)
				d, err := decideCompiled(context.Background(), p.program(), inputs[i].Value())
				if (err != nil) != wantErr[i] || err == nil && !cmp.Equal(d, want[i]) {
					errs <- describe(inputs[i])
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent decision differs for %s", e)
	}
}

// The plan runs every body of a rule where topdown stops at the first that
// proves it: a builtin error in a later body fails the plan but not
// topdown, which then decides (an allow here, as before irvm). A deadline
// that passed during a compiled evaluation is still an error.
func TestCompiledErrorDecidedByTopdown(t *testing.T) {
	src := `package keygate.authz

import rego.v1

ok if true

ok if to_number(input.request.method) > 0

decision := {"allow": true, "rule": "ok"} if ok
`
	e := engineFor(t, fstest.MapFS{"authz.rego": {Data: []byte(src)}})
	p := e.Current()
	if ev := p.Evaluator(); ev != EvalCompiled {
		t.Fatalf("evaluator %s (%s)", ev, p.EvaluatorReason())
	}
	in := proInput()
	in.Request.Method = "GET"
	if _, n, err := p.program().Eval(context.Background(), in.Value()); err == nil {
		t.Fatalf("the plan itself answered (%d results): the test no longer shows the difference", n)
	}
	d, err := e.Decide(context.Background(), in)
	if err != nil || !d.Allow {
		t.Fatalf("Decide = %+v, %v; want topdown's allow", d, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	in.Request.Method = "1" // the plan answers: to_number("1") > 0
	if d, err := p.decideValue(context.Background(), in.Value()); err != nil || !d.Allow {
		t.Fatalf("decideValue = %+v, %v; want the plan's allow", d, err)
	}
	if d, err := p.decideValue(ctx, in.Value()); err == nil || d.Allow {
		t.Fatalf("decideValue after the deadline = %+v, %v; want an error", d, err)
	}
}
