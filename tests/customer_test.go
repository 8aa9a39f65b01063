package tests

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/session/sessiontest"
)

const (
	sessionIssuer   = "https://id.example.test/"
	sessionAudience = "keygate-dashboard"
)

// identityProvider is the platform's IdP as the customer API sees it: a
// JWKS over HTTP with an RSA and an EC key.
type identityProvider struct {
	t       *testing.T
	rsa, ec *sessiontest.Key
	jwks    *sessiontest.Provider
	url     string
}

func newIdentityProvider(t *testing.T) *identityProvider {
	t.Helper()
	idp := &identityProvider{t: t, jwks: &sessiontest.Provider{}}
	var err error
	if idp.rsa, err = sessiontest.NewKey("rsa-1", "RS256"); err != nil {
		t.Fatal(err)
	}
	if idp.ec, err = sessiontest.NewKey("ec-1", "ES256"); err != nil {
		t.Fatal(err)
	}
	idp.jwks.SetKeys(idp.rsa, idp.ec)
	srv := httptest.NewServer(idp.jwks)
	t.Cleanup(srv.Close)
	idp.url = srv.URL + "/.well-known/jwks.json"
	return idp
}

// flags are the serve flags that turn the customer API on against this IdP.
func (idp *identityProvider) flags() []string {
	return []string{"--session-jwks", idp.url, "--session-issuer", sessionIssuer, "--session-audience", sessionAudience,
		"--session-role-claim", "role", "--session-jwks-min-refresh", "1s"}
}

func (idp *identityProvider) claims(account string) map[string]any {
	c := sessiontest.Claims(sessionIssuer, sessionAudience, "user@"+account, account, time.Now(), 10*time.Minute)
	c["role"] = "owner"
	return c
}

func (idp *identityProvider) sign(k *sessiontest.Key, claims map[string]any) string {
	idp.t.Helper()
	tok, err := k.Sign(claims)
	if err != nil {
		idp.t.Fatal(err)
	}
	return tok
}

// customerCall is one customer API answer.
type customerCall struct {
	status int
	body   map[string]any
	raw    string
}

// Customer calls the customer API on s's HTTP port with a session token.
func (s *Server) Customer(t *testing.T, token, method, path, body string) customerCall {
	t.Helper()
	auth := map[string]string{}
	if token != "" {
		auth["Authorization"] = "Bearer " + token
	}
	status, _, raw := send(t, method, "http://"+s.HTTPAddr+path, body, auth)
	c := customerCall{status: status, raw: string(raw)}
	_ = json.Unmarshal(raw, &c.body)
	return c
}

// seedAccounts makes accounts A and B with one site each via the CLI, and
// a key on B's site that A will try to reach.
func seedAccounts(env *Env) (bKey, bKeyID string) {
	env.CLI("accounts", "create", "--id", "acc_a", "--plan", "pro")
	env.CLI("accounts", "create", "--id", "acc_b", "--plan", "pro")
	env.CLI("sites", "create", "--id", "site_a", "--account", "acc_a")
	env.CLI("sites", "create", "--id", "site_b", "--account", "acc_b")
	var created struct{ ID, Key string }
	if err := json.Unmarshal([]byte(env.CLI("keys", "create", "--site", "site_b", "--mode", "live", "--json")), &created); err != nil {
		env.t.Fatal(err)
	}
	return created.Key, created.ID
}

func TestCustomerAPIOffWithoutJWKS(t *testing.T) {
	env := NewEnv(t)
	s := env.Serve()
	if !strings.Contains(s.Logs(), "customer API off") {
		t.Fatalf("start-up does not say the customer API is off:\n%s", s.Logs())
	}
	if got := s.Customer(t, "x.y.z", "GET", "/v1/api-keys", ""); got.status != http.StatusNotFound {
		t.Fatalf("customer API without --session-jwks: %d %s", got.status, got.raw)
	}
}

