package policies

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
)

// randomDecisionDocs are result documents, well-formed and not, some of
// them equal in Rego (403 and 403.0, 60 and 6e1) but read differently.
func randomDecisionDocs(n int, seed uint64) []string {
	fields := []string{
		`"allow": true`, `"allow": false`, `"allow": "yes"`, `"status": 200`, `"status": 200.0`, `"status": 403`, `"status": 403.0`,
		`"status": 4.03e2`, `"status": 1.5`, `"code": "X_1"`, `"code": "bad code"`, `"message": "no"`, `"rule": "r"`, `"rule": "s"`,
		`"keep_credentials": true`, `"spend_use": false`, `"spend_use": 0`,
		`"headers": {"x-a": "1"}`, `"headers": {"x-a": "1", "x-b": "2"}`, `"headers": {"x-a": 1}`, `"headers": null`, `"headers": {1: "a"}`,
		`"response_headers": {"ratelimit-limit": "60"}`, `"body": {"m": 1}`, `"body": {"m": 1.0}`, `"body": null`, `"body": {"m": {"n": [1, "x"]}}`,
		`"body": {"s": {1, 2}}`, `"content_type": "text/plain"`, `"unknown": 1`, `"limits": []`, `"limits": null`,
		`"limits": [{"kind": "rate", "key": "k", "limit": 60, "period": "1m"}]`,
		`"limits": [{"kind": "rate", "key": "k", "limit": 60.0, "period": "1m"}]`,
		`"limits": [{"kind": "rate", "key": "k", "limit": 6e1, "period": "1m"}]`,
		`"limits": [{"kind": "quota", "key": "k", "limit": 10, "period": "month", "cost": 2, "code": "Q"}]`,
		`"limits": [{"kind": "rate", "key": "k", "limit": 5, "period": "1ms"}]`,
	}
	return randomDocs(fields, n, seed)
}

// TestDecisionCacheReadsAsParse: reading a result through the cache gives
// what parseDecisionValue gives, the same decision or the same error, in
// three rounds over the documents (kept at their second miss, served at
// the third), with documents Rego holds equal read each as its own.
func TestDecisionCacheReadsAsParse(t *testing.T) {
	docs := randomDecisionDocs(3000, 3)
	for round := range 3 {
		for _, doc := range docs {
			v := ast.MustParseTerm(doc).Value
			want, werr := parseDecisionValue(v)
			got, gerr := readDecisions.read(ast.MustParseTerm(doc).Value)
			if errString(werr) != errString(gerr) || !cmp.Equal(want, got) {
				t.Fatalf("round %d, %s:\nparsed: %+v, %v\ncached: %+v, %v", round, doc, want, werr, got, gerr)
			}
		}
	}
}

// TestDecisionCacheNumbersAsWritten: a result equal in Rego to a kept one
// but written otherwise (403.0 for 403) is read, not served the kept one's
// decision: parseDecisionValue refuses the one it accepts the other.
func TestDecisionCacheNumbersAsWritten(t *testing.T) {
	kept := `{"allow": false, "status": 403, "code": "NUMBERS_AS_WRITTEN"}`
	for range 3 {
		if _, err := readDecisions.read(ast.MustParseTerm(kept).Value); err != nil {
			t.Fatal(err)
		}
	}
	other := ast.MustParseTerm(`{"allow": false, "status": 403.0, "code": "NUMBERS_AS_WRITTEN"}`).Value
	if other.Compare(ast.MustParseTerm(kept).Value) != 0 || other.Hash() != ast.MustParseTerm(kept).Value.Hash() {
		t.Fatal("the test's two documents should be equal in Rego, with one hash")
	}
	want, werr := parseDecisionValue(other)
	got, gerr := readDecisions.read(other)
	if errString(werr) != errString(gerr) || !cmp.Equal(want, got) {
		t.Fatalf("403.0: parsed %+v, %v; cached %+v, %v", want, werr, got, gerr)
	}
}

func TestIdentical(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{`{"a": 1, "b": [1, "x", null, true]}`, `{"b": [1, "x", null, true], "a": 1}`, true},
		{`{"a": 1}`, `{"a": 1.0}`, false},
		{`{"a": 1}`, `{"a": 1, "b": 2}`, false},
		{`{"a": 1, "b": 2}`, `{"a": 1, "c": 2}`, false},
		{`{"a": {"b": {"c": "d"}}}`, `{"a": {"b": {"c": "d"}}}`, true},
		{`{"a": {"b": {"c": "d"}}}`, `{"a": {"b": {"c": "e"}}}`, false},
		{`{"a": {"b": 1}}`, `{"a": [1]}`, false},
		{`[1, 2]`, `[1, 2, 3]`, false},
		{`{1: "a"}`, `{1: "a"}`, false},     // a non-string key is never identical
		{`{"s": {1}}`, `{"s": {1}}`, false}, // nor a set
		{`"a"`, `"a"`, true},
		{`true`, `false`, false},
	} {
		if got := identical(ast.MustParseTerm(c.a).Value, ast.MustParseTerm(c.b).Value); got != c.want {
			t.Errorf("identical(%s, %s) = %t", c.a, c.b, got)
		}
	}
}

