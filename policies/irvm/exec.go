package irvm

import (
	"context"
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Results of running a block or a statement. A value k >= 0 leaves the
// current block and k more enclosing ones (an undefined statement is 0).
const (
	fell    = -1 // the block ran to its end; for a statement: go on
	returns = -2 // a ReturnLocalStmt ran
	failed  = -3 // an error; state.err holds it
)

// ErrConflict marks a rule or function that produced two values.
var ErrConflict = errors.New("irvm: conflict")

// state is one evaluation's: locals, memoized functions, results.
type state struct {
	p       *Program
	stack   []*ast.Term
	top     int32
	memo    []*ast.Term
	memoSet []bool
	// paths are the values of the paths dots read (markPaths), read once
	// per evaluation: nil not yet, undefinedPath undefined.
	paths   []*ast.Term
	results []*ast.Term
	// resultKeys are the results' keys when the plan added them as one
	// key and value (opResultSetAddItem), nil for a whole object.
	resultKeys []*ast.Term
	retval     *ast.Term
	err        error
	bctx       topdown.BuiltinContext
	// builtin results: out is the last, many collects a relation's.
	out    *ast.Term
	many   []*ast.Term
	multi  bool
	iterFn func(*ast.Term) error
	items  [][2]*ast.Term // scratch for makeItems
	// scans are the scans in progress, innermost last (execScan).
	scans      []scanning
	scanPairFn func(k, v *ast.Term) bool
	scanElemFn func(e *ast.Term) bool
	noMet      metrics.Metrics
	// terms and elems are what is left of the blocks the evaluation takes
	// the Terms and the arrays' elements it makes from (newTerm, newElems).
	terms []ast.Term
	elems []*ast.Term
}

// termBlock and elemBlock are how many Terms and elements an evaluation
// takes from one allocation: about as many as a decision of the built-in
// policy makes (8 Terms, 7 elements).
const (
	termBlock = 8
	elemBlock = 16
)

// newTerm is a Term for v from the evaluation's block of Terms: one
// allocation for several. A Term is handed out once; the block lives as
// long as any of its Terms does.
func (st *state) newTerm(v ast.Value) *ast.Term {
	if len(st.terms) == 0 {
		st.terms = make([]ast.Term, termBlock)
	}
	t := &st.terms[0]
	st.terms = st.terms[1:]
	t.Value = v
	return t
}

// newElems is a slice of n elements and capacity c from the evaluation's
// block of elements. Its capacity ends where the next slice's starts, so an
// append past it copies (as Array.Append does) rather than write into
// another array.
func (st *state) newElems(n, c int) []*ast.Term {
	if c > len(st.elems) {
		if c > elemBlock/2 {
			return make([]*ast.Term, n, c)
		}
		st.elems = make([]*ast.Term, elemBlock)
	}
	e := st.elems[:n:c]
	st.elems = st.elems[c:]
	return e
}

func (p *Program) newState() *state {
	st := &state{p: p, stack: make([]*ast.Term, p.maxStack), memo: make([]*ast.Term, p.memoN), memoSet: make([]bool, p.memoN), paths: make([]*ast.Term, p.npaths), noMet: metrics.NoOp()}
	st.iterFn, st.scanPairFn, st.scanElemFn = st.iter, st.scanPair, st.scanElem
	return st
}

func (p *Program) getState() *state {
	if st, ok := p.pool.Get().(*state); ok {
		return st
	}
	return p.newState()
}

func (st *state) begin(ctx context.Context, input *ast.Term) {
	st.bctx = topdown.BuiltinContext{Context: ctx, Metrics: st.noMet, Capabilities: st.p.caps}
	st.stack[0], st.stack[1] = input, st.p.data
	st.top = st.p.nlocals
}

// end clears what the evaluation held, so nothing outlives it in a pool.
func (st *state) end() {
	// Function frames and arguments are cleared as calls return; the
	// plan's own frame is what is left.
	clear(st.stack[:st.p.nlocals])
	clear(st.memo)
	clear(st.memoSet)
	clear(st.paths)
	clear(st.results)
	clear(st.resultKeys)
	st.results, st.resultKeys = st.results[:0], st.resultKeys[:0]
	st.retval, st.err, st.out, st.bctx = nil, nil, nil, topdown.BuiltinContext{}
	// The blocks hold the evaluation's values: a pooled state drops them.
	st.terms, st.elems = nil, nil
}

// Eval evaluates the plan for input. It returns the first result the plan
// added and how many it added: 0 when the query is undefined. A result is
// an object of the query's variables, as OPA's Wasm gives it.
func (p *Program) Eval(ctx context.Context, input ast.Value) (*ast.Term, int, error) {
	return p.eval(ctx, input, func(st *state) *ast.Term {
		if k := st.resultKeys[0]; k != nil {
			return ast.NewTerm(ast.NewObject([2]*ast.Term{k, st.results[0]}))
		}
		return st.results[0]
	})
}

// EvalValue is Eval for a query of one expression (such as a rule's path):
// the value of the first result's only variable, without the object that
// holds it.
func (p *Program) EvalValue(ctx context.Context, input ast.Value) (*ast.Term, int, error) {
	return p.eval(ctx, input, func(st *state) *ast.Term {
		if st.resultKeys[0] != nil {
			return st.results[0]
		}
		obj, ok := st.results[0].Value.(ast.Object)
		if !ok || obj.Len() != 1 {
			return nil
		}
		var v *ast.Term
		obj.Foreach(func(_, t *ast.Term) { v = t })
		return v
	})
}

// eval runs the plan; first makes the first result from the state. A
// panic in the evaluation (a plan this evaluator misreads) is an error,
// never a crash or an answer.
func (p *Program) eval(ctx context.Context, input ast.Value, first func(*state) *ast.Term) (res *ast.Term, n int, err error) {
	st := p.getState()
	defer func() {
		if r := recover(); r != nil {
			res, n, err = nil, 0, fmt.Errorf("irvm: evaluation failed: %v", r)
			return // the state is dropped, not pooled
		}
		st.end()
		p.pool.Put(st)
	}()
	var in *ast.Term
	if input != nil {
		in = st.newTerm(input)
	}
	st.begin(ctx, in)
	frame := st.stack[:p.nlocals]
	if r := st.runBlocks(frame, p.plan); r == failed {
		return nil, 0, st.err
	} else if r != fell {
		return nil, 0, fmt.Errorf("irvm: plan left by a break or return (%d)", r)
	}
	if len(st.results) == 0 {
		return nil, 0, nil
	}
	if res = first(st); res == nil {
		return nil, 0, fmt.Errorf("irvm: the query's result is not one value")
	}
	return res, len(st.results), nil
}

// runBlocks runs a plan's or a function's blocks in turn.
func (st *state) runBlocks(frame []*ast.Term, bs []block) int {
	for _, b := range bs {
		switch r := st.run(frame, b); {
		case r == returns || r == failed:
			return r
		case r > 0:
			st.err = errors.New("irvm: break out of a function")
			return failed
		}
	}
	return fell
}

// callFunc calls f with args, through its memo or constant.
func (st *state) callFunc(f *function, args []*ast.Term) (*ast.Term, error) {
	if c := f.constant.Load(); c != nil {
		return c.v, nil
	}
	if f.pure && st.p.lazy {
		return st.p.fold(st.bctx.Context, f) // a failure is this call's, not evaluated twice
	}
	if f.memo && st.memoSet[f.slot] {
		return st.memo[f.slot], nil
	}
	v, err := st.invoke(f, args)
	if err == nil && f.memo {
		st.memo[f.slot], st.memoSet[f.slot] = v, true
	}
	return v, err
}

// invoke runs f's body with args.
func (st *state) invoke(f *function, args []*ast.Term) (*ast.Term, error) {
	base := st.top
	if base+f.nlocals > int32(len(st.stack)) {
		return nil, errors.New("irvm: stack exhausted")
	}
	st.top += f.nlocals
	frame := st.stack[base:st.top]
	for i, p := range f.params {
		frame[p] = args[i]
	}
	r := st.runBlocks(frame, f.blocks)
	var v *ast.Term
	if r == returns {
		v = st.retval
	}
	st.retval = nil
	clear(frame)
	st.top = base
	if r == failed {
		return nil, st.err
	}
	return v, nil
}

func (st *state) iter(t *ast.Term) error {
	if st.multi {
		st.many = append(st.many, t)
		return nil
	}
	st.out = t
	return nil
}

// callBuiltin calls one of OPA's builtins as topdown does with strict
// builtin errors: an error is the evaluation's.
func (st *state) callBuiltin(s *stmt, frame []*ast.Term) (*ast.Term, error) {
	n := len(s.args)
	base := st.top
	if base+int32(n) > int32(len(st.stack)) {
		return nil, errors.New("irvm: stack exhausted")
	}
	ops := st.stack[base : base+int32(n)]
	for i, a := range s.args {
		ops[i] = st.read(frame, a)
		if ops[i] == nil {
			clearSmall(ops)
			return nil, nil
		}
	}
	if s.builtin.native != nil {
		if v, ok := s.builtin.native(ops); ok {
			clearSmall(ops)
			return v, nil
		}
	}
	st.out, st.multi, st.many = nil, s.builtin.relation, st.many[:0]
	st.bctx.Location = s.loc
	err := s.builtin.f(st.bctx, ops, st.iterFn)
	clearSmall(ops)
	if err != nil {
		return nil, fmt.Errorf("irvm: %s: %w", s.builtin.name, err)
	}
	if st.multi {
		st.multi = false
		out := ast.NewTerm(ast.NewArray(append([]*ast.Term(nil), st.many...)...))
		clear(st.many)
		st.many = st.many[:0]
		return out, nil
	}
	out := st.out
	st.out = nil
	return out, nil
}

// clearSmall is clear for the few operands of a call: a loop costs less
// than clear's call of memclrHasPointers.
func clearSmall(ts []*ast.Term) {
	for i := range ts {
		ts[i] = nil
	}
}

func (st *state) read(frame []*ast.Term, o operand) *ast.Term {
	if o.konst != nil {
		return o.konst
	}
	return frame[o.local]
}
