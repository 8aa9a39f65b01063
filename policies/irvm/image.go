package irvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// ErrImage marks an image LoadImage refuses: truncated, corrupt, of
// another format version, or naming what this build does not have.
var ErrImage = errors.New("irvm: bad image")

// An image is a prepared Program as bytes, made when keygate is built
// (AppendImage) and loaded at every start (LoadImage) instead of preparing
// the same plan again: the compile of a plan's statements, the paths' and
// the constant makes' analyses were a tenth of serve's CPU to SERVING,
// mostly in allocations and the first touch of their pages.
//
// The layout, every number a minimal uvarint:
//
//	version
//	counts: strings texts builtins funcs params blocks stmts args locs shares
//	npaths nlocals (the plan's)
//	strings, texts, builtin names: each its length and bytes
//	functions' headers: name, params, ret, nlocals
//	functions' blocks, then the plan's: a count, then each block
//	block: a count, then each statement
//	statement: op (a byte), a mask of its non-zero fields, those fields
//
// The strings are in the order of first use (one for each of Prepare's
// Terms: two may be equal), the texts and the builtins sorted, each once;
// a present field is never zero. An image has one spelling, so that
// loading and encoding again gives the same bytes (FuzzLoadImage). The
// counts let LoadImage make the statements, blocks, operands and
// locations in a slab each.
//
// What the evaluator derives from the rest is derived again at load, as
// Prepare does: the builtins from the capabilities by name, which
// functions are memoized, their slots, which are pure, the stack's size.
// The paths (markPaths) and the constant makes (markConstantMakes) are in
// the image: their analyses are what the image saves.
//
// imageVersion changes with the layout or the meaning of an opcode: a
// build refuses another build's images rather than misread them. (The
// built-in policy's image is regenerated with its artifact, and
// TestBuiltinArtifact fails on a stale one.)
const imageVersion = 1

// The fields of a statement, as the mask of an image flags them.
const (
	fieldPath = 1 << iota
	fieldA
	fieldB
	fieldTarget
	fieldValue
	fieldIndex
	fieldNum
	fieldBlocks
	fieldFn
	fieldBuiltin
	fieldArgs
	fieldLoc
	fieldShare
	fieldEnd // the first bit past the fields
)

// The kinds of an operand, in its number's low bits; the rest is the
// local, the string's number, the boolean, the integer (zigzag) or the
// length of the number's text that follows.
const (
	kindLocal = iota
	kindString
	kindBool
	kindNull
	kindInt
	kindNumber
	kindBits = 3
)

// Bounds LoadImage keeps a corrupt image to: a plan's blocks nest a few
// levels deep, and an array the plan makes is as long as a literal of it.
const (
	maxImageDepth    = 1000
	maxImageCapacity = 1 << 16
	maxImageLocals   = 1 << 20
	maxImageStack    = 1 << 20
)

// numOpcodes is how many opcodes there are.
const numOpcodes = int(opMakeSetItems) + 1

// imageCounts are how many of each thing an image holds.
type imageCounts struct {
	strings, texts, builtins, funcs, params, blocks, stmts, args, locs, shares int
}

func (n *imageCounts) fields() []*int {
	return []*int{&n.strings, &n.texts, &n.builtins, &n.funcs, &n.params, &n.blocks, &n.stmts, &n.args, &n.locs, &n.shares}
}

