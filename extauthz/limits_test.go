package extauthz

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policies"
)

// limitsFixture is an authorizer over a real SQLite store, cache and the
// default policy, with one plus-plan site and a live key.
type limitsFixture struct {
	authz *Authorizer
	store *keystore.Store
	key   string
	now   time.Time
}

func newLimitsFixture(tb testing.TB, siteLimits keystore.Limits) *limitsFixture {
	tb.Helper()
	ctx := context.Background()
	format, _ := keystore.NewFormat("kg")
	digester, _ := keystore.NewDigester()
	store, err := keystore.OpenSQLite(ctx, filepath.Join(tb.TempDir(), "k.db"), keystore.Options{Format: format, Digester: digester})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	if _, err := store.CreateAccount(ctx, keystore.Account{ID: "a1", Plan: "plus"}); err != nil {
		tb.Fatal(err)
	}
	if _, err := store.CreateSite(ctx, keystore.Site{ID: "s1", AccountID: "a1", Active: true}); err != nil {
		tb.Fatal(err)
	}
	if siteLimits != nil {
		if err := store.SetLimits(ctx, keystore.EntitySite, "s1", siteLimits); err != nil {
			tb.Fatal(err)
		}
	}
	_, secret, err := store.CreateKey(ctx, keystore.KeySpec{SiteID: "s1", Mode: keystore.ModeLive})
	if err != nil {
		tb.Fatal(err)
	}
	cache, err := keystore.NewCache(store, keystore.CacheConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cache.Close)
	// The authorizer's clock stands an hour before a month's end, in the
	// future of every run: the store checks a new key's expiry against the
	// real clock, and a key that has expired by the fixture's clock must
	// still be creatable (2026-11-30 went off on that very evening).
	f := &limitsFixture{store: store, key: secret.Reveal(), now: time.Date(2030, 11, 30, 23, 0, 0, 0, time.UTC)}
	f.authz = &Authorizer{Facts: cache, Policy: builtinEngine(tb), Format: format, Digester: digester,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return f.now }}
	return f
}

func (f *limitsFixture) withLimiter(tb testing.TB, cfg limits.Config) {
	tb.Helper()
	cfg.Quotas, cfg.Log = f.store, f.authz.Log
	l, err := limits.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	f.authz.Limits = l
}

func (f *limitsFixture) check(method, path string) Result {
	return f.authz.Authorize(context.Background(), Request{Method: method, Host: "api.example.test", Path: path,
		Headers: map[string]string{"x-api-key": f.key}})
}

// allowed makes n requests for method path, which must all be allowed.
func (f *limitsFixture) allowed(tb testing.TB, n int, method, path string) {
	tb.Helper()
	for i := range n {
		if res := f.check(method, path); !res.Decision.Allow {
			tb.Fatalf("%s %s request %d: %+v", method, path, i, res.Decision)
		}
	}
}

// failure is an error a dependency of Check returns and the refusal it must
// give: never an allow.
type failure struct {
	err    error
	status int
	code   string
}

// countingLimiter records what it was asked to charge.
type countingLimiter struct {
	calls int
	err   error
}

func (c *countingLimiter) Charge(_ context.Context, _ time.Time, cs []limits.Counter) (limits.Outcome, error) {
	c.calls++
	if c.err != nil {
		return limits.Outcome{}, c.err
	}
	out := limits.Outcome{}
	for _, x := range cs {
		out.Results = append(out.Results, limits.Result{Counter: x, Allowed: true, Remaining: x.Limit - 1})
	}
	return out, nil
}

func TestLimitsChargedOnlyOnAllow(t *testing.T) {
	f := newLimitsFixture(t, nil)
	c := &countingLimiter{}
	f.authz.Limits = c
	f.authz.Authorize(context.Background(), Request{Method: "GET", Host: "h", Path: "/v1/videos"}) // no key: 401
	f.authz.Authorize(context.Background(), Request{Method: "GET", Host: "h", Path: "/v1/sites/other/x",
		Headers: map[string]string{"x-api-key": f.key}}) // another site: 403
	if c.calls != 0 {
		t.Fatalf("denied requests charged %d times", c.calls)
	}
	res := f.check("GET", "/v1/videos")
	if !res.Decision.Allow || c.calls != 1 {
		t.Fatalf("allow: %+v, %d charges", res.Decision, c.calls)
	}
	if got := res.Decision.ResponseHeaders[HeaderRateRemaining]; got != "59" {
		t.Errorf("allowed response: ratelimit-remaining %q, want 59 (headers %v)", got, res.Decision.ResponseHeaders)
	}
}

func TestLimiterErrors(t *testing.T) {
	for _, tt := range []failure{
		{limits.ErrUnavailable, 503, "AUTHZ_UNAVAILABLE"},
		{errors.New("limits: bad counter"), 500, "POLICY_ERROR"},
	} {
		f := newLimitsFixture(t, nil)
		f.authz.Limits = &countingLimiter{err: tt.err}
		d := f.check("GET", "/v1/videos").Decision
		if d.Allow || d.Status != tt.status || d.Code != tt.code {
			t.Errorf("limiter error %v: got %d %s, want %d %s", tt.err, d.Status, d.Code, tt.status, tt.code)
		}
	}
}

