package admin_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/apitest"
	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/keystore"
)

const token = "admin-token-0123456789"

type fixture struct {
	t     *testing.T
	srv   *httptest.Server
	store *keystore.Store
	dig   *keystore.Digester
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s, d := storetest.Open(t, nil)
	h := &admin.Handler{Store: s, Token: token, Tokens: map[string]string{"deploy-bot": botToken},
		Log: slog.New(slog.DiscardHandler), Policy: builtinEngine(t)}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{t: t, srv: srv, store: s, dig: d}
}

type answer struct {
	status int
	body   map[string]any
	raw    string
}

func (f *fixture) call(method, path, body string, auth ...string) answer {
	f.t.Helper()
	var header []string
	if body != "" {
		header = append(header, "Content-Type", "application/json")
	}
	if len(auth) == 0 {
		header = append(header, "Authorization", "Bearer "+token)
	} else if auth[0] != "" {
		header = append(header, "Authorization", auth[0])
	}
	resp, raw := apitest.Do(f.t, f.srv.URL, method, path, body, header...)
	a := answer{status: resp.StatusCode, raw: string(raw)}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		f.t.Errorf("%s %s: content-type %q", method, path, ct)
	}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		f.t.Fatalf("%s %s: answer is not a JSON object: %q", method, path, raw)
	}
	return a
}

func (f *fixture) must(method, path, body string, status int) answer {
	f.t.Helper()
	a := f.call(method, path, body)
	if a.status != status {
		f.t.Fatalf("%s %s %s: status %d, want %d: %s", method, path, body, a.status, status, a.raw)
	}
	return a
}

func (f *fixture) seed() {
	f.must("POST", "/admin/v1/accounts", `{"id":"acme","plan":"pro"}`, 201)
	f.must("POST", "/admin/v1/sites", `{"id":"web","account":"acme","domains":["acme.com"]}`, 201)
}

// seededFixture is a fixture whose store has account acme and its site web,
// created through the API.
func seededFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	f.seed()
	return f
}

func TestAccounts(t *testing.T) {
	f := newFixture(t)
	a := f.must("POST", "/admin/v1/accounts", `{"id":"acme","plan":"pro","status":"trialing"}`, 201)
	if a.body["id"] != "acme" || a.body["plan"] != "pro" || a.body["status"] != "trialing" {
		t.Errorf("created %v", a.body)
	}
	a = f.must("PATCH", "/admin/v1/accounts/acme", `{"plan":"max","status":"active"}`, 200)
	if a.body["plan"] != "max" || a.body["status"] != "active" {
		t.Errorf("patched %v", a.body)
	}
	got, _ := f.store.Account(context.Background(), "acme")
	if got.Plan != "max" {
		t.Errorf("store has plan %q after PATCH", got.Plan)
	}
}

func TestSites(t *testing.T) {
	f := newFixture(t)
	f.must("POST", "/admin/v1/accounts", `{"id":"acme","plan":"pro"}`, 201)
	a := f.must("POST", "/admin/v1/sites", `{"id":"web","account":"acme","domains":["Acme.com"]}`, 201)
	if a.body["active"] != true || a.body["account"] != "acme" {
		t.Errorf("created %v (active defaults to true)", a.body)
	}
	a = f.must("PATCH", "/admin/v1/sites/web", `{"active":false,"domains":["a.com","*.b.com"]}`, 200)
	if a.body["active"] != false || len(a.body["domains"].([]any)) != 2 {
		t.Errorf("patched %v", a.body)
	}
	// A Unicode letter that folds to an ASCII one is no host name: refused,
	// not stored as the ASCII domain (KELVIN SIGN, capital I with dot).
	for _, d := range []string{"\u212Aeygate.example", "\u0130nfo.example"} {
		f.must("POST", "/admin/v1/sites", `{"id":"uni","account":"acme","domains":["`+d+`"]}`, 400)
	}
	a = f.must("POST", "/admin/v1/sites", `{"id":"off","account":"acme","active":false}`, 201)
	if a.body["active"] != false {
		t.Errorf("created %v, want inactive", a.body)
	}
}

