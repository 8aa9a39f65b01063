package policies

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// policyReturning compiles a one-rule policy whose decision is the Rego
// expression doc (or, with doc "", a policy that never defines decision).
func policyReturning(t *testing.T, doc string) *Engine {
	t.Helper()
	src := "package keygate.authz\n\nimport rego.v1\n\nother := 1\n"
	if doc != "" {
		src += "\ndecision := " + doc + "\n"
	}
	return engineFor(t, fstest.MapFS{"authz.rego": {Data: []byte(src)}})
}

// engineFor loads and compiles a policy directory.
func engineFor(tb testing.TB, fsys fs.FS) *Engine {
	tb.Helper()
	b, err := Load(fsys, "test")
	if err != nil {
		tb.Fatal(err)
	}
	p, err := Compile(context.Background(), b)
	if err != nil {
		tb.Fatal(err)
	}
	// Decide as production does once the compiled evaluator is ready.
	p.WaitEvaluator(context.Background())
	return NewEngine(p)
}

func decide(t *testing.T, doc string) (Decision, error) {
	t.Helper()
	return policyReturning(t, doc).Decide(context.Background(), &Input{Credential: Credential{Status: CredMissing}})
}

func TestDecisionValid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want Decision
	}{
		{"allow without status", `{"allow": true}`, Decision{Allow: true, Status: 200}},
		{"allow keeping credentials", `{"allow": true, "keep_credentials": true}`,
			Decision{Allow: true, Status: 200, KeepCredentials: true}},
		{"allow with headers", `{"allow": true, "status": 200, "headers": {"x-plan-tier": "gold"}, "response_headers": {"ratelimit-limit": "60"}, "rule": "r", "limits": []}`,
			Decision{Allow: true, Status: 200, Headers: map[string]string{"x-plan-tier": "gold"}, ResponseHeaders: map[string]string{"ratelimit-limit": "60"}, Rule: "r"}},
		{"deny with default body", `{"allow": false, "status": 403, "code": "PLAN_REQUIRED", "message": "no"}`,
			Decision{Status: 403, Code: "PLAN_REQUIRED", Message: "no"}},
		{"deny with body", `{"allow": false, "status": 401, "code": "X", "body": {"message": "Unauthorized"}}`,
			Decision{Status: 401, Code: "X", Body: []byte(`{"message":"Unauthorized"}`)}},
		{"null body and headers are absent", `{"allow": false, "status": 402, "code": "X", "body": null, "headers": null}`,
			Decision{Status: 402, Code: "X"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decide(t, tt.doc)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
}

// Every malformed decision is an ErrPolicy, which the authorizer turns into
// a 500 POLICY_ERROR deny.
func TestDecisionMalformed(t *testing.T) {
	many := make([]string, 0, maxHeaders+1)
	for i := range maxHeaders + 1 {
		many = append(many, `"x-h`+strings.Repeat("a", i)+`": "v"`)
	}
	tests := []struct{ name, doc string }{
		{"undefined", ""},
		{"keep_credentials not a boolean", `{"allow": true, "keep_credentials": "yes"}`},
		{"not an object", `"allow"`},
		{"array", `[true]`},
		{"allow missing", `{"status": 200}`},
		{"allow as string", `{"allow": "true"}`},
		{"allow as number", `{"allow": 1}`},
		{"status as string", `{"allow": false, "status": "403", "code": "X"}`},
		{"status fractional", `{"allow": false, "status": 403.5, "code": "X"}`},
		{"status negative", `{"allow": false, "status": -1, "code": "X"}`},
		{"status huge", `{"allow": false, "status": 4030, "code": "X"}`},
		{"deny with 200", `{"allow": false, "status": 200, "code": "X"}`},
		{"deny with 302", `{"allow": false, "status": 302, "code": "X"}`},
		{"deny with 600", `{"allow": false, "status": 600, "code": "X"}`},
		{"deny without status", `{"allow": false, "code": "X"}`},
		{"allow with 201", `{"allow": true, "status": 201}`},
		{"allow with 403", `{"allow": true, "status": 403}`},
		{"deny without code", `{"allow": false, "status": 403}`},
		{"lower-case code", `{"allow": false, "status": 403, "code": "plan_required"}`},
		{"code with space", `{"allow": false, "status": 403, "code": "PLAN REQUIRED"}`},
		{"code as number", `{"allow": false, "status": 403, "code": 7}`},
		{"code too long", `{"allow": false, "status": 403, "code": "` + strings.Repeat("A", 65) + `"}`},
		{"message with newline", `{"allow": false, "status": 403, "code": "X", "message": "a\nb"}`},
		{"message with NUL", `{"allow": false, "status": 403, "code": "X", "message": "a\u0000b"}`},
		{"message too long", `{"allow": false, "status": 403, "code": "X", "message": "` + strings.Repeat("m", maxMessage+1) + `"}`},
		{"message as object", `{"allow": false, "status": 403, "code": "X", "message": {}}`},
		{"rule as array", `{"allow": true, "rule": ["a"]}`},
		{"headers as array", `{"allow": true, "headers": ["x-a"]}`},
		{"upper-case header name", `{"allow": true, "headers": {"X-Plan": "a"}}`},
		{"header name with space", `{"allow": true, "headers": {"x plan": "a"}}`},
		{"empty header name", `{"allow": true, "headers": {"": "a"}}`},
		{"pseudo-header", `{"allow": true, "headers": {":path": "/admin"}}`},
		{"host header", `{"allow": true, "headers": {"host": "evil.test"}}`},
		{"x-envoy header", `{"allow": true, "headers": {"x-envoy-original-path": "/"}}`},
		{"header value number", `{"allow": true, "headers": {"x-a": 1}}`},
		{"header value with CRLF", `{"allow": true, "headers": {"x-a": "v\r\nx-b: w"}}`},
		{"header value too long", `{"allow": true, "headers": {"x-a": "` + strings.Repeat("v", maxHeaderValue+1) + `"}}`},
		{"too many headers", `{"allow": true, "headers": {` + strings.Join(many, ",") + `}}`},
		{"bad response header", `{"allow": false, "status": 429, "code": "X", "response_headers": {"Retry-After": "1"}}`},
		{"body as string", `{"allow": false, "status": 401, "code": "X", "body": "Unauthorized"}`},
		{"body as array", `{"allow": false, "status": 401, "code": "X", "body": ["a"]}`},
		{"oversized body", `{"allow": false, "status": 401, "code": "X", "body": {"m": "` + strings.Repeat("b", maxBody) + `"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := decide(t, tt.doc)
			if !errors.Is(err, ErrPolicy) {
				t.Fatalf("want ErrPolicy, got %v (decision %+v)", err, d)
			}
			if d.Allow {
				t.Fatal("a malformed decision came back as an allow")
			}
		})
	}
}

// A policy that fails at evaluation (conflicting values) is an error too.
func TestDecisionEvalError(t *testing.T) {
	src := "package keygate.authz\n\nimport rego.v1\n\ndecision := {\"allow\": true}\n\ndecision := {\"allow\": false} if input.credential.status == \"missing\"\n"
	d, err := engineFor(t, fstest.MapFS{"authz.rego": {Data: []byte(src)}}).Decide(context.Background(), &Input{Credential: Credential{Status: CredMissing}})
	if err == nil || d.Allow {
		t.Fatalf("want an error, got %+v, %v", d, err)
	}
}
