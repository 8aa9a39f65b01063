// Package irvm evaluates a Rego query from OPA's IR plan (the plan OPA's
// planner makes for its Wasm target) directly on OPA's ast values, calling
// OPA's own builtins. It exists for speed: a decision of the built-in policy
// costs OPA's topdown evaluator hundreds of allocations, mostly in
// unification and its virtual-document cache, which a plan does not need.
//
// The statements follow the semantics of OPA's Wasm compiler
// (internal/compiler/wasm), the plan's reference implementation: blocks,
// breaks counted in enclosing blocks, a scan's block at the level of its
// loop, functions of the two documents (input, data) memoized per
// evaluation. Anything the evaluator does not implement (with, dynamic
// calls, merges, print, non-deterministic or unknown builtins) makes
// Prepare fail, and the caller keeps OPA's evaluator.
package irvm

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// ErrUnsupported marks a plan this evaluator does not run.
var ErrUnsupported = errors.New("irvm: unsupported")

type opcode uint8

const (
	opReturn opcode = iota
	opCallFunc
	opCallBuiltin
	opBlock
	opBreak
	opDot
	opLen
	opScan
	opNot
	opAssignInt
	opAssignVar
	opAssignVarOnce
	opResetLocal
	opMakeNull
	opMakeNumber
	opMakeArray
	opMakeObject
	opMakeSet
	opEqual
	opNotEqual
	opIsArray
	opIsObject
	opIsSet
	opIsDefined
	opIsUndefined
	opArrayAppend
	opObjectInsert
	opObjectInsertOnce
	opSetAdd
	opNop
	opResultSetAdd
	// Made by fuse: a collection made and filled at once.
	opMakeObjectItems
	opMakeArrayItems
	opResultSetAddItem // a result of one key (a) and value (b)
	opMakeSetItems
)

// operand is a local (konst nil) or a constant.
type operand struct {
	local int32
	konst *ast.Term
}

type stmt struct {
	op opcode
	// path, on a dot, is 1 + the number of the path it reads (markPaths),
	// 0 for none.
	path    int32
	a, b    operand // sources: a (Source, A, Key, Value), b (B, Value)
	target  int32   // Target, Result, Object, Array, Set, Key local of a scan
	value   int32   // Value local of a scan
	index   uint32  // BreakStmt's index
	num     *ast.Term
	blocks  []block // BlockStmt's; one for Scan and Not
	fn      int32   // callee for opCallFunc
	builtin *callee // callee for opCallBuiltin
	args    []operand
	loc     *ast.Location
	// share, on a make of constants alone, is the value every evaluation
	// shares once shareConstants found nothing can change it.
	share *atomic.Pointer[ast.Term]
}

type block []stmt

type callee struct {
	name     string
	f        topdown.BuiltinFunc
	relation bool
	clock    bool // ReadsClock: a function calling it is never folded
	native   native
}

type function struct {
	name    string
	params  []int32
	ret     int32
	nlocals int32
	blocks  []block
	memo    bool // a function of (input, data): one value per evaluation
	// slot is the function's memo slot; pure functions (no input read)
	// have their value computed once, in constant: at Prepare, or on the
	// first call with PrepareLazily.
	slot     int32
	pure     bool
	constant atomic.Pointer[constant]
}

// constant is a pure function's value (nil: undefined), set once.
type constant struct{ v *ast.Term }

// Program is a prepared plan, safe for concurrent evaluations.
type Program struct {
	funcs    []*function
	plan     []block
	nlocals  int32 // the plan's own locals
	maxStack int32
	data     *ast.Term
	memoN    int32
	npaths   int32 // how many paths dots read (markPaths)
	caps     *ast.Capabilities
	pool     sync.Pool
	// lazy: pure functions are computed on their first call (PrepareLazily).
	lazy bool
	// shareOnce runs shareConstants, by the first Fold: after SERVING
	// for a lazy Program, so the analysis costs a start nothing.
	shareOnce sync.Once
	shared    atomic.Int32 // how many makes it shares
}

type compiler struct {
	pol     *ir.Policy
	strings []*ast.Term
	funcIdx map[string]int32
	funcs   []*function
	caps    *ast.Capabilities
	decls   map[string]*ast.Builtin
	maxArgs int32
}

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
}

