package session_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/session"
	"github.com/keygate/keygate/session/sessiontest"
)

const (
	iss = "https://id.example.com/"
	aud = "keygate-dashboard"
)

// fixture is a provider serving three keys and a verifier over it, with a
// clock the test moves.
type fixture struct {
	rsa, ec, ed *sessiontest.Key
	provider    *sessiontest.Provider
	keys        *session.KeySet
	verifier    *session.Verifier
	now         atomic.Int64 // unix nanoseconds
}

func newKey(t testing.TB, kid, alg string) *sessiontest.Key {
	t.Helper()
	k, err := sessiontest.NewKey(kid, alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newFixture(t testing.TB, cfg session.Config) *fixture {
	t.Helper()
	f := &fixture{rsa: newKey(t, "r1", "RS256"), ec: newKey(t, "e1", "ES256"), ed: newKey(t, "d1", "EdDSA"),
		provider: &sessiontest.Provider{}}
	f.now.Store(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC).UnixNano())
	f.provider.SetKeys(f.rsa, f.ec, f.ed)
	srv := httptest.NewServer(f.provider)
	t.Cleanup(srv.Close)
	f.keys = &session.KeySet{Source: srv.URL, Floor: 10 * time.Second, Now: f.clock}
	cfg.Issuer, cfg.Audience, cfg.Now = iss, aud, f.clock
	v, err := session.NewVerifier(cfg, f.keys)
	if err != nil {
		t.Fatal(err)
	}
	f.verifier = v
	return f
}

func (f *fixture) clock() time.Time        { return time.Unix(0, f.now.Load()).UTC() }
func (f *fixture) advance(d time.Duration) { f.now.Add(int64(d)) }
func (f *fixture) claims(acc string) map[string]any {
	return sessiontest.Claims(iss, aud, "user-1", acc, f.clock(), 10*time.Minute)
}

func sign(t testing.TB, k *sessiontest.Key, claims map[string]any) string {
	t.Helper()
	tok, err := k.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func with(claims map[string]any, name string, v any) map[string]any {
	out := map[string]any{}
	for k, x := range claims {
		out[k] = x
	}
	if v == nil {
		delete(out, name)
	} else {
		out[name] = v
	}
	return out
}

func TestVerifyAcceptsEachAlgorithm(t *testing.T) {
	f := newFixture(t, session.Config{})
	for _, k := range []*sessiontest.Key{f.rsa, f.ec, f.ed} {
		t.Run(k.Alg.String(), func(t *testing.T) {
			s, err := f.verifier.Verify(context.Background(), sign(t, k, f.claims("acc_a")))
			if err != nil {
				t.Fatal(err)
			}
			if s.Account != "acc_a" || s.Subject != "user-1" || !s.CanWrite() || s.Actor() != "session:user-1" {
				t.Fatalf("session = %+v", s)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	f := newFixture(t, session.Config{})
	good := f.claims("acc_a")
	now := f.clock()
	outsider := newKey(t, "r1", "RS256") // same kid as a published key, other key
	stranger := newKey(t, "x9", "ES256")
	jwks, err := f.provider.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{
		"expired beyond leeway":  sign(t, f.rsa, with(good, "exp", now.Add(-31*time.Second).Unix())),
		"not yet valid":          sign(t, f.rsa, with(good, "nbf", now.Add(time.Minute).Unix())),
		"no exp":                 sign(t, f.rsa, with(good, "exp", nil)),
		"no sub":                 sign(t, f.rsa, with(good, "sub", nil)),
		"wrong issuer":           sign(t, f.rsa, with(good, "iss", "https://evil.example.com/")),
		"wrong audience":         sign(t, f.rsa, with(good, "aud", "other-app")),
		"no account claim":       sign(t, f.rsa, with(good, "account", nil)),
		"account not a string":   sign(t, f.rsa, with(good, "account", []string{"acc_a"})),
		"account empty":          sign(t, f.rsa, with(good, "account", "")),
		"account control byte":   sign(t, f.rsa, with(good, "account", "acc\x00a")),
		"key outside the JWKS":   sign(t, outsider, with(good, "account", "acc_b")),
		"unknown kid":            sign(t, stranger, good),
		"alg none":               sessiontest.Unsigned("r1", good, ""),
		"alg none with sig":      sessiontest.Unsigned("r1", good, "c2ln"),
		"HS256 with public PEM":  sessiontest.HMACWith("r1", f.rsa.PublicPEM(), good),
		"HS256 with EC PEM":      sessiontest.HMACWith("e1", f.ec.PublicPEM(), good),
		"HS256 with JWKS bytes":  sessiontest.HMACWith("r1", jwks, good),
		"empty":                  "",
		"two parts":              "a.b",
		"json serialization":     `{"payload":"e30","signatures":[]}`,
		"oversized":              string(make([]byte, session.MaxTokenBytes+1)),
		"header not base64":      "!!!.e30.c2ln",
		"signature of other key": headerOf(sign(t, f.ec, good)) + restOf(sign(t, f.rsa, good)),
	} {
		t.Run(name, func(t *testing.T) {
			s, err := f.verifier.Verify(context.Background(), tok)
			if !errors.Is(err, session.ErrInvalid) {
				t.Fatalf("Verify = %+v, %v; want ErrInvalid", s, err)
			}
		})
	}
}

func headerOf(tok string) string {
	for i := range tok {
		if tok[i] == '.' {
			return tok[:i]
		}
	}
	return tok
}

func restOf(tok string) string { return tok[len(headerOf(tok)):] }

func TestVerifyLeeway(t *testing.T) {
	f := newFixture(t, session.Config{})
	tok := sign(t, f.rsa, with(f.claims("acc_a"), "exp", f.clock().Add(-20*time.Second).Unix()))
	if _, err := f.verifier.Verify(context.Background(), tok); err != nil {
		t.Fatalf("20 s past exp within the 30 s leeway: %v", err)
	}
}

func TestUnknownKidRefetchesAtMostOncePerFloor(t *testing.T) {
	f := newFixture(t, session.Config{})
	ctx := context.Background()
	if _, err := f.verifier.Verify(ctx, sign(t, f.rsa, f.claims("acc_a"))); err != nil {
		t.Fatal(err)
	}
	if got := f.provider.Reads(); got != 1 {
		t.Fatalf("reads after the first token = %d, want 1", got)
	}
	rotated := newKey(t, "r2", "RS256")
	tok := sign(t, rotated, f.claims("acc_a"))
	f.advance(11 * time.Second)
	// Unknown kid, not yet published: one read, then refused.
	if _, err := f.verifier.Verify(ctx, tok); !errors.Is(err, session.ErrInvalid) {
		t.Fatalf("unpublished kid: %v", err)
	}
	f.provider.SetKeys(f.rsa, rotated)
	for range 5 { // inside the floor: no read, still refused
		if _, err := f.verifier.Verify(ctx, tok); !errors.Is(err, session.ErrInvalid) {
			t.Fatalf("inside the floor: %v", err)
		}
	}
	if got := f.provider.Reads(); got != 2 {
		t.Fatalf("reads inside the floor = %d, want 2", got)
	}
	f.advance(10 * time.Second)
	if _, err := f.verifier.Verify(ctx, tok); err != nil {
		t.Fatalf("new kid after the floor: %v", err)
	}
	if _, err := f.verifier.Verify(ctx, sign(t, f.ec, f.claims("acc_a"))); !errors.Is(err, session.ErrInvalid) {
		t.Fatalf("a key removed from the JWKS still verifies: %v", err)
	}
}

func TestMaxAgeDropsRemovedKeys(t *testing.T) {
	f := newFixture(t, session.Config{})
	ctx := context.Background()
	tok := sign(t, f.ec, f.claims("acc_a"))
	if _, err := f.verifier.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	f.provider.SetKeys(f.rsa)
	f.advance(16 * time.Minute)
	if _, err := f.verifier.Verify(ctx, sign(t, f.ec, f.claims("acc_a"))); !errors.Is(err, session.ErrInvalid) {
		t.Fatalf("removed key after max age: %v", err)
	}
}

func TestUnreachableKeySet(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	keys := &session.KeySet{Source: dead.URL}
	v, err := session.NewVerifier(session.Config{Issuer: iss, Audience: aud}, keys)
	if err != nil {
		t.Fatal(err)
	}
	k := newKey(t, "r1", "RS256")
	tok := sign(t, k, sessiontest.Claims(iss, aud, "u", "acc_a", time.Now(), time.Minute))
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Verify with no keys ever read = %v, want ErrUnavailable", err)
	}
	if err := keys.Load(context.Background()); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Load = %v", err)
	}
}

func TestKeySetFromFileSkipsUnusableKeys(t *testing.T) {
	k := newKey(t, "d1", "EdDSA")
	p := &sessiontest.Provider{}
	p.SetKeys(k)
	jwks, err := p.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	// An HMAC key in the set must never be used, whatever the token says.
	withOct := `{"keys":[{"kty":"oct","kid":"h1","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"},` + string(jwks[len(`{"keys":[`):])
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, []byte(withOct), 0o600); err != nil {
		t.Fatal(err)
	}
	keys := &session.KeySet{Source: path}
	if err := keys.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := session.NewVerifier(session.Config{Issuer: iss, Audience: aud}, keys)
	if err != nil {
		t.Fatal(err)
	}
	claims := sessiontest.Claims(iss, aud, "u", "acc_a", time.Now(), time.Minute)
	if _, err := v.Verify(context.Background(), sign(t, k, claims)); err != nil {
		t.Fatal(err)
	}
	forged := sessiontest.HMACWith("h1", []byte("secret-secret-secret-secret"), claims)
	if _, err := v.Verify(context.Background(), forged); !errors.Is(err, session.ErrInvalid) {
		t.Fatalf("HS256 with the JWKS's oct key: %v", err)
	}
}

func TestRoles(t *testing.T) {
	f := newFixture(t, session.Config{RoleClaim: "role", AccountClaim: "org"})
	for _, tc := range []struct {
		role any
		want session.Role
	}{
		{nil, session.RoleViewer},
		{"viewer", session.RoleViewer},
		{"billing", session.RoleViewer},
		{42, session.RoleViewer},
		{"admin", session.RoleEditor},
		{"Owner", session.RoleEditor},
		{"adm\u0130n", session.RoleViewer},         // U+0130 lower-cases to 'i' in Unicode, not in a role name
		{"\u212Aeygate-owner", session.RoleViewer}, // an unknown role stays a viewer
		{[]any{"own\u0435r"}, session.RoleViewer},  // Cyrillic e
		{[]string{"viewer", "developer"}, session.RoleEditor},
		{[]string{"viewer"}, session.RoleViewer},
	} {
		c := with(with(f.claims(""), "account", nil), "org", "acc_a")
		if tc.role != nil {
			c["role"] = tc.role
		}
		s, err := f.verifier.Verify(context.Background(), sign(t, f.rsa, c))
		if err != nil {
			t.Fatal(err)
		}
		if s.Role != tc.want || s.Account != "acc_a" {
			t.Errorf("role %v: session %+v, want %s", tc.role, s, tc.want)
		}
	}
	if session.RoleOf(false, "viewer") != session.RoleEditor {
		t.Error("without a role claim configured every session may write")
	}
}

func TestNewVerifierNeedsIssuerAndAudience(t *testing.T) {
	keys := &session.KeySet{Source: "jwks.json"}
	for _, cfg := range []session.Config{{Audience: aud}, {Issuer: iss}, {Issuer: iss, Audience: aud, Leeway: time.Hour}} {
		if _, err := session.NewVerifier(cfg, keys); err == nil {
			t.Errorf("NewVerifier(%+v) accepted", cfg)
		}
	}
}

func TestBurstOfANewKidCostsOneRead(t *testing.T) {
	f := newFixture(t, session.Config{})
	ctx := context.Background()
	if err := f.keys.Load(ctx); err != nil {
		t.Fatal(err)
	}
	next := newKey(t, "r2", "RS256")
	f.provider.SetKeys(f.rsa, next)
	f.advance(11 * time.Second)
	tok := sign(t, next, f.claims("acc_a"))
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := f.verifier.Verify(ctx, tok)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := f.provider.Reads(); got != 2 {
		t.Fatalf("reads = %d, want 2 (start-up and one for the new kid)", got)
	}
}
