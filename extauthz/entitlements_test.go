package extauthz

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// entitled overlays entitlements on the key facts a KeyFacts resolves, as
// the store does for a key created with --scope, --allow-cidr, --meta, ….
type entitled struct {
	KeyFacts
	mu  sync.Mutex
	ent keystore.Entitlements
}

func (e *entitled) set(ent keystore.Entitlements) {
	e.mu.Lock()
	e.ent = ent
	e.mu.Unlock()
}

func (e *entitled) Key(ctx context.Context, ds []keystore.Digest) (keystore.KeyFacts, error) {
	f, err := e.KeyFacts.Key(ctx, ds)
	e.mu.Lock()
	f.Key.Entitlements = e.ent
	e.mu.Unlock()
	return f, err
}

func (e *entitled) KeyID(ctx context.Context, id string) (keystore.KeyFacts, error) {
	f, err := e.KeyFacts.KeyID(ctx, id)
	e.mu.Lock()
	f.Key.Entitlements = e.ent
	e.mu.Unlock()
	return f, err
}

// spender counts spends and answers ok while uses are left.
type spender struct {
	mu    sync.Mutex
	left  int64
	calls int
	err   error
}

func (s *spender) SpendUse(_ context.Context, _ string, _ time.Time) (int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.err != nil {
		return 0, false, s.err
	}
	if s.left <= 0 {
		return 0, false, nil
	}
	s.left--
	return s.left, true, nil
}

// entitledFixture is the real fixture (SQLite, cache, built-in policy) with
// entitlements overlaid on its live key.
func entitledFixture(t *testing.T, ent keystore.Entitlements) (*fixture, *Authorizer, *entitled) {
	t.Helper()
	f := newFixture(t)
	e := &entitled{KeyFacts: f.server.Authorizer.Facts, ent: ent}
	a := *f.server.Authorizer
	a.Facts = e
	return f, &a, e
}

// checkFrom is an Envoy CheckRequest from a source address.
func checkFrom(method, path, source string, headers map[string]string) *authv3.CheckRequest {
	req := envoyCheckRequest(method, path, headers)
	if source != "" {
		req.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: source, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}}
	}
	return req
}

func bodyField(t *testing.T, body []byte, name string) any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	return m[name]
}

func TestScopedKey(t *testing.T) {
	f, a, _ := entitledFixture(t, keystore.Entitlements{Scopes: []string{"videos:read"}})
	h := map[string]string{"authorization": "Bearer " + f.live.Reveal()}
	if res := a.Authorize(context.Background(), FromCheckRequest(checkFrom("GET", "/v1/videos/1", "", h))); !res.Decision.Allow {
		t.Fatalf("GET /v1/videos/1 with videos:read: %+v", res.Decision)
	}
	res := a.Authorize(context.Background(), FromCheckRequest(checkFrom("POST", "/v1/videos", "", h)))
	d := res.Decision
	if d.Allow || d.Status != 403 || d.Code != "INSUFFICIENT_SCOPE" || d.Rule != "insufficient_scope" {
		t.Fatalf("POST /v1/videos with videos:read: %+v", d)
	}
	if got := bodyField(t, DenyBody(d), "required_scope"); got != "videos:write" {
		t.Fatalf("required_scope = %v, want videos:write", got)
	}
	if got := res.Input.Key.Scopes; len(got) != 1 || got[0] != "videos:read" {
		t.Fatalf("input.key.scopes = %v", got)
	}
}

// TestScopeChangeIsNotHiddenByTheMemo: the memo keys on the key's
// entitlements, so the same key, request and policy decide anew when the
// key's scopes change (keys update), both ways.
func TestScopeChangeIsNotHiddenByTheMemo(t *testing.T) {
	f, a, e := entitledFixture(t, keystore.Entitlements{Scopes: []string{"audio:read"}})
	h := map[string]string{"authorization": "Bearer " + f.live.Reveal()}
	decide := func() Result {
		return a.Authorize(context.Background(), FromCheckRequest(checkFrom("GET", "/v1/videos/1", "", h)))
	}
	for i, step := range []struct {
		ent   keystore.Entitlements
		allow bool
	}{
		{keystore.Entitlements{Scopes: []string{"audio:read"}}, false},
		{keystore.Entitlements{}, true},
		{keystore.Entitlements{Scopes: []string{"audio:read"}}, false},
		{keystore.Entitlements{Scopes: []string{"*:read"}}, true},
	} {
		e.set(step.ent)
		for range 2 { // the second answer comes from the memo
			if res := decide(); res.Decision.Allow != step.allow {
				t.Fatalf("step %d (%v): allow = %v (%s, memo %s)", i, step.ent.Scopes, res.Decision.Allow, res.Decision.Code, res.Memo)
			}
		}
	}
	if res := decide(); res.Memo != string(policies.MemoHit) {
		t.Fatalf("memo = %s, want a hit for a repeated request", res.Memo)
	}
}

