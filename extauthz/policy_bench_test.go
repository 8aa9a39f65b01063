package extauthz

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"testing"
	"testing/fstest"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// benchFacts is a store that always finds the same key, so that after the
// first request every Check is a cache hit.
type benchFacts struct{ facts keystore.KeyFacts }

func (f benchFacts) LookupKey(context.Context, []keystore.Digest) (keystore.KeyFacts, error) {
	return f.facts, nil
}

func (f benchFacts) LookupKeyID(context.Context, string) (keystore.KeyFacts, error) {
	return f.facts, nil
}

func (f benchFacts) LookupSite(context.Context, string) (keystore.SiteFacts, error) {
	return keystore.SiteFacts{Site: f.facts.Site, Account: f.facts.Account}, nil
}

// allowOnly is the cheapest policy keygate accepts: it shows what the rest
// of Check costs, so the full policy's own cost can be read off.
var allowOnly = fstest.MapFS{"authz.rego": {Data: []byte("package keygate.authz\n\nimport rego.v1\n\ndecision := {\"allow\": true, \"rule\": \"allow_only\"}\n")}}

// BenchmarkCheckFullPolicy is a cache-hit Check (gRPC handler in process,
// no network) under the full default policy, next to the allow-only policy.
func BenchmarkCheckFullPolicy(b *testing.B) {
	format, digester, key := newLiveKey(b)
	facts := keystore.KeyFacts{
		Key:     keystore.Key{ID: "key_bench", SiteID: "site-a", Mode: keystore.ModeLive},
		Site:    keystore.Site{ID: "site-a", AccountID: "acct", Domains: []string{"example.com", "*.example.com"}, Active: true},
		Account: keystore.Account{ID: "acct", Plan: "pro", Status: keystore.StatusActive},
	}
	requests := map[string]*authv3.CheckRequest{
		"key":         checkRequest("/v1/videos", map[string]string{"authorization": "Bearer " + key.Reveal(), "x-request-id": "req_1", "user-agent": "bench"}),
		"public_site": checkRequest("/v1/public/site-a/player", map[string]string{"origin": "https://www.example.com", "x-request-id": "req_1", "user-agent": "bench"}),
	}
	for _, pol := range []struct {
		name string
		fsys fs.FS
	}{{"default", policies.Default()}, {"allow_only", allowOnly}} {
		bundle, err := policies.Load(pol.fsys, pol.name)
		if err != nil {
			b.Fatal(err)
		}
		compiled, err := policies.Compile(context.Background(), bundle)
		if err != nil {
			b.Fatal(err)
		}
		cache, err := keystore.NewCache(benchFacts{facts}, keystore.CacheConfig{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(cache.Close)
		srv := &Server{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Authorizer: &Authorizer{
			Facts: cache, Policy: policies.NewEngine(compiled), Format: format, Digester: digester,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			// A shared, busy machine must not turn a slow iteration into a
			// timeout deny; the benchmark measures cost, not the budget.
			Budget: time.Minute,
		}}
		for _, route := range []string{"key", "public_site"} {
			req := requests[route]
			b.Run(pol.name+"/"+route, func(b *testing.B) {
				ctx := context.Background()
				warm, _ := srv.Check(ctx, req)
				cache.Wait()
				if warm.GetStatus().GetCode() != 0 {
					b.Fatalf("warm-up was denied: %v", warm)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					resp, _ := srv.Check(ctx, req)
					if resp.GetStatus().GetCode() != 0 {
						b.Fatalf("denied: %v", resp)
					}
				}
				if hits, _ := cache.Stats(); hits == 0 && route == "key" {
					b.Fatal("no cache hits: not measuring the cache-hit path")
				}
			})
		}
	}
}

func checkRequest(path string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: path, Host: "api.example.test", Headers: headers, Scheme: "https", Protocol: "HTTP/1.1"},
	}}}
}
