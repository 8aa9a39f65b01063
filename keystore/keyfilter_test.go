package keystore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// floodBudget is the most store reads 2,000 distinct unknown keys may cost
// on a clock that stands still: the unknown-key burst, plus the filter's
// false positives (1 in 1,000 predicts about 2).
const floodBudget = keystore.UnknownBurst + 10

// TestKeyFilterFlood: 2,000 distinct well-formed unknown keys cost at most
// floodBudget store reads, known keys are found, and a key created after
// the filter was loaded is found once the change log reaches the filter.
func TestKeyFilterFlood(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		_, known := fx.key("web", keystore.ModeLive)
		follower, filter, cache := filteredCache(t, fx, true)
		for i := range 2000 {
			if _, err := cache.Key(ctx, fx.dig.All(unknownKey(t))); !errors.Is(err, keystore.ErrNotFound) {
				t.Fatalf("unknown key %d: %v", i, err)
			}
		}
		lookups, filtered := filter.Stats()
		t.Logf("2000 unknown keys: %d store reads, %d answered by the filter", lookups, filtered)
		if lookups > floodBudget {
			t.Fatalf("2000 unknown keys cost %d store reads, budget %d", lookups, floodBudget)
		}
		if _, err := cache.Key(ctx, fx.dig.All(known)); err != nil {
			t.Fatalf("a stored key was filtered out: %v", err)
		}

		// Created after the filter was loaded, with the budget spent by
		// the flood: unknown until the change log is read, then found (no
		// negative entry hides it).
		_, fresh := fx.key("web", keystore.ModeTest)
		if _, err := cache.Key(ctx, fx.dig.All(fresh)); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("new key before the change log was read: %v", err)
		}
		if err := follower.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := cache.Key(ctx, fx.dig.All(fresh)); err != nil {
			t.Fatalf("new key after the change log was read: %v", err)
		}
	})
}

// TestKeyFilterBeforeLoad: a filter that has not read the store yet lets
// unknown keys spend the unknown-key budget; past it a lookup waits for the
// load, refused as unavailable (never "no such key", which the cache would
// remember) if its context ends first. A known key arriving after a flood
// spent the budget is found once the load is done, not refused, and what
// the change log taught the filter meanwhile is kept across Load.
func TestKeyFilterBeforeLoad(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		_, known := fx.key("web", keystore.ModeLive)
		follower, filter, cache := filteredCache(t, fx, false)
		for i := range keystore.UnknownBurst {
			if _, err := filter.LookupKey(ctx, fx.dig.All(unknownKey(t))); !errors.Is(err, keystore.ErrNotFound) {
				t.Fatalf("unknown key %d within the budget, before the load: %v", i, err)
			}
		}
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		if _, err := filter.LookupKey(short, fx.dig.All(unknownKey(t))); !errors.Is(err, keystore.ErrUnavailable) {
			t.Fatalf("unknown key past the budget, before the load: %v, want unavailable", err)
		}
		if lookups, _ := filter.Stats(); lookups != keystore.UnknownBurst {
			t.Fatalf("%d store reads before the load, want the budget's %d", lookups, keystore.UnknownBurst)
		}
		// The budget is spent (the clock stands still): a known key waits
		// for the load instead of failing.
		found := make(chan error, 1)
		go func() {
			_, err := cache.Key(ctx, fx.dig.All(known))
			found <- err
		}()
		// A key created before the load, taught by the change log while
		// the budget is spent: found once the load is done.
		_, fresh := fx.key("web", keystore.ModeTest)
		if err := follower.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		if filter.Loaded() {
			t.Fatal("loaded before Load")
		}
		if err := filter.Load(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-found; err != nil {
			t.Errorf("known key waiting for the load: %v", err)
		}
		for name, raw := range map[string]string{"known": known, "fresh": fresh} {
			if _, err := cache.Key(ctx, fx.dig.All(raw)); err != nil {
				t.Errorf("%s key after the load: %v", name, err)
			}
		}
		if _, err := cache.Key(ctx, fx.dig.All(unknownKey(t))); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("unknown key after the load: %v, want not found", err)
		}
	})
}

// filteredCache is serve's arrangement: a follower started before the key
// filter (loaded, or not yet), and a cache reading through the filter.
func filteredCache(t *testing.T, fx *fixture, loaded bool) (*keystore.Follower, *keystore.KeyFilter, *keystore.Cache) {
	t.Helper()
	follower := &keystore.Follower{Source: fx.store}
	if err := follower.Start(ctx); err != nil {
		t.Fatal(err)
	}
	filter := keystore.NewUnloadedKeyFilter(fx.store, 0)
	if loaded {
		if err := filter.Load(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cache, err := keystore.NewCache(filter, keystore.CacheConfig{Now: fx.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cache.Close)
	follower.Cache, follower.Filter = cache, filter
	return follower, filter, cache
}

// unknownKey is a fresh well-formed key no store holds.
func unknownKey(t *testing.T) string {
	t.Helper()
	f, _ := keystore.NewFormat("kg")
	raw, err := f.Generate(keystore.ModeLive)
	if err != nil {
		t.Fatal(err)
	}
	return raw.Reveal()
}