// AppendImage appends p's image to b. It fails on a Program it cannot
// spell: a constant of a kind Prepare does not make, a location with more
// than a row, a column and a text.
func (p *Program) AppendImage(b []byte) ([]byte, error) {
	w := &imageWriter{strings: map[*ast.Term]int{}}
	w.texts, w.textList = sortedTable(p, func(s *stmt) (string, bool) {
		if s.loc == nil || len(s.loc.Text) == 0 {
			return "", false
		}
		return string(s.loc.Text), true
	})
	w.builtins, w.builtinList = sortedTable(p, func(s *stmt) (string, bool) {
		if s.builtin == nil {
			return "", false
		}
		return s.builtin.name, true
	})
	for _, f := range p.funcs {
		w.n.params += len(f.params)
		w.str(f.name)
		w.uvarint(uint64(len(f.params)))
		for _, l := range f.params {
			w.int32(l)
		}
		w.int32(f.ret)
		w.int32(f.nlocals)
	}
	for _, f := range p.funcs {
		w.blockList(f.blocks)
	}
	w.blockList(p.plan)
	if w.err != nil {
		return b, w.err
	}
	w.n.funcs = len(p.funcs)
	w.n.strings, w.n.texts, w.n.builtins = len(w.stringList), len(w.textList), len(w.builtinList)
	b = binary.AppendUvarint(b, imageVersion)
	for _, c := range w.n.fields() {
		b = binary.AppendUvarint(b, uint64(*c))
	}
	b = binary.AppendUvarint(b, uint64(p.npaths))
	b = binary.AppendUvarint(b, uint64(p.nlocals))
	for _, list := range [][]string{w.stringList, w.textList, w.builtinList} {
		for _, s := range list {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
	}
	return append(b, w.body...), nil
}

// sortedTable is the table of the strings key finds in p's statements:
// sorted, each once, and the number of each.
func sortedTable(p *Program, key func(*stmt) (string, bool)) (map[string]int, []string) {
	var list []string
	find := func(s *stmt) {
		if k, ok := key(s); ok {
			list = append(list, k)
		}
	}
	for _, f := range p.funcs {
		walkStmts(f.blocks, find)
	}
	walkStmts(p.plan, find)
	slices.Sort(list)
	list = slices.Compact(list)
	idx := make(map[string]int, len(list))
	for i, k := range list {
		idx[k] = i
	}
	return idx, list
}

// imageWriter writes the functions and blocks of an image (body) and
// collects its tables in the order of first use.
type imageWriter struct {
	body        []byte
	n           imageCounts
	strings     map[*ast.Term]int // one per Term, as Prepare makes one per static string
	stringList  []string          // in the order of first use
	texts       map[string]int
	textList    []string
	builtins    map[string]int
	builtinList []string
	err         error
}

func (w *imageWriter) fail(format string, args ...any) {
	if w.err == nil {
		w.err = fmt.Errorf("irvm: image: "+format, args...)
	}
}

func (w *imageWriter) uvarint(x uint64) { w.body = binary.AppendUvarint(w.body, x) }

func (w *imageWriter) int32(x int32) {
	if x < 0 {
		w.fail("negative number %d", x)
	}
	w.uvarint(uint64(x))
}

func (w *imageWriter) str(s string) {
	w.uvarint(uint64(len(s)))
	w.body = append(w.body, s...)
}

func (w *imageWriter) blockList(bs []block) {
	w.n.blocks += len(bs)
	w.uvarint(uint64(len(bs)))
	for _, b := range bs {
		w.n.stmts += len(b)
		w.uvarint(uint64(len(b)))
		for i := range b {
			w.stmt(&b[i])
		}
	}
}

func (w *imageWriter) stmt(s *stmt) {
	var mask uint64
	for bit, set := range [...]bool{
		s.path != 0, s.a != (operand{}), s.b != (operand{}), s.target != 0, s.value != 0, s.index != 0,
		s.num != nil, len(s.blocks) > 0, s.fn != 0, s.builtin != nil, len(s.args) > 0, s.loc != nil, s.share != nil,
	} {
		if set {
			mask |= 1 << bit
		}
	}
	w.body = append(w.body, byte(s.op))
	w.uvarint(mask)
	if s.path != 0 {
		w.int32(s.path)
	}
	if mask&fieldA != 0 {
		w.operand(s.a)
	}
	if mask&fieldB != 0 {
		w.operand(s.b)
	}
	if s.target != 0 {
		w.int32(s.target)
	}
	if s.value != 0 {
		w.int32(s.value)
	}
	if s.index != 0 {
		w.uvarint(uint64(s.index))
	}
	if s.num != nil {
		w.konst(s.num)
	}
	if len(s.blocks) > 0 {
		w.blockList(s.blocks)
	}
	if s.fn != 0 {
		w.int32(s.fn)
	}
	if s.builtin != nil {
		w.uvarint(uint64(w.builtins[s.builtin.name]))
	}
	if len(s.args) > 0 {
		w.n.args += len(s.args)
		w.uvarint(uint64(len(s.args)))
		for _, a := range s.args {
			w.operand(a)
		}
	}
	if s.loc != nil {
		w.loc(s.loc)
	}
	if s.share != nil {
		w.n.shares++
	}
}

func (w *imageWriter) loc(l *ast.Location) {
	if l.File != "" || l.Offset != 0 || l.Tabs != nil {
		w.fail("location %v: more than a row, a column and a text", l)
	}
	w.n.locs++
	w.uvarint(uint64(max(l.Row, 0)))
	w.uvarint(uint64(max(l.Col, 0)))
	if l.Row < 0 || l.Col < 0 {
		w.fail("location %v: negative", l)
	}
	if len(l.Text) == 0 {
		w.uvarint(0)
		return
	}
	w.uvarint(uint64(w.texts[string(l.Text)] + 1))
}

func (w *imageWriter) operand(o operand) {
	if o.konst == nil {
		if o.local < 0 {
			w.fail("local %d", o.local)
		}
		w.uvarint(uint64(max(o.local, 0)) << kindBits)
		return
	}
	w.konst(o.konst)
}

// konst writes a constant of the kinds Prepare makes: a static string
// (one Term each), a boolean, null, an integer (interned, as AssignInt and
// MakeNumberInt make it) or a number (a Term each, as MakeNumberRef).
func (w *imageWriter) konst(t *ast.Term) {
	if t.Location != nil {
		w.fail("constant %v with a location", t)
	}
	switch v := t.Value.(type) {
	case ast.String:
		i, ok := w.strings[t]
		if !ok {
			i = len(w.stringList)
			w.strings[t] = i
			w.stringList = append(w.stringList, string(v))
		}
		w.uvarint(uint64(i)<<kindBits | kindString)
	case ast.Boolean:
		b := uint64(0)
		if v {
			b = 1
		}
		w.uvarint(b<<kindBits | kindBool)
	case ast.Null:
		w.uvarint(kindNull)
	case ast.Number:
		if i, ok := v.Int(); ok && ast.HasInternedIntNumberTerm(i) && ast.InternedTerm(i) == t {
			w.uvarint((uint64(i)<<1^uint64(i>>63))<<kindBits | kindInt)
			return
		}
		w.uvarint(uint64(len(v))<<kindBits | kindNumber)
		w.body = append(w.body, v...)
	default:
		w.fail("constant %v of type %T", t, t.Value)
	}
}

// LoadImage is the Program whose image is image, over data, calling only
// the builtins of caps; like PrepareLazily's, its functions of data alone
// are evaluated on their first call or by Fold. It fails with ErrImage,
// never a Program that would misread the image, for an image that is
// truncated, corrupt, of another version, or calls a builtin caps lacks
// or Prepare refuses.
//
// What LoadImage checks is what the evaluator relies on a prepared plan
// for: every local, function, path and table entry in range, the blocks a
// statement runs there, calls with their arguments and never of
// themselves. What the statements compute is the image's, as a plan's is
// Prepare's: a bit flipped in a constant or a break is another plan. The
// built-in policy's image is made from its plan when keygate is built,
// and TestBuiltinArtifact keeps the two alike.
//
// image is kept: the strings and the functions' names are its substrings.
func LoadImage(image string, data ast.Value, caps *ast.Capabilities) (*Program, error) {
	r := &imageReader{s: image}
	prog, err := r.program(data, caps)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImage, err)
	}
	return prog, nil
}

