package irvm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/types"
	"github.com/open-policy-agent/opa/v1/util"
)

const testData = `{"cfg": {"names": ["a", "b", "c"], "limits": {"x": 1, "y": 2}, "tags": ["t1", "t2"]}}`

// prepare plans query over src (package t) and the test data.
func prepare(t testing.TB, src, query string) (*Program, []func(*rego.Rego)) {
	t.Helper()
	return prepareAs(t, src, query, false)
}

// prepareAs is prepare, with PrepareLazily when lazily.
func prepareAs(t testing.TB, src, query string, lazily bool) (*Program, []func(*rego.Rego)) {
	t.Helper()
	var data map[string]any
	if err := util.UnmarshalJSON([]byte(testData), &data); err != nil {
		t.Fatal(err)
	}
	opts := []func(*rego.Rego){
		rego.Module("t.rego", "package t\n\nimport rego.v1\n\n"+src),
		rego.Store(inmem.NewFromObjectWithOpts(data, inmem.OptReturnASTValuesOnRead(true))),
		rego.StrictBuiltinErrors(true),
		rego.SetRegoVersion(ast.RegoV1),
	}
	pol, err := Plan(context.Background(), query, opts...)
	if err != nil {
		t.Fatal(err)
	}
	prepare := func(pol *ir.Policy, data ast.Value, caps *ast.Capabilities) (*Program, error) {
		return Prepare(context.Background(), pol, data, caps)
	}
	if lazily {
		prepare = PrepareLazily
	}
	prog, err := prepare(pol, ast.MustInterfaceToValue(data), ast.CapabilitiesForThisVersion())
	if err != nil {
		t.Fatal(err)
	}
	return prog, append(opts, rego.Query(query))
}

// both evaluates with irvm and topdown; each result is a JSON-ish value,
// "undefined" or "error: …".
func both(t *testing.T, prog *Program, opts []func(*rego.Rego), input string) (got, want any) {
	t.Helper()
	ctx := context.Background()
	in := ast.MustParseTerm(input).Value
	res, n, err := prog.Eval(ctx, in)
	switch {
	case err != nil:
		got = "error"
	case n == 0:
		got = "undefined"
	default:
		var v any
		res.Value.(ast.Object).Foreach(func(_, t *ast.Term) { v, _ = ast.JSON(t.Value) })
		got = v
	}
	rs, err := rego.New(append(opts, rego.ParsedInput(in))...).Eval(ctx)
	switch {
	case err != nil:
		want = "error"
	case len(rs) == 0:
		want = "undefined"
	default:
		want = rs[0].Expressions[0].Value
	}
	return got, want
}

// statementTests are rules over every kind of statement, each with an
// input and the value of data.t.x for it (TestStatements; TestImage runs
// them again from an image).
var statementTests = []struct {
	name, src, input string
	want             any
}{
	// Dot chains in nested blocks with breaks out of two levels.
	{"dot chain defined", `x := input.a.b.c`, `{"a": {"b": {"c": 3}}}`, util.MustUnmarshalJSON([]byte("3"))},
	{"dot chain undefined", `x := input.a.b.c`, `{"a": {"b": 1}}`, "undefined"},
	{"data and default", "default x := 0\nx := data.cfg.limits[input.k]", `{"k": "y"}`, util.MustUnmarshalJSON([]byte("2"))},
	{"default taken", "default x := 0\nx := data.cfg.limits[input.k]", `{"k": "z"}`, util.MustUnmarshalJSON([]byte("0"))},
	{"else chain", "x := 1 if input.a == 1\nelse := 2 if input.a == 2\nelse := 3", `{"a": 2}`, util.MustUnmarshalJSON([]byte("2"))},
	{"not", "x if not input.a", `{}`, true},
	{"not undefined", "x if not input.a", `{"a": true}`, "undefined"},
	{"scan array", "x contains n if some n in data.cfg.names", `{}`, []any{"a", "b", "c"}},
	{"scan object", "x contains k if { some k, v in data.cfg.limits; v > 1 }", `{}`, []any{"y"}},
	{"scan set", "s := {1, 2, 3}\nx contains n if { some n in s; n != 2 }", `{}`, util.MustUnmarshalJSON([]byte("[1, 3]"))},
	{"scan scalar", "x contains n if some n in input.a", `{"a": "str"}`, []any{}},
	{"nested scans", "x contains [a, b] if { some a in input.p; some b in input.q; a == b }", `{"p": [1, 2, 3], "q": [3, 2]}`,
		util.MustUnmarshalJSON([]byte("[[2, 2], [3, 3]]"))},
	{"every", "x if every a in input.p { a > 0 }", `{"p": [1, 2]}`, true},
	{"every over a scalar", "x if every a in input.p { a > 0 }", `{"p": "s"}`, "undefined"},
	{"every in a scan", "x contains a if { some a in input.p; every y in a { y > 0 } }", `{"p": [[1], "s", [0], {"k": 2}]}`,
		util.MustUnmarshalJSON([]byte(`[[1], {"k": 2}]`))},
	{"every fails", "x if every a in input.p { a > 1 }", `{"p": [1, 2]}`, "undefined"},
	{"comprehensions", "x := {\"a\": [n | some n in input.p; n > 1], \"o\": {k: v | some k, v in data.cfg.limits}, \"s\": {n | some n in input.p}}",
		`{"p": [1, 2, 2]}`, util.MustUnmarshalJSON([]byte(`{"a": [2, 2], "o": {"x": 1, "y": 2}, "s": [1, 2]}`))},
	{"function", "f(a) := a * 2 if a > 1\nf(a) := 0 if a <= 1\nx := [f(1), f(3)]", `{}`, util.MustUnmarshalJSON([]byte("[0, 6]"))},
	{"equal numbers", "x if input.a == 1.0", `{"a": 1}`, true},
	// Conflicts are errors, as in topdown.
	{"complete conflict", "x := 1 if input.a\nx := 2 if input.a", `{"a": true}`, "error"},
	{"same value no conflict", "x := 1 if input.a\nx := 1 if input.a", `{"a": true}`, util.MustUnmarshalJSON([]byte("1"))},
	{"function conflict", "f(a) := 1 if a > 0\nf(a) := 2 if a > 1\nx := f(input.a)", `{"a": 5}`, "error"},
	{"object key conflict", "o[k] := v if { some k, v in input.o }\no[k] := 9 if { some k, _ in input.o }\nx := o", `{"o": {"a": 1}}`, "error"},
	{"builtin error", `x := to_number(input.a)`, `{"a": "abc"}`, "error"},
	{"builtin undefined operand", `x := count(input.missing)`, `{}`, "undefined"},
	{"relation builtin", `x := [p | walk(input.o, [p, _])]`, `{"o": {"a": 1}}`, util.MustUnmarshalJSON([]byte(`[[], ["a"]]`))},
	{"or", "x := 1 if { input.a == 1 } else := 2", `{"a": 1}`, util.MustUnmarshalJSON([]byte("1"))},
}

