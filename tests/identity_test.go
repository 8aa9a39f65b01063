package tests

import (
	"testing"
)

// TestIdentityOnlyFromAcceptedKey: through the binary, on routes that need
// no key, a key the policy would not accept for this request gives no
// identity: site A's key on site B's public route gets B's public identity
// (not A's), and a free-plan key (no API access) on /health gets none. A
// key the policy accepts keeps its identity there.
func TestIdentityOnlyFromAcceptedKey(t *testing.T) {
	env := NewEnv(t)
	env.CLI("accounts", "create", "--id", "acme", "--plan", "pro")
	env.CLI("accounts", "create", "--id", "other", "--plan", "pro")
	env.CLI("accounts", "create", "--id", "freebie", "--plan", "free")
	env.CLI("sites", "create", "--id", "acme-web", "--account", "acme", "--domain", "acme.test")
	env.CLI("sites", "create", "--id", "other-web", "--account", "other", "--domain", "other.test")
	env.CLI("sites", "create", "--id", "free-web", "--account", "freebie")
	acme := env.NewKey("acme-web", "live")
	free := env.NewKey("free-web", "live")
	srv := env.Serve()

	for _, tc := range []struct {
		name, path, origin, key string
		wantSite, wantAccount   string
		wantKey                 bool
	}{
		{"A's key on B's public route", "/v1/public/other-web/player", "https://other.test", acme, "other-web", "other", false},
		{"free-plan key on /health", "/health", "", free, "", "", false},
		{"free-plan key on a public route", "/v1/public/other-web/player", "https://other.test", free, "other-web", "other", false},
		{"accepted key on /health", "/health", "", acme, "acme-web", "acme", true},
		{"accepted key on its own public route", "/v1/public/acme-web/player", "https://acme.test", acme, "acme-web", "acme", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{"authorization": "Bearer " + tc.key}
			if tc.origin != "" {
				h["origin"] = tc.origin
			}
			set, removed := allowedWith(t, srv.Check(t, "GET", tc.path, h))
			if set["x-keygate-site"] != tc.wantSite || set["x-keygate-account"] != tc.wantAccount {
				t.Errorf("identity %v, want site %q account %q", set, tc.wantSite, tc.wantAccount)
			}
			if _, ok := set["x-keygate-key-id"]; ok != tc.wantKey {
				t.Errorf("x-keygate-key-id set: %v, want %v (%v)", ok, tc.wantKey, set)
			}
			stripped := false
			for _, r := range removed {
				stripped = stripped || r == "authorization"
			}
			if !stripped {
				t.Errorf("credential not stripped: %v", removed)
			}
		})
	}
}
