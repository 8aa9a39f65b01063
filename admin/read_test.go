package admin_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/policies"
)

var builtin struct {
	once sync.Once
	p    *policies.Policy
	err  error
}

// builtinEngine is the built-in policy, compiled once for the package.
func builtinEngine(t *testing.T) *policies.Engine {
	t.Helper()
	builtin.once.Do(func() {
		b, err := policies.Load(policies.Default(), policies.BuiltIn)
		if err != nil {
			builtin.err = err
			return
		}
		builtin.p, builtin.err = policies.Compile(context.Background(), b)
	})
	if builtin.err != nil {
		t.Fatal(builtin.err)
	}
	return policies.NewEngine(builtin.p)
}

// The read side: accounts, sites and single keys can be listed and read
// back, with the keys listing's cursor pagination.
func TestReadSide(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		f.must("POST", "/admin/v1/accounts", fmt.Sprintf(`{"id":"acct-%d","plan":"pro"}`, i), 201)
	}
	f.must("POST", "/admin/v1/sites", `{"id":"s1","account":"acct-1","domains":["a.com"]}`, 201)
	f.must("POST", "/admin/v1/sites", `{"id":"s2","account":"acct-1"}`, 201)
	f.must("POST", "/admin/v1/sites", `{"id":"s3","account":"acct-2"}`, 201)
	key := f.must("POST", "/admin/v1/keys", `{"site":"s1","mode":"test","name":"ci"}`, 201)

	var ids []string
	after := ""
	for range 10 {
		p := f.must("GET", "/admin/v1/accounts?limit=2&after="+after, "", 200)
		for _, a := range p.body["accounts"].([]any) {
			ids = append(ids, a.(map[string]any)["id"].(string))
		}
		next, _ := p.body["next"].(string)
		if next == "" {
			break
		}
		after = next
	}
	if got := strings.Join(ids, ","); got != "acct-0,acct-1,acct-2,acct-3,acct-4" {
		t.Errorf("paged accounts: %s", got)
	}
	if a := f.must("GET", "/admin/v1/accounts/acct-3", "", 200); a.body["plan"] != "pro" || a.body["status"] != "active" {
		t.Errorf("account: %s", a.raw)
	}
	if s := f.must("GET", "/admin/v1/sites?account=acct-1", "", 200); len(s.body["sites"].([]any)) != 2 {
		t.Errorf("sites of acct-1: %s", s.raw)
	}
	if s := f.must("GET", "/admin/v1/sites", "", 200); len(s.body["sites"].([]any)) != 3 || s.body["next"] != nil {
		t.Errorf("all sites: %s", s.raw)
	}
	if s := f.must("GET", "/admin/v1/sites/s1", "", 200); s.body["account"] != "acct-1" || s.body["domains"].([]any)[0] != "a.com" {
		t.Errorf("site: %s", s.raw)
	}
	k := f.must("GET", "/admin/v1/keys/"+key.body["id"].(string), "", 200)
	if k.body["mode"] != "test" || k.body["name"] != "ci" || k.body["key"] != nil {
		t.Errorf("key (never the secret): %s", k.raw)
	}
	if a := f.call("POST", "/admin/v1/keys/key_gone/revoke", ""); a.status != 404 || !strings.Contains(a.body["message"].(string), `key "key_gone" not found`) {
		t.Errorf("revoking a missing key does not name it: %s", a.raw)
	}
	for path, code := range map[string]string{
		"/admin/v1/accounts/nope":      "NOT_FOUND",
		"/admin/v1/sites/nope":         "NOT_FOUND",
		"/admin/v1/keys/key_nope":      "NOT_FOUND",
		"/admin/v1/sites?account=nope": "NOT_FOUND",
		"/admin/v1/accounts?limit=0":   "INVALID_REQUEST",
	} {
		a := f.call("GET", path, "")
		if a.body["code"] != code {
			t.Errorf("GET %s: %d %s, want %s", path, a.status, a.raw, code)
		}
		if code == "NOT_FOUND" && !strings.Contains(a.body["message"].(string), "nope") {
			t.Errorf("GET %s: the message does not name the missing object: %s", path, a.raw)
		}
	}
}