// imageReader reads an image into slabs it hands out in turn.
type imageReader struct {
	s   string
	off int
	err error

	funcs      []*function
	npaths     int32
	pathRead   []bool // whether a dot reads each path
	strings    []ast.Term
	nextString int
	texts      [][]byte
	callees    []callee
	// used counts the texts and the builtins used, each at its first use.
	textUsed, builtinUsed []bool
	used                  int
	maxArgs               int32

	stmts  []stmt
	blocks []block
	args   []operand
	locs   []ast.Location
	shares []atomic.Pointer[ast.Term]
}

func (r *imageReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("at byte %d: "+format, append([]any{r.off}, args...)...)
	}
}

func (r *imageReader) program(data ast.Value, caps *ast.Capabilities) (*Program, error) {
	if v := r.uvarint(); r.err == nil && v != imageVersion {
		return nil, fmt.Errorf("version %d, this build reads %d", v, imageVersion)
	}
	var n imageCounts
	for _, c := range n.fields() {
		*c = r.count()
	}
	r.npaths = r.int32()
	nlocals := r.int32()
	if r.err != nil {
		return nil, r.err
	}
	if n.shares > n.stmts {
		return nil, fmt.Errorf("%d shared makes of %d statements", n.shares, n.stmts)
	}
	// Every evaluation makes npaths slots: markPaths numbers paths 1 to
	// npaths, each read by a dot, so no more than the statements.
	if r.npaths < 0 || int64(r.npaths) > int64(n.stmts) {
		return nil, fmt.Errorf("%d paths of %d statements", r.npaths, n.stmts)
	}
	r.pathRead = make([]bool, r.npaths)
	r.strings = make([]ast.Term, n.strings)
	for i := range r.strings {
		r.strings[i].Value = ast.String(r.str())
	}
	r.readTexts(n.texts)
	r.readCallees(n.builtins, caps)
	r.readFuncs(n.funcs, n.params)
	if r.err != nil {
		return nil, r.err
	}
	r.stmts, r.blocks = make([]stmt, n.stmts), make([]block, n.blocks)
	r.args, r.locs = make([]operand, n.args), make([]ast.Location, n.locs)
	r.shares = make([]atomic.Pointer[ast.Term], n.shares)
	for _, f := range r.funcs {
		f.blocks = r.blockList(0, f.nlocals)
	}
	if nlocals < 2 || nlocals > maxImageLocals {
		r.fail("the plan's %d locals", nlocals)
	}
	plan := r.blockList(0, nlocals)
	switch {
	case r.err != nil:
		return nil, r.err
	case r.off != len(r.s):
		return nil, fmt.Errorf("%d bytes after the plan", len(r.s)-r.off)
	case r.nextString != len(r.strings) || r.used != len(r.texts)+len(r.callees):
		return nil, errors.New("a string, a text or a builtin never used")
	case slices.Contains(r.pathRead, false):
		return nil, fmt.Errorf("a path of %d no dot reads", r.npaths)
	case len(r.stmts)+len(r.blocks)+len(r.args)+len(r.locs)+len(r.shares) > 0:
		return nil, errors.New("fewer statements, blocks, operands, locations or shared makes than counted")
	}
	if err := acyclic(r.funcs); err != nil {
		return nil, err
	}
	prog := &Program{funcs: r.funcs, plan: plan, nlocals: nlocals, data: ast.NewTerm(data), npaths: r.npaths, caps: caps, lazy: true}
	// Each frame, and the arguments of the call above it, as Prepare
	// sizes the stack.
	stack := int64(nlocals) + int64(len(r.funcs)+1)*int64(r.maxArgs)
	for _, f := range r.funcs {
		stack += int64(f.nlocals)
		if f.memo {
			f.slot = prog.memoN
			prog.memoN++
		}
	}
	if stack > maxImageStack {
		return nil, fmt.Errorf("a stack of %d", stack)
	}
	prog.maxStack = int32(stack)
	markPure(r.funcs)
	return prog, nil
}

