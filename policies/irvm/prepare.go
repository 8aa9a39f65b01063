package irvm

import (
	"context"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
)

// Prepare readies pol for evaluation over data, calling only the builtins
// of caps. It fails with ErrUnsupported for a plan it would not evaluate
// exactly as OPA does.
//
// Functions of (input, data) that never read input or the clock, directly
// or through the functions they call, are evaluated here once: data is fixed for the
// Program's life. One that fails to evaluate is left to every evaluation,
// so each still meets its error.
func Prepare(ctx context.Context, pol *ir.Policy, data ast.Value, caps *ast.Capabilities) (*Program, error) {
	prog, err := prepareProgram(pol, data, caps)
	if err != nil {
		return nil, err
	}
	prog.Fold(ctx)
	return prog, nil
}

// PrepareLazily is Prepare without evaluating the functions of data alone:
// each is evaluated on its first call, or by Fold, whichever comes first.
// The built-in policy starts this way: those evaluations (a walk of its
// data among them, a sixth of serve's CPU from main to the first SERVING)
// then come after serve reports SERVING.
func PrepareLazily(pol *ir.Policy, data ast.Value, caps *ast.Capabilities) (*Program, error) {
	prog, err := prepareProgram(pol, data, caps)
	if err != nil {
		return nil, err
	}
	prog.lazy = true
	return prog, nil
}

func prepareProgram(pol *ir.Policy, data ast.Value, caps *ast.Capabilities) (*Program, error) {
	if pol == nil || pol.Plans == nil || len(pol.Plans.Plans) != 1 || pol.Static == nil {
		return nil, unsupported("want one plan")
	}
	c := &compiler{pol: pol, funcIdx: map[string]int32{}, caps: caps, decls: map[string]*ast.Builtin{}}
	for _, b := range caps.Builtins {
		c.decls[b.Name] = b
	}
	for _, s := range pol.Static.Strings {
		c.strings = append(c.strings, ast.StringTerm(s.Value))
	}
	if pol.Funcs != nil {
		for i, f := range pol.Funcs.Funcs {
			if _, dup := c.funcIdx[f.Name]; dup {
				return nil, unsupported("function %s planned twice", f.Name)
			}
			c.funcIdx[f.Name] = int32(i)
			fn := &function{name: f.Name, ret: int32(f.Return), slot: -1}
			for _, p := range f.Params {
				fn.params = append(fn.params, int32(p))
			}
			c.funcs = append(c.funcs, fn)
		}
		for i, f := range pol.Funcs.Funcs {
			if err := c.function(c.funcs[i], f); err != nil {
				return nil, err
			}
		}
	}
	prog := &Program{funcs: c.funcs, data: ast.NewTerm(data), caps: caps}
	maxLocal := int32(ir.Data)
	plan, err := c.blocks(pol.Plans.Plans[0].Blocks, &maxLocal)
	if err != nil {
		return nil, err
	}
	prog.plan, prog.nlocals = addItems(plan), maxLocal+1
	markConstantMakes(c.funcs, prog.plan)
	prog.npaths = markPaths(c.funcs, prog.plan)
	// Each frame, and the arguments of the call above it.
	prog.maxStack = prog.nlocals + int32(len(c.funcs)+1)*c.maxArgs
	for _, f := range c.funcs {
		prog.maxStack += f.nlocals
		if f.memo {
			f.slot = prog.memoN
			prog.memoN++
		}
	}
	markPure(c.funcs)
	return prog, nil
}

// addItems turns a plan's result of one variable, an object made only to
// be added to the result set, into that key and value (opResultSetAddItem):
// EvalValue then hands out the value without the object being made.
func addItems(plan []block) []block {
	for _, b := range plan {
		for i := 0; i+1 < len(b); i++ {
			mk, add := b[i], b[i+1]
			if mk.op != opMakeObjectItems || len(mk.args) != 2 || add.op != opResultSetAdd || add.a.local != mk.target || usedAfter(b[i+2:], mk.target) {
				continue
			}
			b[i] = stmt{op: opNop}
			b[i+1] = stmt{op: opResultSetAddItem, a: mk.args[0], b: mk.args[1]}
		}
	}
	return plan
}

func usedAfter(b block, l int32) bool {
	for i := range b {
		if usesLocal(&b[i], l) || len(b[i].blocks) > 0 {
			return true
		}
	}
	return false
}

func (c *compiler) function(fn *function, f *ir.Func) error {
	if len(fn.params) == 0 {
		return unsupported("function %s without parameters", f.Name)
	}
	maxLocal := fn.ret
	for _, p := range fn.params {
		maxLocal = max(maxLocal, p)
	}
	bs, err := c.blocks(f.Blocks, &maxLocal)
	if err != nil {
		return err
	}
	fn.blocks, fn.nlocals = bs, maxLocal+1
	fn.memo = len(fn.params) == 2
	return nil
}

