package policies

import (
	"context"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
)

// Rules whose value depends on the policy's data alone (config, the
// limits table, keep_credentials, …) are evaluated once per load, and every
// decision starts with their values already in OPA's virtual-document cache:
// the Rego still computes them, only not again for each request. A rule is
// folded when it and every rule it refers to, transitively, read no input,
// call no non-deterministic builtin and use no `with`; only complete,
// argument-less rules with a ground path are (sets, objects and functions
// are evaluated as before).

// foldedValue is one data-only rule's value.
type foldedValue struct {
	ref   ast.Ref
	value *ast.Term
}

// foldDataRules evaluates the data-only rules of the compiled policy. A rule
// that fails to evaluate or is undefined is left to every decision.
func foldDataRules(ctx context.Context, c *ast.Compiler, store storage.Store) []foldedValue {
	a := &foldAnalysis{c: c, pure: map[*ast.Rule]bool{}}
	seen := map[string]bool{}
	var out []foldedValue
	for _, m := range c.Modules {
		for _, r := range m.Rules {
			path := r.Ref()
			if r.Module != nil {
				path = r.Module.Package.Path.Extend(r.Head.Ref())
			}
			key := path.String()
			if seen[key] || !foldable(r, path) {
				continue
			}
			seen[key] = true
			rules := c.GetRulesExact(path)
			if !a.allPure(rules) {
				continue
			}
			// Evaluated as decisions are (strict builtin errors): a rule that
			// errors is not folded, so every decision still meets the error.
			// The value is kept as OPA's term: through JSON a set would
			// come back an array.
			rs, err := rego.New(rego.Compiler(c), rego.Store(store), rego.Query(key), rego.GenerateJSON(keepTerm),
				rego.Capabilities(Capabilities()), rego.StrictBuiltinErrors(true), rego.SetRegoVersion(ast.RegoV1)).Eval(ctx)
			if err != nil || len(rs) != 1 || len(rs[0].Expressions) != 1 {
				continue
			}
			t, ok := rs[0].Expressions[0].Value.(*ast.Term)
			if !ok {
				continue
			}
			out = append(out, foldedValue{ref: path, value: t})
		}
	}
	return out
}

func keepTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// foldable: a complete rule without arguments whose path is ground.
func foldable(r *ast.Rule, path ast.Ref) bool {
	return len(r.Head.Args) == 0 && r.Head.RuleKind() == ast.SingleValue && path.IsGround() && r.Head.Ref().IsGround()
}

type foldAnalysis struct {
	c *ast.Compiler
	// pure records each rule's verdict; false while a rule is being
	// analysed, so recursion is treated as impure.
	pure map[*ast.Rule]bool
}

func (a *foldAnalysis) allPure(rules []*ast.Rule) bool {
	if len(rules) == 0 {
		return false
	}
	for _, r := range rules {
		if !a.isPure(r) {
			return false
		}
	}
	return true
}

// isPure: r reads no input, uses no `with`, calls no non-deterministic
// builtin, and every data rule it refers to is pure too.
func (a *foldAnalysis) isPure(r *ast.Rule) bool {
	if v, ok := a.pure[r]; ok {
		return v
	}
	a.pure[r] = false
	pure := true
	var refs []ast.Ref
	ast.WalkExprs(r, func(e *ast.Expr) bool {
		if len(e.With) > 0 {
			pure = false
		}
		return !pure
	})
	ast.WalkRefs(r, func(ref ast.Ref) bool {
		switch {
		case ref.HasPrefix(ast.InputRootRef):
			pure = false
		case ref.HasPrefix(ast.DefaultRootRef):
			refs = append(refs, ref)
		default:
			if name := builtinName(ref); name != "" && !deterministicBuiltin(name) {
				pure = false
			}
		}
		return false
	})
	ast.WalkVars(r, func(v ast.Var) bool {
		if v.Equal(ast.InputRootDocument.Value) {
			pure = false
		}
		return !pure
	})
	for _, ref := range refs {
		if !pure {
			break
		}
		for _, dep := range a.c.GetRules(ref) {
			if !a.isPure(dep) {
				pure = false
				break
			}
		}
	}
	a.pure[r] = pure
	return pure
}

// evalCache is the option that starts a decision with the folded values,
// in a recycled cache (vcache.go); call release once the evaluation is over.
func (p *Policy) evalCache() (rego.EvalOption, func()) {
	c := newRuleCache(p.folded)
	return rego.EvalVirtualCache(c), c.release
}
