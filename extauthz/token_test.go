package extauthz

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
	"github.com/keygate/keygate/tokens"
)

var tokenT0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// tokenClock is an injected clock the test moves by hand.
type tokenClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *tokenClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *tokenClock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// tokenFixture is the authorizer `serve` builds, with the token keyring, on
// a real SQLite store, the real cache and the built-in policy.
type tokenFixture struct {
	clock    *tokenClock
	store    *keystore.Store
	cache    *keystore.Cache
	authz    *Authorizer
	ring     *tokens.Keyring
	server   *Server
	exchange *Exchange
	live     keystore.Secret
	liveKey  keystore.Key
}

func newTokenFixture(tb testing.TB) *tokenFixture {
	tb.Helper()
	ctx := context.Background()
	f := &tokenFixture{clock: &tokenClock{now: tokenT0}}
	format, _ := keystore.NewFormat("kg")
	digester, _ := keystore.NewDigester()
	store, err := keystore.OpenSQLite(ctx, filepath.Join(tb.TempDir(), "k.db"), keystore.Options{Format: format, Digester: digester, Now: f.clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	f.store = store
	if _, err := store.CreateAccount(ctx, keystore.Account{ID: "acme", Plan: "pro"}); err != nil {
		tb.Fatal(err)
	}
	if _, err := store.CreateSite(ctx, keystore.Site{ID: "web", AccountID: "acme", Active: true}); err != nil {
		tb.Fatal(err)
	}
	if f.liveKey, f.live, err = store.CreateKey(ctx, keystore.KeySpec{SiteID: "web", Mode: keystore.ModeLive}); err != nil {
		tb.Fatal(err)
	}
	if f.cache, err = keystore.NewCache(store, keystore.CacheConfig{Now: f.clock.Now}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(f.cache.Close)
	f.ring = tokens.NewKeyring(tokens.NewFormat("kg"))
	if err := f.ring.Set([]tokens.SigningKey{{ID: "sk_test", Secret: []byte(strings.Repeat("s", 32))}}); err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.authz = &Authorizer{Facts: f.cache, Policy: builtinEngine(tb), Format: format, Digester: digester, Log: log, Now: f.clock.Now, Tokens: f.ring}
	f.server = &Server{Authorizer: f.authz, Log: log}
	f.exchange = &Exchange{Gate: f.authz, Tokens: f.ring, Refresh: store, TTL: time.Hour, RefreshTTL: 24 * time.Hour,
		Throttle: &Throttle{Now: f.clock.Now}}
	return f
}

func (f *tokenFixture) mint(tb testing.TB, keyID, mode string, ttl time.Duration) string {
	tb.Helper()
	tok, _, err := f.ring.Mint(keyID, mode, f.clock.Now(), ttl)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

func (f *tokenFixture) authorize(headers map[string]string) Result {
	return f.authz.Authorize(context.Background(), Request{Method: "GET", Host: "api.example.com", Path: "/v1/videos", Headers: headers})
}

func tokenOutcome(r Result) string {
	if r.Decision.Allow {
		return "OK"
	}
	return r.Decision.Code
}

// TestTokenCheck covers the Check path of access tokens, expiry on the
// injected clock included.
func TestTokenCheck(t *testing.T) {
	f := newTokenFixture(t)
	good := f.mint(t, f.liveKey.ID, "live", time.Hour)
	// One payload character changed to another base64url one: well-formed,
	// only the signature can tell.
	tampered := []byte(good)
	tampered[12] = map[bool]byte{true: 'B', false: 'A'}[tampered[12] == 'A']
	cases := []struct {
		name    string
		headers map[string]string
		advance time.Duration
		want    string
		status  string
	}{
		{"bearer", map[string]string{"authorization": "Bearer " + good}, 0, "OK", policies.CredFound},
		{"bare", map[string]string{"authorization": good}, 0, "OK", policies.CredFound},
		{"x-api-key", map[string]string{"x-api-key": good}, 0, "OK", policies.CredFound},
		{"tampered", map[string]string{"authorization": "Bearer " + string(tampered)}, 0, "INVALID_TOKEN", policies.CredInvalidToken},
		{"unknown key", map[string]string{"authorization": "Bearer " + f.mint(t, "key_nope", "live", time.Hour)}, 0, "INVALID_TOKEN", policies.CredInvalidToken},
		{"mode differs from key", map[string]string{"authorization": "Bearer " + f.mint(t, f.liveKey.ID, "test", time.Hour)}, 0, "INVALID_TOKEN", policies.CredInvalidToken},
		{"bare and x-api-key", map[string]string{"authorization": good, "x-api-key": good}, 0, "INVALID_API_KEY", policies.CredMalformed},
		{"bare key", map[string]string{"authorization": f.live.Reveal()}, 0, "INVALID_API_KEY", policies.CredMalformed},
		{"bare twice", map[string]string{"authorization": good + "," + good}, 0, "INVALID_API_KEY", policies.CredMalformed},
		{"just before expiry", map[string]string{"authorization": "Bearer " + good}, time.Hour - time.Millisecond, "OK", policies.CredFound},
		{"at expiry", map[string]string{"authorization": "Bearer " + good}, time.Millisecond, "TOKEN_EXPIRED", policies.CredExpiredToken},
		{"tampered after expiry", map[string]string{"authorization": "Bearer " + string(tampered)}, 0, "INVALID_TOKEN", policies.CredInvalidToken},
	}
	for _, tc := range cases {
		f.clock.Advance(tc.advance)
		res := f.authorize(tc.headers)
		if got := tokenOutcome(res); got != tc.want || res.Input.Credential.Status != tc.status {
			t.Errorf("%s: got %s (%s), want %s (%s)", tc.name, got, res.Input.Credential.Status, tc.want, tc.status)
		}
		if tc.want == "OK" && (res.Upstream[HeaderKeyID] != f.liveKey.ID || res.Upstream[HeaderMode] != "live") {
			t.Errorf("%s: upstream %v", tc.name, res.Upstream)
		}
	}

	// Without a keyring, tokens are not credentials at all.
	f.authz.Tokens = nil
	if got := tokenOutcome(f.authorize(map[string]string{"authorization": "Bearer " + good})); got != "INVALID_API_KEY" {
		t.Errorf("no keyring: got %s, want INVALID_API_KEY", got)
	}
}

// TestTokenKeyRevoked: the token re-reads its key's facts through the
// cache, so a revocation the follower applies ends it.
func TestTokenKeyRevoked(t *testing.T) {
	f := newTokenFixture(t)
	tok := f.mint(t, f.liveKey.ID, "live", time.Hour)
	h := map[string]string{"authorization": "Bearer " + tok}
	if got := tokenOutcome(f.authorize(h)); got != "OK" {
		t.Fatalf("before revocation: %s", got)
	}
	if _, err := f.store.RevokeKey(context.Background(), f.liveKey.ID); err != nil {
		t.Fatal(err)
	}
	f.cache.Invalidate(keystore.EntityKey, f.liveKey.ID) // what the follower does
	if got := tokenOutcome(f.authorize(h)); got != "API_KEY_REVOKED" {
		t.Fatalf("after revocation: %s, want API_KEY_REVOKED", got)
	}
}

// failingRefresh is a store that is down.
type failingRefresh struct{}

func (failingRefresh) IssueRefreshToken(context.Context, string, keystore.Digest, time.Time) error {
	return keystore.ErrUnavailable
}

func (failingRefresh) PeekRefreshToken(context.Context, []keystore.Digest, time.Time) (keystore.RefreshGrant, bool, error) {
	return keystore.RefreshGrant{}, false, keystore.ErrUnavailable
}

func (failingRefresh) RedeemRefreshToken(context.Context, []keystore.Digest, keystore.Digest, time.Time) (keystore.RefreshGrant, error) {
	return keystore.RefreshGrant{}, keystore.ErrUnavailable
}

func exchangePost(t *testing.T, x *Exchange, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	mux := http.NewServeMux()
	x.Register(mux)
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("content-type", "application/json")
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, req)
	return w
}

func TestExchangeStoreDown(t *testing.T) {
	f := newTokenFixture(t)
	f.exchange.Refresh = failingRefresh{}
	refresh, _ := f.ring.Format().NewRefresh()
	for path, body := range map[string]string{
		"/auth/api-key": `{"apiKey":"` + f.live.Reveal() + `"}`,
		"/auth/refresh": `{"refreshToken":"` + refresh + `"}`,
	} {
		w := exchangePost(t, f.exchange, path, body)
		if w.Code != 503 || !strings.Contains(w.Body.String(), `"AUTHZ_UNAVAILABLE"`) {
			t.Errorf("%s with the store down: %d %s", path, w.Code, w.Body)
		}
	}
	// Outages do not count against the client.
	if level := f.exchange.Throttle.level(f.exchange.Throttle.clients[netip.MustParseAddr("192.0.2.1")], f.clock.Now()); level != 10 {
		t.Errorf("503s counted against the client: bucket at %v of 10", level)
	}
}

// mintLive trades the fixture's live key for a pair, which must be given.
func mintLive(t *testing.T, f *tokenFixture) *httptest.ResponseRecorder {
	t.Helper()
	w := exchangePost(t, f.exchange, "/auth/api-key", `{"apiKey":"`+f.live.Reveal()+`"}`)
	if w.Code != 200 {
		t.Fatalf("mint: %d %s", w.Code, w.Body)
	}
	return w
}

// refreshTokenOf is the refresh token of a pair answer.
func refreshTokenOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	_, rest, _ := strings.Cut(w.Body.String(), `"refresh_token":"`)
	refresh, _, ok := strings.Cut(rest, `"`)
	if !ok || refresh == "" {
		t.Fatalf("no refresh token in %s", w.Body)
	}
	return refresh
}

// TestExchangeRefreshExpiry: an unused refresh token dies at RefreshTTL,
// on the injected clock.
func TestExchangeRefreshExpiry(t *testing.T) {
	f := newTokenFixture(t)
	refresh := refreshTokenOf(t, mintLive(t, f))
	f.clock.Advance(24 * time.Hour)
	if w := exchangePost(t, f.exchange, "/auth/refresh", `{"refreshToken":"`+refresh+`"}`); w.Code != 401 || !strings.Contains(w.Body.String(), `"TOKEN_EXPIRED"`) {
		t.Fatalf("expired refresh token: %d %s", w.Code, w.Body)
	}
}

// A refresh that fails for want of facts (503) leaves the refresh token as
// it was: the client's retry succeeds and is not taken for reuse.
func TestExchangeRefreshOutageIsNotReuse(t *testing.T) {
	f := newTokenFixture(t)
	refresh := refreshTokenOf(t, mintLive(t, f))
	body := `{"refreshToken":"` + refresh + `"}`

	f.authz.Facts = downFacts{err: keystore.ErrUnavailable}
	if w := exchangePost(t, f.exchange, "/auth/refresh", body); w.Code != 503 {
		t.Fatalf("refresh while key facts are unavailable: %d %s, want 503", w.Code, w.Body)
	}
	f.authz.Facts = f.cache
	if w := exchangePost(t, f.exchange, "/auth/refresh", body); w.Code != 200 {
		t.Fatalf("retry after the outage: %d %s, want a new pair", w.Code, w.Body)
	}
	f.clock.Advance(DefaultRefreshGrace)
	if w := exchangePost(t, f.exchange, "/auth/refresh", body); w.Code != 401 {
		t.Fatalf("third use of the same refresh token past the grace: %d %s, want 401 (reuse)", w.Code, w.Body)
	}
}

// TestExchangeRefreshRetryGrace: a refresh retried within RefreshGrace
// (its answer was lost) gets the same pair back and kills nothing; past
// the grace the old token is reuse, and the family dies.
func TestExchangeRefreshRetryGrace(t *testing.T) {
	f := newTokenFixture(t)
	f.exchange.Grace = DefaultRefreshGrace
	refresh := refreshTokenOf(t, mintLive(t, f))
	body := `{"refreshToken":"` + refresh + `"}`
	first := exchangePost(t, f.exchange, "/auth/refresh", body)
	if first.Code != 200 {
		t.Fatalf("refresh: %d %s", first.Code, first.Body)
	}
	f.clock.Advance(DefaultRefreshGrace - time.Second)
	retry := exchangePost(t, f.exchange, "/auth/refresh", body)
	if retry.Code != 200 || retry.Body.String() != first.Body.String() {
		t.Fatalf("retry within the grace: %d %s, want the same pair %s", retry.Code, retry.Body, first.Body)
	}
	next := refreshTokenOf(t, first)
	f.clock.Advance(time.Second)
	if w := exchangePost(t, f.exchange, "/auth/refresh", body); w.Code != 401 {
		t.Fatalf("old token past the grace: %d %s, want 401 (reuse)", w.Code, w.Body)
	}
	if w := exchangePost(t, f.exchange, "/auth/refresh", `{"refreshToken":"`+next+`"}`); w.Code != 401 {
		t.Fatalf("the family survived reuse: %d %s", w.Code, w.Body)
	}
}

func TestThrottle(t *testing.T) {
	c := &tokenClock{now: tokenT0}
	th := &Throttle{Burst: 2, Every: 6 * time.Second, MaxClients: 3, Now: c.Now}
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	steps := []struct {
		what    string
		advance time.Duration
		client  netip.Addr
		release bool // the attempt did not fail
		want    time.Duration
	}{
		{what: "success", client: a, release: true},
		{what: "success again: successes cost nothing", client: a, release: true},
		{what: "failure 1", client: a},
		{what: "failure 2", client: a},
		{what: "burst used up", client: a, want: 6 * time.Second},
		{what: "another client", client: b},
		{what: "half refilled", advance: 3 * time.Second, client: a, want: 3 * time.Second},
		{what: "one refilled", advance: 3 * time.Second, client: a},
		{what: "and used", client: a, want: 6 * time.Second},
	}
	for _, st := range steps {
		c.Advance(st.advance)
		if got := th.Acquire(st.client); got != st.want {
			t.Fatalf("%s: Acquire = %s, want %s", st.what, got, st.want)
		}
		if st.release {
			th.Release(st.client)
		}
	}
	for i := range 10 {
		th.Acquire(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	}
	if n := len(th.clients); n > 3 {
		t.Fatalf("tracking %d clients, bound is 3", n)
	}
}

func TestThrottleClient(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cases := []struct {
		hops              int
		remote, xff, want string
	}{
		{1, "192.0.2.7:5555", "", "192.0.2.7"},
		{1, "192.0.2.7:5555", "203.0.113.9", "192.0.2.7"}, // untrusted peer: XFF ignored
		{1, "10.1.2.3:5555", "203.0.113.9", "203.0.113.9"},
		// One proxy: its entry is the right-most, whatever the client
		// prepended; a trusted-looking entry is not skipped.
		{1, "10.1.2.3:5555", "198.51.100.1, 203.0.113.9, 10.9.9.9", "10.9.9.9"},
		{1, "10.1.2.3:5555", "198.51.100.1, 203.0.113.9", "203.0.113.9"},
		// Two proxies: the second from the right.
		{2, "10.1.2.3:5555", "198.51.100.1, 203.0.113.9, 10.9.9.9", "203.0.113.9"},
		// A trusted proxy that names no client: unknown (all such share
		// one bucket), never the proxy's own address.
		{2, "10.1.2.3:5555", "203.0.113.9", "invalid IP"}, // fewer entries than hops
		{1, "10.1.2.3:5555", "garbage", "invalid IP"},
		{1, "[2001:db8:1:2:3:4:5:6]:443", "", "2001:db8:1:2::"}, // IPv6 grouped by /64
	}
	for _, tc := range cases {
		th := &Throttle{Trusted: trusted, Hops: tc.hops}
		r := httptest.NewRequest("POST", "/auth/api-key", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("x-forwarded-for", tc.xff)
		}
		if got := th.Client(r); got.String() != tc.want {
			t.Errorf("%s / %q: got %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}

// BenchmarkCheckTokenVsKey compares the hot path of an access token with
// that of the raw key it was minted from, both with the key's facts cached.
func BenchmarkCheckTokenVsKey(b *testing.B) {
	f := newTokenFixture(b)
	tok := f.mint(b, f.liveKey.ID, "live", 24*time.Hour)
	for name, cred := range map[string]string{"key": f.live.Reveal(), "token": tok} {
		b.Run(name, func(b *testing.B) {
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v1/videos?limit=10", Host: "api.example.com",
					Headers: map[string]string{"authorization": "Bearer " + cred, "user-agent": "bench", "accept": "application/json"}},
			}}}
			// A deadline of its own: on a loaded machine the default 150 ms
			// budget turns a descheduled iteration into a 503.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if resp, _ := f.server.Check(ctx, req); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
				b.Fatalf("want allow, got %v", resp)
			}
			f.cache.Wait()
			_, before := f.cache.Stats()
			b.ReportAllocs()
			for b.Loop() {
				if resp, _ := f.server.Check(ctx, req); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
					b.Fatalf("want allow, got %v", resp)
				}
			}
			if _, after := f.cache.Stats(); after != before {
				b.Fatalf("the cache-hit benchmark read the store %d times", after-before)
			}
		})
	}
}

// BenchmarkResolveTokenVsKey isolates the part that differs between the two
// paths (credential to cached key facts), away from the policy evaluation
// that dominates a Check and the noise it brings.
func BenchmarkResolveTokenVsKey(b *testing.B) {
	f := newTokenFixture(b)
	tok := f.mint(b, f.liveKey.ID, "live", 24*time.Hour)
	for name, cred := range map[string]string{"key": f.live.Reveal(), "token": tok} {
		b.Run(name, func(b *testing.B) {
			h := map[string]string{"authorization": "Bearer " + cred}
			ctx := context.Background()
			resolve := func() {
				if res := f.authz.resolve(ctx, Request{Headers: h}, tokenT0, new(requestState), new(keystore.KeyFacts)); !res.found {
					b.Fatalf("no facts: %s", res.status)
				}
			}
			resolve()
			f.cache.Wait()
			b.ReportAllocs()
			for b.Loop() {
				resolve()
			}
		})
	}
}
