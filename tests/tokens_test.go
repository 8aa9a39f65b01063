package tests

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
)

// exchangeResponse is one answer of the token exchange.
type exchangeResponse struct {
	Status int
	Header http.Header
	Body   map[string]any
}

func (r exchangeResponse) str(name string) string { s, _ := r.Body[name].(string); return s }

// ExchangePost sends one request to the token exchange on the server's HTTP port.
func (s *Server) ExchangePost(t *testing.T, path, contentType, body string, headers map[string]string) exchangeResponse {
	t.Helper()
	typ := map[string]string{}
	if contentType != "" {
		typ["content-type"] = contentType
	}
	var out exchangeResponse
	var raw []byte
	out.Status, out.Header, raw = send(t, "POST", "http://"+s.HTTPAddr+path, body, typ, headers)
	if err := json.Unmarshal(raw, &out.Body); err != nil {
		t.Fatalf("POST %s: %d with a non-JSON body %q", path, out.Status, raw)
	}
	return out
}

// MintTokens trades a key for a pair and fails the test unless it gets one.
func (s *Server) MintTokens(t *testing.T, key string) (access, refresh string) {
	t.Helper()
	r := s.ExchangePost(t, "/auth/api-key", "application/json", `{"apiKey":"`+key+`"}`, nil)
	return wantTokenPair(t, r)
}

// RefreshTokens redeems a refresh token and returns the response.
func (s *Server) RefreshTokens(t *testing.T, refresh string) exchangeResponse {
	t.Helper()
	return s.ExchangePost(t, "/auth/refresh", "application/json", `{"refreshToken":"`+refresh+`"}`, nil)
}

func wantTokenPair(t *testing.T, r exchangeResponse) (access, refresh string) {
	t.Helper()
	if r.Status != 200 || r.str("token_type") != "Bearer" || r.str("access_token") == "" || r.str("refresh_token") == "" {
		t.Fatalf("want a token pair, got %d %v", r.Status, r.Body)
	}
	if r.Header.Get("cache-control") != "no-store" {
		t.Errorf("token response without cache-control: no-store: %v", r.Header)
	}
	return r.str("access_token"), r.str("refresh_token")
}

func wantExchangeError(t *testing.T, what string, r exchangeResponse, status int, code string) {
	t.Helper()
	if r.Status != status || r.str("code") != code || r.str("message") == "" {
		t.Fatalf("%s: got %d %v, want %d {code: %s, message}", what, r.Status, r.Body, status, code)
	}
	if ct := r.Header.Get("content-type"); ct != "application/json" {
		t.Fatalf("%s: content-type %q", what, ct)
	}
}

// checkOutcome reads a CheckResponse as (status, code, upstream headers).
func checkOutcome(resp *authv3.CheckResponse) (int, string, map[string]string) {
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		up := map[string]string{}
		for _, h := range resp.GetOkResponse().GetHeaders() {
			up[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		return 200, "OK", up
	}
	var body struct{ Code string }
	_ = json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body)
	return int(resp.GetDeniedResponse().GetStatus().GetCode()), body.Code, nil
}

func checkAuth(t *testing.T, srv *Server, authorization string) (int, string, map[string]string) {
	t.Helper()
	return checkOutcome(srv.Check(t, "GET", "/v1/videos", map[string]string{"authorization": authorization}))
}

// tokenEnv is an account on plan pro with one site.
func tokenEnv(t *testing.T) *Env {
	env := NewEnv(t)
	env.Seed("acme", "pro", "web")
	return env
}

// newTokenKey creates a key and returns it with its id.
func newTokenKey(t *testing.T, env *Env, site, mode string) (key, id string) {
	t.Helper()
	var created struct{ ID, Key string }
	out := env.CLI("keys", "create", "--site", site, "--mode", mode, "--json")
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ID == "" || created.Key == "" {
		t.Fatalf("keys create --json: %v: %s", err, out)
	}
	return created.Key, created.ID
}

