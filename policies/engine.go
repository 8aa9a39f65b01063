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
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
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
func Load(fsys fs.FS, source string) (*Bundle, error) { return load(fsys, source, true) }

// LoadWithoutTests is Load leaving the _test.rego files out: all that
// deciding needs (RunTests needs Load's bundle). Serve starts the built-in
// policy with it: its tests were ~40% of the Rego parsed before SERVING.
func LoadWithoutTests(fsys fs.FS, source string) (*Bundle, error) { return load(fsys, source, false) }

func load(fsys fs.FS, source string, tests bool) (*Bundle, error) {
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
			return !policyFile(info.Name()) || (!tests && isTestFile(info.Name()))
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
	mintRoute    string
	quotaCounter string
	denials      map[string]Decision
	paths        pathIndex
	// stats are the engine's memo counters, set when an engine installs
	// the policy; nil for a policy used on its own.
	stats *memoCounters
	// memo is nil when the policy may answer differently for one input.
	memo *memo
	// unread clear the request fields the policy provably never reads (the
	// memo's analysis), so they are not converted for every evaluation.
	unread unreadFields
	// folded are the data-only rules' values, computed at load (fold.go).
	folded []foldedValue
	// ir is the compiled evaluator (compiled.go), built in the background;
	// decisions use OPA's evaluator until it is ready, or for good when
	// the plan cannot be run.
	ir *compiled
	// pending is what the analyses above need, kept while a CompileFirst
	// policy waits for them (complete.go); nil once they are done.
	pending *pending
}

// Compile prepares the decision query for a bundle, with every load-time
// analysis done (CompileFirst, then its completion). Test modules are left
// out of the decision query; RunTests compiles them separately.
func Compile(ctx context.Context, b *Bundle) (*Policy, error) {
	p, err := CompileFirst(ctx, b)
	if err != nil {
		return nil, err
	}
	return p.complete(ctx), nil
}

func isTestFile(name string) bool { return strings.HasSuffix(name, "_test.rego") }

// stringAt reads one string from nested data; anything else is "".
func stringAt(doc map[string]any, path ...string) string {
	var cur any = doc
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[p]
	}
	s, _ := cur.(string)
	return s
}

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
	// completing makes Complete's callers take turns.
	completing sync.Mutex
}

// SetMemo turns remembering decisions of deterministic policies on (the
// default) or off.
func (e *Engine) SetMemo(on bool) { e.noMemo.Store(!on) }

// NewEngine starts with p.
func NewEngine(p *Policy) *Engine {
	e := &Engine{}
	e.Swap(p)
	return e
}

// Swap installs p for every decision that starts after it returns.
func (e *Engine) Swap(p *Policy) {
	if p != nil && p.stats != &e.stats {
		p.stats = &e.stats
	}
	e.cur.Store(p)
}

// Current is the policy in use.
func (e *Engine) Current() *Policy { return e.cur.Load() }

// Snapshot is the policy for one whole request: its decision, its public
// site routes and the shape of keygate's own denials then all come from
// the same load, even when a reload lands mid-request. With the memo
// turned off it is a memo-less copy of the current policy.
func (e *Engine) Snapshot() *Policy {
	p := e.cur.Load()
	if p.memo != nil && e.noMemo.Load() {
		cp := *p
		cp.memo = nil
		return &cp
	}
	return p
}

// PublicSite is the current policy's PublicSite.
func (e *Engine) PublicSite(path string) (string, bool) { return e.cur.Load().PublicSite(path) }

// Decide is the current policy's Decide.
func (e *Engine) Decide(ctx context.Context, in *Input) (Decision, error) {
	return e.Snapshot().Decide(ctx, in)
}

// DecideMemo is the current policy's DecideMemo.
func (e *Engine) DecideMemo(ctx context.Context, in *Input) (Decision, MemoResult, error) {
	return e.Snapshot().DecideMemo(ctx, in)
}

// PublicSite reports whether path is a public site route and which site it
// names, so the caller can fetch that site's facts before deciding.
func (p *Policy) PublicSite(path string) (string, bool) {
	for _, prefix := range p.sitePrefixes {
		if rest, ok := strings.CutPrefix(path, prefix); ok {
			site, _, _ := strings.Cut(rest, "/")
			return site, site != ""
		}
	}
	return "", false
}

// MintRoute is the key route the token exchange decides a mint on
// (config.routes.mint_route): a key may mint tokens exactly when a request
// with it to this route would be allowed. False when the policy declares
// none, or a path that is not absolute; then nothing may mint.
func (p *Policy) MintRoute() (string, bool) {
	return p.mintRoute, strings.HasPrefix(p.mintRoute, "/")
}

