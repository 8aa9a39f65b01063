package policies

import (
	"context"
	"testing"
	"testing/fstest"
)

// BenchmarkDecideDefault is the default policy's own cost: one allow on a
// key route, evaluation and decision validation, no keystore.
func BenchmarkDecideDefault(b *testing.B) {
	in := proInput()
	in.Request.Headers = map[string]string{"x-request-id": "req_1", "user-agent": "bench", "accept": "*/*"}
	benchDecide(b, engineFor(b, Default()), in)
}

// BenchmarkDecideAllowOnly is the floor: the cheapest valid allow.
func BenchmarkDecideAllowOnly(b *testing.B) {
	src := "package keygate.authz\n\nimport rego.v1\n\ndecision := {\"allow\": true, \"rule\": \"allow_only\"}\n"
	benchDecide(b, engineFor(b, fstest.MapFS{"authz.rego": {Data: []byte(src)}}), proInput())
}

func benchDecide(b *testing.B, e *Engine, in *Input) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d, err := e.Decide(ctx, in); err != nil || !d.Allow {
			b.Fatal(d, err)
		}
	}
}
