package irvm

import (
	"fmt"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
)

// run runs one block: fell, returns, failed, or k >= 0 (leave this block
// and k more). The statements most plans run most (dots, copies, tests)
// run here in the loop, the others in exec: a call less for each.
func (st *state) run(frame []*ast.Term, b block) int {
	for i := range b {
		s := &b[i]
		switch s.op {
		case opDot:
			var v *ast.Term
			if s.path > 0 {
				v = st.dotPath(frame, s)
			} else {
				v = dot(st.read(frame, s.a), st.read(frame, s.b))
			}
			if frame[s.target] = v; v == nil {
				return 0
			}
		case opAssignVar:
			frame[s.target] = st.read(frame, s.a)
		case opAssignInt, opMakeNumber:
			frame[s.target] = s.num
		case opResetLocal:
			frame[s.target] = nil
		case opMakeNull:
			frame[s.target] = ast.InternedNullTerm
		case opMakeArray, opMakeObject, opMakeSet:
			frame[s.target] = st.makeEmpty(s)
		case opEqual, opNotEqual:
			x, y := st.read(frame, s.a), st.read(frame, s.b)
			if x == nil || y == nil || (x == y || x.Value.Compare(y.Value) == 0) != (s.op == opEqual) {
				return 0
			}
		case opIsDefined:
			if frame[s.a.local] == nil {
				return 0
			}
		case opIsUndefined:
			if frame[s.a.local] != nil {
				return 0
			}
		case opNop:
		case opReturn:
			st.retval = frame[s.a.local]
			return returns
		case opBreak:
			return int(s.index)
		default:
			if r := st.exec(frame, s); r != fell {
				return r
			}
		}
	}
	return fell
}

// exec runs one statement run does not: fell to go on, else what run
// returns.
func (st *state) exec(frame []*ast.Term, s *stmt) int {
	switch s.op {
	case opCallFunc, opCallBuiltin:
		return st.execCall(frame, s)
	case opBlock:
		for _, b := range s.blocks {
			switch r := st.run(frame, b); {
			case r == returns || r == failed:
				return r
			case r > 0:
				return r - 1
			}
		}
		return fell
	case opScan:
		return st.execScan(frame, s)
	case opNot:
		switch r := st.run(frame, s.blocks[0]); {
		case r == fell:
			return 0 // the negated block held: not is undefined
		case r == 0:
			return fell
		case r > 0:
			return r - 1
		default:
			return r
		}
	case opResultSetAdd:
		st.results = append(st.results, frame[s.a.local])
		st.resultKeys = append(st.resultKeys, nil)
		return fell
	case opResultSetAddItem:
		st.results = append(st.results, st.read(frame, s.b))
		st.resultKeys = append(st.resultKeys, st.read(frame, s.a))
		return fell
	case opAssignVarOnce:
		return st.assignOnce(frame, s)
	case opObjectInsertOnce:
		return st.insertOnce(frame, s)
	case opLen:
		n, ok := length(st.read(frame, s.a))
		if !ok {
			return 0
		}
		frame[s.target] = ast.InternedTerm(n)
		return fell
	case opMakeObjectItems, opMakeArrayItems, opMakeSetItems:
		return st.makeItems(frame, s)
	case opIsArray, opIsObject, opIsSet:
		return defined(isType(st.read(frame, s.a), s.op))
	}
	return st.execBuild(frame, s)
}

// execBuild adds to the collections the plan made.
func (st *state) execBuild(frame []*ast.Term, s *stmt) int {
	v := st.read(frame, s.a)
	t := frame[s.target]
	if v == nil || t == nil {
		return st.fail(fmt.Errorf("irvm: %d: undefined operand", s.op))
	}
	switch s.op {
	case opArrayAppend:
		arr, ok := t.Value.(*ast.Array)
		if !ok {
			return st.fail(fmt.Errorf("irvm: append to %T", t.Value))
		}
		t.Value = arr.Append(v)
	case opSetAdd:
		set, ok := t.Value.(ast.Set)
		if !ok {
			return st.fail(fmt.Errorf("irvm: set add to %T", t.Value))
		}
		set.Add(v)
	case opObjectInsert:
		obj, ok := t.Value.(ast.Object)
		val := st.read(frame, s.b)
		if !ok || val == nil {
			return st.fail(fmt.Errorf("irvm: object insert to %T", t.Value))
		}
		obj.Insert(v, val)
	default:
		return st.fail(fmt.Errorf("irvm: opcode %d", s.op))
	}
	return fell
}