// Writes are checked against the running policy's data: an unknown plan,
// status or limit name is a 400 naming the field and the valid values.
func TestValidationAgainstPolicy(t *testing.T) {
	f := seededFixture(t)
	for _, c := range []struct {
		name, method, path, body, field, lists string
	}{
		{"unknown plan", "POST", "/admin/v1/accounts", `{"id":"x","plan":"platinum"}`, "plan", "enterprise, free, max, plus, pro, starter"},
		{"unknown plan on update", "PATCH", "/admin/v1/accounts/acme", `{"plan":"platinum"}`, "plan", "enterprise, free"},
		{"unknown status", "POST", "/admin/v1/accounts", `{"id":"x","plan":"pro","status":"paused"}`, "status", "active, trialing, trial_expired, inactive"},
		{"unknown limit", "PUT", "/admin/v1/sites/web/limits", `{"speed":3}`, "limits.speed", "burst, quota, rate"},
		{"plan of the wrong type", "POST", "/admin/v1/accounts", `{"id":"x","plan":3}`, "plan", "must be a string"},
		{"active of the wrong type", "PATCH", "/admin/v1/sites/web", `{"active":"yes"}`, "active", "true or false"},
		{"rotation mode", "POST", "/admin/v1/sites/web/rotate-key", `{"mode":"prod"}`, "mode", "live, test or all"},
	} {
		a := f.call(c.method, c.path, c.body)
		if a.status != 400 || a.body["code"] != "INVALID_REQUEST" || a.body["field"] != c.field ||
			!strings.Contains(a.body["message"].(string), c.lists) || strings.Contains(a.raw, "Go ") {
			t.Errorf("%s: %d %s; want 400 INVALID_REQUEST, field %q, listing %q", c.name, a.status, a.raw, c.field, c.lists)
		}
	}
	if acct, _ := f.store.Account(context.Background(), "acme"); acct.Plan != "pro" {
		t.Errorf("a refused update changed the plan to %q", acct.Plan)
	}
}

// Rotating the live key leaves the site's test keys working, and says what
// it revoked.
func TestRotateKeyByMode(t *testing.T) {
	f := seededFixture(t)
	live := f.must("POST", "/admin/v1/keys", `{"site":"web","mode":"live"}`, 201).body["id"]
	test := f.must("POST", "/admin/v1/keys", `{"site":"web","mode":"test"}`, 201).body["id"]
	r := f.must("POST", "/admin/v1/sites/web/rotate-key", `{"mode":"live"}`, 201)
	if rev := r.body["revoked"].([]any); len(rev) != 1 || rev[0] != live {
		t.Errorf("live rotation revoked %v, want only the live key %v", rev, live)
	}
	if k := f.must("GET", fmt.Sprintf("/admin/v1/keys/%s", test), "", 200); k.body["revoked_at"] != nil {
		t.Errorf("live rotation revoked the test key: %s", k.raw)
	}
	r = f.must("POST", "/admin/v1/sites/web/rotate-key", `{"mode":"test"}`, 201)
	if rev := r.body["revoked"].([]any); len(rev) != 1 || rev[0] != test || r.body["mode"] != "test" {
		t.Errorf("test rotation: %s", r.raw)
	}
}

// Usage before the first metered request shows the plan's quota, not 0.
func TestUsageShowsQuotaBeforeFirstUse(t *testing.T) {
	f := seededFixture(t) // plan pro: 10,000 a month
	u := f.must("GET", "/admin/v1/sites/web/usage", "", 200)
	for _, m := range u.body["usage"].([]any) {
		m := m.(map[string]any)
		if m["quota"] != float64(10000) || m["remaining"] != float64(10000) || m["used"] != float64(0) {
			t.Errorf("usage before first use: %v", m)
		}
	}
	f.must("PUT", "/admin/v1/sites/web/limits", `{"quota":7}`, 200)
	u = f.must("GET", "/admin/v1/sites/web/usage", "", 200)
	if m := u.body["usage"].([]any)[0].(map[string]any); m["quota"] != float64(7) {
		t.Errorf("usage with a site override: %v", m)
	}
}