// readTexts reads the locations' texts, copied into one slab: a
// location's text is a []byte, and the image a string.
func (r *imageReader) readTexts(n int) {
	r.texts, r.textUsed = make([][]byte, n), make([]bool, n)
	start, size, prev := r.off, 0, ""
	for i := range r.texts {
		t := r.str()
		if (t == "" || (i > 0 && t <= prev)) && r.err == nil {
			r.fail("a text empty or out of order")
		}
		prev, size = t, size+len(t)
	}
	if r.err != nil {
		return
	}
	slab := make([]byte, 0, size)
	r.off = start
	for i := range r.texts {
		t := r.str()
		at := len(slab)
		slab = append(slab, t...)
		r.texts[i] = slab[at:len(slab):len(slab)]
	}
}

// readCallees resolves the builtins by name, as Prepare does; a linear
// search of caps: a plan calls a few dozen builtins, and a map of caps'
// few hundred would cost more.
func (r *imageReader) readCallees(n int, caps *ast.Capabilities) {
	r.callees, r.builtinUsed = make([]callee, n), make([]bool, n)
	for i := range r.callees {
		name := r.str()
		if i > 0 && name <= r.callees[i-1].name {
			r.fail("builtin %q out of order", name)
		}
		if r.err != nil {
			return
		}
		var decl *ast.Builtin
		for i := 0; caps != nil && i < len(caps.Builtins) && decl == nil; i++ {
			if caps.Builtins[i].Name == name {
				decl = caps.Builtins[i]
			}
		}
		c, err := newCallee(name, decl)
		if err != nil {
			r.err = err
			return
		}
		r.callees[i] = c
	}
}