func TestStatements(t *testing.T) {
	for _, tt := range statementTests {
		t.Run(tt.name, func(t *testing.T) {
			prog, opts := prepare(t, tt.src, "data.t.x")
			got, want := both(t, prog, opts, tt.input)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("irvm and topdown differ (-topdown +irvm):\n%s", diff)
			}
			if diff := cmp.Diff(normalize(tt.want), normalize(got)); diff != "" {
				t.Errorf("irvm (-want +got):\n%s", diff)
			}
		})
	}
}

func normalize(v any) string { return fmt.Sprint(v) }

func TestUnsupported(t *testing.T) {
	for name, src := range map[string]string{
		"with":              "y := input.a\nx if { y == 1 with input.a as 1 }",
		"non-deterministic": "x := time.now_ns()",
		// Reads the evaluation's time; OPA counts it non-deterministic.
		"jwt verification": "x := io.jwt.decode_verify(input.t, {\"secret\": \"s\"})",
	} {
		t.Run(name, func(t *testing.T) {
			var data map[string]any
			pol, err := Plan(context.Background(), "data.t.x", rego.Module("t.rego", "package t\n\nimport rego.v1\n\n"+src), rego.SetRegoVersion(ast.RegoV1))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Prepare(context.Background(), pol, ast.MustInterfaceToValue(data), ast.CapabilitiesForThisVersion())
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Prepare: %v, want ErrUnsupported", err)
			}
		})
	}
}

// A rule of data alone is computed once, at Prepare; one that reads input
// is not.
func TestConstants(t *testing.T) {
	prog, opts := prepare(t, "names := {n | some n in data.cfg.names}\nmine := input.n\nx := names[input.n]", "data.t.x")
	if prog.Constants() != 1 {
		t.Fatalf("%d constants, want 1 (names)", prog.Constants())
	}
	for _, in := range []string{`{"n": "a"}`, `{"n": "z"}`} {
		got, want := both(t, prog, opts, in)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Error(diff)
		}
	}
}

// With PrepareLazily a rule of data alone is computed at its first call
// (by concurrent evaluations alike, once) or by Fold, not before; the
// answers are Prepare's.
func TestConstantsLazily(t *testing.T) {
	const src = "names := {n | some n in data.cfg.names}\nmine := input.n\nx := names[input.n]"
	prog, opts := prepareAs(t, src, "data.t.x", true)
	if prog.Constants() != 0 {
		t.Fatalf("%d constants before any evaluation, want 0", prog.Constants())
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, _ = prog.Eval(context.Background(), ast.MustParseTerm(`{"n": "b"}`).Value)
		}()
	}
	wg.Wait()
	if prog.Constants() != 1 {
		t.Fatalf("%d constants after evaluations, want 1 (names)", prog.Constants())
	}
	for _, in := range []string{`{"n": "a"}`, `{"n": "z"}`} {
		got, want := both(t, prog, opts, in)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Error(diff)
		}
	}
	folded, _ := prepareAs(t, src, "data.t.x", true)
	folded.Fold(context.Background())
	if folded.Constants() != 1 {
		t.Fatalf("%d constants after Fold, want 1 (names)", folded.Constants())
	}
}

