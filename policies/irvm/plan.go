package irvm

import (
	"context"
	"errors"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/rego"
)

// Target is the rego target name under which OPA hands its IR plan to this
// package (rego.Target(irvm.Target)).
const Target = "keygate-irvm"

// planner captures the plan OPA builds for a query at PrepareForEval; the
// query it prepares is never evaluated through rego.
type planner struct{}

func (planner) IsTarget(t string) bool { return t == Target }

// captured hands each plan to the Plan call that asked for it: a plan is
// keyed by the capture slot given to PrepareForEval through the context.
type captureKey struct{}

type capture struct{ policy *ir.Policy }

func (planner) PrepareForEval(ctx context.Context, p *ir.Policy, _ ...rego.PrepareOption) (rego.TargetPluginEval, error) {
	c, ok := ctx.Value(captureKey{}).(*capture)
	if !ok {
		return nil, errors.New("irvm: plan requested outside irvm.Plan")
	}
	c.policy = p
	return unevaluable{}, nil
}

type unevaluable struct{}

func (unevaluable) Eval(context.Context, *rego.EvalContext, ast.Value) (ast.Value, error) {
	return nil, errors.New("irvm: a planned query is evaluated with irvm.Program, not rego")
}

// The target is registered while packages initialise: rego.RegisterPlugin
// writes a global map that every rego.PrepareForEval reads, unguarded, so
// registering it lazily (at the first Plan) raced with decisions and
// compiles running on other goroutines (found by -race in CI).
func init() { rego.RegisterPlugin(Target, planner{}) }

// Plan plans query over the compiled modules of c with OPA's planner.
func Plan(ctx context.Context, query string, opts ...func(*rego.Rego)) (*ir.Policy, error) {
	c := &capture{}
	opts = append(opts, rego.Query(query), rego.Target(Target))
	if _, err := rego.New(opts...).PrepareForEval(context.WithValue(ctx, captureKey{}, c)); err != nil {
		return nil, err
	}
	if c.policy == nil {
		return nil, errors.New("irvm: no plan")
	}
	return c.policy, nil
}