func (c *compiler) operand(o ir.Operand) (operand, error) {
	switch v := o.Value.(type) {
	case ir.Local:
		return operand{local: int32(v)}, nil
	case ir.StringIndex:
		if int(v) < 0 || int(v) >= len(c.strings) {
			return operand{}, unsupported("string index %d", v)
		}
		return operand{konst: c.strings[v]}, nil
	case ir.Bool:
		return operand{konst: ast.InternedTerm(bool(v))}, nil
	}
	return operand{}, unsupported("operand %T", o.Value)
}

func (c *compiler) blocks(bs []*ir.Block, maxLocal *int32) ([]block, error) {
	out := make([]block, 0, len(bs))
	for _, b := range bs {
		nb, err := c.block(b, maxLocal)
		if err != nil {
			return nil, err
		}
		out = append(out, nb)
	}
	return out, nil
}

func (c *compiler) block(b *ir.Block, maxLocal *int32) (block, error) {
	out := make(block, 0, len(b.Stmts))
	for _, s := range b.Stmts {
		ns, err := c.stmt(s, maxLocal)
		if err != nil {
			return nil, err
		}
		for _, l := range []int32{ns.a.local, ns.b.local, ns.target, ns.value} {
			*maxLocal = max(*maxLocal, l)
		}
		for _, a := range ns.args {
			*maxLocal = max(*maxLocal, a.local)
		}
		out = append(out, ns)
	}
	return fuse(out), nil
}

// fuse turns a MakeObjectStmt followed by ObjectInsertStmts of distinct
// constant keys into that object, made at once (and a MakeArrayStmt followed
// by ArrayAppendStmts, a MakeSetStmt followed by SetAddStmts, into that
// array or set): one allocation for all the items instead of some per
// insert. Neither an insert nor an append can be undefined, so nothing else
// can tell.
//
// The planner puts statements between a make and its inserts where a
// value is nested or numeric ({"status": 200, …}, [{…}]): those that cannot
// leave the block (hoistable) run before the make instead, so that the
// collection is still made at once. A number or null an item reads from a
// local set there becomes a constant item, so that a collection of
// constants alone can be shared (shareConstants).
//
// A block with nothing to fuse is returned as it is, and a fused one is
// made once at its final size at most (fusing only takes statements away):
// a start of serve compiles a few thousand blocks, most with no make, and
// copying each (with the appends' regrowth) was ~600 KB of the built-in
// policy's ~1.2 MB of allocations before SERVING, every page of it a page
// fault.
func fuse(b block) block {
	var out block // nil until the first fused make
	for i := 0; i < len(b); i++ {
		s := b[i]
		items, hoisted, next := fill(b, i)
		if len(items) == 0 {
			if out != nil {
				out = append(out, s)
			}
			continue
		}
		if out == nil {
			out = append(make(block, 0, len(b)), b[:i]...)
		}
		out = append(out, fuse(hoisted)...)
		op := opMakeObjectItems
		switch s.op {
		case opMakeArray:
			op = opMakeArrayItems
		case opMakeSet:
			op = opMakeSetItems
		}
		out = append(out, stmt{op: op, target: s.target, args: items})
		i = next - 1
	}
	if out == nil {
		return b
	}
	return out
}

// fill collects the items the statements after b[i], a make, put in it,
// and the statements in between, to run before it; next is the first
// statement after the last item. No items: b[i] is not a make, or nothing
// fills it at once.
func fill(b block, i int) (items []operand, hoisted []stmt, next int) {
	mk := b[i]
	if mk.op != opMakeObject && mk.op != opMakeArray && mk.op != opMakeSet {
		return nil, nil, i + 1
	}
	var pending []stmt             // hoistable statements not yet followed by an item
	known := map[int32]*ast.Term{} // locals a hoisted statement set to a constant
	next = i + 1
	for j := i + 1; j < len(b); j++ {
		s := b[j]
		if fusable(mk, s, items) {
			hoisted = append(hoisted, pending...)
			pending = pending[:0]
			for _, o := range []operand{s.a, s.b}[:itemOperands(mk.op)] {
				if c, ok := known[o.local]; ok && o.konst == nil {
					o = operand{konst: c}
				}
				items = append(items, o)
			}
			next = j + 1
			continue
		}
		if !hoistable(mk.target, s, items) {
			break
		}
		pending = append(pending, s)
		delete(known, s.target)
		switch s.op {
		case opMakeNumber, opAssignInt:
			known[s.target] = s.num
		case opMakeNull:
			known[s.target] = ast.InternedNullTerm
		}
	}
	return items, hoisted, next
}