func (r *imageReader) readFuncs(n, nparams int) {
	fs := make([]function, n)
	r.funcs = make([]*function, n)
	params := make([]int32, nparams)
	for i := range fs {
		f := &fs[i]
		r.funcs[i] = f
		f.name, f.slot = r.str(), -1
		k := r.count()
		if k == 0 || k > len(params) {
			r.fail("function %q with %d parameters", f.name, k)
			return
		}
		f.params, params = params[:k:k], params[k:]
		for j := range f.params {
			f.params[j] = r.int32()
		}
		f.ret, f.nlocals = r.int32(), r.int32()
		if f.nlocals > maxImageLocals {
			r.fail("function %q with %d locals", f.name, f.nlocals)
		}
		if f.ret >= f.nlocals || slices.Max(f.params) >= f.nlocals {
			r.fail("function %q: a parameter or its value past its %d locals", f.name, f.nlocals)
		}
		f.memo = len(f.params) == 2
		if r.err != nil {
			return
		}
	}
	if len(params) > 0 {
		r.fail("%d parameters more than the functions have", len(params))
	}
}

// acyclic checks that no function calls itself, through others or not: a
// plan never does (Rego has no recursion), and the fold of a pure one that
// did would never end.
func acyclic(funcs []*function) error {
	const (
		unseen = iota
		visiting
		done
	)
	state := make([]uint8, len(funcs))
	var visit func(i int32) error
	visit = func(i int32) error {
		switch state[i] {
		case visiting:
			return fmt.Errorf("function %q calls itself", funcs[i].name)
		case done:
			return nil
		}
		state[i] = visiting
		var err error
		walkStmts(funcs[i].blocks, func(s *stmt) {
			if err == nil && s.op == opCallFunc {
				err = visit(s.fn)
			}
		})
		state[i] = done
		return err
	}
	for i := range funcs {
		if err := visit(int32(i)); err != nil {
			return err
		}
	}
	return nil
}

func (r *imageReader) blockList(depth int, nlocals int32) []block {
	n := r.count()
	if r.err != nil {
		return nil
	}
	if n > len(r.blocks) {
		r.fail("more blocks than counted")
		return nil
	}
	bs := r.blocks[:n:n]
	r.blocks = r.blocks[n:]
	for i := range bs {
		k := r.count()
		if k > len(r.stmts) {
			r.fail("more statements than counted")
		}
		if r.err != nil {
			return nil
		}
		bs[i], r.stmts = r.stmts[:k:k], r.stmts[k:]
		for j := range bs[i] {
			r.stmt(&bs[i][j], depth, nlocals)
		}
	}
	return bs
}

