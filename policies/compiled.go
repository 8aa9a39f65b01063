package policies

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/keygate/keygate/policies/irvm"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
)

// Evaluators a Policy may decide with (Policy.Evaluator).
const (
	// EvalCompiled: the decision's IR plan, run by policies/irvm.
	EvalCompiled = "compiled"
	// EvalTopdown: OPA's own evaluator, for a policy the compiled
	// evaluator does not run (or until its plan is ready).
	EvalTopdown = "topdown"
)

// compiled is a policy's compiled evaluator: nil until it is ready, and
// for good when the plan could not be made or run (reason says why).
type compiled struct {
	prog   atomic.Pointer[irvm.Program]
	done   chan struct{}
	reason atomic.Value // string
}

// planCompiled plans the decision over the compiled policy and prepares it
// for irvm.
func planCompiled(ctx context.Context, c *ast.Compiler, store storage.Store) (*irvm.Program, error) {
	pol, err := planDecision(ctx, c, store)
	if err != nil {
		return nil, err
	}
	raw, err := storage.ReadOne(ctx, store, storage.RootPath)
	if err != nil {
		return nil, err
	}
	data, ok := raw.(ast.Value)
	if !ok {
		if data, err = ast.InterfaceToValue(raw); err != nil {
			return nil, err
		}
	}
	return irvm.Prepare(ctx, pol, data, Capabilities())
}

// planDecision is OPA's IR plan of the decision over the compiled policy.
func planDecision(ctx context.Context, c *ast.Compiler, store storage.Store) (*ir.Policy, error) {
	return irvm.Plan(ctx, Entrypoint, rego.Compiler(c), rego.Store(store), rego.Capabilities(Capabilities()),
		rego.StrictBuiltinErrors(true), rego.SetRegoVersion(ast.RegoV1))
}

// startCompiled builds the compiled evaluator; decisions use OPA's until it
// is ready.
func startCompiled(c *ast.Compiler, store storage.Store) *compiled {
	cp := &compiled{done: make(chan struct{})}
	cp.reason.Store("planning")
	go func() {
		defer close(cp.done)
		defer func() {
			// A planner that panics leaves the policy to topdown.
			if r := recover(); r != nil {
				cp.reason.Store(fmt.Sprintf("planning failed: %v", r))
			}
		}()
		prog, err := planCompiled(context.Background(), c, store)
		if err != nil {
			cp.reason.Store(err.Error())
			return
		}
		cp.reason.Store("")
		cp.prog.Store(prog)
	}()
	return cp
}

// Evaluator names the evaluator the policy decides with now: EvalCompiled
// or EvalTopdown.
func (p *Policy) Evaluator() string {
	if p.program() != nil {
		return EvalCompiled
	}
	return EvalTopdown
}

// EvaluatorReason says why a policy decides with OPA's evaluator ("" when
// it does not).
func (p *Policy) EvaluatorReason() string {
	if p.pending != nil {
		return "not planned yet: start-up compiles the plan once serving"
	}
	if p.ir == nil {
		return "compiled evaluator off"
	}
	r, _ := p.ir.reason.Load().(string)
	return r
}

// WaitEvaluator blocks until the compiled evaluator is ready or known to
// be unavailable, or ctx ends, and returns Evaluator().
func (p *Policy) WaitEvaluator(ctx context.Context) string {
	if p.ir != nil {
		select {
		case <-p.ir.done:
		case <-ctx.Done():
		}
	}
	return p.Evaluator()
}

func (p *Policy) program() *irvm.Program {
	if p.ir == nil {
		return nil
	}
	return p.ir.prog.Load()
}

// decideCompiled evaluates the decision with the compiled evaluator.
func decideCompiled(ctx context.Context, prog *irvm.Program, input ast.Value) (Decision, error) {
	res, n, err := prog.EvalValue(ctx, input)
	if err != nil {
		return Decision{}, fmt.Errorf("policies: evaluate: %w", err)
	}
	if n != 1 {
		return Decision{}, fmt.Errorf("%w: %s is undefined", ErrPolicy, Entrypoint)
	}
	return readDecisions.read(res.Value)
}

// LogEvaluator waits until p's compiled evaluator is ready or known to
// be unavailable and logs which evaluator p decides with (with the reason
// when it is topdown), so an operator can tell; nothing once ctx ends. It
// returns only then: a caller that must not wait for the plan runs it on a
// goroutine it waits for before its logger's writer goes (a log line
// written after serve returned raced a test's buffer).
func LogEvaluator(ctx context.Context, log *slog.Logger, source string, p *Policy) {
	if log == nil || p == nil {
		return
	}
	ev := p.WaitEvaluator(ctx)
	if ctx.Err() != nil {
		return
	}
	if err := p.CompileError(); err != nil {
		log.Error("built-in policy compile failed: its plan decides, what the plan cannot decide is denied, no decision memo",
			"source", source, "err", err)
	}
	logEvaluator(log, source, p, ev)
}

func logEvaluator(log *slog.Logger, source string, p *Policy, ev string) {
	if ev == EvalCompiled {
		log.Info("policy evaluator", "source", source, "evaluator", ev)
	} else {
		log.Warn("policy evaluator", "source", source, "evaluator", ev, "reason", p.EvaluatorReason())
	}
}