// QuotaCounter names a site's monthly quota counter for a key mode, as the
// policy's limits name it (config.limits.quota_counter, default
// "site:{site}:{mode}"), so usage can be read back under the same name.
func (p *Policy) QuotaCounter(site, mode string) string {
	t := p.quotaCounter
	if t == "" {
		t = DefaultQuotaCounter
	}
	return strings.NewReplacer("{site}", site, "{mode}", mode).Replace(t)
}

// DefaultQuotaCounter is the built-in policy's quota counter template.
const DefaultQuotaCounter = "site:{site}:{mode}"

// QuotaCounter is the current policy's QuotaCounter.
func (e *Engine) QuotaCounter(site, mode string) string { return e.cur.Load().QuotaCounter(site, mode) }

// Decide evaluates the policy for in under ctx's deadline. An error means no
// decision: the caller must deny.
//
// Decisions may be remembered and handed to several callers: treat the
// maps and the body of a Decision as read-only.
func (p *Policy) Decide(ctx context.Context, in *Input) (Decision, error) {
	d, _, err := p.DecideMemo(ctx, in)
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
func (p *Policy) DecideMemo(ctx context.Context, in *Input) (Decision, MemoResult, error) {
	// The policy sees the path classified by its data and none of the
	// fields it never reads; the caller's input stays as it was.
	scratch := getClassifyScratch()
	defer putClassifyScratch(scratch)
	// Clearing by a set of fields keeps classified on the stack (a memo
	// hit is a handful of allocations, a heap copy was one of them).
	classified := p.classify(in, scratch.prefixes, scratch.own[:0], &scratch.spare)
	if p.memo == nil {
		p.stats.bypassed()
		d, err := p.decide(ctx, &classified, &scratch.enc)
		return d, MemoOff, err
	}
	d, key, ok := p.memo.get(&classified)
	p.stats.count(ok, key)
	if ok {
		return d, MemoHit, nil
	}
	d, err := p.decide(ctx, &classified, &scratch.enc)
	if err == nil && key != nil {
		p.memo.put(key, d)
	}
	return d, MemoMiss, err
}

// classify is in as the policy sees it: its path classified by the
// policy's data (into prefixes, an empty map to fill, and own), without
// the fields the policy never reads (their facts copied into spare).
func (p *Policy) classify(in *Input, prefixes map[string]string, own []string, spare *spareFacts) Input {
	classified := *in
	p.paths.classifyInto(&classified.Request, prefixes)
	classified.Request.OwnSitePrefixes = ownSitePrefixes(own, &classified)
	p.unread.clear(&classified, spare)
	return classified
}

// decide evaluates the policy for in, its parts converted through the
// cache (input_cache.go; enc is scratch to encode them in).
func (p *Policy) decide(ctx context.Context, in *Input, enc partBuffer) (Decision, error) {
	return p.decideValue(ctx, in.value(enc))
}

// decideValue evaluates the decision for an input already in OPA's form,
// with the compiled evaluator when it is ready.
func (p *Policy) decideValue(ctx context.Context, input ast.Value) (Decision, error) {
	if prog := p.program(); prog != nil {
		d, err := decideCompiled(ctx, prog, input)
		if err == nil {
			// irvm does not watch the context while it runs: a decision
			// finished past the request's deadline is refused (fail closed).
			if err := ctx.Err(); err != nil {
				return Decision{}, fmt.Errorf("policies: evaluate: %w", err)
			}
			return d, nil
		}
		// The plan runs every rule body where topdown stops at the first
		// that proves a rule, so a builtin error in a body topdown never
		// reaches fails the plan: topdown, the reference, decides then.
		// An error there too is the policy's error, a deny.
	}
	return p.decideTopdown(ctx, input)
}

// decideTopdown evaluates the decision with OPA's evaluator.
func (p *Policy) decideTopdown(ctx context.Context, input ast.Value) (Decision, error) {
	q := p.query
	if p.pending != nil && p.pending.builtin != nil {
		// Started from the build-time artifact: the policy is compiled for
		// this evaluator after SERVING (StartBuiltin), or now.
		fc, err := p.pending.builtin.get(ctx)
		if err != nil {
			return Decision{}, fmt.Errorf("policies: evaluate: %w", err)
		}
		q = fc.query
	}
	cache, release := p.evalCache()
	defer release()
	// No metrics: nobody reads them, and OPA would allocate a set per call.
	rs, err := q.Eval(ctx, rego.EvalParsedInput(input), cache, rego.EvalMetrics(metrics.NoOp()))
	if err != nil {
		return Decision{}, fmt.Errorf("policies: evaluate: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{}, fmt.Errorf("%w: %s is undefined", ErrPolicy, Entrypoint)
	}
	return parseDecision(rs[0].Expressions[0].Value)
}