// markPure marks the memoized functions that never read their input
// parameter: it is used only as the input argument of calls to functions
// that are pure themselves. A call of a clock-reading builtin counts as a
// read of input: like input, the clock differs between evaluations.
func markPure(funcs []*function) {
	// reads[i]: function i may read input; start from "no" and grow to a
	// fixed point (the call graph is acyclic, but this needs no order).
	reads := make([]bool, len(funcs))
	for changed := true; changed; {
		changed = false
		for i, f := range funcs {
			if !reads[i] && readsInput(f, funcs, reads) {
				reads[i], changed = true, true
			}
		}
	}
	for i, f := range funcs {
		f.pure = f.memo && !reads[i]
	}
}

func readsInput(f *function, funcs []*function, reads []bool) bool {
	in := f.params[0]
	var walk func(bs []block) bool
	walk = func(bs []block) bool {
		for _, b := range bs {
			for i := range b {
				s := &b[i]
				if s.op == opCallBuiltin && s.builtin.clock {
					return true
				}
				if s.op == opCallFunc {
					for j, a := range s.args {
						if a.konst == nil && a.local == in && (j != 0 || reads[s.fn]) {
							return true
						}
					}
				} else if usesLocal(s, in) {
					return true
				}
				if walk(s.blocks) {
					return true
				}
			}
		}
		return false
	}
	return walk(f.blocks)
}

// usesLocal: s reads or writes local l other than through a call.
func usesLocal(s *stmt, l int32) bool {
	isL := func(o operand) bool { return o.konst == nil && o.local == l }
	switch s.op {
	case opBreak, opNop, opBlock, opNot:
		return false
	case opCallBuiltin, opMakeObjectItems, opMakeArrayItems, opMakeSetItems:
		for _, a := range s.args {
			if isL(a) {
				return true
			}
		}
		return s.target == l
	case opMakeNumber, opMakeNull, opMakeArray, opMakeObject, opMakeSet, opAssignInt, opResetLocal:
		return s.target == l
	case opReturn, opResultSetAdd, opIsDefined, opIsUndefined, opIsArray, opIsObject, opIsSet:
		return isL(s.a)
	case opEqual, opNotEqual:
		return isL(s.a) || isL(s.b)
	case opScan:
		return isL(s.a) || s.target == l || s.value == l
	case opDot, opObjectInsert, opObjectInsertOnce:
		return isL(s.a) || isL(s.b) || s.target == l
	}
	// opLen, opAssignVar, opAssignVarOnce, opArrayAppend, opSetAdd
	return isL(s.a) || s.target == l
}

// Fold evaluates each pure function not yet evaluated, once; one that
// fails is left to every evaluation (a lazy Program tries it again at its
// next call). The first Fold also finds the constant collections every
// evaluation can share (shareConstants). Evaluations may run meanwhile.
func (p *Program) Fold(ctx context.Context) {
	for _, f := range p.funcs {
		if f.pure {
			_, _ = p.fold(ctx, f) // a failure is met again by the calls
		}
	}
	p.shareOnce.Do(p.share)
}

// share runs shareConstants. A panic in the analysis (a plan it misreads)
// shares nothing rather than end the process: Fold runs after SERVING on
// a goroutine of its own. The analysis stores no value before it is done.
func (p *Program) share() {
	defer func() { _ = recover() }()
	p.shared.Store(int32(shareConstants(p.funcs, p.plan, p.nlocals)))
}

// fold is pure function f's value, evaluated on a state of its own (so
// that no evaluation's scratch space is shared) the first time, or the
// error that evaluation met. A panic (a plan this evaluator misreads) is
// an error too: Fold runs after SERVING on a goroutine of its own, where a
// panic would end the process.
func (p *Program) fold(ctx context.Context, f *function) (_ *ast.Term, err error) {
	if c := f.constant.Load(); c != nil {
		return c.v, nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("irvm: evaluation failed: %v", r)
		}
	}()
	st := p.newState()
	st.begin(ctx, nil)
	v, err := st.invoke(f, []*ast.Term{nil, p.data})
	st.end()
	if err != nil {
		return nil, err
	}
	// Two first calls at once compute the same value; the first one stays.
	f.constant.CompareAndSwap(nil, &constant{v: v})
	return f.constant.Load().v, nil
}

// Constants is how many functions of data alone were computed once so far.
func (p *Program) Constants() int {
	n := 0
	for _, f := range p.funcs {
		if f.constant.Load() != nil {
			n++
		}
	}
	return n
}