// TestTokenMintUseRefresh: every way to send the key mints; the access
// token is accepted as Bearer and bare (seed 001); refresh rotates; reuse
// of a used refresh token is refused and kills the family.
func TestTokenMintUseRefresh(t *testing.T) {
	env := tokenEnv(t)
	key, id := newTokenKey(t, env, "web", "live")
	// No retry grace: presenting a used token again at once is reuse here
	// (the grace is tested in extauthz with a clock).
	srv := env.Serve("--refresh-grace=0")

	basic := base64.StdEncoding.EncodeToString([]byte(key + ":"))
	for name, r := range map[string]exchangeResponse{
		"json body":        srv.ExchangePost(t, "/auth/api-key", "application/json", `{"apiKey":"`+key+`"}`, nil),
		"json and charset": srv.ExchangePost(t, "/auth/api-key", "application/json; charset=utf-8", `{"apiKey":"`+key+`"}`, nil),
		"basic username":   srv.ExchangePost(t, "/auth/api-key", "", "", map[string]string{"authorization": "Basic " + basic}),
		"bearer":           srv.ExchangePost(t, "/auth/api-key", "", "", map[string]string{"authorization": "Bearer " + key}),
		"x-api-key":        srv.ExchangePost(t, "/auth/api-key", "", "", map[string]string{"x-api-key": key}),
		"body and header":  srv.ExchangePost(t, "/auth/api-key", "application/json", `{"apiKey":"`+key+`"}`, map[string]string{"x-api-key": key}),
	} {
		t.Run(name, func(t *testing.T) {
			access, _ := wantTokenPair(t, r)
			if r.Body["expires_in"] != float64(3600) {
				t.Errorf("expires_in %v, want 3600", r.Body["expires_in"])
			}
			if !strings.HasPrefix(access, "kg_at_") || strings.HasPrefix(access, "kg_live_") {
				t.Errorf("access token %q does not look like one", access[:10])
			}
		})
	}

	access, refresh := srv.MintTokens(t, key)
	for _, header := range []string{"Bearer " + access, "bearer " + access, access} {
		status, code, up := checkAuth(t, srv, header)
		if status != 200 || up["x-keygate-key-id"] != id || up["x-keygate-mode"] != "live" || up["x-keygate-site"] != "web" {
			t.Fatalf("Check with %q…: %d %s %v", header[:12], status, code, up)
		}
	}
	// HTTP forward-auth (Envoy http_service convention) takes tokens too.
	status, header, _ := send(t, "GET", "http://"+srv.HTTPAddr+"/ext-authz/v1/videos", "", bearer(access))
	if status != 200 || header.Get("x-keygate-key-id") != id {
		t.Fatalf("forward-auth with a token: %d %v", status, header)
	}
	// Only the token format may go bare; a bare key stays malformed.
	if status, code, _ := checkAuth(t, srv, key); status != 401 || code != "INVALID_API_KEY" {
		t.Fatalf("bare key: %d %s, want 401 INVALID_API_KEY", status, code)
	}

	access2, refresh2 := wantTokenPair(t, srv.RefreshTokens(t, refresh))
	if access2 == access || refresh2 == refresh {
		t.Fatal("refresh returned the same tokens")
	}
	if status, _, up := checkAuth(t, srv, "Bearer "+access2); status != 200 || up["x-keygate-key-id"] != id {
		t.Fatalf("refreshed token: %d %v", status, up)
	}
	// The refreshed-away token is dead: presenting it is reuse...
	wantExchangeError(t, "reused refresh token", srv.RefreshTokens(t, refresh), 401, "INVALID_TOKEN")
	// ...which revoked the family: the live successor is dead too.
	wantExchangeError(t, "family after reuse", srv.RefreshTokens(t, refresh2), 401, "INVALID_TOKEN")
	// Access tokens are not refresh tokens and the reverse.
	wantExchangeError(t, "access token as refresh token", srv.RefreshTokens(t, access2), 401, "INVALID_TOKEN")
	if status, code, _ := checkAuth(t, srv, "Bearer "+refresh2); status != 401 || code != "INVALID_API_KEY" {
		t.Fatalf("refresh token on Check: %d %s", status, code)
	}
	// An access token cannot mint.
	wantExchangeError(t, "mint with an access token", srv.ExchangePost(t, "/auth/api-key", "", "", map[string]string{"authorization": "Bearer " + access2}), 401, "INVALID_API_KEY")
}

// TestTokenRemintKillsRefresh is seed 002's rule: sending the API key again
// ends the refresh token of the previous pair.
func TestTokenRemintKillsRefresh(t *testing.T) {
	env := tokenEnv(t)
	key := env.NewKey("web", "live")
	srv := env.Serve()
	_, first := srv.MintTokens(t, key)
	access, second := srv.MintTokens(t, key)
	wantExchangeError(t, "refresh token of the previous mint", srv.RefreshTokens(t, first), 401, "INVALID_TOKEN")
	// Presenting a dead token is reuse: the newest family is revoked too.
	wantExchangeError(t, "current refresh token after reuse", srv.RefreshTokens(t, second), 401, "INVALID_TOKEN")
	// Access tokens still live until they expire or their key dies.
	if status, code, _ := checkAuth(t, srv, "Bearer "+access); status != 200 {
		t.Fatalf("access token after its refresh family died: %d %s", status, code)
	}
	_, third := srv.MintTokens(t, key)
	wantTokenPair(t, srv.RefreshTokens(t, third))
}

