// Package policies holds the Rego that platform teams edit and the engine
// that evaluates it: one entrypoint, data.keygate.authz.decision, whose
// answer Go validates before anyone acts on it.
//
// policies imports no other package of the project; OPA stays behind it.
package policies

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"strings"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// Entrypoint is the one rule keygate evaluates.
const Entrypoint = "data.keygate.authz.decision"

//go:embed default
var embedded embed.FS

// Default returns the built-in policy directory.
func Default() fs.FS {
	sub, err := fs.Sub(embedded, "default")
	if err != nil {
		panic(err) // the embed directive guarantees the directory exists
	}
	return sub
}

// forbiddenBuiltins reach the network or leak the runtime's configuration
// (environment variables); a policy needs none of them to decide.
var forbiddenBuiltins = map[string]bool{
	"http.send":          true,
	"net.lookup_ip_addr": true,
	"opa.runtime":        true,
}

// Capabilities are OPA's, minus the forbidden builtins.
func Capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	kept := caps.Builtins[:0]
	for _, b := range caps.Builtins {
		if !forbiddenBuiltins[b.Name] {
			kept = append(kept, b)
		}
	}
	caps.Builtins = kept
	return caps
}

// Bundle is a loaded policy directory: modules and data, before compiling.
type Bundle struct {
	Source    string
	Modules   map[string]*ast.Module // by file name, tests included
	Documents map[string]any
	// Extends names the policy this directory is layered on ("" for none).
	Extends string
	// builtinFiles are the module files that come from the built-in layer.
	builtinFiles map[string]bool
}

// Load reads every .rego, data.json and data.yaml file under fsys, the way
// `opa test DIR` does, so the same directory works with both.
func Load(fsys fs.FS, source string) (*Bundle, error) {
	res, err := loader.NewFileLoader().
		WithFS(fsys).
		WithProcessAnnotation(true).
		WithCapabilities(Capabilities()).
		WithRegoVersion(ast.RegoV1).
		Filtered([]string{"."}, func(_ string, info fs.FileInfo, _ int) bool {
			// Only policy files and data files; READMEs and the like are ignored.
			if info.IsDir() {
				return strings.HasPrefix(info.Name(), ".") && info.Name() != "."
			}
			return !policyFile(info.Name())
		})
	if err != nil {
		return nil, fmt.Errorf("policies: load %s: %w", source, err)
	}
	return &Bundle{Source: source, Modules: res.ParsedModules(), Documents: res.Documents}, nil
}

// Policy is a compiled, ready-to-evaluate bundle.
type Policy struct {
	Bundle       *Bundle
	query        rego.PreparedEvalQuery
	sitePrefixes []string
	paths        pathIndex
	limitDenials map[string]Decision
	// memo is nil when the policy may answer differently for one input.
	memo *memo
}

// Compile prepares the decision query for a bundle. Test modules are left
// out of the decision query; RunTests compiles them separately.
func Compile(ctx context.Context, b *Bundle) (*Policy, error) {
	opts := []func(*rego.Rego){
		rego.Query(Entrypoint),
		rego.Store(inmem.NewFromObjectWithOpts(b.Documents, inmem.OptReturnASTValuesOnRead(true))),
		rego.Capabilities(Capabilities()),
		rego.StrictBuiltinErrors(true),
		rego.SetRegoVersion(ast.RegoV1),
	}
	found := false
	var modules []*ast.Module
	for name, m := range b.Modules {
		if isTestFile(name) {
			continue
		}
		if m.Package.Path.String() == "data.keygate.authz" {
			found = true
		}
		opts = append(opts, rego.ParsedModule(m))
		modules = append(modules, m)
	}
	if !found {
		return nil, fmt.Errorf("policies: %s: no module declares package keygate.authz", b.Source)
	}
	q, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policies: compile %s: %w", b.Source, err)
	}
	denials, err := evalLimitDenials(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &Policy{Bundle: b, query: q, sitePrefixes: stringsAt(b.Documents, "keygate", "config", "routes", "public_site_prefixes"), limitDenials: denials,
		paths: newPathIndex(b.Documents), memo: newMemo(ctx, modules, b.Documents)}, nil
}

