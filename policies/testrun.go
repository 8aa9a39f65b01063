package policies

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// TestResult is the outcome of one Rego test rule.
type TestResult struct {
	Name     string // package-qualified, e.g. data.keygate.authz_test.test_x
	Location string // file:line
	Pass     bool
	Err      string // evaluation error, if any
	Duration time.Duration
	// Failure, for a failed test, is the expression that failed with the
	// values its variables held (file:line, then the expression); Trace is
	// the test's whole evaluation trace. Both are filled only for failed
	// tests, from a second, traced run of just those tests.
	Failure string
	Trace   string

	file string
	line int
}

// TestReport is the outcome of a bundle's Rego tests.
type TestReport struct {
	Results []TestResult
	// Coverage is the percentage of the bundle's own policy lines (test
	// files excluded) the tests evaluated; Covered and NotCovered are line
	// counts. In a layer the built-in files do not count: the built-in
	// tests cover them. A layer without Rego of its own has nothing to
	// cover (100%, Covered+NotCovered == 0). Only computed when asked for.
	Coverage            float64
	Covered, NotCovered int
	// Files is the coverage per policy file, built-in files of a layer
	// included (for information).
	Files map[string]float64
}

// Failed counts the tests that did not pass.
func (r *TestReport) Failed() int {
	n := 0
	for _, t := range r.Results {
		if !t.Pass {
			n++
		}
	}
	return n
}

// Err summarizes failures as one error, nil when every test passed.
func (r *TestReport) Err() error {
	var failed []string
	for _, t := range r.Results {
		if !t.Pass {
			failed = append(failed, t.Name)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("policies: %d of %d Rego tests failed: %s", len(failed), len(r.Results), strings.Join(failed, ", "))
}

// testTimeout bounds one Rego test, as `opa test` does.
const testTimeout = 5 * time.Second

// maxExplained bounds how many failed tests are evaluated again to say why.
const maxExplained = 20

// RunTests runs the bundle's *_test.rego rules the way `opa test` would,
// with keygate's capabilities (no network builtins). An error means the
// tests could not run (say, they do not compile); failed tests are in the
// report. Each failed test is then evaluated again, traced and without rule
// indexing (which would skip a body whose outcome it can tell from the
// data), to fill its Failure and Trace; tracing every test would slow the
// passing ones down.
func RunTests(ctx context.Context, b *Bundle, coverage bool) (*TestReport, error) {
	compiler := ast.NewCompiler().
		WithCapabilities(Capabilities()).
		WithEnablePrintStatements(false).
		WithDefaultRegoVersion(ast.RegoV1)
	store := inmem.NewFromObject(b.Documents)
	txn, err := store.NewTransaction(ctx, storage.TransactionParams{})
	if err != nil {
		return nil, fmt.Errorf("policies: test %s: %w", b.Source, err)
	}
	defer store.Abort(ctx, txn)
	runner := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		SetModules(b.Modules).
		SetDefaultRegoVersion(ast.RegoV1).
		RaiseBuiltinErrors(true).
		SetTimeout(testTimeout)
	var cov *cover.Cover
	if coverage {
		cov = cover.New()
		runner.SetCoverageQueryTracer(cov).SetCoverageRuns(nil)
	}
	ch, err := runner.RunTests(ctx, txn)
	if err != nil {
		return nil, fmt.Errorf("policies: test %s: %w", b.Source, err)
	}
	report := &TestReport{}
	explained := 0
	for r := range ch {
		t := TestResult{Name: r.Package + "." + r.Name, Pass: r.Pass(), Duration: r.Duration}
		if r.Location != nil {
			t.file, t.line = r.Location.File, r.Location.Row
			t.Location = fmt.Sprintf("%s:%d", t.file, t.line)
		}
		if r.Error != nil {
			t.Err = r.Error.Error()
		}
		if r.Fail && explained < maxExplained {
			explained++
			t.Failure, t.Trace = explain(ctx, compiler, store, txn, r.Package+"."+r.Name)
		}
		report.Results = append(report.Results, t)
	}
	sort.Slice(report.Results, func(i, j int) bool {
		a, b := report.Results[i], report.Results[j]
		return a.file < b.file || a.file == b.file && a.line < b.line
	})
	if cov != nil {
		report.coverage(cov, b)
	}
	return report, ctx.Err()
}

// explain evaluates one test rule again, traced, with rule indexing off.
func explain(ctx context.Context, compiler *ast.Compiler, store storage.Store, txn storage.Transaction, name string) (string, string) {
	ctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	pq, err := rego.New(rego.Compiler(compiler), rego.Store(store), rego.Transaction(txn), rego.Query(name)).PrepareForEval(ctx)
	if err != nil {
		return "", ""
	}
	buf := topdown.NewBufferTracer()
	_, _ = pq.Eval(ctx, rego.EvalTransaction(txn), rego.EvalQueryTracer(buf), rego.EvalRuleIndexing(false))
	return failureOf(*buf)
}

// failureOf renders a failed test's trace: the last expression that failed
// in the test's own queries, with the values of its variables, and the whole
// trace with locations and variable values.
func failureOf(trace []*topdown.Event) (failure, full string) {
	var b strings.Builder
	topdown.PrettyTraceWithOpts(&b, trace, topdown.PrettyTraceOptions{Locations: true, ExprVariables: true})
	full = b.String()
	for _, e := range slices.Backward(trace) {
		if e.Op != topdown.FailOp || e.Location == nil || e.QueryID == 0 {
			continue
		}
		if expr, ok := e.Node.(*ast.Expr); ok {
			if _, every := expr.Terms.(*ast.Every); every {
				continue // the failing expression inside the every body comes first
			}
		}
		var f strings.Builder
		fmt.Fprintf(&f, "%s:%d:\n", e.Location.File, e.Location.Row)
		if err := topdown.PrettyEvent(&f, e, topdown.PrettyEventOpts{PrettyVars: true}); err != nil {
			return "", full
		}
		return f.String(), full
	}
	return "", full
}

// coverage fills the coverage of policy files; test files do not count,
// nor do the built-in files under a layer.
func (r *TestReport) coverage(cov *cover.Cover, b *Bundle) {
	policy := make(map[string]*ast.Module, len(b.Modules))
	for name, m := range b.Modules {
		if !isTestFile(name) {
			policy[name] = m
		}
	}
	rep := cov.Report(policy)
	r.Files = map[string]float64{}
	for name := range policy {
		fr := rep.Files[name]
		if fr == nil {
			continue
		}
		c, n := fr.CoveredLines, fr.NotCoveredLines
		r.Files[name] = percent(c, n)
		if !b.builtinFiles[name] {
			r.Covered += c
			r.NotCovered += n
		}
	}
	r.Coverage = percent(r.Covered, r.NotCovered)
}

func percent(covered, notCovered int) float64 {
	if covered+notCovered == 0 {
		return 100
	}
	return 100 * float64(covered) / float64(covered+notCovered)
}