// TestDecisionCacheConcurrent: reads of the same and of different results
// on several goroutines at once (run with -race) each get their own
// result's decision.
func TestDecisionCacheConcurrent(t *testing.T) {
	docs := randomDecisionDocs(300, 5)
	type answer struct {
		d   Decision
		err string
	}
	want := make([]answer, len(docs))
	for i, doc := range docs {
		d, err := parseDecisionValue(ast.MustParseTerm(doc).Value)
		want[i] = answer{d, errString(err)}
	}
	concurrently(t, len(docs), func(j int) bool {
		d, err := readDecisions.read(ast.MustParseTerm(docs[j]).Value)
		return errString(err) == want[j].err && cmp.Equal(d, want[j].d)
	})
}

// TestDecisionCacheKeepsSmallDecisionsOnly: a decision over
// maxKeptDecision (a policy's long message, many headers, a large body) is
// read every time, never kept; a small one is kept at its second miss and
// then shared.
func TestDecisionCacheKeepsSmallDecisionsOnly(t *testing.T) {
	read := func(doc string) Decision {
		d, err := readDecisions.read(ast.MustParseTerm(doc).Value)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	big := `{"allow": false, "status": 403, "code": "BIG", "body": {"m": "` + strings.Repeat("x", 2*maxKeptDecision) + `"}}`
	if a, b, c := read(big), read(big), read(big); &a.Body[0] == &c.Body[0] || &b.Body[0] == &c.Body[0] {
		t.Fatal("a decision over maxKeptDecision was kept")
	}
	small := `{"allow": false, "status": 403, "code": "SMALL", "body": {"m": "kept"}}`
	if a, b, c := read(small), read(small), read(small); &a.Body[0] == &c.Body[0] || &b.Body[0] != &c.Body[0] {
		t.Fatal("a small decision was not kept at its second miss")
	}
}

// TestDecisionCacheKeepsASharedResult: a decision that is a rule of data
// alone is computed once and shared by every evaluation, its keys unsorted
// until a reader sorts them in place (under OPA's sync.Once); the cache
// keeps a copy of it at its second miss, and must not read its keys while
// another evaluation (a scan of the same object) sorts them (run with
// -race).
func TestDecisionCacheKeepsASharedResult(t *testing.T) {
	for i := range 20 {
		src := `package keygate.authz
base := {k: v | some pair in [["rule", "r` + strconv.Itoa(i) + `"], ["message", "m"], ["code", "C"], ["allow", true]]; k := pair[0]; v := pair[1]}
decision := base if input.request.method == "GET"
decision := {"allow": true, "rule": sprintf("%d", [count([k | base[k]])])} if input.request.method == "POST"
`
		e := engineFor(t, fstest.MapFS{"authz.rego": {Data: []byte(src)}})
		e.SetMemo(false)
		var wg sync.WaitGroup
		for _, m := range []string{"GET", "POST", "GET", "POST"} {
			wg.Go(func() {
				in := proInput()
				in.Request.Method = m
				want := "r" + strconv.Itoa(i)
				if m == "POST" {
					want = "4"
				}
				if d, err := e.Decide(context.Background(), in); err != nil || !d.Allow || d.Rule != want {
					t.Errorf("%s: %+v %v, want an allow by rule %s", m, d, err, want)
				}
			})
		}
		wg.Wait()
	}
}

// TestDecisionCacheBoundsWhatItKeeps: a result is kept only if the value
// itself is small, fields keygate does not read included (a policy's
// debug field with the request's headers is not kept, whatever its
// decision's size).
func TestDecisionCacheBoundsWhatItKeeps(t *testing.T) {
	doc := `{"allow": true, "rule": "DEBUG", "debug": {"h": "` + strings.Repeat("x", 2*maxKeptDecision) + `"}}`
	for range 3 {
		if _, err := readDecisions.read(ast.MustParseTerm(doc).Value); err != nil {
			t.Fatal(err)
		}
	}
	h := uint64(ast.MustParseTerm(doc).Value.Hash())
	if e := readDecisions.slots[h%decisionSlots].Load(); e != nil && e.d.Rule == "DEBUG" {
		t.Fatal("a result with a large field keygate does not read was kept")
	}
}