func (r *imageReader) stmt(s *stmt, depth int, nlocals int32) {
	if r.off >= len(r.s) {
		r.fail("truncated")
		return
	}
	s.op = opcode(r.s[r.off])
	r.off++
	mask := r.uvarint()
	if int(s.op) >= numOpcodes || mask >= fieldEnd {
		r.fail("opcode %d, fields %#x", s.op, mask)
		return
	}
	if mask&fieldPath != 0 {
		if s.path = r.nonzero(); s.path > r.npaths || s.op != opDot {
			r.fail("path %d of %d on opcode %d", s.path, r.npaths, s.op)
		}
		if r.err == nil {
			r.pathRead[s.path-1] = true
		}
	}
	if mask&fieldA != 0 {
		s.a = r.operand(nlocals)
	}
	if mask&fieldB != 0 {
		s.b = r.operand(nlocals)
	}
	if (mask&fieldA != 0 && s.a == operand{}) || (mask&fieldB != 0 && s.b == operand{}) {
		r.fail("a zero operand")
	}
	if mask&fieldTarget != 0 {
		s.target = r.local(nlocals)
	}
	if mask&fieldValue != 0 {
		s.value = r.local(nlocals)
	}
	if mask&fieldIndex != 0 {
		if x := r.uvarint(); x == 0 || x > math.MaxUint32 || (s.op == opMakeArray && x > maxImageCapacity) {
			r.fail("index %d", x)
		} else {
			s.index = uint32(x)
		}
	}
	if mask&fieldNum != 0 {
		if s.num = r.operand(0).konst; s.num == nil {
			r.fail("a number that is not a constant")
		}
	}
	if mask&fieldBlocks != 0 {
		if depth >= maxImageDepth {
			r.fail("blocks nested %d deep", depth)
			return
		}
		if s.blocks = r.blockList(depth+1, nlocals); len(s.blocks) == 0 {
			r.fail("no blocks")
		}
	}
	if mask&fieldFn != 0 {
		s.fn = r.nonzero()
	}
	if mask&fieldBuiltin != 0 {
		if i := r.entry(r.uvarint(), r.builtinUsed); r.err == nil {
			s.builtin = &r.callees[i]
		}
	}
	if mask&fieldArgs != 0 {
		r.readArgs(s, nlocals)
	}
	if mask&fieldLoc != 0 {
		r.readLoc(s)
	}
	if mask&fieldShare != 0 {
		if len(r.shares) == 0 || !constantMake(s) {
			r.fail("a shared make that is not one of constants")
			return
		}
		s.share, r.shares = &r.shares[0], r.shares[1:]
	}
	if r.err == nil {
		r.check(s)
	}
}

// check fails on what the evaluator would index out of range: a call of
// a function it lacks or with other arguments than its parameters, a call
// of a builtin without one, a scan or a not without its block, a fused
// object of half an item.
func (r *imageReader) check(s *stmt) {
	switch s.op {
	case opCallFunc:
		if int(s.fn) >= len(r.funcs) || len(s.args) != len(r.funcs[s.fn].params) {
			r.fail("a call of function %d with %d arguments", s.fn, len(s.args))
		}
	case opScan, opNot:
		if len(s.blocks) != 1 {
			r.fail("opcode %d with %d blocks", s.op, len(s.blocks))
		}
	case opMakeObjectItems:
		if len(s.args)%2 != 0 {
			r.fail("an object of %d operands", len(s.args))
		}
	}
	if (s.op == opCallBuiltin) != (s.builtin != nil) || (s.op != opCallFunc && s.fn != 0) {
		r.fail("opcode %d calling builtin %v, function %d", s.op, s.builtin != nil, s.fn)
	}
	if s.op == opCallFunc || s.op == opCallBuiltin {
		r.maxArgs = max(r.maxArgs, int32(len(s.args)))
	}
}

func (r *imageReader) readArgs(s *stmt, nlocals int32) {
	n := r.count()
	if n == 0 || n > len(r.args) {
		r.fail("%d operands", n)
		return
	}
	s.args, r.args = r.args[:n:n], r.args[n:]
	for i := range s.args {
		s.args[i] = r.operand(nlocals)
	}
}

func (r *imageReader) readLoc(s *stmt) {
	if len(r.locs) == 0 {
		r.fail("more locations than counted")
		return
	}
	l := &r.locs[0]
	r.locs = r.locs[1:]
	l.Row, l.Col = int(r.int32()), int(r.int32())
	if t := r.uvarint(); t > 0 {
		if i := r.entry(t-1, r.textUsed); r.err == nil {
			l.Text = r.texts[i]
		}
	}
	s.loc = l
}

