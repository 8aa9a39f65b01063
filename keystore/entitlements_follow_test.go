package keystore

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestFollowerSeesEntitlementChanges: a server's cache serves a key's
// entitlements, and a change another process makes (keys update, keys
// roll) replaces them on the next poll of the change log.
func TestFollowerSeesEntitlementChanges(t *testing.T) {
	ctx := context.Background()
	fx := newFollowFixture(t)
	cli, cache := fx.cli, fx.cache
	key, secret, err := cli.CreateKey(ctx, KeySpec{SiteID: "web", Mode: ModeLive,
		Entitlements: Entitlements{Scopes: []string{"videos:read"}, Meta: map[string]string{"tier": "gold"}}})
	if err != nil {
		t.Fatal(err)
	}
	f := fx.follow(t, cache)
	ds := fx.digester.All(secret.Reveal())
	got, err := cache.Key(ctx, ds)
	if err != nil || !slices.Equal(got.Key.Scopes, []string{"videos:read"}) || got.Key.Meta["tier"] != "gold" {
		t.Fatalf("cached facts %+v, %v", got.Key.Entitlements, err)
	}
	cache.Wait()

	scopes := []string{"videos:write"}
	if _, err := cli.UpdateKey(ctx, key.ID, KeyPatch{Scopes: &scopes, ClearMeta: true, Remaining: new(int64)}); err != nil {
		t.Fatal(err)
	}
	if err := f.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	got, err = cache.Key(ctx, ds)
	if err != nil || !slices.Equal(got.Key.Scopes, []string{"videos:write"}) || got.Key.Meta != nil || got.Key.Remaining == nil || *got.Key.Remaining != 0 {
		t.Fatalf("after keys update the cache serves %+v, %v", got.Key.Entitlements, err)
	}
	cache.Wait()

	if _, _, _, err := cli.RollKey(ctx, key.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := f.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	got, err = cache.Key(ctx, ds)
	if err != nil || got.Key.ExpiresAt == nil {
		t.Fatalf("after keys roll the cache serves expires_at %v, %v", got.Key.ExpiresAt, err)
	}
}