// itemOperands is how many operands of an insert make one item: key and
// value for an object, the value for an array or a set.
func itemOperands(make opcode) int {
	if make == opMakeObject {
		return 2
	}
	return 1
}

func fusable(mk, s stmt, items []operand) bool {
	reads := func(o operand) bool { return o.konst == nil && o.local == mk.target }
	switch {
	case s.target != mk.target || reads(s.a) || reads(s.b):
		return false
	case mk.op == opMakeArray:
		return s.op == opArrayAppend
	case mk.op == opMakeSet:
		return s.op == opSetAdd
	case s.op != opObjectInsert || s.a.konst == nil:
		return false
	}
	for i := 0; i < len(items); i += 2 {
		if items[i].konst != nil && items[i].konst.Value.Compare(s.a.konst.Value) == 0 {
			return false
		}
	}
	return true
}

// hoistable: s, found between the make of local target and an item of it,
// can run before the make. It cannot leave the block (a statement that can
// be undefined would leave the local unmade), it has no blocks, it neither
// reads nor sets the collection, and it sets no local an item collected
// before it reads (the items are read after it). A failure is the
// evaluation's either way.
func hoistable(target int32, s stmt, items []operand) bool {
	switch s.op {
	case opMakeNumber, opAssignInt, opMakeNull, opMakeObject, opMakeArray, opMakeSet, opAssignVar,
		opObjectInsert, opArrayAppend, opSetAdd:
	default:
		return false
	}
	if usesLocal(&s, target) {
		return false
	}
	for _, o := range items {
		if o.konst == nil && o.local == s.target {
			return false
		}
	}
	return true
}

// call resolves a CallStmt to a planned function or one of OPA's builtins.
func (c *compiler) call(s *ir.CallStmt) (stmt, error) {
	ns := stmt{target: int32(s.Result), args: make([]operand, 0, len(s.Args))}
	for _, a := range s.Args {
		o, err := c.operand(a)
		if err != nil {
			return stmt{}, err
		}
		ns.args = append(ns.args, o)
	}
	c.maxArgs = max(c.maxArgs, int32(len(ns.args)))
	if i, ok := c.funcIdx[s.Func]; ok {
		ns.op, ns.fn = opCallFunc, i
		if len(c.funcs[i].params) != len(ns.args) {
			return stmt{}, unsupported("call of %s with %d arguments", s.Func, len(ns.args))
		}
		return ns, nil
	}
	cl, err := newCallee(s.Func, c.decls[s.Func])
	if err != nil {
		return stmt{}, err
	}
	// Only a builtin's call has its location: a builtin's error names it
	// (BuiltinContext.Location); nothing reads a function call's.
	ns.op, ns.builtin, ns.loc = opCallBuiltin, &cl, location(s.Location)
	return ns, nil
}

// newCallee is OPA's builtin name, declared by decl (nil: not in the
// capabilities). Prepare and LoadImage both resolve a builtin here.
func newCallee(name string, decl *ast.Builtin) (callee, error) {
	if decl == nil || decl.Nondeterministic || decl.Name == "print" || decl.Name == "internal.print" {
		return callee{}, unsupported("builtin %s", name)
	}
	f := topdown.GetBuiltin(name)
	if f == nil {
		return callee{}, unsupported("builtin %s has no implementation", name)
	}
	return callee{name: name, f: f, relation: decl.Relation, clock: ReadsClock(name), native: nativeFor(name)}, nil
}

func location(l ir.Location) *ast.Location {
	return &ast.Location{Row: l.Row, Col: l.Col, Text: l.Text}
}

