package tests

import (
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// Without KEYGATE_ADMIN_TOKEN the admin API is off, and says so.
func TestAdminOffWithoutToken(t *testing.T) {
	env := NewEnv(t)
	srv := env.Serve()
	if srv.AdminAddr != "" {
		t.Errorf("admin API listening on %s without a token", srv.AdminAddr)
	}
	if !strings.Contains(srv.Logs(), "admin API off") {
		t.Errorf("start-up does not say the admin API is off:\n%s", srv.Logs())
	}
}

// The admin API of the binary: token checks, then a key made through it is
// decided by the same server.
func TestAdminAPI(t *testing.T) {
	env := NewEnv(t)
	env.Vars = append(env.Vars, "KEYGATE_ADMIN_TOKEN="+adminToken)
	srv := env.Serve()
	for _, auth := range []string{"", "Bearer wrong-token-0123456789", "bearer " + adminToken} {
		status, body := srv.Admin(t, "GET", "/admin/v1/keys?site=web", "", auth)
		if status != 401 || body["code"] != "UNAUTHORIZED" {
			t.Errorf("Authorization %q: %d %v", auth, status, body)
		}
	}
	srv.MustAdmin(t, "POST", "/admin/v1/accounts", `{"id":"acme","plan":"pro"}`, 201)
	srv.MustAdmin(t, "POST", "/admin/v1/sites", `{"id":"web","account":"acme"}`, 201)
	key := srv.MustAdmin(t, "POST", "/admin/v1/keys", `{"site":"web","mode":"test"}`, 201)
	if got := srv.decideKey(t, key["key"].(string)); got != "allow" {
		t.Errorf("key made through the admin API: %s", got)
	}
	if status, body := srv.Admin(t, "POST", "/admin/v1/keys", `{"site":"nope","mode":"live"}`); status != 404 || body["code"] != "NOT_FOUND" {
		t.Errorf("unknown site: %d %v", status, body)
	}
	srv.MustAdmin(t, "PATCH", "/admin/v1/accounts/acme", `{"status":"inactive"}`, 200)
	Eventually(t, 10*time.Second, "the account change to apply", func() bool {
		return srv.decideKey(t, key["key"].(string)) == "401 SUBSCRIPTION_INACTIVE"
	})
}

// Imported keys (any string) work on Check only with --imported-keys; without
// it, a credential that is not a keygate key never reaches cache or store.
func TestImportedKeys(t *testing.T) {
	env := NewEnv(t)
	env.Seed("acme", "pro", "web")
	const legacy = "sk_old_platform_9f8e7d6c5b4a3210"
	if out, err := env.CLIStdin(legacy+"\n", "keys", "import", "--site", "web", "--mode", "test", "--name", "migrated"); err != nil {
		t.Fatalf("keys import: %v\n%s", err, out)
	} else if strings.Contains(out, legacy) {
		t.Errorf("keys import printed the key: %s", out)
	}
	if out, err := env.CLIStdin("", "keys", "import", "--site", "web", "--mode", "test"); err == nil {
		t.Errorf("import with empty stdin succeeded: %s", out)
	}

	off := env.Serve()
	if got := off.decideKey(t, legacy); got != "401 INVALID_API_KEY" {
		t.Errorf("imported key without --imported-keys: %s", got)
	}
	if n := off.Metric(t, "keygate_store_lookups_total"); n != 0 {
		t.Errorf("a non-keygate credential reached the store %v times with imported keys off", n)
	}

	on := env.Serve("--imported-keys")
	resp := on.Check(t, "GET", "/v1/videos", map[string]string{"x-api-key": legacy})
	if got := decision(t, resp); got != "allow" {
		t.Fatalf("imported key with --imported-keys: %s", got)
	}
	if mode := upstreamHeader(resp, "x-keygate-mode"); mode != "test" {
		t.Errorf("imported key mode %q, want test (given at import)", mode)
	}
	if got := on.decideKey(t, "sk_old_platform_not_a_real_key"); got != "401 INVALID_API_KEY" {
		t.Errorf("unknown legacy-looking key: %s", got)
	}
}

func upstreamHeader(resp *authv3.CheckResponse, name string) string {
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}
