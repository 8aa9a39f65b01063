package extauthz

import (
	"context"
	"strings"
	"testing"

	"github.com/keygate/keygate/policies"
)

// TestMintAsksTheDeclaredRoute: a mint is decided on the policy's
// config.routes.mint_route, not on a fixed path, and a policy that declares
// none lets nothing mint.
func TestMintAsksTheDeclaredRoute(t *testing.T) {
	withRoute := func(route any) *policies.Engine {
		b, err := policies.Load(policies.Default(), policies.BuiltIn)
		if err != nil {
			t.Fatal(err)
		}
		routes := b.Documents["keygate"].(map[string]any)["config"].(map[string]any)["routes"].(map[string]any)
		if route == nil {
			delete(routes, "mint_route")
		} else {
			routes["mint_route"] = route
		}
		// Plans without this route: a route-restricted mint route refuses.
		routes["plan_routes"] = []any{map[string]any{"prefix": "/v1/premium/", "plans": []any{"max"}}}
		p, err := policies.Compile(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		return policies.NewEngine(p)
	}
	body := func(key string) string { return `{"apiKey":"` + key + `"}` }
	for _, tt := range []struct {
		name   string
		route  any
		status int
		code   string
	}{
		{"default route", "/", 200, ""},
		{"a route the key's plan lacks", "/v1/premium/x", 403, "PLAN_REQUIRED"},
		{"no declared route", nil, 500, "POLICY_ERROR"},
		{"not a path", "videos", 500, "POLICY_ERROR"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newTokenFixture(t)
			f.authz.Policy = withRoute(tt.route)
			w := exchangePost(t, f.exchange, "/auth/api-key", body(f.live.Reveal()))
			if w.Code != tt.status || (tt.code != "" && !strings.Contains(w.Body.String(), `"`+tt.code+`"`)) {
				t.Errorf("got %d %s, want %d %s", w.Code, w.Body, tt.status, tt.code)
			}
		})
	}
}
