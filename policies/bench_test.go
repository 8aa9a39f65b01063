package policies

import (
	"context"
	"testing"
	"testing/fstest"
)

// BenchmarkDecideDefault is the default policy's own cost: one allow on a
// key route, evaluation and decision validation, no keystore.
func BenchmarkDecideDefault(b *testing.B) {
	bundle, err := Load(Default(), BuiltIn)
	if err != nil {
		b.Fatal(err)
	}
	p, err := Compile(context.Background(), bundle)
	if err != nil {
		b.Fatal(err)
	}
	e, in, ctx := NewEngine(p), proInput(), context.Background()
	in.Request.Headers = map[string]string{"x-request-id": "req_1", "user-agent": "bench", "accept": "*/*"}
	b.ReportAllocs()
	for b.Loop() {
		d, err := e.Decide(ctx, in)
		if err != nil || !d.Allow {
			b.Fatal(d, err)
		}
	}
}

// BenchmarkDecideAllowOnly is the floor: the cheapest valid allow.
func BenchmarkDecideAllowOnly(b *testing.B) {
	bundle, err := Load(fstest.MapFS{"authz.rego": {Data: []byte("package keygate.authz\n\nimport rego.v1\n\ndecision := {\"allow\": true, \"rule\": \"allow_only\"}\n")}}, "allow-only")
	if err != nil {
		b.Fatal(err)
	}
	p, err := Compile(context.Background(), bundle)
	if err != nil {
		b.Fatal(err)
	}
	e, in, ctx := NewEngine(p), proInput(), context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d, err := e.Decide(ctx, in); err != nil || !d.Allow {
			b.Fatal(d, err)
		}
	}
}