func TestAllowedCIDRsOverGRPC(t *testing.T) {
	f, a, _ := entitledFixture(t, keystore.Entitlements{AllowedCIDRs: []string{"10.0.0.0/8", "2001:db8::/32"}})
	s := &Server{Authorizer: a, Log: a.Log}
	h := map[string]string{"authorization": "Bearer " + f.live.Reveal()}
	for _, c := range []struct {
		source string
		allow  bool
	}{
		{"10.1.2.3", true}, {"2001:db8::5", true}, {"::ffff:10.0.0.9", true},
		{"192.0.2.1", false}, {"2001:db9::1", false}, {"", false}, {"not-an-ip", false},
	} {
		resp, err := s.Check(context.Background(), checkFrom("GET", "/v1/videos", c.source, h))
		if err != nil {
			t.Fatal(err)
		}
		allowed := resp.GetOkResponse() != nil
		if allowed != c.allow {
			t.Errorf("from %q: allowed = %v, want %v (%v)", c.source, allowed, c.allow, resp.GetStatus())
		}
		if !c.allow && resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
			t.Errorf("from %q: %v", c.source, resp.GetDeniedResponse())
		}
		if !c.allow && !json.Valid([]byte(resp.GetDeniedResponse().GetBody())) {
			t.Errorf("from %q: body %q", c.source, resp.GetDeniedResponse().GetBody())
		}
	}
	res := a.Authorize(context.Background(), FromCheckRequest(checkFrom("GET", "/v1/videos", "192.0.2.1", h)))
	if res.Decision.Code != "IP_NOT_ALLOWED" || res.Input.Request.ClientAddress != "192.0.2.1" {
		t.Fatalf("decision %s, client_address %q", res.Decision.Code, res.Input.Request.ClientAddress)
	}
}

// TestClientAddressOnlyForCIDRKeys: an unrestricted key's input has no
// client address, so clients at different addresses share memo entries.
func TestClientAddressOnlyForCIDRKeys(t *testing.T) {
	f, a, _ := entitledFixture(t, keystore.Entitlements{})
	h := map[string]string{"authorization": "Bearer " + f.live.Reveal()}
	first := a.Authorize(context.Background(), FromCheckRequest(checkFrom("GET", "/v1/videos", "192.0.2.1", h)))
	second := a.Authorize(context.Background(), FromCheckRequest(checkFrom("GET", "/v1/videos", "192.0.2.2", h)))
	if !first.Decision.Allow || first.Input.Request.ClientAddress != "" {
		t.Fatalf("first: allow %v, client_address %q", first.Decision.Allow, first.Input.Request.ClientAddress)
	}
	if second.Memo != string(policies.MemoHit) {
		t.Fatalf("a second client's request: memo %s, want hit", second.Memo)
	}
}

