package policies

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestInputValue pins the policy input's shape: what `keygate check` prints
// and what every rule reads.
func TestInputValue(t *testing.T) {
	in := fullInput()
	got, err := in.AsMap()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"request": map[string]any{"method": "GET", "host": "api.example.com", "path": "/v1/sites/acme/x", "query": "a=b", "path_ok": true,
			"headers": map[string]any{"accept": "*/*"},
			"origin":  map[string]any{"scheme": "https", "host": "acme.com", "port": "443", "default_port": true}},
		"credential": map[string]any{"status": "found", "kind": "key", "scheme": "bearer"},
		"key":        map[string]any{"id": "key_1", "mode": "live", "name": "n", "revoked": false, "expired": false},
		"site": map[string]any{"id": "acme", "account": "a", "domains": []any{"acme.com"}, "active": true,
			"limits": map[string]any{"rate": json.Number("5")}},
		"account": map[string]any{"id": "a", "plan": "pro", "status": "active", "limits": map[string]any{"quota": json.Number("7")}},
		"public": map[string]any{"status": "found",
			"site":    map[string]any{"id": "s", "account": "", "domains": []any{"d"}, "active": false, "limits": map[string]any{"rate": json.Number("1")}},
			"account": map[string]any{"id": "b", "plan": "", "status": "", "limits": map[string]any{"quota": json.Number("2")}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("input (-want +got):\n%s", diff)
	}
	// Rules see headers through the usual refs, however they are built.
	p := compileSource(t, "package keygate.authz\n"+`decision := {"allow": true, "status": 200} if {
	input.request.headers.accept == "*/*"
	count(input.request.headers) == 1
	some k, v in input.request.headers
	k == "accept"
	v == "*/*"
}
decision := {"allow": false, "status": 403, "code": "NO"} if not input.request.headers.accept`)
	d, err := NewEngine(p).Decide(context.Background(), &in)
	if err != nil || !d.Allow {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
}

func BenchmarkInputValue(b *testing.B) {
	in := fullInput()
	in.Request.Headers = map[string]string{"accept": "application/json", "accept-encoding": "gzip", "user-agent": "curl/8.5.0",
		"x-forwarded-proto": "https", "x-request-id": "6f1c2a7e-4b1d-4c3e-9a57-1d2e3f4a5b6c", ":authority": "api.example.com"}
	b.ReportAllocs()
	for b.Loop() {
		_ = in.Value()
	}
}

func BenchmarkDecideUncached(b *testing.B) {
	p := defaultPolicy(b)
	in := fullInput()
	in.Request.Path = "/v1/videos"
	in.Request.Headers = map[string]string{"accept": "application/json", "accept-encoding": "gzip", "user-agent": "curl/8.5.0",
		"x-forwarded-proto": "https", "x-request-id": "6f1c2a7e-4b1d-4c3e-9a57-1d2e3f4a5b6c", ":authority": "api.example.com"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.decide(ctx, &in, nil); err != nil {
			b.Fatal(err)
		}
	}
}