func isTestFile(name string) bool { return strings.HasSuffix(name, "_test.rego") }

// stringsAt reads a list of strings from nested data; anything else is nil.
func stringsAt(doc map[string]any, path ...string) []string {
	var cur any = doc
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	list, _ := cur.([]any)
	out := make([]string, 0, len(list))
	for _, v := range list {
		if s, ok := v.(string); ok && s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Engine evaluates the current policy. Reloads swap it atomically, so a
// decision always sees one whole policy.
type Engine struct {
	cur atomic.Pointer[Policy]
	// noMemo turns the decision memo off: an operator's escape hatch should
	// a policy ever need every evaluation to run.
	noMemo atomic.Bool
	stats  memoCounters
}

// SetMemo turns remembering decisions of deterministic policies on (the
// default) or off.
func (e *Engine) SetMemo(on bool) { e.noMemo.Store(!on) }

// NewEngine starts with p.
func NewEngine(p *Policy) *Engine {
	e := &Engine{}
	e.cur.Store(p)
	return e
}

// Swap installs p for every decision that starts after it returns.
func (e *Engine) Swap(p *Policy) { e.cur.Store(p) }

// Current is the policy in use.
func (e *Engine) Current() *Policy { return e.cur.Load() }

// PublicSite reports whether path is a public site route and which site it
// names, so the caller can fetch that site's facts before deciding.
func (e *Engine) PublicSite(path string) (string, bool) {
	for _, prefix := range e.cur.Load().sitePrefixes {
		if rest, ok := strings.CutPrefix(path, prefix); ok {
			site, _, _ := strings.Cut(rest, "/")
			return site, site != ""
		}
	}
	return "", false
}

// Decide evaluates the policy for in under ctx's deadline. An error means no
// decision: the caller must deny.
//
// Decisions may be remembered and handed to several callers: treat the
// maps and the body of a Decision as read-only.
func (e *Engine) Decide(ctx context.Context, in *Input) (Decision, error) {
	d, _, err := e.DecideMemo(ctx, in)
	return d, err
}

// MemoResult says where a decision came from: the memo (MemoHit), an
// evaluation the memo then kept or could not key (MemoMiss), or an
// evaluation with the memo off or impossible for the policy (MemoOff).
type MemoResult string

// Memo results, as decision logs and metrics name them.
const (
	MemoOff  MemoResult = "off"
	MemoHit  MemoResult = "hit"
	MemoMiss MemoResult = "miss"
)

// DecideMemo is Decide that also reports whether the memo answered.
func (e *Engine) DecideMemo(ctx context.Context, in *Input) (Decision, MemoResult, error) {
	p := e.cur.Load()
	// The policy sees the path classified by its data; the caller's input
	// stays as it was.
	classified := *in
	p.paths.classify(&classified.Request)
	in = &classified
	if p.memo == nil || e.noMemo.Load() {
		e.stats.bypass.Add(1)
		d, err := p.decide(ctx, in)
		return d, MemoOff, err
	}
	d, key, ok := p.memo.get(in)
	e.stats.count(ok, key)
	if ok {
		return d, MemoHit, nil
	}
	d, err := p.decide(ctx, in)
	if err == nil && key != nil {
		p.memo.put(key, d)
	}
	return d, MemoMiss, err
}

func (p *Policy) decide(ctx context.Context, in *Input) (Decision, error) {
	return p.decideValue(ctx, in.Value())
}

// decideValue evaluates the decision for an input already in OPA's form.
func (p *Policy) decideValue(ctx context.Context, input ast.Value) (Decision, error) {
	rs, err := p.query.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return Decision{}, fmt.Errorf("policies: evaluate: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{}, fmt.Errorf("%w: %s is undefined", ErrPolicy, Entrypoint)
	}
	return parseDecision(rs[0].Expressions[0].Value)
}