// A rule of data alone that verifies certificates is not computed once:
// the verification reads the clock, so a certificate that expires after
// Prepare would stay valid until the next reload. Neither is a rule that
// reaches it through another function.
func TestClockReadingBuiltinNotConstant(t *testing.T) {
	for name, src := range map[string]string{
		"direct":  "v := crypto.x509.parse_and_verify_certificates(concat(\"\", data.cfg.names))\nx := v[0]",
		"options": "v := crypto.x509.parse_and_verify_certificates_with_options(concat(\"\", data.cfg.names), {})\nx := v[0]",
		"through": "v := crypto.x509.parse_and_verify_certificates(concat(\"\", data.cfg.names))\nw := [v[0]]\nx := w[0]",
	} {
		t.Run(name, func(t *testing.T) {
			for _, lazily := range []bool{false, true} {
				prog, opts := prepareAs(t, src, "data.t.x", lazily)
				got, want := both(t, prog, opts, "{}")
				if diff := cmp.Diff(want, got); diff != "" {
					t.Error(diff)
				}
				if prog.Constants() != 0 {
					t.Fatalf("lazily %v: %d constants, want 0", lazily, prog.Constants())
				}
			}
		})
	}
}

// ReadsClock names builtins OPA still has: a rename on an upgrade must not
// silently turn folding of the renamed builtin back on.
func TestReadsClockNamesExist(t *testing.T) {
	for _, name := range []string{"crypto.x509.parse_and_verify_certificates", "crypto.x509.parse_and_verify_certificates_with_options"} {
		if !ReadsClock(name) {
			t.Errorf("ReadsClock(%s) false", name)
		}
		if _, ok := ast.BuiltinMap[name]; !ok {
			t.Errorf("%s is no longer an OPA builtin: re-check ReadsClock", name)
		}
	}
}

// A conflict is reported as ErrConflict with the rule's location.
func TestConflictError(t *testing.T) {
	prog, _ := prepare(t, "x := 1 if input.a\nx := 2 if input.a", "data.t.x")
	_, _, err := prog.Eval(context.Background(), ast.MustParseTerm(`{"a": true}`).Value)
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "multiple outputs") {
		t.Fatalf("err %v, want a conflict", err)
	}
}

// A pooled state holds nothing of the evaluation it served: frames are
// cleared as calls return, the plan's frame at the end.
func TestStateClearedAfterEval(t *testing.T) {
	prog, _ := prepare(t, "f(a) := a if a > 1\ng := [n | some n in input.p; f(n)]\nx := {\"g\": g, \"w\": [p | walk(input, [p, _])]}", "data.t.x")
	st := prog.newState()
	st.begin(context.Background(), ast.MustParseTerm(`{"p": [1, 2, 3]}`))
	if r := st.runBlocks(st.stack[:prog.nlocals], prog.plan); r != fell || len(st.results) != 1 {
		t.Fatalf("run = %d, %d results", r, len(st.results))
	}
	st.end()
	for i, v := range st.stack {
		if v != nil {
			t.Fatalf("stack[%d] = %v after end", i, v)
		}
	}
	if len(st.scans) != 0 || len(st.many) != 0 || st.top != prog.nlocals {
		t.Fatalf("scans %d, many %d, top %d", len(st.scans), len(st.many), st.top)
	}
}

// A function of data alone whose evaluation panics (here a builtin that
// does; in life a plan this evaluator misreads) fails Fold quietly, which
// runs after SERVING where a panic would end the process, and each
// evaluation meets it as an error: never a crash, never an answer.
func TestFoldPanicIsFailure(t *testing.T) {
	calls := 0
	rego.RegisterBuiltin1(&rego.Function{Name: "irvmtest.panics", Decl: types.NewFunction(types.Args(types.A), types.A)},
		func(rego.BuiltinContext, *ast.Term) (*ast.Term, error) { calls++; panic("boom") })
	prog, _ := prepareAs(t, "v := irvmtest.panics(data.cfg.names)\nx := v", "data.t.x", true)
	prog.Fold(context.Background())
	if prog.Constants() != 0 {
		t.Fatalf("%d constants after a failed Fold, want 0", prog.Constants())
	}
	before := calls
	if _, _, err := prog.Eval(context.Background(), ast.MustParseTerm(`{}`).Value); err == nil {
		t.Fatal("an evaluation through the panicking function answered")
	}
	if n := calls - before; n != 1 { // a failed fold is the call's answer, not evaluated again
		t.Errorf("an evaluation called the builtin %d times, want 1", n)
	}
}
