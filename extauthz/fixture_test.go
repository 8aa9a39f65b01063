package extauthz

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/internal/policytest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// fixture is a whole authorizer on the embedded default: a real SQLite store
// in a temporary directory, the real cache and the built-in policy. Tests,
// fuzz targets and benchmarks share it so they exercise what `serve` runs.
type fixture struct {
	store  *keystore.Store
	cache  *keystore.Cache
	server *Server
	// live and test are valid keys of site "acme-web" (account "acme", plan pro).
	live, test keystore.Secret
	liveKey    keystore.Key
	// now is the authorizer's and the store's clock.
	now time.Time
}

// fixedNow is the fixture's clock: fixed, so golden files are stable.
var fixedNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	return newFixtureWithPrefix(tb, "kg")
}

// newFixtureWithPrefix is newFixture for a deployment whose keys carry
// prefix.
func newFixtureWithPrefix(tb testing.TB, prefix string) *fixture {
	tb.Helper()
	ctx := context.Background()
	format, err := keystore.NewFormat(prefix)
	if err != nil {
		tb.Fatal(err)
	}
	digester, err := keystore.NewDigester()
	if err != nil {
		tb.Fatal(err)
	}
	f := &fixture{now: fixedNow}
	now := func() time.Time { return f.now }
	store, err := keystore.OpenSQLite(ctx, filepath.Join(tb.TempDir(), "keygate.db"), keystore.Options{Format: format, Digester: digester, Now: now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	if _, err := store.CreateAccount(ctx, keystore.Account{ID: "acme", Plan: "pro"}); err != nil {
		tb.Fatal(err)
	}
	if _, err := store.CreateSite(ctx, keystore.Site{ID: "acme-web", AccountID: "acme", Domains: []string{"acme.com"}, Active: true}); err != nil {
		tb.Fatal(err)
	}
	f.store = store
	if f.liveKey, f.live, err = store.CreateKey(ctx, keystore.KeySpec{SiteID: "acme-web", Mode: keystore.ModeLive, Name: "live"}); err != nil {
		tb.Fatal(err)
	}
	if _, f.test, err = store.CreateKey(ctx, keystore.KeySpec{SiteID: "acme-web", Mode: keystore.ModeTest, Name: "test"}); err != nil {
		tb.Fatal(err)
	}
	f.cache, err = keystore.NewCache(store, keystore.CacheConfig{Now: now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(f.cache.Close)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.server = &Server{
		Authorizer: &Authorizer{Facts: f.cache, Policy: builtinEngine(tb), Format: format, Digester: digester, Log: log, Now: now},
		Log:        log,
	}
	return f
}

// envoyCheckRequest builds an Envoy CheckRequest the way Envoy fills it.
func envoyCheckRequest(method, path string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "api.example.com", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: headers,
		},
	}}}
}

// typicalHeaders is what a proxied API request carries besides its credential.
func typicalHeaders(auth string) map[string]string {
	return map[string]string{
		":authority":        "api.example.com",
		":method":           "GET",
		":path":             "/v1/videos?limit=10",
		":scheme":           "https",
		"accept":            "application/json",
		"accept-encoding":   "gzip",
		"user-agent":        "curl/8.5.0",
		"x-forwarded-proto": "https",
		"x-request-id":      "6f1c2a7e-4b1d-4c3e-9a57-1d2e3f4a5b6c",
		"authorization":     auth,
	}
}

// builtinEngine is an engine with the built-in policy.
func builtinEngine(tb testing.TB) *policies.Engine {
	tb.Helper()
	if *startedPolicy {
		p, err := policies.StartBuiltin(context.Background())
		if err != nil {
			tb.Fatal(err)
		}
		e := policies.NewEngine(p)
		e.Complete(context.Background())
		return e
	}
	return policies.NewEngine(policytest.Compile(tb, policies.BuiltIn, nil))
}

// startedPolicy: the tests and benchmarks decide with the built-in policy
// as serve starts it (StartBuiltin: the evaluator loaded from the
// artifact's image, then Complete) instead of Compile's. Decisions are
// alike (policies' TestStartBuiltinDecidesAsCompile); what a served Check
// costs is measured with it:
// go test ./extauthz -run XXX -bench 'CheckMemoMiss$|CheckPolicy$' -args -started-policy
var startedPolicy = flag.Bool("started-policy", false, "decide with the built-in policy as serve starts it (StartBuiltin, Complete)")
