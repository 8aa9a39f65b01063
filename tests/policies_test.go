package tests

import (
	"testing"
	"time"
)

// TestPolicyCodes drives every code the default policy owns (DESIGN.md's
// table, issue 3) through the binary over gRPC.
func TestPolicyCodes(t *testing.T) {
	env := NewEnv(t)
	for _, plan := range []string{"free", "starter", "plus", "pro", "max"} {
		env.CLI("accounts", "create", "--id", plan, "--plan", plan)
		env.CLI("sites", "create", "--id", plan+"-site", "--account", plan, "--domain", "example.com", "--domain", "*.example.com", "--domain", "localhost:3000")
	}
	keys := map[string]string{}
	for _, plan := range []string{"free", "starter", "plus", "pro", "max"} {
		keys[plan] = env.NewKey(plan+"-site", "live")
	}
	testKey := env.NewKey("pro-site", "test")
	srv := env.Serve()

	t.Run("plans", func(t *testing.T) {
		for _, plan := range []string{"free", "starter"} {
			expectDeny(t, plan, srv.decide(t, "GET", "/v1/videos", bearer(keys[plan])), 403, "PLAN_REQUIRED")
		}
		for plan, want := range map[string]string{"plus": "1", "pro": "3", "max": "5"} {
			v := srv.decide(t, "GET", "/v1/videos", bearer(keys[plan]))
			if !v.Allow || v.Headers["x-keygate-concurrency"] != want || v.Headers["x-keygate-plan"] != plan {
				t.Errorf("%s: got %v; want allow with concurrency %s", plan, v, want)
			}
		}
	})
	t.Run("mode header", func(t *testing.T) {
		for key, want := range map[string]string{keys["pro"]: "live", testKey: "test"} {
			expectAllowIn(t, want+" key", srv.decide(t, "GET", "/v1/videos", bearer(key)), want)
		}
	})
	t.Run("site scope", func(t *testing.T) {
		if v := srv.decide(t, "GET", "/v1/sites/pro-site/posts", bearer(keys["pro"])); !v.Allow {
			t.Errorf("own site: %v", v)
		}
		expectDeny(t, "other site", srv.decide(t, "GET", "/v1/sites/max-site/posts", bearer(keys["pro"])), 403, "SITE_MISMATCH")
		expectDeny(t, "dot segments", srv.decide(t, "GET", "/v1/sites/pro-site/../max-site/posts", bearer(keys["pro"])), 400, "INVALID_PATH")
		expectDeny(t, "encoded slash", srv.decide(t, "GET", "/v1/sites/pro-site%2F..%2Fmax-site/posts", bearer(keys["pro"])), 400, "INVALID_PATH")
	})
	t.Run("public routes", func(t *testing.T) {
		for _, path := range []string{"/health", "/auth/api-key", "/auth/refresh"} {
			if v := srv.decide(t, "POST", path, nil); !v.Allow {
				t.Errorf("%s: %v", path, v)
			}
		}
		expectDeny(t, "/healthz", srv.decide(t, "GET", "/healthz", nil), 401, "MISSING_API_KEY")
	})
	t.Run("public site domains", func(t *testing.T) {
		for origin, allow := range map[string]bool{
			"https://example.com":          true,
			"https://www.example.com":      true,
			"http://a.b.example.com":       true,
			"http://localhost:3000":        true,
			"https://example.com:8443":     false,
			"http://localhost:3001":        false,
			"https://evilexample.com":      false,
			"https://example.com.evil.net": false,
			"null":                         false,
		} {
			v := srv.decide(t, "GET", "/v1/public/pro-site/player", map[string]string{"origin": origin})
			if allow && (!v.Allow || v.Headers["x-keygate-site"] != "pro-site") {
				t.Errorf("origin %s: %v; want allow for pro-site", origin, v)
			}
			if !allow {
				expectDeny(t, "origin "+origin, v, 403, "DOMAIN_NOT_ALLOWED")
			}
		}
		if v := srv.decide(t, "GET", "/v1/public/pro-site/player", map[string]string{"referer": "https://shop.example.com/page?x=1"}); !v.Allow {
			t.Errorf("referer: %v", v)
		}
		expectDeny(t, "no origin", srv.decide(t, "GET", "/v1/public/pro-site/player", nil), 403, "DOMAIN_NOT_ALLOWED")
		expectDeny(t, "unknown site", srv.decide(t, "GET", "/v1/public/nope/player", map[string]string{"origin": "https://example.com"}), 403, "DOMAIN_NOT_ALLOWED")
	})

	// Account and site changes made with the CLI in another process reach
	// the running server (it follows the store's change log).
	t.Run("account and site state", func(t *testing.T) {
		origin := map[string]string{"origin": "https://example.com"}
		steps := []struct {
			cli          []string
			key, public  verdict
			keyMsg, pMsg string
		}{
			{[]string{"accounts", "update", "--id", "plus", "--status", "inactive"},
				verdict{Status: 401, Code: "SUBSCRIPTION_INACTIVE"}, verdict{Status: 402, Code: "SUBSCRIPTION_INACTIVE"}, "Subscription inactive", "Subscription inactive"},
			{[]string{"accounts", "update", "--id", "plus", "--status", "trial_expired"},
				verdict{Status: 401, Code: "TRIAL_EXPIRED"}, verdict{Status: 402, Code: "TRIAL_EXPIRED"}, "Trial expired", "Trial expired"},
			{[]string{"accounts", "update", "--id", "plus", "--status", "trialing"},
				verdict{Allow: true, Status: 200}, verdict{Allow: true, Status: 200}, "", ""},
			{[]string{"sites", "update", "--id", "plus-site", "--active=false"},
				verdict{Status: 401, Code: "SITE_INACTIVE"}, verdict{Status: 403, Code: "SITE_INACTIVE"}, "The site is inactive", "The site is inactive"},
		}
		for _, step := range steps {
			env.CLI(step.cli...)
			start := time.Now()
			var key, public verdict
			Eventually(t, time.Second, "the server to see: keygate "+step.cli[0]+" "+step.cli[len(step.cli)-1], func() bool {
				key = srv.decide(t, "GET", "/v1/videos", bearer(keys["plus"]))
				public = srv.decide(t, "GET", "/v1/public/plus-site/player", origin)
				return key.Allow == step.key.Allow && key.Code == step.key.Code && public.Allow == step.public.Allow && public.Code == step.public.Code
			})
			t.Logf("keygate %v reached the server %v after the command returned", step.cli, time.Since(start).Round(time.Millisecond))
			if key.Status != step.key.Status || public.Status != step.public.Status {
				t.Errorf("after %v: key route %v, public route %v", step.cli, key, public)
			}
			if msg, _ := key.Body["message"].(string); msg != step.keyMsg {
				t.Errorf("after %v: key route message %q, want %q", step.cli, msg, step.keyMsg)
			}
			if msg, _ := public.Body["message"].(string); msg != step.pMsg {
				t.Errorf("after %v: public route message %q, want %q", step.cli, msg, step.pMsg)
			}
		}
	})
}

