package irvm

import (
	"slices"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// shareConstants makes the collections a plan makes of constants alone
// (an empty object, set or array; a fused object or array of constant
// items) once, here, for every evaluation to share (stmt.share), when
// nothing the plan does can change that value. A decision of the built-in
// policy made several such collections per evaluation (an empty object
// costs two allocations, an object of items four), each thrown away with
// it. It returns how many makes it shares.
//
// A plan changes a value only by its insert, add and append statements,
// on the value a local holds. The analysis (sharing) follows each
// candidate's value through the plan as it is copied, put in a collection
// or taken out of one, passed to a builtin or a function, or returned; a
// candidate whose value a change can be made on is made by each
// evaluation, as before.
func shareConstants(funcs []*function, plan []block, planLocals int32) int {
	sh := &sharing{funcs: funcs, ids: map[*stmt]int{}}
	for _, f := range funcs {
		sh.frames = append(sh.frames, body{f.blocks, f.nlocals})
	}
	sh.frames = append(sh.frames, body{plan, planLocals})
	var cands []*stmt
	for _, fr := range sh.frames {
		walkStmts(fr.blocks, func(s *stmt) {
			if len(cands) < maxShared && s.share != nil {
				sh.ids[s] = len(cands)
				cands = append(cands, s)
			}
		})
	}
	if len(cands) == 0 {
		return 0
	}
	sh.run()
	if sh.unknown {
		return 0
	}
	n := 0
	for i, s := range cands {
		if !sh.changed.has(i) {
			s.share.Store(constantCollection(s))
			n++
		}
	}
	return n
}

// markConstantMakes gives each make of constants alone the place for its
// shared value: before any evaluation, which then reads it atomically, so
// that shareConstants can run while evaluations do.
func markConstantMakes(funcs []*function, plan []block) {
	var makes []*stmt
	find := func(s *stmt) {
		if constantMake(s) {
			makes = append(makes, s)
		}
	}
	for _, f := range funcs {
		walkStmts(f.blocks, find)
	}
	walkStmts(plan, find)
	places := make([]atomic.Pointer[ast.Term], len(makes)) // one allocation for all
	for i, s := range makes {
		s.share = &places[i]
	}
}

// maxShared bounds the candidates one plan's analysis follows (the bits of
// a bitset); the makes past it are made by each evaluation, as before.
const maxShared = 128

// sharing is shareConstants' analysis: which candidates each local may
// hold at each statement, following the blocks in order (so that a local
// the planner reuses for another value holds only what it was last given)
// and joining where control can meet: the exits of a block, which may be
// left at any statement, and the turns of a scan. A function is analysed
// once for all its calls: its parameters hold what any call passes, its
// result what any of its returns gives.
type sharing struct {
	funcs  []*function
	frames []body // the functions', then the plan's
	ids    map[*stmt]int
	params []flowState // per function: what its calls pass in
	result []holding   // per function: what it may return
	// stored are the candidates a change put into a collection: which
	// locals hold that collection is not followed, so any part taken of
	// any value may be one of them.
	stored  bitset
	changed bitset      // the candidates a change may be made on
	callers [][]int     // per function: the frames that call it
	dirty   []bool      // per frame: to be analysed (again)
	spare   []flowState // states to reuse (clone)
	unknown bool        // a statement the analysis does not know was met
}

// body is a function's or the plan's code and how many locals it has.
type body struct {
	blocks []block
	locals int32
}

// holding is what a value may be (top) and what it may hold at any depth,
// itself included (deep): a change to a value changes its top only.
type holding struct{ top, deep bitset }

// flowState is what each local of one frame may hold.
type flowState []holding

// run analyses the frames until what the functions are passed and give
// back, and what was stored, stop growing: a frame again when what it
// reads of those grew (dirty).
func (sh *sharing) run() {
	n := len(sh.funcs)
	sh.params = make([]flowState, n)
	sh.result = make([]holding, n)
	sh.callers = make([][]int, n)
	sh.dirty = make([]bool, n+1)
	for i, f := range sh.funcs {
		sh.params[i] = make(flowState, f.nlocals)
	}
	for f, fr := range sh.frames {
		sh.dirty[f] = true
		walkStmts(fr.blocks, func(s *stmt) {
			if s.op == opCallFunc {
				sh.callers[s.fn] = append(sh.callers[s.fn], f)
			}
		})
	}
	// The plan first: it is the first caller.
	for again := true; again; {
		again = false
		for i := range sh.frames {
			f := (i + n) % (n + 1)
			if !sh.dirty[f] {
				continue
			}
			sh.dirty[f], again = false, true
			fr := sh.frames[f]
			st := make(flowState, fr.locals)
			if f < n {
				copy(st, sh.params[f])
			}
			for _, b := range fr.blocks {
				sh.block(f, b, st)
			}
		}
	}
}

// block runs b from st and leaves in st the join of the states at all
// its statements: b may be left at any of them.
func (sh *sharing) block(f int, b block, st flowState) {
	cur := sh.clone(st)
	defer sh.free(cur)
	for i := range b {
		s := &b[i]
		sh.stmt(f, s, cur)
		if len(s.blocks) > 0 {
			st.join(cur)
		} else {
			st.add(s.target, cur[s.target]) // the only local a statement without blocks sets
		}
	}
}

func (sh *sharing) stmt(f int, s *stmt, st flowState) {
	from := func(o operand) holding {
		if o.konst != nil {
			return holding{}
		}
		return st[o.local]
	}
	switch s.op {
	case opBlock:
		for _, b := range s.blocks {
			sh.block(f, b, st)
		}
	case opNot:
		sh.block(f, s.blocks[0], st)
	case opScan:
		sh.scan(f, s, st)
	case opMakeObject, opMakeSet, opMakeArray, opMakeObjectItems, opMakeArrayItems, opMakeSetItems:
		var h holding
		if id, ok := sh.ids[s]; ok {
			h.top.set(id)
			h.deep.set(id)
		}
		for _, a := range s.args {
			h.deep = h.deep.or(from(a).deep)
		}
		st[s.target] = h
	case opAssignVar, opAssignVarOnce:
		st[s.target] = from(s.a)
	case opDot: // a set's dot gives the key
		st[s.target] = sh.part(from(s.a)).or(from(s.b))
	case opCallBuiltin: // a builtin may answer with an argument or a part of one
		var h holding
		for _, a := range s.args {
			h = h.or(sh.part(from(a)))
		}
		st[s.target] = h
	case opCallFunc:
		for i, a := range s.args {
			if sh.params[s.fn].add(sh.funcs[s.fn].params[i], from(a)) {
				sh.dirty[s.fn] = true
			}
		}
		st[s.target] = sh.result[s.fn]
	case opReturn:
		if r := sh.result[f].or(from(s.a)); r != sh.result[f] {
			sh.result[f] = r
			for _, c := range sh.callers[f] {
				sh.dirty[c] = true
			}
		}
	case opArrayAppend, opSetAdd, opObjectInsert, opObjectInsertOnce:
		sh.changed = sh.changed.or(st[s.target].top)
		if n := sh.stored.or(from(s.a).deep.or(from(s.b).deep)); n != sh.stored {
			sh.stored = n
			for i := range sh.dirty {
				sh.dirty[i] = true
			}
		}
	case opLen, opAssignInt, opMakeNumber, opMakeNull, opResetLocal:
		st[s.target] = holding{}
	case opBreak, opEqual, opNotEqual, opIsArray, opIsObject, opIsSet, opIsDefined, opIsUndefined,
		opNop, opResultSetAdd, opResultSetAddItem:
		// Set no local.
	default:
		sh.unknown = true // an opcode added later: nothing is shared
	}
}

// scan runs a scan's block until the states at its turns stop growing,
// and leaves their join in st.
func (sh *sharing) scan(f int, s *stmt, st flowState) {
	elem := sh.part(st[s.a.local])
	in, out := sh.clone(st), sh.clone(st)
	for {
		in[s.target], in[s.value] = elem, elem
		copy(out, in)
		sh.block(f, s.blocks[0], out)
		if !in.join(out) {
			break
		}
	}
	st.join(in)
	sh.free(in)
	sh.free(out)
}

// clone is a copy of st, from the states freed before.
func (sh *sharing) clone(st flowState) flowState {
	if n := len(sh.spare); n > 0 {
		c := sh.spare[n-1]
		sh.spare = sh.spare[:n-1]
		if cap(c) >= len(st) {
			return append(c[:0], st...)
		}
	}
	return slices.Clone(st)
}

func (sh *sharing) free(st flowState) { sh.spare = append(sh.spare, st) }

// part is what a part of a value holding h may be, h itself included
// (a builtin may answer with its argument).
func (sh *sharing) part(h holding) holding {
	return h.or(holding{top: h.deep, deep: h.deep}).or(holding{top: sh.stored, deep: sh.stored})
}

// or is what h or o may hold.
func (h holding) or(o holding) holding {
	return holding{top: h.top.or(o.top), deep: h.deep.or(o.deep)}
}

// join adds what o's locals may hold to st's; true when st grew.
func (st flowState) join(o flowState) bool {
	grew := false
	for l, h := range o {
		grew = st.add(int32(l), h) || grew
	}
	return grew
}

func (st flowState) add(l int32, h holding) bool {
	n := st[l].or(h)
	grew := n != st[l]
	st[l] = n
	return grew
}

// bitset is a set of candidates' numbers.
type bitset [maxShared / 64]uint64

func (b bitset) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }

func (b *bitset) set(i int) { b[i/64] |= 1 << (i % 64) }

func (b bitset) or(o bitset) bitset {
	for i := range b {
		b[i] |= o[i]
	}
	return b
}

// constantMake: s makes a collection of constants alone.
func constantMake(s *stmt) bool {
	switch s.op {
	case opMakeObject, opMakeSet, opMakeArray:
		return true
	case opMakeObjectItems, opMakeArrayItems, opMakeSetItems:
		for _, a := range s.args {
			if a.konst == nil {
				return false
			}
		}
		return true
	}
	return false
}

// constantCollection is the value s makes when it makes a collection of
// constants alone, else nil.
func constantCollection(s *stmt) *ast.Term {
	switch s.op {
	case opMakeObject:
		return ast.NewTerm(ast.NewObject())
	case opMakeSet:
		return ast.NewTerm(ast.NewSet())
	case opMakeArray:
		return ast.NewTerm(ast.NewArray())
	case opMakeObjectItems, opMakeArrayItems, opMakeSetItems:
		items := make([]*ast.Term, len(s.args))
		for i, a := range s.args {
			if a.konst == nil {
				return nil
			}
			items[i] = a.konst
		}
		switch s.op {
		case opMakeArrayItems:
			return ast.NewTerm(ast.NewArray(items...))
		case opMakeSetItems:
			// Sorted here for the reason an object is (below).
			set := ast.NewSet(items...)
			set.Slice()
			return ast.NewTerm(set)
		}
		kv := make([][2]*ast.Term, 0, len(items)/2)
		for i := 0; i+1 < len(items); i += 2 {
			kv = append(kv, [2]*ast.Term{items[i], items[i+1]})
		}
		obj := ast.NewObject(kv...)
		// OPA sorts an object's keys in place at its first read, under a
		// sync.Once that Copy and the set operations do not take: sorted
		// here, before any evaluation sees it, a shared object is never
		// written to, whatever order the plan gave its keys in.
		obj.Keys()
		return ast.NewTerm(obj)
	}
	return nil
}

// walkStmts calls f on every statement of bs, nested blocks included.
func walkStmts(bs []block, f func(*stmt)) {
	for _, b := range bs {
		for i := range b {
			f(&b[i])
			walkStmts(b[i].blocks, f)
		}
	}
}

// Shared is how many of the collections the plan makes are made once
// and shared by every evaluation.
func (p *Program) Shared() int { return int(p.shared.Load()) }
