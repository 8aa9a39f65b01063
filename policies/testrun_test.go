package policies

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"
)

func TestRunTestsDefault(t *testing.T) {
	b, err := Load(Default(), BuiltIn)
	if err != nil {
		t.Fatal(err)
	}
	r, err := RunTests(context.Background(), b, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if len(r.Results) < 30 || r.Coverage < 90 {
		t.Errorf("%d tests, coverage %.1f%%; want the full default suite at >= 90%%", len(r.Results), r.Coverage)
	}
	if _, ok := r.Files["authz_test.rego"]; ok {
		t.Error("test files must not count toward coverage")
	}
}

func TestRunTestsReportsFailures(t *testing.T) {
	b, err := Load(fstest.MapFS{
		"p.rego":      {Data: []byte("package keygate.authz\n\nimport rego.v1\n\nx := 1\n\ny := 2 if input.never\n")},
		"p_test.rego": {Data: []byte("package keygate.authz_test\n\nimport rego.v1\n\ntest_ok if data.keygate.authz.x == 1\n\ntest_bad if data.keygate.authz.x == 2\n")},
	}, "test")
	if err != nil {
		t.Fatal(err)
	}
	r, err := RunTests(context.Background(), b, true)
	if err != nil {
		t.Fatal(err)
	}
	if r.Failed() != 1 || len(r.Results) != 2 || r.Err() == nil || !strings.Contains(r.Err().Error(), "test_bad") {
		t.Fatalf("results %+v, err %v", r.Results, r.Err())
	}
	if r.Coverage >= 100 || r.Coverage <= 0 {
		t.Errorf("coverage %.1f%%: y is never evaluated, x is", r.Coverage)
	}
}

func TestExplain(t *testing.T) {
	b, err := Load(Default(), BuiltIn)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	for _, rule := range []string{"plan_without_api", "site_mismatch", "key_route", "public_site_route", "default", "key_revoked", "domain_not_allowed", "invalid_path"} {
		doc := p.Explain(rule)
		if doc.DecidedAt == "" || doc.Description == "" {
			t.Errorf("Explain(%q) = %+v; want where it decided and a description", rule, doc)
		}
	}
	if doc := p.Explain("plan_without_api"); !strings.HasPrefix(doc.Condition, "authz.rego:") {
		t.Errorf("condition = %q", doc.Condition)
	}
	if doc := p.Explain("no_such_rule"); doc.DecidedAt != "" {
		t.Errorf("unknown rule explained: %+v", doc)
	}
}
