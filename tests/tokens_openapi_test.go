package tests

import (
	"net/http"
	"testing"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/openapitest"
)

// TestTokenEndpointsMatchOpenAPI drives the token endpoints of a running
// keygate through a client that validates each request and answer against
// the OpenAPI document served at /admin/v1/openapi.json.
func TestTokenEndpointsMatchOpenAPI(t *testing.T) {
	env := tokenEnv(t)
	key, _ := newTokenKey(t, env, "web", "live")
	// No retry grace, so presenting a used refresh token again is reuse (401).
	srv := env.Serve("--refresh-grace", "0")
	c := openapitest.New(t, admin.OpenAPI, "http://"+srv.HTTPAddr)
	http.DefaultClient.Transport = c
	t.Cleanup(func() { http.DefaultClient.Transport = nil })

	_, refresh := srv.MintTokens(t, key)
	if r := srv.RefreshTokens(t, refresh); r.Status != 200 {
		t.Errorf("refresh: %d", r.Status)
	}
	if r := srv.RefreshTokens(t, refresh); r.Status != 401 {
		t.Errorf("reused refresh token: %d, want 401", r.Status)
	}
	if r := srv.ExchangePost(t, "/auth/api-key", "application/json", `{"apiKey":"kg_live_nope"}`, nil); r.Status != 401 {
		t.Errorf("bad key: %d, want 401", r.Status)
	}
	for _, op := range []string{"POST /auth/api-key", "POST /auth/refresh"} {
		if !c.Driven[op] {
			t.Errorf("%s was not driven", op)
		}
	}
}