// makeEmpty makes an empty collection, or shares the one made once.
func (st *state) makeEmpty(s *stmt) *ast.Term {
	if c := shared(s); c != nil {
		return c
	}
	switch s.op {
	case opMakeArray:
		return st.newTerm(ast.NewArray(st.newElems(0, int(s.index))...))
	case opMakeObject:
		return st.newTerm(ast.NewObject())
	}
	return st.newTerm(ast.NewSet())
}

// shared is s's shared value (shareConstants), nil when there is none
// (yet).
func shared(s *stmt) *ast.Term {
	if s.share == nil {
		return nil
	}
	return s.share.Load()
}

// makeItems makes a fused collection (fuse), or shares the one made once.
func (st *state) makeItems(frame []*ast.Term, s *stmt) int {
	if c := shared(s); c != nil {
		frame[s.target] = c
		return fell
	}
	if s.op != opMakeObjectItems {
		elems := st.newElems(len(s.args), len(s.args))
		for i, a := range s.args {
			if elems[i] = st.read(frame, a); elems[i] == nil {
				return st.fail(fmt.Errorf("irvm: append of an undefined value"))
			}
		}
		if s.op == opMakeSetItems {
			frame[s.target] = st.newTerm(ast.NewSet(elems...))
		} else {
			frame[s.target] = st.newTerm(ast.NewArray(elems...))
		}
		return fell
	}
	items := st.items[:0]
	for i := 0; i < len(s.args); i += 2 {
		k, v := st.read(frame, s.args[i]), st.read(frame, s.args[i+1])
		if v == nil {
			clear(items)
			return st.fail(fmt.Errorf("irvm: insert of an undefined value"))
		}
		items = append(items, [2]*ast.Term{k, v})
	}
	frame[s.target] = st.newTerm(ast.NewObject(items...))
	clear(items)
	st.items = items[:0]
	return fell
}

func (st *state) fail(err error) int {
	st.err = err
	return failed
}

func defined(ok bool) int {
	if ok {
		return fell
	}
	return 0
}

func (st *state) execCall(frame []*ast.Term, s *stmt) int {
	var v *ast.Term
	var err error
	if s.op == opCallFunc {
		// A constant or a value this evaluation has already found
		// needs no arguments (callFunc checks the same, and more).
		if f := st.p.funcs[s.fn]; f.memo {
			if c := f.constant.Load(); c != nil {
				frame[s.target] = c.v
				return defined(c.v != nil)
			}
			if st.memoSet[f.slot] {
				v := st.memo[f.slot]
				frame[s.target] = v
				return defined(v != nil)
			}
		}
		base := st.top
		n := int32(len(s.args))
		if base+n > int32(len(st.stack)) {
			return st.fail(fmt.Errorf("irvm: stack exhausted"))
		}
		args := st.stack[base : base+n]
		for i, a := range s.args {
			args[i] = st.read(frame, a)
		}
		// The callee's frame starts above the arguments.
		st.top += n
		v, err = st.callFunc(st.p.funcs[s.fn], args)
		st.top = base
		clearSmall(args)
	} else {
		v, err = st.callBuiltin(s, frame)
	}
	if err != nil {
		return st.fail(err)
	}
	frame[s.target] = v
	return defined(v != nil)
}

func (st *state) assignOnce(frame []*ast.Term, s *stmt) int {
	v := st.read(frame, s.a)
	if cur := frame[s.target]; cur != nil && v != nil && cur != v && cur.Value.Compare(v.Value) != 0 {
		return st.fail(fmt.Errorf("%w: %s: complete rules must not produce multiple outputs", ErrConflict, s.loc))
	}
	frame[s.target] = v
	return fell
}

