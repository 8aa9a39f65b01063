package policies

import (
	"context"
	"fmt"
	"slices"

	"github.com/keygate/keygate/policies/irvm"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// The memo's analysis of a policy, made once per load: whether its answer is
// a function of input and data alone, and which input fields it can read.

// newMemo analyses the policy; it returns nil (no memo) when the policy's
// answer may depend on more than its input and data.
//
// Which input fields the policy reads is decided on the policy as data
// leaves it: partial evaluation with only the input unknown drops the rules
// that the deployment's data switches off (the default policy reads
// x-request-id only when body_shape is error_object), and the residual
// program, with every original rule it still refers to, is searched for
// input refs. If partial evaluation fails, every module is searched.
func newMemo(ctx context.Context, compiler *ast.Compiler, modules []*ast.Module, documents map[string]any) *memo {
	var reads [][]string
	deterministic := true
	// Under `with input… as …` a rule that holds only without keygate's
	// path classification may hold while keygate decides: the shortcut
	// below is off then.
	// The compiled modules too: there an import's alias (import
	// input.request as req; with req as …) is resolved to input.
	guarded := !replacesInput(modules) && !replacesInput(compiledModules(compiler))
	var dataRefs []ast.Ref
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Rule:
			// A rule that holds only without keygate's path classification
			// (a test's fallback) never reads anything when keygate decides;
			// the else branches that follow it still may.
			if guarded && withoutClassification(x.Body) {
				if x.Else != nil {
					vis.Walk(x.Else)
				}
				return true
			}
			return false
		case ast.Body:
			return guarded && withoutClassification(x)
		case ast.Ref:
			if name := builtinName(x); name != "" && !deterministicBuiltin(name) {
				deterministic = false
			}
			if x.HasPrefix(ast.DefaultRootRef) {
				dataRefs = append(dataRefs, x)
			}
			if !x.HasPrefix(ast.InputRootRef) {
				return false
			}
			reads = append(reads, constantPrefix(x[1:]))
			for _, t := range x[1:] {
				vis.Walk(t)
			}
			return true
		case ast.Var:
			// A bare `input` (passed whole to a function, say) reads everything.
			if x.Equal(ast.InputRootDocument.Value) {
				reads = append(reads, nil)
			}
		}
		return false
	})
	// Determinism is a property of every rule, reachable or not.
	for _, m := range modules {
		vis.Walk(m)
	}
	if !deterministic {
		return nil
	}
	residual, err := partialEval(ctx, compiler, documents)
	if err == nil {
		compiled := compiledModules(compiler)
		reads, dataRefs = nil, nil
		for _, x := range residual {
			vis.Walk(x)
		}
		// The residual refers to original rules it did not inline: search
		// them too, and what they refer to in turn. Compiled modules name
		// every rule by its full data path, as the residual does.
		seen := map[*ast.Rule]bool{}
		for len(dataRefs) > 0 {
			ref := dataRefs[len(dataRefs)-1]
			dataRefs = dataRefs[:len(dataRefs)-1]
			for _, m := range compiled {
				for _, r := range m.Rules {
					if !seen[r] && refersTo(ref, r) {
						seen[r] = true
						vis.Walk(r)
					}
				}
			}
		}
	}
	mm := &memo{}
	mm.scratch.New = func() any { return &memoScratch{key: make([]byte, 0, 512)} }
	for _, f := range ignorable {
		if !readsPath(reads, f.path) {
			mm.unread |= f.bit
		}
	}
	return mm
}

// partialEval evaluates the decision with data known and the input unknown,
// returning the residual queries and support modules.
func partialEval(ctx context.Context, compiler *ast.Compiler, documents map[string]any) (_ []any, err error) {
	// The analysis only narrows what a memo key holds; if partial evaluation
	// breaks on some policy, the caller falls back to searching every module.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("policies: partial evaluation: %v", p)
		}
	}()
	if documents == nil {
		documents = map[string]any{}
	}
	opts := []func(*rego.Rego){
		rego.Query(Entrypoint),
		rego.Store(inmem.NewFromObject(documents)),
		rego.Capabilities(Capabilities()),
		rego.SetRegoVersion(ast.RegoV1),
		rego.Unknowns([]string{"input"}),
		rego.Compiler(compiler),
	}
	pq, err := rego.New(opts...).Partial(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, len(pq.Queries)+len(pq.Support))
	for _, q := range pq.Queries {
		out = append(out, q)
	}
	for _, m := range pq.Support {
		out = append(out, m)
	}
	return out, nil
}