// entry checks i, the number of an entry of a sorted table, and marks it
// used.
func (r *imageReader) entry(i uint64, used []bool) int {
	if i >= uint64(len(used)) {
		r.fail("table entry %d of %d", i, len(used))
		return 0
	}
	if !used[i] {
		used[i] = true
		r.used++
	}
	return int(i)
}

// uvarint reads a minimal uvarint: one spelling for each number.
func (r *imageReader) uvarint() uint64 {
	var x uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if r.off >= len(r.s) {
			r.fail("truncated")
			return 0
		}
		c := r.s[r.off]
		r.off++
		if c < 0x80 {
			if (shift > 0 && c == 0) || (shift == 63 && c > 1) {
				r.fail("a varint not minimal or past 64 bits")
				return 0
			}
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
	}
	r.fail("a varint past 64 bits")
	return 0
}

// count is a number of things, each at least a byte of the image.
func (r *imageReader) count() int {
	x := r.uvarint()
	if x > uint64(len(r.s)) {
		r.fail("a count of %d", x)
		return 0
	}
	return int(x)
}

func (r *imageReader) int32() int32 {
	x := r.uvarint()
	if x > math.MaxInt32 {
		r.fail("number %d", x)
		return 0
	}
	return int32(x)
}

// nonzero is a field an image has only when it is not zero.
func (r *imageReader) nonzero() int32 {
	x := r.int32()
	if x == 0 {
		r.fail("a zero field")
	}
	return x
}

func (r *imageReader) local(nlocals int32) int32 {
	l := r.nonzero()
	if l >= nlocals {
		r.fail("local %d of %d", l, nlocals)
		return 0
	}
	return l
}

func (r *imageReader) str() string {
	n := r.count()
	if r.off+n > len(r.s) {
		r.fail("truncated")
		return ""
	}
	s := r.s[r.off : r.off+n]
	r.off += n
	return s
}

// operand reads a local below nlocals or a constant (AppendImage's
// konst). The strings are the table's Terms, shared as Prepare shares a
// static string's.
func (r *imageReader) operand(nlocals int32) operand {
	x := r.uvarint()
	v := x >> kindBits
	switch x & (1<<kindBits - 1) {
	case kindLocal:
		if v >= uint64(nlocals) {
			r.fail("local %d of %d", v, nlocals)
			return operand{}
		}
		return operand{local: int32(v)}
	case kindString:
		// In the order of first use: one used before, or the next.
		switch {
		case v >= uint64(len(r.strings)) || v > uint64(r.nextString):
		case v == uint64(r.nextString):
			r.nextString++
			fallthrough
		default:
			return operand{konst: &r.strings[v]}
		}
	case kindBool:
		if v <= 1 {
			return operand{konst: ast.InternedTerm(v == 1)}
		}
	case kindNull:
		if v == 0 {
			return operand{konst: ast.InternedNullTerm}
		}
	case kindInt:
		if i := int64(v>>1) ^ -int64(v&1); i == int64(int(i)) && ast.HasInternedIntNumberTerm(int(i)) {
			return operand{konst: ast.InternedTerm(int(i))}
		}
	case kindNumber:
		if v > uint64(len(r.s)-r.off) {
			break
		}
		n := r.s[r.off : r.off+int(v)]
		r.off += int(v)
		if jsonNumber(n) {
			return operand{konst: ast.NewTerm(ast.Number(n))}
		}
	}
	r.fail("operand %d", x)
	return operand{}
}

// jsonNumber: s is a number as JSON spells it (an ast.Number's text):
// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func jsonNumber(s string) bool {
	digits := func(i int) int { // the end of the digits from i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i
	}
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits(i) > i:
		i = digits(i)
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		if digits(i+1) == i+1 {
			return false
		}
		i = digits(i + 1)
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits(i) == i {
			return false
		}
		i = digits(i)
	}
	return i == len(s)
}