func TestAllowedCIDRsOverForwardAuth(t *testing.T) {
	f, a, _ := entitledFixture(t, keystore.Entitlements{AllowedCIDRs: []string{"10.0.0.0/8"}})
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	fa := &ForwardAuth{Authorizer: a, Log: a.Log, Proxies: &Proxies{Trusted: trusted, Hops: 1}}
	h := fa.Wrap(http.NotFoundHandler())
	do := func(peer, xff string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", ForwardAuthPath, nil)
		req.RemoteAddr = peer + ":5000"
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", "/v1/videos/1")
		req.Header.Set("X-Forwarded-Host", "api.example.com")
		req.Header.Set("Authorization", "Bearer "+f.live.Reveal())
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	for _, c := range []struct {
		peer, xff string
		status    int
	}{
		{"127.0.0.1", "10.2.3.4", 200},            // the trusted proxy saw an inside client
		{"127.0.0.1", "10.2.3.4, 192.0.2.7", 403}, // the proxy saw 192.0.2.7; the rest is the client's word
		{"127.0.0.1", "192.0.2.7", 403},           // an outside client
		{"192.0.2.8", "10.2.3.4", 403},            // an untrusted peer cannot pick its address
		{"10.9.9.9", "", 200},                     // a direct client inside
	} {
		w := do(c.peer, c.xff)
		if w.Code != c.status {
			t.Errorf("peer %s, X-Forwarded-For %q: %d %s, want %d", c.peer, c.xff, w.Code, w.Body, c.status)
		}
		if c.status == 403 && bodyField(t, w.Body.Bytes(), "code") != "IP_NOT_ALLOWED" {
			t.Errorf("peer %s: body %s", c.peer, w.Body)
		}
	}
}

func TestMetaHeadersUpstream(t *testing.T) {
	f, a, e := entitledFixture(t, keystore.Entitlements{Meta: map[string]string{"tier": "gold", "billing-ref": "b-7"}})
	s := &Server{Authorizer: a, Log: a.Log}
	h := map[string]string{"authorization": "Bearer " + f.live.Reveal(), "x-keygate-meta-tier": "platinum", "x-keygate-meta-extra": "forged"}
	upstream := func() (map[string]string, []string) {
		resp, err := s.Check(context.Background(), checkFrom("GET", "/v1/videos", "", h))
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("not allowed: %v %v", resp, err)
		}
		set := map[string]string{}
		for _, o := range resp.GetOkResponse().GetHeaders() {
			if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Errorf("%s appended, not overwritten", o.GetHeader().GetKey())
			}
			set[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
		}
		return set, resp.GetOkResponse().GetHeadersToRemove()
	}
	set, removed := upstream()
	if set["x-keygate-meta-tier"] != "gold" || set["x-keygate-meta-billing-ref"] != "b-7" {
		t.Fatalf("upstream headers %v", set)
	}
	if _, ok := set["x-keygate-meta-extra"]; ok || !slices.Contains(removed, "x-keygate-meta-extra") || slices.Contains(removed, "x-keygate-meta-tier") {
		t.Fatalf("set %v, removed %v", set, removed)
	}
	// Without meta, the client's x-keygate-meta-tier is removed, never passed.
	e.set(keystore.Entitlements{})
	set, removed = upstream()
	if _, ok := set["x-keygate-meta-tier"]; ok || !slices.Contains(removed, "x-keygate-meta-tier") {
		t.Fatalf("unrestricted key: set %v, removed %v", set, removed)
	}
}

// usesFixture is an authorizer over a key with remaining uses, and the
// headers that present the key.
func usesFixture(t *testing.T, remaining int64) (*Authorizer, map[string]string) {
	t.Helper()
	f, a, _ := entitledFixture(t, keystore.Entitlements{Remaining: &remaining})
	return a, map[string]string{"authorization": "Bearer " + f.live.Reveal()}
}

// authorize is a's answer to method path presented with headers h.
func authorize(a *Authorizer, method, path string, h map[string]string) Result {
	return a.Authorize(context.Background(), FromCheckRequest(checkFrom(method, path, "", h)))
}

func TestUsesAreSpentOnMeteredAllows(t *testing.T) {
	a, h := usesFixture(t, 3)
	sp := &spender{left: 3}
	a.Uses = sp
	metered := func() Result { return authorize(a, "POST", "/v1/audio/generate", h) }
	for i := range 3 {
		if res := metered(); !res.Decision.Allow {
			t.Fatalf("metered request %d: %+v", i+1, res.Decision)
		}
	}
	res := metered()
	if res.Decision.Allow || res.Decision.Code != "USAGE_EXHAUSTED" || res.Decision.Status != 403 {
		t.Fatalf("fourth metered request: %+v", res.Decision)
	}
	if sp.calls != 4 {
		t.Fatalf("spends = %d, want 4", sp.calls)
	}
	// Unmetered routes spend nothing, used up or not.
	if res := authorize(a, "GET", "/v1/videos", h); !res.Decision.Allow || sp.calls != 4 {
		t.Fatalf("unmetered: %+v, spends %d", res.Decision, sp.calls)
	}
	// A refused request spends nothing.
	res = authorize(a, "POST", "/v1/audio/generate", map[string]string{})
	if res.Decision.Allow || sp.calls != 4 {
		t.Fatalf("refused request: %+v, spends %d", res.Decision, sp.calls)
	}
}

