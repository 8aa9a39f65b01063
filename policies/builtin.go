package policies

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/keygate/keygate/policies/irvm"
)

//go:generate go test -tags vtprotobuf -run ^TestBuiltinArtifact$ -update .

// The built-in policy is embedded and the same at every start, so what
// serving it needs that depends on it alone is derived when keygate is
// built (builtin_artifact.go, by `go generate ./policies`) instead of at
// every start: parsing and compiling its Rego, planning its decision and
// evaluating its denial tables were most of serve's CPU to SERVING.
// TestBuiltinArtifact fails when the file is stale against a fresh
// derivation, so a policy edit cannot ship without it. (A change to
// builtinArtifact's fields regenerates from `var builtinPlan =
// builtinArtifact{}`: the generator is that test, and it must compile.)

// builtinArtifact is what builtin_artifact.go holds.
type builtinArtifact struct {
	// data makes the built-in data documents (data.yaml) afresh, as the
	// loader reads them: a start decodes no YAML or JSON.
	data func() map[string]any
	// denials makes the denial tables afresh as denialsFrom reads
	// evalDenialDocs' documents: a start encodes no deny bodies.
	denials func() map[string]Decision
	// image is the decision's evaluator, prepared from its IR plan as
	// Compile plans it (irvm.PrepareLazily, AppendImage): a start loads
	// it (irvm.LoadImage) rather than prepare the plan again, a tenth of
	// serve's CPU to SERVING. The plan itself is not kept: nothing else
	// reads it, and TestBuiltinArtifact compares a fresh plan's image.
	image string
}

// StartBuiltin is the built-in policy, ready for its first correct
// decision from the build-time artifact alone: its data, its denial tables
// and its compiled evaluator, which decides. OPA's evaluator, the
// reference behind the plan (a builtin error in a body topdown never
// reaches fails the plan), needs the policy compiled: a decision that
// needs it before Engine.Complete compiles the policy starts that compile
// and waits for it (or its deadline, a deny). Engine.Complete adds what
// Compile's policy has besides (the memo, the data-only rules' values);
// decisions are alike throughout (TestStartBuiltinDecidesAsCompile).
func StartBuiltin(ctx context.Context) (*Policy, error) {
	return startArtifact(&builtinPlan)
}

func startArtifact(a *builtinArtifact) (*Policy, error) {
	docs, denials := a.data(), a.denials()
	data, err := ast.InterfaceToValue(docs)
	if err != nil {
		return nil, fmt.Errorf("policies: built-in data: %w", err)
	}
	// Lazily: the functions of data alone are evaluated by the first
	// decisions that call them, or by the compile that Engine.Complete
	// starts once serving (builtinCompile.fold), not on the way to SERVING.
	prog, err := irvm.LoadImage(a.image, data, Capabilities())
	if err != nil {
		return nil, fmt.Errorf("policies: built-in evaluator: %w", err)
	}
	cp := &compiled{done: make(chan struct{})}
	cp.reason.Store("")
	cp.prog.Store(prog)
	close(cp.done)
	p := newPolicy(&Bundle{Source: BuiltIn, Documents: docs}, denials)
	p.ir, p.pending = cp, &pending{builtin: &builtinCompile{done: make(chan struct{}), fold: prog.Fold}}
	return p, nil
}

// builtinCompile compiles the built-in policy for OPA's evaluator once,
// when first asked (Engine.Complete, a decision the plan could not make,
// Explain), on its own goroutine: a caller whose ctx ends stops waiting,
// not the compile.
type builtinCompile struct {
	once sync.Once
	done chan struct{}
	// load reads the policy to compile: nil, the built-in one (a test
	// gives one that does not compile).
	load func() (*Bundle, error)
	// fold, when set, evaluates the plan's functions of data alone first
	// (a lazy Program: irvm.LoadImage), so that the decisions after it
	// find them.
	fold func(context.Context)
	fc   *firstCompile
	err  error
}

func (c *builtinCompile) get(ctx context.Context) (*firstCompile, error) {
	c.once.Do(func() {
		go func() {
			defer close(c.done)
			if c.fold != nil {
				c.fold(context.Background())
			}
			load := c.load
			if load == nil {
				load = func() (*Bundle, error) { return LoadWithoutTests(Default(), BuiltIn) }
			}
			b, err := load()
			if err != nil {
				c.err = err
				return
			}
			c.fc, _, c.err = compileQuery(context.Background(), b)
		}()
	})
	select {
	case <-c.done:
		return c.fc, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// failed is the compile's error once it ended with one, for good (it runs
// on a context of its own), else nil.
func (c *builtinCompile) failed() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// CompileError is why the built-in policy started from its artifact could
// not be compiled for OPA's evaluator, for good: it decides on with its
// plan, every decision the plan cannot make (a builtin error in a body
// topdown never reaches) is denied, and it has no memo. nil otherwise, and
// until the compile has ended.
func (p *Policy) CompileError() error {
	if p == nil || p.pending == nil || p.pending.builtin == nil {
		return nil
	}
	return p.pending.builtin.failed()
}

// BuiltinStatus is the ReloadStatus of p, the built-in policy, which never
// reloads: loaded at loadedAt, passing tests Rego tests. A compile that
// failed for good (CompileError) is reported as a refused push is for a
// directory, so that /health's policy_reload.last_error and
// keygate_policy_last_reload_success (and its alert) show it.
func BuiltinStatus(p *Policy, loadedAt time.Time, tests int) ReloadStatus {
	st := ReloadStatus{Source: BuiltIn, LastOK: true, LoadedAt: loadedAt, Tests: tests}
	if err := p.CompileError(); err != nil {
		st.LastOK, st.Failures = false, 1
		st.LastError = "built-in policy: compile for OPA's evaluator failed (its plan decides, what the plan cannot decide is denied, no decision memo): " + err.Error()
	}
	return st
}