// TestCustomerAPI: account A manages its keys with its dashboard session
// (RSA and EC tokens), every way of reaching account B is refused without
// effect, the token endpoints and forward-auth keep their paths, and a new
// signing key in the JWKS is picked up.
func TestCustomerAPI(t *testing.T) {
	idp := newIdentityProvider(t)
	env := NewEnv(t)
	bKey, bKeyID := seedAccounts(env)
	s := env.Serve(idp.flags()...)
	a := idp.sign(idp.rsa, idp.claims("acc_a"))
	aEC := idp.sign(idp.ec, idp.claims("acc_a"))

	created := s.Customer(t, a, "POST", "/v1/api-keys", `{"site":"site_a","mode":"live","name":"backend"}`)
	if created.status != 201 {
		t.Fatalf("create: %d %s", created.status, created.raw)
	}
	key, id := created.body["key"].(string), created.body["id"].(string)
	if got := s.decideKey(t, key); got != "allow" {
		t.Fatalf("new key: %s", got)
	}
	list := s.Customer(t, aEC, "GET", "/v1/api-keys?site=site_a", "")
	if list.status != 200 || !strings.Contains(list.raw, id) || strings.Contains(list.raw, key) || strings.Contains(list.raw, `"key"`) {
		t.Fatalf("list (EC session): %d %s", list.status, list.raw)
	}
	if got := s.Customer(t, aEC, "GET", "/v1/usage", ""); got.status != 200 || !strings.Contains(got.raw, `"site_a"`) || strings.Contains(got.raw, "site_b") {
		t.Fatalf("usage: %d %s", got.status, got.raw)
	}
	if got := s.Customer(t, a, "POST", "/v1/api-keys/"+id+"/revoke", ""); got.status != 200 {
		t.Fatalf("revoke: %d %s", got.status, got.raw)
	}
	if got := s.decideKey(t, key); got != "401 API_KEY_REVOKED" {
		t.Fatalf("revoked key: %s", got)
	}
	// The audit trail names the dashboard user behind both writes.
	var trail struct {
		Entries []struct{ Actor, Action string } `json:"entries"`
	}
	if err := json.Unmarshal([]byte(env.CLI("audit", "--target", id, "--json")), &trail); err != nil {
		t.Fatal(err)
	}
	if len(trail.Entries) < 2 {
		t.Fatalf("audit of %s: %+v", id, trail.Entries)
	}
	for _, e := range trail.Entries {
		if e.Actor != "session:user@acc_a" {
			t.Errorf("audit entry %s by %q, want session:user@acc_a", e.Action, e.Actor)
		}
	}
	old := s.Customer(t, a, "POST", "/v1/api-keys", `{"site":"site_a","mode":"live"}`).body["key"].(string)
	rotated := s.Customer(t, a, "POST", "/v1/sites/site_a/rotate-key", "")
	if rotated.status != 201 {
		t.Fatalf("rotate: %d %s", rotated.status, rotated.raw)
	}
	if got := s.decideKey(t, old); got != "401 API_KEY_REVOKED" {
		t.Fatalf("rotated-away key: %s", got)
	}
	if got := s.decideKey(t, rotated.body["key"].(string)); got != "allow" {
		t.Fatalf("rotated-in key: %s", got)
	}

	t.Run("account boundary", func(t *testing.T) {
		jwks, err := idp.jwks.JWKS()
		if err != nil {
			t.Fatal(err)
		}
		outsider, err := sessiontest.NewKey("rsa-1", "RS256") // the published kid, another key
		if err != nil {
			t.Fatal(err)
		}
		expired := idp.claims("acc_a")
		expired["exp"] = time.Now().Add(-time.Hour).Unix()
		wrongAud, wrongIss := idp.claims("acc_a"), idp.claims("acc_a")
		wrongAud["aud"], wrongIss["iss"] = "another-app", "https://evil.example.test/"
		asB := idp.claims("acc_a")
		asB["account"] = "acc_b"
		missing := s.Customer(t, a, "POST", "/v1/api-keys/key_nosuchkey/revoke", "")
		for name, c := range map[string]customerCall{
			"B's key id":       s.Customer(t, a, "POST", "/v1/api-keys/"+bKeyID+"/revoke", ""),
			"B's site: create": s.Customer(t, a, "POST", "/v1/api-keys", `{"site":"site_b","mode":"live"}`),
			"B's site: rotate": s.Customer(t, aEC, "POST", "/v1/sites/site_b/rotate-key", ""),
			"B's site: list":   s.Customer(t, a, "GET", "/v1/api-keys?site=site_b", ""),
			"B's site: usage":  s.Customer(t, a, "GET", "/v1/usage?site=site_b", ""),
		} {
			if c.status != 404 || c.raw != missing.raw {
				t.Errorf("%s: %d %s; want what a missing id gets: %s", name, c.status, c.raw, missing.raw)
			}
		}
		for name, tok := range map[string]string{
			"account B, key outside the JWKS": idp.sign(outsider, asB),
			"expired":                         idp.sign(idp.rsa, expired),
			"wrong audience":                  idp.sign(idp.ec, wrongAud),
			"wrong issuer":                    idp.sign(idp.rsa, wrongIss),
			"alg none":                        sessiontest.Unsigned("rsa-1", asB, ""),
			"HS256 keyed with the public key": sessiontest.HMACWith("rsa-1", idp.rsa.PublicPEM(), asB),
			"HS256 keyed with the JWKS":       sessiontest.HMACWith("rsa-1", jwks, asB),
		} {
			for _, call := range [][3]string{
				{"POST", "/v1/api-keys/" + bKeyID + "/revoke", ""},
				{"POST", "/v1/sites/site_b/rotate-key", ""},
				{"POST", "/v1/api-keys", `{"site":"site_b","mode":"live"}`},
				{"GET", "/v1/api-keys", ""},
			} {
				if c := s.Customer(t, tok, call[0], call[1], call[2]); c.status != 401 || c.body["code"] != "INVALID_TOKEN" {
					t.Errorf("%s, %s %s: %d %s", name, call[0], call[1], c.status, c.raw)
				}
			}
		}
		if got := s.decideKey(t, bKey); got != "allow" {
			t.Errorf("B's key after A's attempts: %s", got)
		}
		if out := env.CLI("keys", "list", "--site", "site_b", "--json"); strings.Count(out, `"id"`) != 1 || strings.Contains(out, `"revoked_at":"`) {
			t.Errorf("B's site changed:\n%s", out)
		}
	})

	t.Run("token and forward-auth endpoints keep their paths", func(t *testing.T) {
		fresh := rotated.body["key"].(string)
		res, err := http.Post("http://"+s.HTTPAddr+"/auth/api-key", "application/json", strings.NewReader(`{"apiKey":"`+fresh+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("token exchange with the customer API on: %d", res.StatusCode)
		}
		for path, want := range map[string]int{"/ext-authz/v1/videos": 200, "/ext-authz/v1/api-keys": 401} {
			credential := fresh
			if path == "/ext-authz/v1/api-keys" {
				credential = a // a session is no API key
			}
			if status, _, body := send(t, "GET", "http://"+s.HTTPAddr+path, "", bearer(credential)); status != want {
				t.Errorf("forward-auth %s: %d %s, want %d", path, status, body, want)
			}
		}
	})

	t.Run("viewer", func(t *testing.T) {
		c := idp.claims("acc_a")
		c["role"] = "viewer"
		viewer := idp.sign(idp.rsa, c)
		if got := s.Customer(t, viewer, "GET", "/v1/api-keys", ""); got.status != 200 {
			t.Errorf("viewer list: %d", got.status)
		}
		if got := s.Customer(t, viewer, "POST", "/v1/sites/site_a/rotate-key", ""); got.status != 403 {
			t.Errorf("viewer rotate: %d %s", got.status, got.raw)
		}
	})

	t.Run("JWKS key rotation", func(t *testing.T) {
		next, err := sessiontest.NewKey("rsa-2", "RS256")
		if err != nil {
			t.Fatal(err)
		}
		tok := idp.sign(next, idp.claims("acc_a"))
		if got := s.Customer(t, tok, "GET", "/v1/api-keys", ""); got.status != 401 {
			t.Fatalf("unpublished key: %d", got.status)
		}
		idp.jwks.SetKeys(idp.rsa, idp.ec, next)
		Eventually(t, 10*time.Second, "the new kid to be accepted", func() bool {
			return s.Customer(t, tok, "GET", "/v1/api-keys", "").status == 200
		})
	})
}

// Rotation through the customer API on replica A makes the old keys fail
// on replica B (one PostgreSQL) within the change-log bound.
func TestCustomerRotationReachesReplicasPostgres(t *testing.T) {
	idp := newIdentityProvider(t)
	env := postgresEnv(t)
	a := env.Serve(idp.flags()...)
	b := env.Serve("--change-poll", "1m") // only NOTIFY can explain a fast change
	_, _ = seedAccounts(env)
	tok := idp.sign(idp.ec, idp.claims("acc_a"))
	var old []string
	for range 2 {
		c := a.Customer(t, tok, "POST", "/v1/api-keys", `{"site":"site_a","mode":"live"}`)
		if c.status != 201 {
			t.Fatalf("create: %d %s", c.status, c.raw)
		}
		old = append(old, c.body["key"].(string))
		if got := b.decideKey(t, old[len(old)-1]); got != "allow" {
			t.Fatalf("B before rotation: %s", got)
		}
	}
	rotated := a.Customer(t, tok, "POST", "/v1/sites/site_a/rotate-key", "")
	if rotated.status != 201 || len(rotated.body["revoked"].([]any)) != 2 {
		t.Fatalf("rotate: %d %s", rotated.status, rotated.raw)
	}
	for _, k := range old {
		Eventually(t, 5*time.Second, "B to refuse a rotated-away key", func() bool { return b.decideKey(t, k) == "401 API_KEY_REVOKED" })
	}
	if got := b.decideKey(t, rotated.body["key"].(string)); got != "allow" {
		t.Errorf("B with the new key: %s", got)
	}
}