func TestKeysLifecycle(t *testing.T) {
	f := seededFixture(t)
	a := f.must("POST", "/admin/v1/keys", `{"site":"web","mode":"live","name":"prod","expires_at":"2999-01-01T00:00:00Z"}`, 201)
	secret, _ := a.body["key"].(string)
	id, _ := a.body["id"].(string)
	if !strings.HasPrefix(secret, "kg_live_") || id == "" || a.body["expires_at"] != "2999-01-01T00:00:00Z" {
		t.Fatalf("created %v", a.raw)
	}
	if _, err := f.store.LookupKey(context.Background(), f.dig.All(secret)); err != nil {
		t.Fatalf("created key not in store: %v", err)
	}

	list := f.must("GET", "/admin/v1/keys?site=web", "", 200)
	if strings.Contains(list.raw, secret) || strings.Contains(list.raw, `"key"`) {
		t.Fatalf("listing shows the secret: %s", list.raw)
	}
	if keys := list.body["keys"].([]any); len(keys) != 1 || keys[0].(map[string]any)["id"] != id {
		t.Errorf("list %s", list.raw)
	}

	r := f.must("POST", "/admin/v1/keys/"+id+"/revoke", "", 200)
	if r.body["revoked_at"] == nil {
		t.Errorf("revoke answer %s", r.raw)
	}
	again := f.must("POST", "/admin/v1/keys/"+id+"/revoke", "{}", 200)
	if again.body["revoked_at"] != r.body["revoked_at"] {
		t.Errorf("second revoke moved revoked_at: %v then %v", r.body["revoked_at"], again.body["revoked_at"])
	}
}

func TestKeysPagination(t *testing.T) {
	f := seededFixture(t)
	want := map[string]bool{}
	for range 5 {
		a := f.must("POST", "/admin/v1/keys", `{"site":"web","mode":"test"}`, 201)
		want[a.body["id"].(string)] = true
	}
	seen := map[string]bool{}
	path := "/admin/v1/keys?site=web&limit=2"
	for pages := 0; pages < 5; pages++ {
		a := f.must("GET", path, "", 200)
		for _, k := range a.body["keys"].([]any) {
			seen[k.(map[string]any)["id"].(string)] = true
		}
		next, _ := a.body["next"].(string)
		if next == "" {
			break
		}
		path = "/admin/v1/keys?site=web&limit=2&after=" + next
	}
	if len(seen) != len(want) {
		t.Errorf("paged through %d keys, want %d", len(seen), len(want))
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("key %s missing from the pages", id)
		}
	}
}

func TestRotateKey(t *testing.T) {
	f := seededFixture(t)
	old := f.must("POST", "/admin/v1/keys", `{"site":"web","mode":"live"}`, 201)
	a := f.must("POST", "/admin/v1/sites/web/rotate-key", "", 201)
	if !strings.HasPrefix(a.body["key"].(string), "kg_live_") {
		t.Errorf("rotate answer %s", a.raw)
	}
	if rev := a.body["revoked"].([]any); len(rev) != 1 || rev[0] != old.body["id"] {
		t.Errorf("revoked %v, want [%v]", rev, old.body["id"])
	}
	g := f.must("POST", "/admin/v1/sites/web/rotate-key", `{"mode":"all","name":"next","grace":"1h"}`, 201)
	if g.body["mode"] != "live" || g.body["name"] != "next" {
		t.Errorf("rotate with body %s", g.raw)
	}
	k, _ := f.store.Key(context.Background(), a.body["id"].(string))
	if k.RevokedAt == nil || k.Revoked(k.CreatedAt) {
		t.Errorf("grace rotation: revoked_at %v, want in the future", k.RevokedAt)
	}
}

func TestImportKey(t *testing.T) {
	f := seededFixture(t)
	const legacy = "sk_legacy_1234567890abcdef"
	a := f.must("POST", "/admin/v1/keys/import", `{"site":"web","mode":"test","name":"old","key":"`+legacy+`"}`, 201)
	if strings.Contains(a.raw, legacy) || a.body["mode"] != "test" {
		t.Errorf("import answer %s (must not echo the key)", a.raw)
	}
	fx, err := f.store.LookupKey(context.Background(), f.dig.All(legacy))
	if err != nil || fx.Key.ID != a.body["id"] {
		t.Errorf("imported key lookup: %v", err)
	}
	f.must("POST", "/admin/v1/keys/import", `{"site":"web","mode":"test","key":"`+legacy+`"}`, 409)
}

