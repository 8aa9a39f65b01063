package policies

import (
	"context"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
)

// A policy's load-time analyses split in two: what the first correct
// decision needs (CompileFirst) and what only makes decisions cheaper
// (complete). At start-up keygate reports SERVING after the first part and
// runs the second once it serves: on one core the memo's partial
// evaluation alone was about half the CPU to SERVING.

// pending is a CompileFirst policy's compiled form, kept for complete.
type pending struct {
	compiler *ast.Compiler
	modules  []*ast.Module
	store    storage.Store
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
	if full.memo = newMemo(ctx, pd.compiler, pd.modules, p.Bundle.Documents); full.memo != nil {
		full.unread = full.memo.unread
	}
	full.folded = foldDataRules(ctx, pd.compiler, pd.store)
	full.ir = startCompiled(pd.compiler, pd.store)
	return &full
}

// Complete completes the policy in use if it came from CompileFirst, and
// installs the result unless another policy was installed meanwhile (a
// reload's is complete already). It returns the policy in use then.
func (e *Engine) Complete(ctx context.Context) *Policy {
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