func TestUsesFailClosed(t *testing.T) {
	a, h := usesFixture(t, 1)
	for _, c := range []failure{
		{keystore.ErrUnavailable, 503, "AUTHZ_UNAVAILABLE"},
		{errors.New("boom"), 503, "AUTHZ_UNAVAILABLE"},
		{keystore.ErrNotFound, 403, "USAGE_EXHAUSTED"},
	} {
		a.Uses = &spender{left: 1, err: c.err}
		d := authorize(a, "POST", "/v1/audio/generate", h).Decision
		if d.Allow || d.Status != c.status || d.Code != c.code {
			t.Errorf("%v: %+v", c.err, d)
		}
	}
}

// TestExhaustedKeyIsRefusedByThePolicy: remaining 0 in the cached facts is
// refused on a metered route before any spend; other routes still answer.
func TestExhaustedKeyIsRefusedByThePolicy(t *testing.T) {
	a, h := usesFixture(t, 0)
	sp := &spender{left: 5}
	a.Uses = sp
	d := authorize(a, "POST", "/v1/audio/generate", h).Decision
	if d.Allow || d.Code != "USAGE_EXHAUSTED" || d.Rule != "usage_exhausted" || sp.calls != 0 {
		t.Fatalf("%+v, spends %d", d, sp.calls)
	}
	d = authorize(a, "GET", "/v1/videos", h).Decision
	if !d.Allow || sp.calls != 0 {
		t.Fatalf("unmetered route: %+v, spends %d", d, sp.calls)
	}
}

func TestKeyRateOverridesThePlan(t *testing.T) {
	f, a, _ := entitledFixture(t, keystore.Entitlements{Limits: keystore.Limits{"rate": 2}})
	h := map[string]string{"authorization": "Bearer " + f.live.Reveal()}
	d := a.Authorize(context.Background(), FromCheckRequest(checkFrom("GET", "/v1/videos", "", h))).Decision
	if len(d.Limits) != 1 || d.Limits[0].Limit != 2 || d.Limits[0].Key != "key:{key}:live" {
		t.Fatalf("limits %+v", d.Limits)
	}
}

// TestExchangeEntitlements: the token exchange mints for a scoped key (a
// token carries its key's scopes, which then decide its requests), and
// decides a key with allowed CIDRs by the address the request came from
// (httptest's 192.0.2.1), on mint and on refresh.
func TestExchangeEntitlements(t *testing.T) {
	f := newTokenFixture(t)
	e := &entitled{KeyFacts: f.cache, ent: keystore.Entitlements{Scopes: []string{"videos:read"}}}
	f.authz.Facts = e
	mint := func() (int, map[string]any) {
		w := exchangePost(t, f.exchange, "/auth/api-key", `{"apiKey":"`+f.live.Reveal()+`"}`)
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("body %s", w.Body)
		}
		return w.Code, out
	}
	code, pair := mint()
	if code != 200 {
		t.Fatalf("scoped key mint: %d %v", code, pair)
	}
	bearer := map[string]string{"authorization": "Bearer " + pair["access_token"].(string)}
	if r := f.authorize(bearer); !r.Decision.Allow {
		t.Fatalf("token of a videos:read key on GET /v1/videos: %+v", r.Decision)
	}
	r := f.authz.Authorize(context.Background(), Request{Method: "POST", Host: "api.example.com", Path: "/v1/videos", Headers: bearer})
	if r.Decision.Code != "INSUFFICIENT_SCOPE" {
		t.Fatalf("token of a videos:read key on POST /v1/videos: %+v", r.Decision)
	}

	e.set(keystore.Entitlements{AllowedCIDRs: []string{"192.0.2.0/24"}})
	code, pair = mint()
	if code != 200 {
		t.Fatalf("mint from inside the allowed CIDRs: %d %v", code, pair)
	}
	refresh := pair["refresh_token"].(string)
	if w := exchangePost(t, f.exchange, "/auth/refresh", `{"refreshToken":"`+refresh+`"}`); w.Code != 200 {
		t.Fatalf("refresh from inside: %d %s", w.Code, w.Body)
	}
	e.set(keystore.Entitlements{AllowedCIDRs: []string{"10.0.0.0/8"}})
	if code, out := mint(); code != 403 || out["code"] != "IP_NOT_ALLOWED" {
		t.Fatalf("mint from outside: %d %v", code, out)
	}
}
