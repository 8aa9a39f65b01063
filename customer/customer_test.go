package customer_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/customer"
	"github.com/keygate/keygate/internal/apitest"
	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/session"
	"github.com/keygate/keygate/session/sessiontest"
)

const (
	iss = "https://id.example.com/"
	aud = "dashboard"
)

type fixture struct {
	t     testing.TB
	srv   *httptest.Server
	mux   *http.ServeMux
	store *keystore.Store
	key   *sessiontest.Key
}

func newFixture(t testing.TB, tune func(*customer.Handler)) *fixture {
	t.Helper()
	ctx := context.Background()
	st, _ := storetest.Open(t, nil)
	for _, acc := range []string{"acc_a", "acc_b"} {
		if _, err := st.CreateAccount(ctx, keystore.Account{ID: acc, Plan: "pro"}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateSite(ctx, keystore.Site{ID: "site_" + acc[4:], AccountID: acc, Active: true}); err != nil {
			t.Fatal(err)
		}
	}
	k, err := sessiontest.NewKey("k1", "ES256")
	if err != nil {
		t.Fatal(err)
	}
	idp := &sessiontest.Provider{}
	idp.SetKeys(k)
	jwks := httptest.NewServer(idp)
	t.Cleanup(jwks.Close)
	v, err := session.NewVerifier(session.Config{Issuer: iss, Audience: aud, RoleClaim: "role"}, &session.KeySet{Source: jwks.URL})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	lim, err := limits.New(limits.Config{Quotas: st, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	h := &customer.Handler{Store: st, Sessions: v, Limits: lim, Log: log, WritesPerMinute: 600}
	if tune != nil {
		tune(h)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &fixture{t: t, srv: srv, mux: mux, store: st, key: k}
}

func (f *fixture) token(account, role string) string {
	c := sessiontest.Claims(iss, aud, "user-"+account, account, time.Now(), time.Hour)
	if role != "" {
		c["role"] = role
	}
	tok, err := f.key.Sign(c)
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (f *fixture) do(method, path, body string, header ...string) answer {
	f.t.Helper()
	res, raw := apitest.Do(f.t, f.srv.URL, method, path, body, header...)
	a := answer{status: res.StatusCode, header: res.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// as calls with account's owner session.
func (f *fixture) as(account, method, path, body string) answer {
	return f.do(method, path, body, "Authorization", "Bearer "+f.token(account, "owner"))
}

func (f *fixture) mustKey(site string) keystore.Key {
	f.t.Helper()
	k, _, err := f.store.CreateKey(context.Background(), keystore.KeySpec{SiteID: site, Mode: keystore.ModeLive, Name: "b"})
	if err != nil {
		f.t.Fatal(err)
	}
	return k
}

func TestOwnKeys(t *testing.T) {
	f := newFixture(t, nil)
	created := f.as("acc_a", "POST", "/v1/api-keys", `{"site":"site_a","mode":"test","name":"ci"}`)
	if created.status != 201 || !strings.HasPrefix(created.body["key"].(string), "kg_test_") {
		t.Fatalf("create: %d %s", created.status, created.raw)
	}
	secret, id := created.body["key"].(string), created.body["id"].(string)
	list := f.as("acc_a", "GET", "/v1/api-keys", "")
	if list.status != 200 || strings.Contains(list.raw, secret) || strings.Contains(list.raw, `"key"`) {
		t.Fatalf("list shows a secret or failed: %d %s", list.status, list.raw)
	}
	for _, field := range []string{"id", "name", "site", "mode", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at"} {
		if !strings.Contains(list.raw, `"`+field+`"`) {
			t.Errorf("listing lacks %q: %s", field, list.raw)
		}
	}
	if got := f.as("acc_a", "GET", "/v1/api-keys?site=site_a", ""); len(got.body["keys"].([]any)) != 1 {
		t.Fatalf("site listing: %s", got.raw)
	}
	if got := f.as("acc_a", "POST", "/v1/api-keys/"+id+"/revoke", ""); got.status != 200 || got.body["revoked_at"] == nil {
		t.Fatalf("revoke: %d %s", got.status, got.raw)
	}
	f.mustKey("site_a")
	rot := f.as("acc_a", "POST", "/v1/sites/site_a/rotate-key", `{"name":"rotated"}`)
	if rot.status != 201 || rot.body["key"] == nil || len(rot.body["revoked"].([]any)) != 1 {
		t.Fatalf("rotate: %d %s", rot.status, rot.raw)
	}
	usage := f.as("acc_a", "GET", "/v1/usage?month=2026-11", "")
	if usage.status != 200 || len(usage.body["usage"].([]any)) != 1 || !strings.Contains(usage.raw, `"site":"site_a"`) {
		t.Fatalf("usage: %d %s", usage.status, usage.raw)
	}
	if got := f.as("acc_a", "GET", "/v1/api-keys", ""); len(got.body["keys"].([]any)) != 3 {
		t.Fatalf("after rotation: %s", got.raw)
	}
}

func TestAccountBoundary(t *testing.T) {
	f := newFixture(t, nil)
	theirs := f.mustKey("site_b")
	missing := f.as("acc_a", "POST", "/v1/api-keys/key_doesnotexist/revoke", "")
	if missing.status != 404 {
		t.Fatalf("missing id: %d %s", missing.status, missing.raw)
	}
	for name, a := range map[string]answer{
		"revoke B's key":       f.as("acc_a", "POST", "/v1/api-keys/"+theirs.ID+"/revoke", ""),
		"create on B's site":   f.as("acc_a", "POST", "/v1/api-keys", `{"site":"site_b","mode":"live"}`),
		"rotate B's site":      f.as("acc_a", "POST", "/v1/sites/site_b/rotate-key", ""),
		"list B's site":        f.as("acc_a", "GET", "/v1/api-keys?site=site_b", ""),
		"B's usage":            f.as("acc_a", "GET", "/v1/usage?site=site_b", ""),
		"missing site":         f.as("acc_a", "POST", "/v1/sites/nope/rotate-key", ""),
		"missing site listing": f.as("acc_a", "GET", "/v1/api-keys?site=nope", ""),
	} {
		if a.status != 404 || a.raw != missing.raw {
			t.Errorf("%s: %d %s; want the missing-id answer %s", name, a.status, a.raw, missing.raw)
		}
	}
	if list := f.as("acc_a", "GET", "/v1/api-keys", ""); strings.Contains(list.raw, theirs.ID) {
		t.Fatalf("A's listing shows B's key: %s", list.raw)
	}
	k, err := f.store.Key(context.Background(), theirs.ID)
	if err != nil || k.RevokedAt != nil {
		t.Fatalf("B's key after A's attempts: %+v %v", k, err)
	}
	if keys, _ := f.store.Keys(context.Background(), "site_b", "", 10); len(keys) != 1 {
		t.Fatalf("B's site has %d keys after A's attempts", len(keys))
	}
}

func TestSessionRefusals(t *testing.T) {
	f := newFixture(t, nil)
	good := f.token("acc_a", "")
	unauthorized := f.do("GET", "/v1/api-keys", "")
	for name, hdr := range map[string][]string{
		"unknown account":      {"Authorization", "Bearer " + f.token("acc_zz", "")},
		"cookie only":          {"Cookie", "session=" + good},
		"basic":                {"Authorization", "Basic " + good},
		"two bearer headers":   {"Authorization", "Bearer " + good, "Authorization", "Bearer " + good},
		"garbage":              {"Authorization", "Bearer abc.def.ghi"},
		"bearer without token": {"Authorization", "Bearer "},
	} {
		a := f.do("GET", "/v1/api-keys", "", hdr...)
		if a.status != 401 || a.body["code"] != "INVALID_TOKEN" || a.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %s", name, a.status, a.raw)
		}
		if a.body["message"] != unauthorized.body["message"] {
			t.Errorf("%s: message %q says more than a missing token's", name, a.body["message"])
		}
	}
}

func TestViewerReadsOnly(t *testing.T) {
	f := newFixture(t, nil)
	viewer := []string{"Authorization", "Bearer " + f.token("acc_a", "viewer")}
	if a := f.do("GET", "/v1/api-keys", "", viewer...); a.status != 200 {
		t.Fatalf("viewer list: %d %s", a.status, a.raw)
	}
	a := f.do("POST", "/v1/api-keys", `{"site":"site_a","mode":"live"}`, viewer...)
	if a.status != 403 || a.body["code"] != "INSUFFICIENT_SCOPE" {
		t.Fatalf("viewer create: %d %s", a.status, a.raw)
	}
	if keys, _ := f.store.Keys(context.Background(), "site_a", "", 10); len(keys) != 0 {
		t.Fatal("a viewer created a key")
	}
}

func TestWritesAreRateLimitedPerAccount(t *testing.T) {
	f := newFixture(t, func(h *customer.Handler) { h.WritesPerMinute = 3 })
	for i := range 3 {
		if a := f.as("acc_a", "POST", "/v1/api-keys", `{"site":"site_a","mode":"live"}`); a.status != 201 {
			t.Fatalf("write %d: %d %s", i, a.status, a.raw)
		}
	}
	a := f.as("acc_a", "POST", "/v1/api-keys", `{"site":"site_a","mode":"live"}`)
	if a.status != 429 || a.body["code"] != "RATE_LIMITED" || a.header.Get("Retry-After") == "" {
		t.Fatalf("4th write: %d %s", a.status, a.raw)
	}
	if a := f.as("acc_a", "GET", "/v1/api-keys", ""); a.status != 200 {
		t.Fatalf("reads are not limited: %d", a.status)
	}
	if a := f.as("acc_b", "POST", "/v1/api-keys", `{"site":"site_b","mode":"live"}`); a.status != 201 {
		t.Fatalf("another account's write: %d %s", a.status, a.raw)
	}
}

func TestBadRequests(t *testing.T) {
	f := newFixture(t, nil)
	for name, body := range map[string]string{
		"no body":       "",
		"unknown field": `{"site":"site_a","mode":"live","scopes":["x"]}`,
		"bad mode":      `{"site":"site_a","mode":"prod"}`,
		"past expiry":   `{"site":"site_a","mode":"live","expires_at":"2001-01-01T00:00:00Z"}`,
		"trailing":      `{"site":"site_a","mode":"live"} {}`,
		"huge":          `{"site":"site_a","mode":"live","name":"` + strings.Repeat("x", 5000) + `"}`,
	} {
		if a := f.as("acc_a", "POST", "/v1/api-keys", body); a.status != 400 || a.body["code"] != "INVALID_REQUEST" {
			t.Errorf("%s: %d %s", name, a.status, a.raw)
		}
	}
	if a := f.as("acc_a", "GET", "/v1/usage?month=11-2026", ""); a.status != 400 {
		t.Errorf("bad month: %d", a.status)
	}
}

func TestCORS(t *testing.T) {
	off := newFixture(t, nil)
	a := off.do("OPTIONS", "/v1/api-keys", "", "Origin", "https://dash.example.com", "Access-Control-Request-Method", "POST")
	if a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS answered without configured origins")
	}
	on := newFixture(t, func(h *customer.Handler) { h.Origins = []string{"https://dash.example.com"} })
	a = on.do("OPTIONS", "/v1/api-keys", "", "Origin", "https://dash.example.com", "Access-Control-Request-Method", "POST")
	if a.status != 204 || a.header.Get("Access-Control-Allow-Origin") != "https://dash.example.com" ||
		a.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("preflight: %d %v", a.status, a.header)
	}
	a = on.do("GET", "/v1/api-keys", "", "Origin", "https://evil.example.com", "Authorization", "Bearer "+on.token("acc_a", ""))
	if a.status != 200 || a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("other origin: %d %v", a.status, a.header)
	}
}

func TestValidatePrefix(t *testing.T) {
	for p, ok := range map[string]bool{"/v1": true, "/dashboard/api": true, "": true,
		"v1": false, "/v1/": false, "/ext-authz": false, "/auth": false, "/auth/x": false, "/health": false, "/a//b": false, "/a/../b": false, "/a b": false} {
		if err := customer.ValidatePrefix(p); (err == nil) != ok {
			t.Errorf("ValidatePrefix(%q) = %v", p, err)
		}
	}
}

// forgotten records what the handler drops from this replica's cache.
type forgotten struct {
	mu  sync.Mutex
	ids []string
}

func (f *forgotten) Invalidate(e keystore.Entity, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids = append(f.ids, string(e)+":"+id)
}

func TestRevocationsLeaveTheLocalCacheAtOnce(t *testing.T) {
	cache := &forgotten{}
	f := newFixture(t, func(h *customer.Handler) { h.Cache = cache })
	k1, k2 := f.mustKey("site_a"), f.mustKey("site_a")
	if a := f.as("acc_a", "POST", "/v1/api-keys/"+k1.ID+"/revoke", ""); a.status != 200 {
		t.Fatalf("revoke: %d %s", a.status, a.raw)
	}
	if a := f.as("acc_a", "POST", "/v1/sites/site_a/rotate-key", ""); a.status != 201 {
		t.Fatalf("rotate: %d %s", a.status, a.raw)
	}
	theirs := f.mustKey("site_b")
	f.as("acc_a", "POST", "/v1/api-keys/"+theirs.ID+"/revoke", "")
	want := []string{"key:" + k1.ID, "key:" + k2.ID}
	if strings.Join(cache.ids, ",") != strings.Join(want, ",") {
		t.Fatalf("invalidated %v, want %v", cache.ids, want)
	}
}
