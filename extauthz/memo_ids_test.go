package extauthz

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policies"
)

// recordingLimiter charges through next and records the counter keys.
type recordingLimiter struct {
	next Limiter
	mu   sync.Mutex
	keys []string
}

func (r *recordingLimiter) Charge(ctx context.Context, now time.Time, cs []limits.Counter) (limits.Outcome, error) {
	r.mu.Lock()
	for _, c := range cs {
		r.keys = append(r.keys, c.Key)
	}
	r.mu.Unlock()
	return r.next.Charge(ctx, now, cs)
}

func (r *recordingLimiter) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.keys
	r.keys = nil
	return k
}

// TestKeysShareDecisionsNotCounters: the built-in policy reads no id, so a
// key's first request is answered by the decision another key with the
// same facts was given; but every key is still charged its own counters,
// and a site-scoped path still names one site only.
func TestKeysShareDecisionsNotCounters(t *testing.T) {
	ctx := context.Background()
	f := newLimitsFixture(t, keystore.Limits{"rate": 2, "quota": 100})
	if _, err := f.store.CreateSite(ctx, keystore.Site{ID: "s2", AccountID: "a1", Active: true}); err != nil {
		t.Fatal(err)
	}
	if err := f.store.SetLimits(ctx, keystore.EntitySite, "s2", keystore.Limits{"rate": 2, "quota": 100}); err != nil {
		t.Fatal(err)
	}
	other, secret, err := f.store.CreateKey(ctx, keystore.KeySpec{SiteID: "s2", Mode: keystore.ModeLive})
	if err != nil {
		t.Fatal(err)
	}
	f.withLimiter(t, limits.Config{})
	rec := &recordingLimiter{next: f.authz.Limits}
	f.authz.Limits = rec
	as := func(key, method, path string) Result {
		return f.authz.Authorize(ctx, Request{Method: method, Host: "api.example.test", Path: path,
			Headers: map[string]string{"x-api-key": key}})
	}
	mine, theirs := f.key, secret.Reveal()

	first := as(mine, "GET", "/v1/videos/vid_1")
	if !first.Decision.Allow || first.Memo != string(policies.MemoMiss) || first.KeyID == "" || first.KeyID == other.ID {
		t.Fatalf("first key: %+v, memo %s, key %q", first.Decision, first.Memo, first.KeyID)
	}
	if got, want := rec.take(), []string{"key:" + first.KeyID + ":live"}; !slices.Equal(got, want) {
		t.Fatalf("first key charged %v, want %v", got, want)
	}
	res := as(theirs, "GET", "/v1/videos/vid_2")
	if !res.Decision.Allow || res.Memo != string(policies.MemoHit) {
		t.Fatalf("second key, same facts: %+v, memo %s (want a hit)", res.Decision, res.Memo)
	}
	if got, want := rec.take(), []string{"key:" + other.ID + ":live"}; !slices.Equal(got, want) {
		t.Fatalf("second key charged %v, want %v", got, want)
	}
	if res.KeyID != other.ID || res.Site != "s2" {
		t.Fatalf("second key's result names %s on %s", res.KeyID, res.Site)
	}

	// Metered: each site its own quota counter.
	as(mine, "POST", "/v1/audio/generate")
	as(theirs, "POST", "/v1/audio/generate")
	got := rec.take()
	if !slices.Contains(got, "site:s1:live") || !slices.Contains(got, "site:s2:live") {
		t.Fatalf("metered requests charged %v, want each site's quota", got)
	}

	// Spend the first key's rate (2 a minute): the second key's is its own.
	as(mine, "GET", "/v1/videos/vid_3")
	if res := as(mine, "GET", "/v1/videos/vid_4"); res.Decision.Allow || res.Decision.Code != "RATE_LIMITED" {
		t.Fatalf("first key past its rate: %+v", res.Decision)
	}
	if res := as(theirs, "GET", "/v1/videos/vid_5"); !res.Decision.Allow {
		t.Fatalf("second key after the first's rate was spent: %+v", res.Decision)
	}
	f.now = f.now.Add(time.Minute)

	// Site-scoped paths: each key's own site only, whichever decided first.
	if res := as(mine, "GET", "/v1/sites/s1/videos"); !res.Decision.Allow {
		t.Fatalf("own site: %+v", res.Decision)
	}
	if res := as(theirs, "GET", "/v1/sites/s1/videos"); res.Decision.Allow || res.Decision.Code != "SITE_MISMATCH" {
		t.Fatalf("another key's site: %+v", res.Decision)
	}
	if res := as(theirs, "GET", "/v1/sites/s2/videos"); !res.Decision.Allow {
		t.Fatalf("second key's own site: %+v", res.Decision)
	}
	if res := as(mine, "GET", "/v1/sites/s2/videos"); res.Decision.Allow || res.Decision.Code != "SITE_MISMATCH" {
		t.Fatalf("first key on the second's site: %+v", res.Decision)
	}
}

