package policies

import (
	"context"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// A policy's load-time analyses split in two: what the first correct
// decision needs (CompileFirst) and what only makes decisions cheaper
// (complete). At start-up keygate reports SERVING after the first part and
// runs the second once it serves: before, the second part was about half
// of serve's CPU to SERVING (README, "Measuring it", note 2).

// CompileFirst compiles what the first correct decision needs: the policy
// compiled and checked, its decision query prepared and its denial tables.
// The rest (the memo's analysis, the data-only rules' values, the
// compiled evaluator's plan) only makes decisions cheaper and may follow
// (Engine.Complete); until then the policy decides with OPA's evaluator,
// without a memo, and decides alike (TestFirstDecidesAsComplete).
// A policy CompileFirst refuses, Compile refuses, and the other way round.
func CompileFirst(ctx context.Context, b *Bundle) (*Policy, error) {
	fc, opts, err := compileQuery(ctx, b)
	if err != nil {
		return nil, err
	}
	denials, err := evalDenials(ctx, opts)
	if err != nil {
		return nil, err
	}
	p := newPolicy(b, denials)
	if strings.Contains(p.quotaCounter, "{key}") || strings.Contains(p.quotaCounter, "{account}") {
		// keygate reads a site's usage under this name (QuotaCounter)
		// knowing the site and the mode only.
		return nil, fmt.Errorf("policies: compile %s: config.limits.quota_counter %q names a site's counter: it may name {site} and {mode}, not {key} or {account}", b.Source, p.quotaCounter)
	}
	p.query, p.pending = fc.query, &fc.pending
	return p, nil
}

// firstCompile is a bundle compiled for OPA's evaluator: its prepared
// decision query and what the analyses of complete need.
type firstCompile struct {
	bundle *Bundle
	query  rego.PreparedEvalQuery
	pending
}

// compileQuery compiles b and prepares its decision query; opts are the
// query's options, for the denial tables.
func compileQuery(ctx context.Context, b *Bundle) (*firstCompile, []func(*rego.Rego), error) {
	compiler, modules, err := compileBundle(b)
	if err != nil {
		return nil, nil, err
	}
	store := inmem.NewFromObjectWithOpts(b.Documents, inmem.OptReturnASTValuesOnRead(true))
	opts := []func(*rego.Rego){
		rego.Query(Entrypoint),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.Capabilities(Capabilities()),
		rego.StrictBuiltinErrors(true),
		rego.SetRegoVersion(ast.RegoV1),
	}
	q, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("policies: compile %s: %w", b.Source, err)
	}
	return &firstCompile{bundle: b, query: q, pending: pending{compiler: compiler, modules: modules, store: store}}, opts, nil
}

// newPolicy is b's policy before anything is compiled: what its data says
// directly, and its denial tables.
func newPolicy(b *Bundle, denials map[string]Decision) *Policy {
	return &Policy{Bundle: b, denials: denials,
		sitePrefixes: stringsAt(b.Documents, "keygate", "config", "routes", "public_site_prefixes"),
		mintRoute:    stringAt(b.Documents, "keygate", "config", "routes", "mint_route"),
		quotaCounter: stringAt(b.Documents, "keygate", "config", "limits", "quota_counter"),
		paths:        newPathIndex(b.Documents)}
}

// pending is a CompileFirst policy's compiled form, kept for complete; for
// the built-in policy started from its build-time artifact (StartBuiltin),
// only the compile that will make it (builtin).
type pending struct {
	compiler *ast.Compiler
	modules  []*ast.Module
	store    storage.Store
	builtin  *builtinCompile
}

// complete is p with the analyses CompileFirst left out: the memo (and the
// request fields it proves unread), the data-only rules' values and the
// compiled evaluator, started in the background. p itself is unchanged:
// decisions may be running on it.
func (p *Policy) complete(ctx context.Context) *Policy {
	if p.pending == nil {
		return p
	}
	full := *p
	full.pending = nil
	pd := p.pending
	if pd.builtin != nil {
		// Its plan came prepared; the analyses need the policy compiled.
		fc, err := pd.builtin.get(ctx)
		if err != nil {
			// ctx ended, or the compile failed for good (CompileError,
			// which LogEvaluator logs): p decides on with its plan.
			return p
		}
		full.Bundle, full.query, pd = fc.bundle, fc.query, &fc.pending
	}
	if full.memo = newMemo(ctx, pd.compiler, pd.modules, full.Bundle.Documents); full.memo != nil {
		full.unread = full.memo.unread
	}
	full.folded = foldDataRules(ctx, pd.compiler, pd.store)
	if full.ir == nil {
		full.ir = startCompiled(pd.compiler, pd.store)
	}
	return &full
}

// Complete completes the policy in use if it came from CompileFirst, and
// installs the result unless another policy was installed meanwhile (a
// reload's is complete already). It returns the policy in use then.
// Callers take turns: the analyses and the compiled plan share the first
// policy's compiler (planning sets its evaluation mode), and a second
// caller then finds the policy complete.
func (e *Engine) Complete(ctx context.Context) *Policy {
	e.completing.Lock()
	defer e.completing.Unlock()
	p := e.cur.Load()
	if p == nil || p.pending == nil {
		return p
	}
	return e.replace(p, p.complete(ctx))
}

// replace installs full, p completed, unless a policy other than p was
// installed meanwhile; it returns the policy in use then.
func (e *Engine) replace(p, full *Policy) *Policy {
	full.stats = &e.stats
	if e.cur.CompareAndSwap(p, full) {
		return full
	}
	return e.cur.Load()
}

// Completed reports whether p's load-time analyses are all done (false for
// a CompileFirst policy until Engine.Complete replaces it).
func (p *Policy) Completed() bool { return p.pending == nil }