func TestRateLimitedResponse(t *testing.T) {
	f := newLimitsFixture(t, keystore.Limits{"rate": 2})
	f.withLimiter(t, limits.Config{})
	f.allowed(t, 2, "GET", "/v1/videos")
	f.now = f.now.Add(5 * time.Second)
	res := f.check("GET", "/v1/videos")
	d := res.Decision
	if d.Allow || d.Status != 429 || d.Code != "RATE_LIMITED" {
		t.Fatalf("third request: %+v", d)
	}
	// Two per minute: the next token comes 30 s after the first request.
	want := map[string]string{
		"retry-after": "25", "ratelimit-limit": "2", "ratelimit-remaining": "0", "ratelimit-reset": "55",
		"ratelimit-policy": "2;w=60", "content-type": "application/json", "cache-control": "no-store",
	}
	got := DenyHeaders(d, true)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("header %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	var body map[string]string
	// The refusal is the policy's (limit_denials), not keygate's built-in one.
	if err := json.Unmarshal(DenyBody(d), &body); err != nil || body["code"] != "RATE_LIMITED" ||
		body["message"] != "Rate limit exceeded; retry after the time in Retry-After" {
		t.Errorf("body %s (%v)", DenyBody(d), err)
	}
}

func TestQuotaExceededResponse(t *testing.T) {
	f := newLimitsFixture(t, keystore.Limits{"quota": 2})
	f.withLimiter(t, limits.Config{})
	f.allowed(t, 2, "POST", "/v1/audio/generate")
	// Status polls are not metered.
	if res := f.check("GET", "/v1/audio/generate"); !res.Decision.Allow {
		t.Fatalf("unmetered GET refused: %+v", res.Decision)
	}
	d := f.check("POST", "/v1/audio/generate").Decision
	if d.Allow || d.Status != 403 || d.Code != "QUOTA_EXCEEDED" {
		t.Fatalf("third generation: %+v", d)
	}
	var body map[string]string
	if err := json.Unmarshal(DenyBody(d), &body); err != nil {
		t.Fatal(err)
	}
	if body["code"] != "QUOTA_EXCEEDED" || body["message"] != "Monthly quota exceeded for this site" || body["reset_at"] != "2030-12-01T00:00:00Z" {
		t.Errorf("body %v", body)
	}
	// December: the quota is back.
	f.now = f.now.Add(time.Hour)
	if res := f.check("POST", "/v1/audio/generate"); !res.Decision.Allow {
		t.Fatalf("first generation of December: %+v", res.Decision)
	}
}

// BenchmarkAuthorizeLimits is a cache-hit decision of the default policy
// without limits, with the rate counted in-process, counted in Redis
// (KEYGATE_TEST_REDIS), and a metered request (the rate in-process, the
// quota charged in SQLite). The plan's limits are raised so nothing is
// refused.
func BenchmarkAuthorizeLimits(b *testing.B) {
	run := func(b *testing.B, f *limitsFixture, method, path string) {
		f.authz.Now = nil
		f.authz.Budget = 10 * time.Second // a loaded machine must not turn into 503s
		if res := f.check(method, path); !res.Decision.Allow {
			b.Fatalf("warm-up: %+v", res.Decision)
		}
		f.authz.Facts.(*keystore.Cache).Wait()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if res := f.check(method, path); !res.Decision.Allow {
				b.Fatalf("%+v", res.Decision)
			}
		}
	}
	huge := keystore.Limits{"rate": 1_000_000_000, "quota": 1_000_000_000}
	b.Run("none", func(b *testing.B) { run(b, newLimitsFixture(b, huge), "GET", "/v1/videos") })
	b.Run("in-process", func(b *testing.B) {
		f := newLimitsFixture(b, huge)
		f.withLimiter(b, limits.Config{})
		run(b, f, "GET", "/v1/videos")
	})
	b.Run("metered", func(b *testing.B) {
		f := newLimitsFixture(b, huge)
		f.withLimiter(b, limits.Config{})
		run(b, f, "POST", "/v1/audio/generate")
	})
	b.Run("redis", func(b *testing.B) {
		client, prefix := redistest.Client(b)
		f := newLimitsFixture(b, huge)
		f.withLimiter(b, limits.Config{Redis: limits.NewRedis(client, prefix)})
		run(b, f, "GET", "/v1/videos")
	})
}

// plainDecider is a policy without a denial table.
type plainDecider struct{}

func (plainDecider) Decide(context.Context, *policies.Input) (policies.Decision, error) {
	return policies.Decision{}, errors.New("unused")
}

func (plainDecider) PublicSite(string) (string, bool) { return "", false }

func TestBuiltinLimitDenials(t *testing.T) {
	pol := plainDecider{}
	now := time.Date(2027, 1, 31, 12, 0, 0, 0, time.UTC)
	rate := limits.Result{Counter: limits.Counter{Kind: limits.Rate, Key: "k", Limit: 10, Period: time.Minute, Cost: 1},
		RetryAfter: 1500 * time.Millisecond, ResetAfter: time.Minute}
	d := limitDenial(pol, []policies.Limit{{Kind: "rate", Key: "k", Code: "RATE_LIMITED"}}, []limits.Counter{rate.Counter}, rate, now)
	if d.Status != 429 || d.Code != "RATE_LIMITED" || d.ResponseHeaders["retry-after"] != "2" || d.ResponseHeaders["ratelimit-reset"] != "60" {
		t.Errorf("rate: %+v", d)
	}
	quota := limits.Result{Counter: limits.Counter{Kind: limits.Quota, Key: "q", Limit: 10, Cost: 1}}
	d = limitDenial(pol, []policies.Limit{{Kind: "quota", Key: "q", Code: "POSTS_USED_UP"}}, []limits.Counter{quota.Counter}, quota, now)
	// A code with no row in config.errors is refused as its kind's default.
	if d.Status != 403 || d.Code != "QUOTA_EXCEEDED" {
		t.Errorf("custom quota code: %+v", d)
	}
	if got, want := string(DenyBody(d)), `{"code":"QUOTA_EXCEEDED","message":"Monthly quota exceeded for this site","reset_at":"2027-02-01T00:00:00Z"}`; got != want {
		t.Errorf("body %s, want %s", got, want)
	}
}
