package policies

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The compiled evaluator must decide exactly as OPA's: the built-in policy
// and every example, on random inputs, each decided by both.

type diffPolicy struct {
	name string
	p    *Policy
	gen  *inputGen
}

func diffPolicies(tb testing.TB) []diffPolicy {
	tb.Helper()
	out := []diffPolicy{{name: BuiltIn, p: defaultPolicy(tb)}}
	dirs, err := filepath.Glob("examples/*")
	if err != nil {
		tb.Fatal(err)
	}
	for _, dir := range dirs {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		b, err := LoadDir(dir)
		if err != nil {
			tb.Fatal(err)
		}
		p, err := Compile(context.Background(), b)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, diffPolicy{name: dir, p: p})
	}
	for i := range out {
		if ev := out[i].p.WaitEvaluator(context.Background()); ev != EvalCompiled {
			tb.Fatalf("%s: evaluator %s: %s", out[i].name, ev, out[i].p.EvaluatorReason())
		}
		out[i].gen = newInputGen(out[i].p.Bundle.Documents)
	}
	return out
}

// classified is the input as DecideMemo hands it to the evaluator.
func classified(p *Policy, in *Input) *Input {
	c := p.classify(in, map[string]string{}, nil, new(spareFacts))
	return &c
}

// sameDecision decides in with both evaluators; "" when they agree.
func sameDecision(p *Policy, in *Input) string {
	ctx := context.Background()
	v := in.Value()
	want, werr := p.decideTopdown(ctx, v)
	got, gerr := decideCompiled(ctx, p.program(), v)
	if (werr != nil) != (gerr != nil) {
		return "topdown error " + errString(werr) + ", compiled error " + errString(gerr)
	}
	if werr != nil {
		return ""
	}
	return cmp.Diff(want, got)
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestCompiledMatchesTopdown(t *testing.T) {
	n := 1500
	if testing.Short() {
		n = 200
	}
	for _, dp := range diffPolicies(t) {
		rng := rand.New(rand.NewPCG(12, uint64(len(dp.name))))
		codes := map[string]int{}
		for i := 0; i < n; i++ {
			in := dp.gen.input(rng)
			for _, x := range []*Input{classified(dp.p, in), in} {
				if diff := sameDecision(dp.p, x); diff != "" {
					t.Fatalf("%s: input %d %s: compiled and topdown differ:\n%s", dp.name, i, describe(x), diff)
				}
			}
			d, err := dp.p.decideTopdown(context.Background(), classified(dp.p, in).Value())
			if err != nil {
				codes["error"]++
			} else {
				codes[d.Code]++
			}
		}
		// The inputs must reach more than one outcome, or the test proves
		// little.
		if len(codes) < 5 {
			t.Errorf("%s: only %d distinct outcomes: %v", dp.name, len(codes), codes)
		}
		t.Logf("%s: %v", dp.name, codes)
	}
}

func FuzzCompiledMatchesTopdown(f *testing.F) {
	for i := uint64(0); i < 8; i++ {
		f.Add(i, i*7919)
	}
	dps := diffPolicies(f)
	f.Fuzz(func(t *testing.T, a, b uint64) {
		dp := dps[a%uint64(len(dps))]
		in := dp.gen.input(rand.New(rand.NewPCG(a, b)))
		for _, x := range []*Input{classified(dp.p, in), in} {
			if diff := sameDecision(dp.p, x); diff != "" {
				t.Fatalf("%s: %s: compiled and topdown differ:\n%s", dp.name, describe(x), diff)
			}
		}
	})
}

func describe(in *Input) string {
	var b strings.Builder
	b.WriteString(in.Value().String())
	return b.String()
}

// inputGen makes inputs from the strings of a policy's data (paths, plan
// names, scopes, limit names, …) and some of its own.
type inputGen struct {
	paths, words, limits, plans []string
}

func newInputGen(doc map[string]any) *inputGen {
	g := &inputGen{}
	seen := map[string]bool{}
	var walk func(key string, v any)
	walk = func(key string, v any) {
		add := func(s string) {
			if seen[s] {
				return
			}
			seen[s] = true
			if strings.HasPrefix(s, "/") {
				g.paths = append(g.paths, s)
			} else {
				g.words = append(g.words, s)
			}
		}
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				add(k)
				if key == "plans" {
					g.plans = append(g.plans, k)
				}
				if key == "limits" || key == "defaults" {
					g.limits = append(g.limits, k)
				}
				walk(k, x)
			}
		case []any:
			for _, x := range v {
				walk(key, x)
			}
		case string:
			add(v)
		}
	}
	walk("", doc)
	for _, s := range [][]string{g.paths, g.words, g.limits, g.plans} {
		sort.Strings(s)
	}
	g.plans = append(g.plans, "pro", "free", "unknown-plan", "")
	g.limits = append(g.limits, "requests_per_minute", "concurrency", "monthly_requests", "x")
	return g
}
