package policies

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/rego"
)

// The denial table: every deny keygate produces outside the decision rule —
// timeouts, panics, outages, exhausted counters, the token exchange's
// refusals — is looked up here by name, so that the policy's data
// (config.errors, body_shape, content_type) shapes it like any other deny.
//
// The rules do not depend on input, so they are evaluated once per policy
// load rather than on every decision.
const (
	// Denials is data.keygate.authz.denials: name → deny document, one per
	// entry of config.errors.
	Denials = "data.keygate.authz.denials"
	// LimitDenials is the older, narrower table (exhausted counters only);
	// a whole policy written before Denials existed still shapes its
	// limit refusals with it.
	LimitDenials = "data.keygate.authz.limit_denials"
)

// evalDenials evaluates both tables with the decision query's options (its
// own query option comes last and wins). A policy with neither has none,
// and keygate's built-in denials apply; so do invalid rows.
func evalDenials(ctx context.Context, opts []func(*rego.Rego)) (map[string]Decision, error) {
	docs, err := evalDenialDocs(ctx, opts)
	if err != nil {
		return nil, err
	}
	return denialsFrom(docs)
}

// denialTables are the tables, evaluated first (LimitDenials) to last.
var denialTables = [...]string{LimitDenials, Denials}

// evalDenialDocs evaluates each table's document (nil when undefined), in
// the order of denialTables: the built-in policy's are derived at build
// time (builtin.go), everything else's at load.
func evalDenialDocs(ctx context.Context, opts []func(*rego.Rego)) ([]any, error) {
	docs := make([]any, len(denialTables))
	for i, rule := range denialTables {
		rs, err := rego.New(append(opts[:len(opts):len(opts)], rego.Query(rule))...).Eval(ctx)
		if err != nil {
			return nil, fmt.Errorf("policies: %s: %w", rule, err)
		}
		if len(rs) != 1 || len(rs[0].Expressions) != 1 {
			continue
		}
		// nil stands for undefined in docs: a table that is null is no
		// object, as denialsFrom says of any other non-object.
		if docs[i] = rs[0].Expressions[0].Value; docs[i] == nil {
			return nil, fmt.Errorf("%w: %s must be an object", ErrPolicy, rule)
		}
	}
	return docs, nil
}

// denialsFrom reads the tables' documents into denials; a later table's
// row replaces an earlier one's.
func denialsFrom(docs []any) (map[string]Decision, error) {
	out := map[string]Decision{}
	for i, v := range docs {
		if v == nil {
			continue
		}
		doc, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s must be an object", ErrPolicy, denialTables[i])
		}
		for name, v := range doc {
			// A row that is no valid deny (say a config.errors entry with a
			// 3xx status) is left out: keygate's built-in row answers for
			// it, as the decision rule answers such a row with POLICY_ERROR.
			if d, err := parseDecision(v); err == nil && !d.Allow {
				d.Limits = nil
				out[name] = d
			}
		}
	}
	return out, nil
}

// Denial is this policy's deny for name (an entry of config.errors); false
// when the policy defines none.
func (p *Policy) Denial(name string) (Decision, bool) {
	d, ok := p.denials[name]
	return d, ok
}

// LimitDenial is the current policy's refusal for an exhausted counter
// with this code; false when the policy defines none.
func (e *Engine) LimitDenial(code string) (Decision, bool) { return e.cur.Load().Denial(code) }

// BuiltinDenial is the deny for name as the built-in policy's data spells
// it (policies/default/data.yaml, config.errors), in the default
// {"code","message"} shape. It is the fallback for a policy that has no
// denial table or lacks the entry, so it never evaluates Rego and cannot
// fail once the embedded data parsed.
func BuiltinDenial(name string) (Decision, bool) {
	builtinOnce.Do(loadBuiltinErrors)
	e, ok := builtinErrors[name].(map[string]any)
	if !ok {
		return Decision{}, false
	}
	d, err := parseDecision(map[string]any{"allow": false, "status": e["status"], "code": codeOf(e, name), "message": e["message"]})
	if err != nil {
		return Decision{}, false
	}
	d.Rule = strings.ToLower(name)
	return d, true
}

func codeOf(e map[string]any, name string) any {
	if c, ok := e["code"]; ok {
		return c
	}
	return name
}

var (
	builtinOnce   sync.Once
	builtinErrors map[string]any
)

func loadBuiltinErrors() {
	b, err := Load(Default(), BuiltIn)
	if err != nil {
		return // the embedded files are tested; nothing to fall back to
	}
	kg, _ := b.Documents["keygate"].(map[string]any)
	cfg, _ := kg["config"].(map[string]any)
	builtinErrors, _ = cfg["errors"].(map[string]any)
}
