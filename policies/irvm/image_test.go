package irvm

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
)

// imageTests are rules besides statementTests' with what an image must
// keep: numbers a fused collection takes from MakeNumberRef and
// MakeNumberInt, nulls, booleans, a string used in many places, shared
// makes, paths, functions of data alone.
var imageTests = []struct{ name, src, input string }{
	{"numbers and nulls", `x := {"a": 1.5, "b": [1, 2.5, null, 100000], "c": {"d": false, "e": -1}, "f": input.a}`, `{"a": 1}`},
	{"strings shared", `x := {"k": input.k == "k", "l": [input.l, "k"], "m": object.get(input, "k", "k")}`, `{"k": "k", "l": 2}`},
	{"paths", `x := [input.a.b, input.a.c, f(input.a.b)]` + "\nf(v) := [v, input.a.b]", `{"a": {"b": 1, "c": 2}}`},
	{"data alone", "names := {n | some n in data.cfg.names}\nx := [n | some n in names; n != input.n]", `{"n": "b"}`},
	{"conflict location", "x := 1 if input.a\nx := 2 if input.a", `{"a": true}`},
}

// roundTrip is prog loaded from its image, checked equal to prog and to
// encode to the same image.
func roundTrip(t *testing.T, prog *Program) *Program {
	t.Helper()
	img, err := prog.AppendImage(nil)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadImage(string(img), prog.data.Value, prog.caps)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(prog, loaded); d != "" {
		t.Fatalf("the loaded Program differs from the prepared one: %s", d)
	}
	again, err := loaded.AppendImage(nil)
	if err != nil || !bytes.Equal(img, again) {
		t.Fatalf("the loaded Program's image differs (%v)", err)
	}
	return loaded
}

// TestImage: a Program loaded from the image of a prepared one is that
// Program, field by field, and evaluates as OPA does.
func TestImage(t *testing.T) {
	cases := slices.Clone(imageTests)
	for _, tt := range statementTests {
		cases = append(cases, struct{ name, src, input string }{tt.name, tt.src, tt.input})
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			prepared, opts := prepareAs(t, tt.src, "data.t.x", true)
			loaded := roundTrip(t, prepared)
			got, want := both(t, loaded, opts, tt.input)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("irvm from an image and topdown differ (-topdown +irvm):\n%s", diff)
			}
			// Again once folded and shared: the image is of the plan alone.
			loaded.Fold(context.Background())
			if got, _ := both(t, loaded, opts, tt.input); !cmp.Equal(want, got) {
				t.Errorf("irvm from an image, folded: %v, topdown %v", got, want)
			}
		})
	}
}

// TestImageKeepsWhatPrepareMarks: the test plans have each thing an image
// must keep (else TestImage would test less than it seems to).
func TestImageKeepsWhatPrepareMarks(t *testing.T) {
	var paths, shares, locs, numbers, pure int
	for _, tt := range imageTests {
		prog, _ := prepareAs(t, tt.src, "data.t.x", true)
		paths += int(prog.npaths)
		find := func(s *stmt) {
			if s.share != nil {
				shares++
			}
			if s.loc != nil && len(s.loc.Text) > 0 {
				locs++
			}
			for _, o := range append([]operand{{konst: s.num}}, s.args...) {
				if o.konst == nil {
					continue
				}
				if n, ok := o.konst.Value.(ast.Number); ok && ast.InternedIntNumberTermFromString(string(n)) != o.konst {
					numbers++
				}
			}
		}
		for _, f := range prog.funcs {
			walkStmts(f.blocks, find)
			if f.pure {
				pure++
			}
		}
		walkStmts(prog.plan, find)
	}
	if paths == 0 || shares == 0 || locs == 0 || numbers == 0 || pure == 0 {
		t.Errorf("paths %d, shared makes %d, locations %d, numbers %d, pure functions %d: want some of each", paths, shares, locs, numbers, pure)
	}
}

