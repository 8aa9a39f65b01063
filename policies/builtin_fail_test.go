package policies

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestBuiltinCompileFailureIsLoud: when the built-in policy started from
// its artifact cannot be compiled for OPA's evaluator (a compile failure
// injected), Engine.Complete leaves it deciding by its plan, and that is
// loud: CompileError names the cause, LogEvaluator logs it once at error
// level, and the status /health and keygate_policy_last_reload_success
// report is a failure with the cause (it was a success, silently).
func TestBuiltinCompileFailureIsLoud(t *testing.T) {
	ctx := context.Background()
	p, err := StartBuiltin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := ast.ParseModuleWithOpts("broken.rego", "package keygate.authz\n\ndecision := no_such_function(1)\n",
		ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		t.Fatal(err)
	}
	p.pending.builtin.load = func() (*Bundle, error) {
		return &Bundle{Source: BuiltIn, Modules: map[string]*ast.Module{"broken.rego": mod}, Documents: p.Bundle.Documents}, nil
	}
	e := NewEngine(p)
	full := e.Complete(ctx)
	if full.Completed() || full.memo != nil {
		t.Fatalf("a policy that did not compile completed: memo %v", full.memo != nil)
	}
	cause := full.CompileError()
	if cause == nil || !strings.Contains(cause.Error(), "no_such_function") {
		t.Fatalf("CompileError: %v", cause)
	}
	if d, err := e.Decide(ctx, proInput()); err != nil || !d.Allow {
		t.Fatalf("the plan stopped deciding: %+v, %v", d, err)
	}
	var buf bytes.Buffer
	LogEvaluator(ctx, slog.New(slog.NewTextHandler(&buf, nil)), BuiltIn, full)
	if n := strings.Count(buf.String(), "level=ERROR"); n != 1 || !strings.Contains(buf.String(), "no_such_function") {
		t.Fatalf("%d error lines, want 1 with the cause:\n%s", n, buf.String())
	}
	st := BuiltinStatus(e.Current(), time.Unix(1, 0), 0)
	if st.LastOK || !strings.Contains(st.LastError, "no_such_function") {
		t.Fatalf("status %+v, want a failure with the cause", st)
	}
	ok, err := StartBuiltin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := BuiltinStatus(NewEngine(ok).Complete(ctx), time.Unix(1, 0), 0); !st.LastOK || st.LastError != "" {
		t.Fatalf("a built-in policy that compiled: status %+v", st)
	}
}
