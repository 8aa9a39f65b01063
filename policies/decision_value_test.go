package policies

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
)

// parseDecisionValue must answer every document as parseDecision answers
// its JSON: the same decision, or the same error.
func TestParseDecisionValueMatchesJSON(t *testing.T) {
	fields := []string{
		`"allow": true`, `"allow": false`, `"allow": "yes"`, `"status": 200`, `"status": 403`, `"status": 302`, `"status": 1.5`, `"status": "403"`,
		`"code": "X_1"`, `"code": "bad code"`, `"code": 7`, `"message": "no"`, `"message": "a\nb"`, `"rule": "r"`,
		`"keep_credentials": true`, `"keep_credentials": 1`, `"spend_use": false`, `"spend_use": null`,
		`"headers": {"x-a": "1"}`, `"headers": {"X-A": "1"}`, `"headers": {"x-a": 1}`, `"headers": null`, `"headers": []`,
		`"response_headers": {"ratelimit-limit": "60"}`, `"body": {"m": 1}`, `"body": null`, `"body": "s"`,
		`"content_type": "application/problem+json"`, `"content_type": "text/plain"`, `"unknown": 1`,
		`"limits": []`, `"limits": null`, `"limits": {}`,
		`"limits": [{"kind": "rate", "key": "k", "limit": 60, "period": "1m"}]`,
		`"limits": [{"kind": "rate", "key": "k", "limit": 60, "period": "1m", "burst": 0}]`,
		`"limits": [{"kind": "quota", "key": "k", "limit": 10, "period": "month", "cost": 2, "code": "Q"}]`,
		`"limits": [{"kind": "quota", "key": "k v", "limit": 10}]`,
		`"limits": [{"kind": "rate", "key": "k", "limit": 0, "period": "1m"}]`,
		`"limits": [{"kind": "rate", "key": "k", "limit": 5, "period": "1ms"}]`,
		`"limits": [{"kind": "other", "key": "k", "limit": 5}]`,
		`"limits": [{"kind": "quota", "key": "k", "limit": 5, "code": "bad"}]`,
		`"limits": [1]`,
	}
	for _, doc := range randomDocs(fields, 3000, 3) {
		want, werr := parseDecision(decodeDoc(t, doc))
		got, gerr := parseDecisionValue(ast.MustParseTerm(doc).Value)
		if errString(werr) != errString(gerr) || !cmp.Equal(want, got) {
			t.Fatalf("%s:\nJSON:  %+v, %v\nvalue: %+v, %v", doc, want, werr, got, gerr)
		}
	}
}

// randomDocs are n objects of up to seven of fields (each a "name": value),
// no name twice.
func randomDocs(fields []string, n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 4))
	docs := make([]string, n)
	for i := range docs {
		var parts []string
		seen := map[string]bool{}
		for j := rng.IntN(7); j >= 0; j-- {
			f := fields[rng.IntN(len(fields))]
			name := f[:strings.Index(f, ":")]
			if !seen[name] {
				seen[name] = true
				parts = append(parts, f)
			}
		}
		docs[i] = "{" + strings.Join(parts, ", ") + "}"
	}
	return docs
}

// The common well-formed documents are read without going through JSON.
func TestFastDecision(t *testing.T) {
	doc := `{"allow": true, "status": 200, "rule": "key_route", "headers": {"x-a": "1"}, "limits": [{"kind": "rate", "key": "k", "limit": 60, "period": "1m", "cost": 1}]}`
	if _, ok := fastDecision(ast.MustParseTerm(doc).Value); !ok {
		t.Fatal("a well-formed allow went the slow way")
	}
}