// layeredPolicy is a --policies directory layered on the built-in policy
// that adds a plan-only route and sandbox/production hosts.
const layeredPolicy = `keygate:
  extends: built-in
  config:
    routes:
      plan_routes:
        - prefix: /v1/avatars/
          plans: [max, enterprise]
    host_modes:
      sandbox.example.test: test
      api.example.test: live
`

const layeredPolicyTest = `package keygate.layer_test

import rego.v1

test_avatars_are_for_max if data.keygate.config.routes.plan_routes[0].plans == ["max", "enterprise"]
`

func TestPolicyEntitlementsAndHostModes(t *testing.T) {
	env := NewEnv(t)
	for _, plan := range []string{"pro", "max"} {
		env.Seed(plan, plan, plan+"-site")
	}
	pro, max := env.NewKey("pro-site", "live"), env.NewKey("max-site", "live")
	proTest := env.NewKey("pro-site", "test")
	dir := writePolicyDir(t, map[string]string{"data.yaml": layeredPolicy, "layer_test.rego": layeredPolicyTest})
	srv := env.Serve("--policies", dir)

	v := srv.decide(t, "POST", "/v1/avatars/generate", bearer(pro))
	expectDeny(t, "pro on a max route", v, 403, "PLAN_REQUIRED")
	if v.Body["message"] != "Your plan doesn't include this endpoint" {
		t.Errorf("route entitlement message: %v", v.Body)
	}
	if v := srv.decide(t, "POST", "/v1/avatars/generate", bearer(max)); !v.Allow {
		t.Errorf("max on a max route: %v", v)
	}
	if v := srv.decide(t, "GET", "/v1/videos", bearer(pro)); !v.Allow {
		t.Errorf("pro on an open route: %v", v)
	}

	expectAllowIn(t, "test key on the sandbox host", srv.decide(t, "GET", "/v1/videos", bearerAt("sandbox.example.test", proTest)), "test")
	expectAllowIn(t, "live key on the production host", srv.decide(t, "GET", "/v1/videos", bearerAt("API.example.test:443", pro)), "live")
	expectDeny(t, "live key on the sandbox host", srv.decide(t, "GET", "/v1/videos", bearerAt("sandbox.example.test", pro)), 403, "MODE_MISMATCH")
	expectDeny(t, "test key on the production host", srv.decide(t, "GET", "/v1/videos", bearerAt("api.example.test", proTest)), 403, "MODE_MISMATCH")
	if v := srv.decide(t, "GET", "/v1/videos", bearerAt("other.example.test", proTest)); !v.Allow {
		t.Errorf("test key on an unlisted host: %v", v)
	}
}

// A policy whose data breaks the decision document fails closed with 500
// POLICY_ERROR, through the binary.
func TestPolicyErrorFailsClosed(t *testing.T) {
	env := NewEnv(t)
	env.Seed("acme", "pro", "acme-web")
	key := env.NewKey("acme-web", "live")
	dir := writePolicyDir(t, map[string]string{
		// A deny status Go refuses (a policy may not answer 302).
		"data.yaml": "keygate:\n  extends: built-in\n  config:\n    errors:\n      MISSING_API_KEY: {status: 302}\n",
	})
	srv := env.Serve("--policies", dir)
	expectDeny(t, "malformed decision", srv.decide(t, "GET", "/v1/videos", nil), 500, "POLICY_ERROR")
	if v := srv.decide(t, "GET", "/v1/videos", bearer(key)); !v.Allow {
		t.Errorf("a valid key still decides normally: %v", v)
	}
}