// stmt converts one IR statement.
func (c *compiler) stmt(s ir.Stmt, maxLocal *int32) (stmt, error) {
	switch s := s.(type) {
	case *ir.CallStmt:
		return c.call(s)
	case *ir.BlockStmt:
		bs, err := c.blocks(s.Blocks, maxLocal)
		return stmt{op: opBlock, blocks: bs}, err
	case *ir.ScanStmt:
		b, err := c.block(s.Block, maxLocal)
		return stmt{op: opScan, a: operand{local: int32(s.Source)}, target: int32(s.Key), value: int32(s.Value), blocks: []block{b}}, err
	case *ir.NotStmt:
		b, err := c.block(s.Block, maxLocal)
		return stmt{op: opNot, blocks: []block{b}}, err
	case *ir.BreakStmt:
		return stmt{op: opBreak, index: s.Index}, nil
	case *ir.ReturnLocalStmt:
		return stmt{op: opReturn, a: operand{local: int32(s.Source)}}, nil
	case *ir.ResultSetAddStmt:
		return stmt{op: opResultSetAdd, a: operand{local: int32(s.Value)}}, nil
	case *ir.NopStmt:
		return stmt{op: opNop}, nil
	case *ir.AssignIntStmt:
		return stmt{op: opAssignInt, target: int32(s.Target), num: ast.InternedTerm(s.Value)}, nil
	case *ir.MakeNumberIntStmt:
		return stmt{op: opMakeNumber, target: int32(s.Target), num: ast.InternedTerm(s.Value)}, nil
	case *ir.MakeNumberRefStmt:
		if s.Index < 0 || s.Index >= len(c.strings) {
			return stmt{}, unsupported("number ref %d", s.Index)
		}
		return stmt{op: opMakeNumber, target: int32(s.Target), num: ast.NewTerm(ast.Number(c.pol.Static.Strings[s.Index].Value))}, nil
	case *ir.MakeNullStmt:
		return stmt{op: opMakeNull, target: int32(s.Target)}, nil
	case *ir.MakeArrayStmt:
		return stmt{op: opMakeArray, target: int32(s.Target), index: uint32(max(s.Capacity, 0))}, nil
	case *ir.MakeObjectStmt:
		return stmt{op: opMakeObject, target: int32(s.Target)}, nil
	case *ir.MakeSetStmt:
		return stmt{op: opMakeSet, target: int32(s.Target)}, nil
	case *ir.ResetLocalStmt:
		return stmt{op: opResetLocal, target: int32(s.Target)}, nil
	case *ir.IsDefinedStmt:
		return stmt{op: opIsDefined, a: operand{local: int32(s.Source)}}, nil
	case *ir.IsUndefinedStmt:
		return stmt{op: opIsUndefined, a: operand{local: int32(s.Source)}}, nil
	}
	return c.operandStmt(s)
}

// operandStmt converts the statements whose sources are operands.
func (c *compiler) operandStmt(s ir.Stmt) (stmt, error) {
	var ns stmt
	var a, b ir.Operand
	twoOps := false
	switch s := s.(type) {
	case *ir.DotStmt:
		ns, a, b, twoOps = stmt{op: opDot, target: int32(s.Target)}, s.Source, s.Key, true
	case *ir.LenStmt:
		ns, a = stmt{op: opLen, target: int32(s.Target)}, s.Source
	case *ir.AssignVarStmt:
		ns, a = stmt{op: opAssignVar, target: int32(s.Target)}, s.Source
	case *ir.AssignVarOnceStmt:
		ns, a = stmt{op: opAssignVarOnce, target: int32(s.Target), loc: location(s.Location)}, s.Source
	case *ir.EqualStmt:
		ns, a, b, twoOps = stmt{op: opEqual}, s.A, s.B, true
	case *ir.NotEqualStmt:
		ns, a, b, twoOps = stmt{op: opNotEqual}, s.A, s.B, true
	case *ir.IsArrayStmt:
		ns, a = stmt{op: opIsArray}, s.Source
	case *ir.IsObjectStmt:
		ns, a = stmt{op: opIsObject}, s.Source
	case *ir.IsSetStmt:
		ns, a = stmt{op: opIsSet}, s.Source
	case *ir.ArrayAppendStmt:
		ns, a = stmt{op: opArrayAppend, target: int32(s.Array)}, s.Value
	case *ir.SetAddStmt:
		ns, a = stmt{op: opSetAdd, target: int32(s.Set)}, s.Value
	case *ir.ObjectInsertStmt:
		ns, a, b, twoOps = stmt{op: opObjectInsert, target: int32(s.Object)}, s.Key, s.Value, true
	case *ir.ObjectInsertOnceStmt:
		ns, a, b, twoOps = stmt{op: opObjectInsertOnce, target: int32(s.Object), loc: location(s.Location)}, s.Key, s.Value, true
	default:
		// WithStmt, CallDynamicStmt, ObjectMergeStmt and any statement
		// added to the IR later.
		return stmt{}, unsupported("statement %T", s)
	}
	var err error
	if ns.a, err = c.operand(a); err != nil {
		return stmt{}, err
	}
	if twoOps {
		if ns.b, err = c.operand(b); err != nil {
			return stmt{}, err
		}
	}
	return ns, nil
}