// TestLoadImageRefuses: an image that is not one this build made, or
// that names what the Program would index out of range, is an error.
func TestLoadImageRefuses(t *testing.T) {
	caps := ast.CapabilitiesForThisVersion()
	fresh := func(t *testing.T) *Program {
		t.Helper()
		prog, _ := prepareAs(t, "f(a) := count(a) if a\nx := [f(input.a), f(input.b)]", "data.t.x", true)
		return prog
	}
	image := func(t *testing.T, prog *Program) string {
		t.Helper()
		img, err := prog.AppendImage(nil)
		if err != nil {
			t.Fatal(err)
		}
		return string(img)
	}
	// firstCall is the first call statement of the plan, of a function or
	// of a builtin.
	firstCall := func(prog *Program, op opcode) *stmt {
		var found *stmt
		walkStmts(prog.plan, func(s *stmt) {
			if found == nil && s.op == op {
				found = s
			}
		})
		for _, f := range prog.funcs {
			walkStmts(f.blocks, func(s *stmt) {
				if found == nil && s.op == op {
					found = s
				}
			})
		}
		return found
	}
	tests := []struct {
		name    string
		change  func(p *Program) // of a fresh Program, before its image
		image   func(img string) string
		caps    *ast.Capabilities
		nilCaps bool
		want    error
	}{
		{name: "another version", image: func(img string) string { return "\x02" + img[1:] }},
		{name: "bytes after", image: func(img string) string { return img + "\x00" }},
		{name: "a varint not minimal", image: func(img string) string { return "\x81\x00" + img[1:] }},
		{name: "a builtin not in the capabilities", caps: &ast.Capabilities{}, want: ErrUnsupported},
		{name: "no capabilities", nilCaps: true, want: ErrUnsupported},
		{name: "a local out of range", change: func(p *Program) { firstCall(p, opCallBuiltin).target = p.nlocals + 100 }},
		{name: "a function out of range", change: func(p *Program) { firstCall(p, opCallFunc).fn = int32(len(p.funcs)) }},
		{name: "a call with other arguments", change: func(p *Program) {
			s := firstCall(p, opCallFunc)
			s.args = s.args[:1]
		}},
		{name: "a function that calls itself", change: func(p *Program) {
			f := p.funcs[0]
			var args []operand
			for _, l := range f.params {
				args = append(args, operand{local: l})
			}
			f.blocks = append(f.blocks, block{{op: opCallFunc, target: f.ret, args: args}})
		}},
		{name: "a scan without its block", change: func(p *Program) {
			p.plan = append(p.plan, block{{op: opScan, a: operand{local: 0}, target: 2, value: 2}})
		}},
		{name: "a shared make not of constants", change: func(p *Program) {
			p.plan = append(p.plan, block{{op: opMakeArrayItems, target: 2, args: []operand{{local: 0}}, share: new(atomic.Pointer[ast.Term])}})
		}},
		{name: "a path past the paths", change: func(p *Program) {
			p.plan = append(p.plan, block{{op: opDot, path: p.npaths + 1, a: operand{local: 0}, b: operand{konst: ast.StringTerm("k")}, target: 2}})
		}},
		{name: "more paths than dots read", change: func(p *Program) { p.npaths += 1 << 24 }},
		{name: "more paths than statements", change: func(p *Program) {
			// Every path read, by a dot with a huge one: each evaluation
			// would make 2^27 slots (1 GiB).
			walkProgram(p, func(s *stmt) {
				if s.op == opDot && s.path > 0 {
					s.path = 1 << 27
				}
			})
			p.npaths = 1 << 27
		}},
		{name: "an opcode past the last", change: func(p *Program) { p.plan = append(p.plan, block{{op: opcode(numOpcodes)}}) }},
		{name: "an array too large", change: func(p *Program) {
			p.plan = append(p.plan, block{{op: opMakeArray, target: 2, index: maxImageCapacity + 1}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog := fresh(t)
			if tt.change != nil {
				tt.change(prog)
			}
			img := image(t, prog)
			if tt.image != nil {
				img = tt.image(img)
			}
			c := caps
			if tt.caps != nil || tt.nilCaps {
				c = tt.caps
			}
			p, err := LoadImage(img, ast.NewObject(), c)
			if !errors.Is(err, ErrImage) || (tt.want != nil && !errors.Is(err, tt.want)) || p != nil {
				t.Fatalf("LoadImage = %v, %v; want an error of %v (and %v)", p, err, ErrImage, tt.want)
			}
		})
	}
	t.Run("every prefix", func(t *testing.T) {
		img := image(t, fresh(t))
		if _, err := LoadImage(img, ast.NewObject(), caps); err != nil {
			t.Fatal(err)
		}
		for n := range len(img) {
			if _, err := LoadImage(img[:n], ast.NewObject(), caps); !errors.Is(err, ErrImage) {
				t.Fatalf("LoadImage of %d bytes of %d: %v", n, len(img), err)
			}
		}
	})
}

// FuzzLoadImage: an image is refused, or loads a Program that encodes to
// the same image. (It does not evaluate the Program: a mutation can make a
// plan that inserts a collection into itself, which OPA's own values do
// not survive, as Prepare given such an IR plan would.)
func FuzzLoadImage(f *testing.F) {
	for _, src := range []string{imageTests[0].src, imageTests[2].src, imageTests[3].src, statementTests[len(statementTests)-3].src} {
		prog, _ := prepareAs(f, src, "data.t.x", true)
		img, err := prog.AppendImage(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(img)
	}
	caps := ast.CapabilitiesForThisVersion()
	data := ast.MustParseTerm(testData).Value
	f.Fuzz(func(t *testing.T, img []byte) {
		prog, err := LoadImage(string(img), data, caps)
		if err != nil {
			if !errors.Is(err, ErrImage) {
				t.Fatalf("an error not ErrImage: %v", err)
			}
			return
		}
		again, err := prog.AppendImage(nil)
		if err != nil || !bytes.Equal(again, img) {
			t.Fatalf("the loaded Program's image differs (%v)", err)
		}
	})
}

func TestJSONNumber(t *testing.T) {
	for s, want := range map[string]bool{
		"0": true, "-0": true, "12": true, "1.5": true, "-1.25e+10": true, "2E3": true, "1e-7": true,
		"": false, "-": false, "01": false, "1.": false, ".5": false, "1e": false, "1e+": false, "+1": false,
		"1 ": false, "0x1": false, "NaN": false, "1.5.2": false, `"1"`: false,
	} {
		if got := jsonNumber(s); got != want {
			t.Errorf("jsonNumber(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestDiffFindsEachField: Diff, which TestImage relies on, tells a
// Program from one changed in any field an image keeps or LoadImage
// derives.
func TestDiffFindsEachField(t *testing.T) {
	// first is the first statement of the Program's functions and plan
	// that has what.
	first := func(p *Program, has func(*stmt) bool) *stmt {
		var found *stmt
		find := func(s *stmt) {
			if found == nil && has(s) {
				found = s
			}
		}
		walkProgram(p, find)
		if found == nil {
			t.Fatal("no such statement")
		}
		return found
	}
	tests := []struct {
		name   string
		change func(p *Program)
	}{
		{"stack", func(p *Program) { p.maxStack++ }},
		{"paths", func(p *Program) { p.npaths++ }},
		{"lazy", func(p *Program) { p.lazy = false }},
		{"a function's slot", func(p *Program) { p.funcs[0].slot++ }},
		{"a pure function", func(p *Program) { p.funcs[0].pure = !p.funcs[0].pure }},
		{"an opcode", func(p *Program) { p.plan[0][0].op = opNop }},
		{"a target", func(p *Program) { first(p, func(s *stmt) bool { return s.target != 0 }).target++ }},
		{"a path", func(p *Program) { first(p, func(s *stmt) bool { return s.path != 0 }).path = 0 }},
		{"a string", func(p *Program) {
			s := first(p, func(s *stmt) bool { _, ok := stringKey(s.b); return ok })
			s.b.konst = ast.StringTerm("other")
		}},
		{"a string's Term", func(p *Program) {
			s := first(p, func(s *stmt) bool { _, ok := stringKey(s.b); return ok })
			s.b.konst = ast.StringTerm(string(s.b.konst.Value.(ast.String)))
			first(p, func(o *stmt) bool {
				_, ok := stringKey(o.b)
				return ok && o != s && o.b.konst.Value.Compare(s.b.konst.Value) == 0
			})
		}},
		{"a number", func(p *Program) { first(p, func(s *stmt) bool { return s.num != nil }).num = ast.IntNumberTerm(12345) }},
		{"an argument", func(p *Program) { first(p, func(s *stmt) bool { return len(s.args) > 0 }).args[0].local++ }},
		{"a builtin", func(p *Program) {
			s := first(p, func(s *stmt) bool { return s.builtin != nil })
			c := *s.builtin
			c.clock = !c.clock
			s.builtin = &c
		}},
		{"a location", func(p *Program) {
			s := first(p, func(s *stmt) bool { return s.loc != nil && len(s.loc.Text) > 0 })
			l := *s.loc
			l.Text = []byte("other")
			s.loc = &l
		}},
		{"a shared make", func(p *Program) { first(p, func(s *stmt) bool { return s.share != nil }).share = nil }},
		{"a block", func(p *Program) {
			s := first(p, func(s *stmt) bool { return len(s.blocks) > 0 })
			s.blocks = s.blocks[:len(s.blocks)-1]
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := imageTests[2].src + "\ny := [x, input.a.b, \"b\", count(input.a), {\"x\": 1.5}, {}, names]\n" + imageTests[3].src[:strings.Index(imageTests[3].src, "\n")]
			prepared, _ := prepareAs(t, src, "data.t.y", true)
			loaded := roundTrip(t, prepared)
			tt.change(loaded)
			if d := Diff(prepared, loaded); d == "" {
				t.Errorf("Diff found nothing")
			}
		})
	}
}

// walkProgram calls f on every statement of p's functions, then of its plan.
func walkProgram(p *Program, f func(*stmt)) {
	for _, fn := range p.funcs {
		walkStmts(fn.blocks, f)
	}
	walkStmts(p.plan, f)
}