// TestTokenTestMode: a test key mints test-mode tokens.
func TestTokenTestMode(t *testing.T) {
	env := tokenEnv(t)
	key := env.NewKey("web", "test")
	srv := env.Serve()
	access, refresh := srv.MintTokens(t, key)
	if _, _, up := checkAuth(t, srv, "Bearer "+access); up["x-keygate-mode"] != "test" {
		t.Fatalf("test key's token: upstream headers %v, want x-keygate-mode test", up)
	}
	access, _ = wantTokenPair(t, srv.RefreshTokens(t, refresh))
	if _, _, up := checkAuth(t, srv, "Bearer "+access); up["x-keygate-mode"] != "test" {
		t.Fatalf("refreshed test token: upstream headers %v", up)
	}
	// keygate check explains token decisions too, reading the same keys.
	var explained struct {
		Allow    bool
		Upstream map[string]string `json:"upstream_headers"`
		Limits   []struct{ Kind, Key string }
	}
	out := env.CLI("check", "--path", "/v1/videos", "-H", "Authorization: Bearer "+access)
	if err := json.Unmarshal([]byte(out), &explained); err != nil || !explained.Allow || explained.Upstream["x-keygate-mode"] != "test" {
		t.Fatalf("keygate check with a token: %v: %s", err, out)
	}
	// The counters it would charge are named as serve charges them: the
	// policy's "key:{key}:test" with the key's id filled in.
	id := explained.Upstream["x-keygate-key-id"]
	if len(explained.Limits) == 0 || id == "" || explained.Limits[0].Key != "key:"+id+":test" {
		t.Fatalf("keygate check's limits %+v (key %q): %s", explained.Limits, id, out)
	}
}

// TestTokenDiesWithKey: revoking or rotating the key ends its live access
// tokens on the next Check (via the change log), and its refresh tokens.
func TestTokenDiesWithKey(t *testing.T) {
	env := tokenEnv(t)
	env.CLI("sites", "create", "--id", "other", "--account", "acme")
	revoked, id := newTokenKey(t, env, "web", "live")
	rotated := env.NewKey("other", "live")
	srv := env.Serve()
	revokedAccess, revokedRefresh := srv.MintTokens(t, revoked)
	rotatedAccess, rotatedRefresh := srv.MintTokens(t, rotated)
	for _, a := range []string{revokedAccess, rotatedAccess} {
		if status, code, _ := checkAuth(t, srv, "Bearer "+a); status != 200 {
			t.Fatalf("before revocation: %d %s", status, code)
		}
	}

	env.CLI("keys", "revoke", id)
	env.CLI("sites", "rotate-key", "--id", "other")
	for name, a := range map[string]string{"revoked": revokedAccess, "rotated": rotatedAccess} {
		Eventually(t, 5*time.Second, name+" key's token refused", func() bool {
			status, code, _ := checkAuth(t, srv, "Bearer "+a)
			return status == 401 && code == "API_KEY_REVOKED"
		})
	}
	wantExchangeError(t, "refresh of a revoked key", srv.RefreshTokens(t, revokedRefresh), 401, "API_KEY_REVOKED")
	wantExchangeError(t, "refresh of a rotated key", srv.RefreshTokens(t, rotatedRefresh), 401, "API_KEY_REVOKED")
	wantExchangeError(t, "mint with a revoked key", srv.ExchangePost(t, "/auth/api-key", "application/json", `{"apiKey":"`+revoked+`"}`, nil), 401, "API_KEY_REVOKED")
}

// TestTokenRefused: tampered, foreign and expired tokens.
func TestTokenRefused(t *testing.T) {
	env := tokenEnv(t)
	key := env.NewKey("web", "live")
	srv := env.Serve("--token-ttl", "1s")
	access, _ := srv.MintTokens(t, key)

	// A token signed by another deployment's keys (another store).
	other := tokenEnv(t)
	foreignKey := other.NewKey("web", "live")
	foreign, _ := other.Serve().MintTokens(t, foreignKey)

	dot := strings.LastIndexByte(access, '.')
	// Change one payload character to another base64url one, so the token
	// stays well-formed and only the signature can tell.
	tampered := []byte(access)
	tampered[dot-10] = map[bool]byte{true: 'B', false: 'A'}[tampered[dot-10] == 'A']
	for name, tok := range map[string]string{
		"tampered payload":  string(tampered),
		"stripped sig":      access[:dot],
		"foreign signature": foreign,
		"garbage":           "kg_at_AAAA.BBBB",
	} {
		// The 1s token may expire while this runs; a bad one must still
		// never pass, and never read as merely expired.
		if status, code, _ := checkAuth(t, srv, "Bearer "+tok); status != 401 || code != "INVALID_TOKEN" {
			t.Errorf("%s: %d %s, want 401 INVALID_TOKEN", name, status, code)
		}
	}
	Eventually(t, 10*time.Second, "the 1s token to expire", func() bool {
		status, code, _ := checkAuth(t, srv, "Bearer "+access)
		return status == 401 && code == "TOKEN_EXPIRED"
	})
}

