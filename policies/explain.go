package policies

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// RuleDoc explains a decision's "rule" to the platform engineer who owns
// the policy: where the decision was made and what the rule's METADATA says.
type RuleDoc struct {
	Rule string `json:"rule"`
	// DecidedAt is the file:line of the rule (or else-branch) whose value
	// names this rule: where to look to change the outcome.
	DecidedAt string `json:"decided_at,omitempty"`
	// Condition is the file:line of the Rego rule of that name, if any: the
	// condition that held (say plan_without_api).
	Condition string `json:"condition,omitempty"`
	// Title and Description come from the METADATA of the condition rule,
	// else of the rule that decided.
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
}

// Explain finds the rule a decision names in the policy's modules (tests
// excluded). It is for `keygate check`, not for the request path.
func (p *Policy) Explain(rule string) RuleDoc {
	doc := RuleDoc{Rule: rule}
	if p.pending != nil && p.pending.builtin != nil {
		// Started from the build-time artifact, which keeps no modules.
		fc, err := p.pending.builtin.get(context.Background())
		if err != nil {
			return doc
		}
		p = &Policy{Bundle: fc.bundle}
	}
	names := make([]string, 0, len(p.Bundle.Modules))
	for name := range p.Bundle.Modules {
		if !isTestFile(name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var decider, condition *ast.Rule
	for _, name := range names {
		m := p.Bundle.Modules[name]
		for _, r := range m.Rules {
			if condition == nil && r.Head.Name.String() == rule {
				condition = r
				doc.Condition = p.where(name, r.Location)
			}
			for branch := r; branch != nil && decider == nil; branch = branch.Else {
				if namesRule(branch, rule) {
					decider = r
					doc.DecidedAt = p.where(name, branch.Location)
				}
			}
		}
	}
	for _, r := range []*ast.Rule{condition, decider} {
		if r != nil && doc.Description == "" {
			doc.Title, doc.Description = p.annotation(names, r.Head.Name.String())
		}
	}
	return doc
}

// annotation is the METADATA of the first definition of rule name that has
// one (METADATA attaches to one definition of a multi-definition rule).
func (p *Policy) annotation(files []string, name string) (string, string) {
	for _, f := range files {
		for _, r := range p.Bundle.Modules[f].Rules {
			if r.Head.Name.String() == name && len(r.Annotations) > 0 {
				return r.Annotations[0].Title, strings.TrimSpace(r.Annotations[0].Description)
			}
		}
	}
	return "", ""
}

// namesRule reports whether a rule's value holds the string literal rule
// (as in ["errors", "PLAN_REQUIRED", "plan_without_api"] or "rule": "default").
func namesRule(r *ast.Rule, rule string) bool {
	if r.Head.Value == nil {
		return false
	}
	found := false
	ast.WalkTerms(r.Head.Value, func(t *ast.Term) bool {
		if s, ok := t.Value.(ast.String); ok && string(s) == rule {
			found = true
		}
		return found
	})
	if !found {
		// allow_with(headers, "key_route") is called in the body.
		ast.WalkTerms(r.Body, func(t *ast.Term) bool {
			if s, ok := t.Value.(ast.String); ok && string(s) == rule {
				found = true
			}
			return found
		})
	}
	return found
}

func (p *Policy) where(file string, loc *ast.Location) string {
	if loc == nil {
		return ""
	}
	if p.Bundle.builtinFiles[file] || p.Bundle.Source == BuiltIn {
		return fmt.Sprintf("%s:%d (built-in)", file, loc.Row)
	}
	return fmt.Sprintf("%s/%s:%d", strings.TrimSuffix(p.Bundle.Source, "/"), file, loc.Row)
}