// refersTo reports whether a data ref may reach rule r: the ref's constant
// prefix and the rule's path agree as far as both go. A rule outside a
// module is assumed reachable.
func refersTo(ref ast.Ref, r *ast.Rule) bool {
	if r.Module == nil {
		return true
	}
	path := r.Module.Package.Path.Extend(r.Head.Ref().GroundPrefix())
	n := 1 // both start with the data root
	for n < len(ref) && ref[n].IsGround() {
		n++
	}
	n = min(n, len(path))
	return ref[:n].Equal(path[:n])
}

// constantPrefix is the leading string keys of a ref: input.a.b[x].c → [a b].
func constantPrefix(ref ast.Ref) []string {
	var out []string
	for _, t := range ref {
		s, ok := t.Value.(ast.String)
		if !ok {
			break
		}
		out = append(out, string(s))
	}
	return out
}

// readsPath reports whether any read reaches path: a read of path itself, of
// something inside it, or of an ancestor (which hands the rule the whole
// subtree).
func readsPath(reads [][]string, path []string) bool {
	for _, r := range reads {
		n := min(len(r), len(path))
		if slices.Equal(r[:n], path[:n]) {
			return true
		}
	}
	return false
}

func builtinName(ref ast.Ref) string {
	if len(ref) == 0 {
		return ""
	}
	if _, ok := ref[0].Value.(ast.Var); !ok {
		return ""
	}
	for _, t := range ref[1:] {
		if _, ok := t.Value.(ast.String); !ok {
			return ""
		}
	}
	name := ref.String()
	if _, ok := ast.BuiltinMap[name]; !ok {
		return ""
	}
	return name
}

// deterministicBuiltin: same arguments, same answer, no side effect worth
// keeping (print and trace output would vanish on a memo hit).
func deterministicBuiltin(name string) bool {
	switch name {
	case "print", "internal.print", "trace":
		return false
	}
	// Not flagged by OPA, but reading the clock all the same: folded at
	// load (fold.go) or remembered, its answer would outlive its truth.
	return !ast.BuiltinMap[name].Nondeterministic && !irvm.ReadsClock(name)
}

// classificationRef is input.request.prefixes, which keygate always sets.
// It is built rather than parsed: OPA's parser sorts every built-in's
// capabilities first, ~0.15 M instructions at package initialisation.
var classificationRef = ast.Ref{ast.VarTerm("input"), ast.StringTerm("request"), ast.StringTerm("prefixes")}

// replacesInput reports whether any expression of modules replaces part of
// the input (`with input… as …`).
func replacesInput(modules []*ast.Module) bool {
	found := false
	for _, m := range modules {
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			for _, w := range e.With {
				switch t := w.Target.Value.(type) {
				case ast.Ref:
					found = found || t.HasPrefix(ast.InputRootRef)
				case ast.Var:
					found = found || t.Equal(ast.InputRootDocument.Value)
				}
			}
			return found
		})
	}
	return found
}

// withoutClassification reports whether body holds only when input.request.
// prefixes is undefined: it has the expression `not input.request.prefixes`.
// keygate always sets that field when it decides, so such a body never
// holds then, and what it reads cannot matter to a remembered decision.
func withoutClassification(body ast.Body) bool {
	for _, e := range body {
		if t, ok := e.Terms.(*ast.Term); ok && e.Negated && len(e.With) == 0 {
			if r, ok := t.Value.(ast.Ref); ok && r.Equal(classificationRef) {
				return true
			}
		}
	}
	return false
}