// TestTokenReplicas: two servers on one store share the signing keys and
// the refresh tokens, on SQLite and on PostgreSQL. On PostgreSQL the
// database is then cut off: the exchange answers 503 and consumes nothing,
// and access tokens of cached keys keep working, since they are verified
// without a store round trip.
func TestTokenReplicas(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			env, db := NewEnv(t), (*proxy)(nil)
			if backend == "postgres" {
				env, db = postgresOutageEnv(t)
				// PostgreSQL replicas share a token secret (none: no exchange).
				env.Vars = append(env.Vars, "KEYGATE_TOKEN_SECRET=replicas-share-this-secret-0123")
			}
			env.Seed("acme", "pro", "web")
			key := env.NewKey("web", "live")
			a, b := env.Serve(), env.Serve()

			access, refresh := a.MintTokens(t, key)
			if status, code, _ := checkAuth(t, b, "Bearer "+access); status != 200 {
				t.Fatalf("replica b refused replica a's token: %d %s", status, code)
			}
			wantTokenPair(t, b.RefreshTokens(t, refresh))
			wantExchangeError(t, "reuse on the other replica", a.RefreshTokens(t, refresh), 401, "INVALID_TOKEN")
			if db == nil {
				return
			}

			access, refresh = a.MintTokens(t, key)
			db.Down()
			wantExchangeError(t, "mint with the store down", a.ExchangePost(t, "/auth/api-key", "application/json", `{"apiKey":"`+key+`"}`, nil), 503, "AUTHZ_UNAVAILABLE")
			wantExchangeError(t, "refresh with the store down", a.RefreshTokens(t, refresh), 503, "AUTHZ_UNAVAILABLE")
			if status, code, _ := checkAuth(t, a, "Bearer "+access); status != 200 {
				t.Fatalf("access token of a cached key with the store down: %d %s", status, code)
			}
			db.Up()
			Eventually(t, 30*time.Second, "the exchange to recover", func() bool {
				return a.RefreshTokens(t, refresh).Status == 200
			})
		})
	}
}

