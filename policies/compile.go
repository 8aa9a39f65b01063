package policies

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// compileBundle compiles the bundle's policy modules (test files left out)
// once. The decision query, the denial tables and the memo's analysis all
// share this compiler: compiling is most of what loading a policy costs,
// and before they shared it the policy was compiled four times per load.
//
// The compiler is configured as rego.New configures its own, so a policy
// compiles (or fails to) exactly as it did through rego.ParsedModule.
func compileBundle(b *Bundle) (*ast.Compiler, []*ast.Module, error) {
	in := make(map[string]*ast.Module, len(b.Modules))
	var modules []*ast.Module
	found := false
	for name, m := range b.Modules {
		if isTestFile(name) {
			continue
		}
		if m.Package.Path.String() == "data.keygate.authz" {
			found = true
		}
		in[name] = m
		modules = append(modules, m)
	}
	if !found {
		return nil, nil, fmt.Errorf("policies: %s: no module declares package keygate.authz", b.Source)
	}
	c := ast.NewCompiler().
		WithCapabilities(Capabilities()).
		WithUseTypeCheckAnnotations(true).
		WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(in); c.Failed() {
		return nil, nil, fmt.Errorf("policies: compile %s: %w", b.Source, c.Errors)
	}
	return c, modules, nil
}

// compiledModules are the compiler's modules: every reference resolved to
// its full path (rules of the same package, imports).
func compiledModules(c *ast.Compiler) []*ast.Module {
	if c == nil {
		return nil
	}
	out := make([]*ast.Module, 0, len(c.Modules))
	for _, m := range c.Modules {
		out = append(out, m)
	}
	return out
}
