package irvm

import (
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
)

// markPaths numbers the paths of the dots that read the same value in
// every frame of one evaluation: a dot by a constant string key of input,
// of data, of the value of a function of (input, data) (one per
// evaluation: memoized), or of a local that only such a dot or a copy of
// one ever sets. The plan reads input.key, input.request and their fields
// again in each function that needs them, a hashed lookup each time; a
// dot with a path (stmt.path) looks its path up once per evaluation
// (state.paths). It returns how many paths it numbered.
//
// A local that two statements set to different values (a scan sets its
// key and value on every turn) or that an insert changes has no path;
// neither has anything when a statement sets input or data, or a call
// passes a function something else in their places.
//
// A path's slot holds the very value its first read gave, not a copy: an
// insert into that value through any other local (the planner makes none
// into what it read of input or data) shows through the slot as it would
// through a new read.
func markPaths(funcs []*function, plan []block) int32 {
	pm := &pathMarker{funcs: funcs, slots: map[string]int32{}}
	if !pm.bodies(plan) {
		// The frames marked before the one that failed keep no path: an
		// evaluation makes no slots for them.
		unmark := func(s *stmt) { s.path = 0 }
		walkStmts(plan, unmark)
		for _, f := range funcs {
			walkStmts(f.blocks, unmark)
		}
		return 0
	}
	return int32(len(pm.slots))
}

// bodies marks the plan's and every function's dots; false when input or
// data can hold something else in one of them.
func (pm *pathMarker) bodies(plan []block) bool {
	if !pm.body(plan, nil) {
		return false
	}
	for _, f := range pm.funcs {
		if len(f.params) < 2 || f.params[0] != 0 || f.params[1] != 1 {
			return false
		}
		// The arguments after input and data are each call's own.
		if !pm.body(f.blocks, f.params[2:]) {
			return false
		}
	}
	return true
}

type pathMarker struct {
	funcs []*function
	slots map[string]int32
}

// body marks the dots of one frame's blocks; false when input or data can
// hold something else there. args are the frame's parameters besides input
// and data: set by each call, they never have a path, whatever the body
// also writes to them.
func (pm *pathMarker) body(bs []block, args []int32) bool {
	writers := map[int32][]*stmt{}
	ok := true
	walkStmts(bs, func(s *stmt) {
		for _, l := range writes(s) {
			writers[l] = append(writers[l], s)
		}
		if s.op == opCallFunc && (len(s.args) < 2 || !isLocal(s.args[0], 0) || !isLocal(s.args[1], 1)) {
			ok = false
		}
	})
	if !ok || len(writers[0]) > 0 || len(writers[1]) > 0 {
		return false
	}
	paths := map[int32]string{}
	found := map[int32]bool{} // the locals looked at: whether each has a path
	for _, a := range args {
		found[a] = false
	}
	visiting := map[int32]bool{}
	var path func(l int32) (string, bool)
	path = func(l int32) (string, bool) {
		switch l {
		case 0:
			return "input", true
		case 1:
			return "data", true
		}
		if ok, seen := found[l]; seen {
			return paths[l], ok
		}
		ws := writers[l]
		if len(ws) == 0 || visiting[l] {
			return "", false
		}
		visiting[l] = true
		defer delete(visiting, l)
		// Every statement that sets l must set it to the same path's value
		// (the planner reuses a local for input.key in each else branch).
		p, ok := "", true
		for i, w := range ws {
			wp, wok := pm.setBy(w, path)
			if !wok || (i > 0 && wp != p) {
				p, ok = "", false
				break
			}
			p = wp
		}
		paths[l], found[l] = p, ok
		return p, ok
	}
	walkStmts(bs, func(s *stmt) {
		key, isStr := stringKey(s.b)
		if s.op != opDot || s.a.konst != nil || !isStr {
			return
		}
		if p, ok := path(s.a.local); ok {
			p = step(p, key)
			slot, seen := pm.slots[p]
			if !seen {
				slot = int32(len(pm.slots))
				pm.slots[p] = slot
			}
			s.path = slot + 1
		}
	})
	return true
}

// setBy is the path of the value w sets its target to, if it has one.
func (pm *pathMarker) setBy(w *stmt, path func(int32) (string, bool)) (string, bool) {
	switch w.op {
	case opDot:
		if key, isStr := stringKey(w.b); w.a.konst == nil && isStr {
			if p, ok := path(w.a.local); ok {
				return step(p, key), true
			}
		}
	case opAssignVar:
		if w.a.konst == nil {
			return path(w.a.local)
		}
	case opCallFunc:
		if pm.funcs[w.fn].memo {
			return "\x01" + strconv.Quote(pm.funcs[w.fn].name), true
		}
	}
	return "", false
}

// step is the path of key under the path p. Each key is quoted, so that
// no key (one holding a separator, say) makes two paths one: input["a/b"]
// and input.a.b differ.
func step(p, key string) string { return p + "/" + strconv.Quote(key) }

func isLocal(o operand, l int32) bool { return o.konst == nil && o.local == l }

func stringKey(o operand) (string, bool) {
	if o.konst == nil {
		return "", false
	}
	s, ok := o.konst.Value.(ast.String)
	return string(s), ok
}

// writes is the locals s sets or changes (an insert changes the value its
// local holds), nested blocks aside.
func writes(s *stmt) []int32 {
	switch s.op {
	case opBreak, opNop, opBlock, opNot, opReturn, opResultSetAdd, opResultSetAddItem,
		opEqual, opNotEqual, opIsArray, opIsObject, opIsSet, opIsDefined, opIsUndefined:
		return nil
	case opScan:
		return []int32{s.target, s.value}
	}
	return []int32{s.target}
}