// TestTokenBadInput: every malformed request gets a 400 or the 401 that
// Check would give, with the JSON error shape.
func TestTokenBadInput(t *testing.T) {
	env := tokenEnv(t)
	env.CLI("sites", "create", "--id", "off", "--account", "acme", "--inactive")
	key := env.NewKey("web", "live")
	other := env.NewKey("web", "live")
	inactive := env.NewKey("off", "live")
	srv := env.Serve("--token-failure-burst", "1000")
	bad := key[:len(key)-1] + "A" // checksum off by one character
	if strings.HasSuffix(key, "A") {
		bad = key[:len(key)-1] + "B"
	}
	cases := []struct {
		name, path, ctype, body string
		headers                 map[string]string
		status                  int
		code                    string
	}{
		{"no content type", "/auth/api-key", "", `{"apiKey":"` + key + `"}`, nil, 400, "INVALID_REQUEST"},
		{"form content type", "/auth/api-key", "application/x-www-form-urlencoded", "apiKey=" + key, nil, 400, "INVALID_REQUEST"},
		{"malformed json", "/auth/api-key", "application/json", `{"apiKey":`, nil, 400, "INVALID_REQUEST"},
		{"trailing data", "/auth/api-key", "application/json", `{"apiKey":"` + key + `"} x`, nil, 400, "INVALID_REQUEST"},
		{"json array", "/auth/api-key", "application/json", `["` + key + `"]`, nil, 400, "INVALID_REQUEST"},
		{"oversized", "/auth/api-key", "application/json", `{"apiKey":"` + key + `","pad":"` + strings.Repeat("x", 5000) + `"}`, nil, 400, "INVALID_REQUEST"},
		{"missing field", "/auth/api-key", "application/json", `{"key":"` + key + `"}`, nil, 400, "INVALID_REQUEST"},
		{"null field", "/auth/api-key", "application/json", `{"apiKey":null}`, nil, 400, "INVALID_REQUEST"},
		{"number field", "/auth/api-key", "application/json", `{"apiKey":42}`, nil, 400, "INVALID_REQUEST"},
		{"empty field", "/auth/api-key", "application/json", `{"apiKey":""}`, nil, 400, "INVALID_REQUEST"},
		{"no key at all", "/auth/api-key", "", "", nil, 401, "MISSING_API_KEY"},
		{"bad checksum", "/auth/api-key", "application/json", `{"apiKey":"` + bad + `"}`, nil, 401, "INVALID_API_KEY"},
		{"not a key", "/auth/api-key", "application/json", `{"apiKey":"hello world"}`, nil, 401, "INVALID_API_KEY"},
		{"control bytes", "/auth/api-key", "application/json", `{"apiKey":"kg_live_\u0000"}`, nil, 401, "INVALID_API_KEY"},
		{"two different keys", "/auth/api-key", "application/json", `{"apiKey":"` + key + `"}`, map[string]string{"x-api-key": other}, 400, "AMBIGUOUS_CREDENTIALS"},
		{"inactive site", "/auth/api-key", "application/json", `{"apiKey":"` + inactive + `"}`, nil, 401, "SITE_INACTIVE"},
		{"refresh without body", "/auth/refresh", "application/json", "", nil, 400, "INVALID_REQUEST"},
		{"refresh wrong type", "/auth/refresh", "text/plain", `{"refreshToken":"x"}`, nil, 400, "INVALID_REQUEST"},
		{"refresh missing field", "/auth/refresh", "application/json", `{"refresh_token":"x"}`, nil, 400, "INVALID_REQUEST"},
		{"refresh garbage", "/auth/refresh", "application/json", `{"refreshToken":"nope"}`, nil, 401, "INVALID_TOKEN"},
		{"refresh unknown", "/auth/refresh", "application/json", `{"refreshToken":"kg_rt_` + strings.Repeat("A", 43) + `"}`, nil, 401, "INVALID_TOKEN"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantExchangeError(t, tc.name, srv.ExchangePost(t, tc.path, tc.ctype, tc.body, tc.headers), tc.status, tc.code)
		})
	}
	// A wrong method gets the JSON shape too.
	resp, err := http.Get("http://" + srv.HTTPAddr + "/auth/api-key")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("allow") != "POST" || resp.Header.Get("content-type") != "application/json" {
		t.Fatalf("GET /auth/api-key: %d %v", resp.StatusCode, resp.Header)
	}
	// None of it stopped the good key from minting.
	srv.MintTokens(t, key)
}

// TestTokenThrottle: after the burst of failures a client is refused with
// 429 and Retry-After, even with a good key, so guesses cannot be checked.
func TestTokenThrottle(t *testing.T) {
	env := tokenEnv(t)
	key := env.NewKey("web", "live")
	srv := env.Serve("--token-failure-burst", "3")
	srv.MintTokens(t, key) // successes do not count
	for i := range 3 {
		wantExchangeError(t, "guess", srv.ExchangePost(t, "/auth/api-key", "application/json", `{"apiKey":"kg_live_guess`+string(rune('a'+i))+`"}`, nil), 401, "INVALID_API_KEY")
	}
	r := srv.ExchangePost(t, "/auth/api-key", "application/json", `{"apiKey":"`+key+`"}`, nil)
	wantExchangeError(t, "throttled good key", r, 429, "RATE_LIMITED")
	if ra := r.Header.Get("retry-after"); ra == "" || ra == "0" {
		t.Fatalf("429 without a useful Retry-After: %q", ra)
	}
	wantExchangeError(t, "throttled refresh", srv.RefreshTokens(t, "kg_rt_x"), 429, "RATE_LIMITED")
	for name, want := range map[string]float64{
		`keygate_token_exchange_total{code="OK",endpoint="api_key"}`:              1,
		`keygate_token_exchange_total{code="INVALID_API_KEY",endpoint="api_key"}`: 3,
		`keygate_token_exchange_total{code="RATE_LIMITED",endpoint="api_key"}`:    1,
		`keygate_token_exchange_total{code="RATE_LIMITED",endpoint="refresh"}`:    1,
	} {
		if got := srv.Metric(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// Check itself is not throttled by the exchange.
	if status, code, _ := checkAuth(t, srv, "Bearer "+key); status != 200 {
		t.Fatalf("Check while the exchange throttles: %d %s", status, code)
	}
}