func (st *state) insertOnce(frame []*ast.Term, s *stmt) int {
	t, k, v := frame[s.target], st.read(frame, s.a), st.read(frame, s.b)
	obj, ok := t.Value.(ast.Object)
	if !ok || k == nil || v == nil {
		return st.fail(fmt.Errorf("irvm: object insert to %v", t))
	}
	if cur := obj.Get(k); cur != nil && cur.Value.Compare(v.Value) != 0 {
		return st.fail(fmt.Errorf("%w: %s: object keys must be unique", ErrConflict, s.loc))
	}
	obj.Insert(k, v)
	return fell
}

// undefinedPath marks a path whose dot was undefined (state.paths).
var undefinedPath = &ast.Term{}

// dotPath is a dot of a path's (markPaths): the value this evaluation
// found for the path, else the dot's, kept for the path's other dots. A
// source not set yet in this frame is undefined, as for any dot.
func (st *state) dotPath(frame []*ast.Term, s *stmt) *ast.Term {
	src := frame[s.a.local]
	if src == nil {
		return nil
	}
	switch v := st.paths[s.path-1]; v {
	case nil:
	case undefinedPath:
		return nil
	default:
		return v
	}
	v := dot(src, s.b.konst)
	if v == nil {
		st.paths[s.path-1] = undefinedPath
	} else {
		st.paths[s.path-1] = v
	}
	return v
}

func dot(src, key *ast.Term) *ast.Term {
	if src == nil || key == nil {
		return nil
	}
	switch v := src.Value.(type) {
	case ast.Object:
		return v.Get(key)
	case *ast.Array:
		return v.Get(key)
	case ast.Set:
		if v.Contains(key) {
			return key
		}
	}
	return nil
}

func length(t *ast.Term) (int, bool) {
	if t == nil {
		return 0, false
	}
	switch v := t.Value.(type) {
	case *ast.Array:
		return v.Len(), true
	case ast.Object:
		return v.Len(), true
	case ast.Set:
		return v.Len(), true
	case ast.String:
		return utf8.RuneCountInString(string(v)), true
	}
	return 0, false
}

func isType(t *ast.Term, op opcode) bool {
	if t == nil {
		return false
	}
	switch t.Value.(type) {
	case *ast.Array:
		return op == opIsArray
	case ast.Object:
		return op == opIsObject
	case ast.Set:
		return op == opIsSet
	}
	return false
}

// execScan runs the scan's block for each element of a collection; the
// block sits at the level of the loop, as in OPA's Wasm: leaving it (0)
// goes on with the next element, leaving one more (1) ends the scan.
//
// Objects and sets are walked with Until and the state's own callbacks,
// bound once per state, so a scan allocates nothing: the scan in progress
// is the top of st.scans.
func (st *state) execScan(frame []*ast.Term, s *stmt) int {
	src := frame[s.a.local]
	if src == nil {
		return fell
	}
	st.scans = append(st.scans, scanning{frame: frame, s: s, r: fell})
	switch c := src.Value.(type) {
	case *ast.Array:
		for i := 0; i < c.Len(); i++ {
			if st.scanPair(ast.InternedTerm(i), c.Elem(i)) {
				break
			}
		}
	case ast.Object:
		c.Until(st.scanPairFn)
	case ast.Set:
		c.Until(st.scanElemFn)
	}
	r := st.scans[len(st.scans)-1].r
	st.scans[len(st.scans)-1] = scanning{}
	st.scans = st.scans[:len(st.scans)-1]
	switch {
	case r == fell || r == 0 || r == 1:
		return fell
	case r > 1:
		return r - 2
	}
	return r
}

type scanning struct {
	frame []*ast.Term
	s     *stmt
	r     int
}

// scanPair runs the scan's block for one element; true ends the scan.
func (st *state) scanPair(k, v *ast.Term) bool {
	sc := &st.scans[len(st.scans)-1]
	sc.frame[sc.s.target], sc.frame[sc.s.value] = k, v
	r := st.run(sc.frame, sc.s.blocks[0])
	sc = &st.scans[len(st.scans)-1] // nested scans may have grown the stack
	sc.r = r
	return r != fell && r != 0
}

func (st *state) scanElem(e *ast.Term) bool { return st.scanPair(e, e) }
