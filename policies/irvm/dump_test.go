package irvm

import (
	"context"
	"os"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
)

func TestDumpPlan(t *testing.T) {
	dir := os.Getenv("IRVM_DUMP")
	if dir == "" {
		t.Skip()
	}
	res, err := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).Filtered([]string{dir}, func(_ string, info os.FileInfo, _ int) bool {
		return !info.IsDir() && len(info.Name()) > 10 && info.Name()[len(info.Name())-10:] == "_test.rego"
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := []func(*rego.Rego){rego.Store(nil)}
	opts = opts[:0]
	for name, m := range res.ParsedModules() {
		opts = append(opts, rego.ParsedModule(m))
		_ = name
	}
	p, err := Plan(context.Background(), "data.keygate.authz.decision", opts...)
	if err != nil {
		t.Fatal(err)
	}
	ir.Pretty(os.Stdout, p)
}