// Every failure is a JSON {"code","message"} with the right status.
func TestErrors(t *testing.T) {
	f := seededFixture(t)
	key := f.must("POST", "/admin/v1/keys", `{"site":"web","mode":"live"}`, 201)
	_ = key
	for _, tc := range []struct {
		name, method, path, body string
		auth                     []string
		status                   int
		code                     string
	}{
		{"missing token", "GET", "/admin/v1/keys?site=web", "", []string{""}, 401, "UNAUTHORIZED"},
		{"wrong token", "GET", "/admin/v1/keys?site=web", "", []string{"Bearer wrong-token-0123456789"}, 401, "UNAUTHORIZED"},
		{"token prefix", "GET", "/admin/v1/keys?site=web", "", []string{"Bearer " + token[:10]}, 401, "UNAUTHORIZED"},
		{"basic scheme", "GET", "/admin/v1/keys?site=web", "", []string{"Basic " + token}, 401, "UNAUTHORIZED"},
		{"no token on unknown path", "GET", "/admin/v1/nope", "", []string{""}, 401, "UNAUTHORIZED"},
		{"unknown path", "GET", "/admin/v1/nope", "", nil, 404, "NOT_FOUND"},
		{"wrong method", "DELETE", "/admin/v1/accounts/acme", "", nil, 404, "NOT_FOUND"},
		{"malformed JSON", "POST", "/admin/v1/accounts", `{"id":`, nil, 400, "INVALID_REQUEST"},
		{"not an object", "POST", "/admin/v1/accounts", `[1]`, nil, 400, "INVALID_REQUEST"},
		{"trailing data", "POST", "/admin/v1/accounts", `{"id":"x","plan":"pro"} {}`, nil, 400, "INVALID_REQUEST"},
		{"unknown field", "POST", "/admin/v1/accounts", `{"id":"x","plan":"pro","admin":true}`, nil, 400, "INVALID_REQUEST"},
		{"empty body", "POST", "/admin/v1/accounts", ``, nil, 400, "INVALID_REQUEST"},
		{"huge body", "POST", "/admin/v1/accounts", `{"id":"` + strings.Repeat("a", 70<<10) + `"}`, nil, 400, "INVALID_REQUEST"},
		{"missing plan", "POST", "/admin/v1/accounts", `{"id":"x"}`, nil, 400, "INVALID_REQUEST"},
		{"bad status", "POST", "/admin/v1/accounts", `{"id":"x","plan":"pro","status":"gone"}`, nil, 400, "INVALID_REQUEST"},
		{"bad account id", "POST", "/admin/v1/accounts", `{"id":"a/b","plan":"pro"}`, nil, 400, "INVALID_REQUEST"},
		{"duplicate account", "POST", "/admin/v1/accounts", `{"id":"acme","plan":"pro"}`, nil, 409, "CONFLICT"},
		{"patch unknown account", "PATCH", "/admin/v1/accounts/nobody", `{"plan":"pro"}`, nil, 404, "NOT_FOUND"},
		{"patch account id", "PATCH", "/admin/v1/accounts/acme", `{"id":"other"}`, nil, 400, "INVALID_REQUEST"},
		{"site of unknown account", "POST", "/admin/v1/sites", `{"id":"s2","account":"nobody"}`, nil, 404, "NOT_FOUND"},
		{"site bad domain", "POST", "/admin/v1/sites", `{"id":"s2","account":"acme","domains":["http://x"]}`, nil, 400, "INVALID_REQUEST"},
		{"duplicate site", "POST", "/admin/v1/sites", `{"id":"web","account":"acme"}`, nil, 409, "CONFLICT"},
		{"patch unknown site", "PATCH", "/admin/v1/sites/nope", `{"active":true}`, nil, 404, "NOT_FOUND"},
		{"patch site account", "PATCH", "/admin/v1/sites/web", `{"account":"other"}`, nil, 400, "INVALID_REQUEST"},
		{"key unknown site", "POST", "/admin/v1/keys", `{"site":"nope","mode":"live"}`, nil, 404, "NOT_FOUND"},
		{"key bad mode", "POST", "/admin/v1/keys", `{"site":"web","mode":"prod"}`, nil, 400, "INVALID_REQUEST"},
		{"key no site", "POST", "/admin/v1/keys", `{"mode":"live"}`, nil, 400, "INVALID_REQUEST"},
		{"key expired", "POST", "/admin/v1/keys", `{"site":"web","mode":"live","expires_at":"2001-01-01T00:00:00Z"}`, nil, 400, "INVALID_REQUEST"},
		{"key bad time", "POST", "/admin/v1/keys", `{"site":"web","mode":"live","expires_at":"tomorrow"}`, nil, 400, "INVALID_REQUEST"},
		{"key with secret", "POST", "/admin/v1/keys", `{"site":"web","mode":"live","key":"chosen-by-client-123"}`, nil, 400, "INVALID_REQUEST"},
		{"list without site", "GET", "/admin/v1/keys", "", nil, 400, "INVALID_REQUEST"},
		{"list unknown site", "GET", "/admin/v1/keys?site=nope", "", nil, 404, "NOT_FOUND"},
		{"list bad limit", "GET", "/admin/v1/keys?site=web&limit=0", "", nil, 400, "INVALID_REQUEST"},
		{"list huge limit", "GET", "/admin/v1/keys?site=web&limit=100000", "", nil, 400, "INVALID_REQUEST"},
		{"revoke unknown key", "POST", "/admin/v1/keys/key_nope/revoke", "", nil, 404, "NOT_FOUND"},
		{"revoke with body", "POST", "/admin/v1/keys/key_nope/revoke", `{"why":"x"}`, nil, 400, "INVALID_REQUEST"},
		{"rotate unknown site", "POST", "/admin/v1/sites/nope/rotate-key", "", nil, 404, "NOT_FOUND"},
		{"rotate bad mode", "POST", "/admin/v1/sites/web/rotate-key", `{"mode":"prod"}`, nil, 400, "INVALID_REQUEST"},
		{"rotate bad grace", "POST", "/admin/v1/sites/web/rotate-key", `{"grace":"soon"}`, nil, 400, "INVALID_REQUEST"},
		{"rotate huge grace", "POST", "/admin/v1/sites/web/rotate-key", `{"grace":"10000h"}`, nil, 400, "INVALID_REQUEST"},
		{"import unknown site", "POST", "/admin/v1/keys/import", `{"site":"nope","mode":"live","key":"legacy-key-0123456789"}`, nil, 404, "NOT_FOUND"},
		{"import bad mode", "POST", "/admin/v1/keys/import", `{"site":"web","mode":"x","key":"legacy-key-0123456789"}`, nil, 400, "INVALID_REQUEST"},
		{"import short key", "POST", "/admin/v1/keys/import", `{"site":"web","mode":"live","key":"short"}`, nil, 400, "INVALID_REQUEST"},
		{"import no key", "POST", "/admin/v1/keys/import", `{"site":"web","mode":"live"}`, nil, 400, "INVALID_REQUEST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := f.call(tc.method, tc.path, tc.body, tc.auth...)
			if a.status != tc.status || a.body["code"] != tc.code {
				t.Errorf("status %d code %v, want %d %s: %s", a.status, a.body["code"], tc.status, tc.code, a.raw)
			}
			if msg, _ := a.body["message"].(string); msg == "" || strings.Contains(msg, "keystore:") {
				t.Errorf("message %q", msg)
			}
		})
	}
}

// A store that is gone answers 503 STORE_UNAVAILABLE, not 500.
func TestStoreUnavailable(t *testing.T) {
	f := seededFixture(t)
	f.store.Close()
	a := f.call("POST", "/admin/v1/keys", `{"site":"web","mode":"live"}`)
	if a.status != 503 || a.body["code"] != "STORE_UNAVAILABLE" {
		t.Errorf("closed store: %d %s", a.status, a.raw)
	}
}