// TestCounterKeyWithoutKey: a limit naming "{key}" on a request without a
// key is the policy's error, a deny, never a counter shared by everyone.
func TestCounterKeyWithoutKey(t *testing.T) {
	c := &countingLimiter{}
	a := &Authorizer{Limits: c, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	d := policies.Decision{Allow: true, Limits: []policies.Limit{{Kind: "rate", Key: "ip:{key}", Limit: 5, Period: time.Minute, Cost: 1}}}
	in := &policies.Input{Credential: policies.Credential{Status: policies.CredMissing}}
	got := a.chargeLimits(context.Background(), plainDecider{}, in, d, time.Now())
	if got.Allow || got.Code != "POLICY_ERROR" || c.calls != 0 {
		t.Fatalf("%+v, %d charges", got, c.calls)
	}
	in.Key, in.Site, in.Account = &policies.Key{ID: "key_9", Mode: "live"}, &policies.Site{ID: "s9"}, &policies.Account{ID: "a9"}
	if got := a.chargeLimits(context.Background(), plainDecider{}, in, d, time.Now()); !got.Allow || c.calls != 1 {
		t.Fatalf("with a key: %+v, %d charges", got, c.calls)
	}
}

// customDenials is a Decider whose policy has a row for POSTS_USED_UP.
type customDenials struct{ plainDecider }

func (customDenials) Denial(name string) (policies.Decision, bool) {
	if name != "POSTS_USED_UP" {
		return policies.Decision{}, false
	}
	return policies.Decision{Status: 402, Code: name, Message: "posts used up"}, true
}

// denyingLimiter refuses the counter named key.
type denyingLimiter struct{ key string }

func (l denyingLimiter) Charge(_ context.Context, _ time.Time, cs []limits.Counter) (limits.Outcome, error) {
	for _, c := range cs {
		if c.Key == l.key {
			return limits.Outcome{Denied: &limits.Result{Counter: c}}, nil
		}
	}
	return limits.Outcome{}, nil
}

// TestFilledCounterKeepsItsCode: an exhausted counter whose key the policy
// wrote with a placeholder is refused with the policy's own code for it,
// found by the key as charged.
func TestFilledCounterKeepsItsCode(t *testing.T) {
	a := &Authorizer{Limits: denyingLimiter{key: "site:s1:live"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	d := policies.Decision{Allow: true, Limits: []policies.Limit{
		{Kind: "rate", Key: "key:{key}:live", Limit: 5, Period: time.Minute, Cost: 1, Code: "RATE_LIMITED"},
		{Kind: "quota", Key: "site:{site}:live", Limit: 5, Cost: 1, Code: "POSTS_USED_UP"},
	}}
	in := &policies.Input{Key: &policies.Key{ID: "key_1", Mode: "live"}, Site: &policies.Site{ID: "s1"}, Account: &policies.Account{ID: "a1"}}
	got := a.chargeLimits(context.Background(), customDenials{}, in, d, time.Now())
	if got.Allow || got.Code != "POSTS_USED_UP" || got.Status != 402 {
		t.Fatalf("%+v, want the policy's POSTS_USED_UP", got)
	}
}

// TestSharedDecisionSiteSpellings: once the first key's allow on its own
// site path is remembered, the second key (same facts, another site) is
// refused every spelling of the first key's site path an upstream may take
// for it, on gRPC and on forward-auth, and still allowed on its own.
func TestSharedDecisionSiteSpellings(t *testing.T) {
	ctx := context.Background()
	f := newLimitsFixture(t, nil)
	if _, err := f.store.CreateSite(ctx, keystore.Site{ID: "s2", AccountID: "a1", Active: true}); err != nil {
		t.Fatal(err)
	}
	_, secret, err := f.store.CreateKey(ctx, keystore.KeySpec{SiteID: "s2", Mode: keystore.ModeLive})
	if err != nil {
		t.Fatal(err)
	}
	theirs := secret.Reveal()
	grpcSrv := &Server{Authorizer: f.authz, Log: f.authz.Log}
	fwd := (&ForwardAuth{Authorizer: f.authz, Log: f.authz.Log}).Wrap(nil)
	grpcCheck := func(key, path, host string) int32 {
		req := envoyCheckRequest("GET", path, map[string]string{"x-api-key": key})
		req.Attributes.Request.Http.Host = host
		resp, err := grpcSrv.Check(envoyContext(t), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatus().GetCode()
	}
	httpCheck := func(key, path, host string) int {
		req := httptest.NewRequest("GET", "/forward-auth", nil)
		req.Host = "keygate:8080"
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", path)
		req.Header.Set("X-Forwarded-Host", host)
		req.Header.Set("X-Api-Key", key)
		rec := httptest.NewRecorder()
		fwd.ServeHTTP(rec, req)
		return rec.Code
	}
	// The first key's allow on its own site is remembered.
	if code := grpcCheck(f.key, "/v1/sites/s1/videos/vid_1", "api.example.test"); code != 0 {
		t.Fatalf("first key on its own site: code %d", code)
	}
	if code := httpCheck(f.key, "/v1/sites/s1/videos/vid_1", "api.example.test"); code != 200 {
		t.Fatalf("first key on its own site (forward-auth): %d", code)
	}
	for _, path := range []string{
		"/v1/sites/s1/videos/vid_2", "/v1/sites/S1/videos", "/v1/sites/%731/videos", "/v1/sites/s%31/videos",
		"/v1/sites/s1./videos", "/v1/sites//s1/videos", "/v1/sites/s1%2Fvideos", "/v1//sites/s1/videos",
		"/v1/sites/./s1/videos", "/V1/SITES/s1/videos", "/v1/sites/s1;x/videos", "/v1/sites/s1",
	} {
		for _, host := range []string{"api.example.test", "API.example.test", "api.example.test.", "api.example.test:443"} {
			if code := grpcCheck(theirs, path, host); code == 0 {
				t.Errorf("gRPC: second key allowed on %s (host %s)", path, host)
			}
			if code := httpCheck(theirs, path, host); code == 200 {
				t.Errorf("forward-auth: second key allowed on %s (host %s)", path, host)
			}
		}
	}
	if code := grpcCheck(theirs, "/v1/sites/s2/videos", "api.example.test"); code != 0 {
		t.Fatalf("second key on its own site: code %d", code)
	}
	if code := httpCheck(theirs, "/v1/sites/s2/videos", "api.example.test"); code != 200 {
		t.Fatalf("second key on its own site (forward-auth): %d", code)
	}
}
