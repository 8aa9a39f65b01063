package extauthz

import (
	"context"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestEntitlementsFromTheStore: entitlements stored with a key (SQLite,
// the real cache) decide its requests, uses are spent in the store exactly
// as many times as allowed, and an update reaches the decision through
// the cache's invalidation.
func TestEntitlementsFromTheStore(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	two := int64(2)
	key, secret, err := f.store.CreateKey(ctx, keystore.KeySpec{SiteID: "acme-web", Mode: keystore.ModeLive,
		Entitlements: keystore.Entitlements{Scopes: []string{"audio:write", "videos:read"}, Remaining: &two,
			Meta: map[string]string{"tier": "gold"}}})
	if err != nil {
		t.Fatal(err)
	}
	a := *f.server.Authorizer
	a.Uses = f.store
	h := map[string]string{"authorization": "Bearer " + secret.Reveal()}
	decide := func(method, path string) Result {
		return a.Authorize(ctx, FromCheckRequest(checkFrom(method, path, "", h)))
	}
	if res := decide("GET", "/v1/videos/1"); !res.Decision.Allow || res.Upstream["x-keygate-meta-tier"] != "gold" {
		t.Fatalf("GET /v1/videos/1: %+v %v", res.Decision, res.Upstream)
	}
	if d := decide("DELETE", "/v1/videos/1").Decision; d.Code != "INSUFFICIENT_SCOPE" {
		t.Fatalf("DELETE: %+v", d)
	}
	for i := range 2 {
		if d := decide("POST", "/v1/audio/generate").Decision; !d.Allow {
			t.Fatalf("metered request %d: %+v", i+1, d)
		}
	}
	if d := decide("POST", "/v1/audio/generate").Decision; d.Code != "USAGE_EXHAUSTED" {
		t.Fatalf("third metered request: %+v", d)
	}
	got, err := f.store.Key(ctx, key.ID)
	if err != nil || got.Remaining == nil || *got.Remaining != 0 {
		t.Fatalf("stored remaining: %v %v", got.Remaining, err)
	}
	// Found used up, the key is re-read: the policy refuses it on metered
	// routes before any spend, and routes that spend no use still answer.
	if d := decide("POST", "/v1/audio/generate").Decision; d.Code != "USAGE_EXHAUSTED" || d.Rule != "usage_exhausted" {
		t.Fatalf("metered after the last use: %+v", d)
	}
	if d := decide("GET", "/v1/videos/1").Decision; !d.Allow {
		t.Fatalf("unmetered after the last use: %+v", d)
	}
	// An update (new uses, narrower scopes) applies once the change log
	// invalidates the cached facts, as a running server's follower does.
	five, none := int64(5), []string{"videos:write"}
	if _, err := f.store.UpdateKey(ctx, key.ID, keystore.KeyPatch{Remaining: &five, Scopes: &none}); err != nil {
		t.Fatal(err)
	}
	f.cache.Invalidate(keystore.EntityKey, key.ID)
	if d := decide("GET", "/v1/videos/1").Decision; d.Code != "INSUFFICIENT_SCOPE" {
		t.Fatalf("after the update, GET: %+v", d)
	}
	if d := decide("POST", "/v1/videos").Decision; !d.Allow {
		t.Fatalf("after the update, POST: %+v", d)
	}
}
