package keystore_test

import (
	"errors"
	"testing"

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

// TestKeyFilterBeforeLoad: a filter that has not read the store yet finds
// known keys without spending the unknown-key budget, refuses unknown keys
// past the budget as unavailable (never "no such key", which the cache
// would remember), and keeps what the change log taught it across Load.
func TestKeyFilterBeforeLoad(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		_, known := fx.key("web", keystore.ModeLive)
		follower, filter, cache := filteredCache(t, fx, false)
		unavailable := 0
		for i := range 200 {
			_, err := cache.Key(ctx, fx.dig.All(unknownKey(t)))
			switch {
			case errors.Is(err, keystore.ErrUnavailable):
				unavailable++
			case !errors.Is(err, keystore.ErrNotFound):
				t.Fatalf("unknown key %d before the load: %v", i, err)
			}
		}
		if lookups, _ := filter.Stats(); lookups > keystore.UnknownBurst || unavailable != 200-keystore.UnknownBurst {
			t.Fatalf("200 unknown keys before the load: %d store reads, %d unavailable; want %d reads", lookups, unavailable, keystore.UnknownBurst)
		}
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
