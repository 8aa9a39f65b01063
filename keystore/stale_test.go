package keystore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testclock"
	"github.com/keygate/keygate/keystore"
)

// flakyLoader is a store that can be taken down.
type flakyLoader struct {
	mu   sync.Mutex
	down bool
	keys map[keystore.Digest]keystore.KeyFacts
}

func (l *flakyLoader) setDown(down bool) {
	l.mu.Lock()
	l.down = down
	l.mu.Unlock()
}

func (l *flakyLoader) LookupKey(_ context.Context, digests []keystore.Digest) (keystore.KeyFacts, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return keystore.KeyFacts{}, fmt.Errorf("lookup: %w: connection refused", keystore.ErrUnavailable)
	}
	if f, ok := l.keys[digests[0]]; ok {
		return f, nil
	}
	return keystore.KeyFacts{}, keystore.ErrNotFound
}

func (l *flakyLoader) LookupKeyID(context.Context, string) (keystore.KeyFacts, error) {
	return keystore.KeyFacts{}, keystore.ErrNotFound
}

func (l *flakyLoader) LookupSite(context.Context, string) (keystore.SiteFacts, error) {
	return keystore.SiteFacts{}, keystore.ErrNotFound
}

type staleFixture struct {
	t      *testing.T
	clock  *clock
	loader *flakyLoader
	cache  *keystore.Cache
}

func newStaleFixture(t *testing.T, stale time.Duration) *staleFixture {
	c := testclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	l := &flakyLoader{keys: map[keystore.Digest]keystore.KeyFacts{
		"known": {Key: keystore.Key{ID: "key_known"}, Site: keystore.Site{ID: "web"}, Account: keystore.Account{ID: "acme"}},
		"other": {Key: keystore.Key{ID: "key_other"}, Site: keystore.Site{ID: "web"}, Account: keystore.Account{ID: "acme"}},
	}}
	cache, err := keystore.NewCache(l, keystore.CacheConfig{TTL: 5 * time.Minute, NegativeTTL: 5 * time.Second, StaleIfError: stale, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cache.Close)
	return &staleFixture{t: t, clock: c, loader: l, cache: cache}
}

// get looks a digest up and returns the error class: "ok", "unknown" or "unavailable".
func (f *staleFixture) get(d keystore.Digest) string {
	f.t.Helper()
	_, err := f.cache.Key(context.Background(), []keystore.Digest{d})
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, keystore.ErrNotFound):
		return "unknown"
	case errors.Is(err, keystore.ErrUnavailable):
		return "unavailable"
	}
	f.t.Fatalf("unexpected error %v", err)
	return ""
}

func (f *staleFixture) want(d keystore.Digest, want, when string) {
	f.t.Helper()
	if got := f.get(d); got != want {
		f.t.Errorf("%s: %s is %s, want %s", when, d, got, want)
	}
}

// warm reads d while the store is up, wanting want, and waits until the
// cache holds the answer.
func (f *staleFixture) warm(d keystore.Digest, want string) {
	f.t.Helper()
	f.want(d, want, "store up")
	f.cache.Wait()
}

func TestCacheStaleIfError(t *testing.T) {
	f := newStaleFixture(t, time.Minute)
	f.warm("known", "ok")
	f.loader.setDown(true)
	f.clock.Add(59 * time.Second)
	f.want("known", "ok", "outage, cached key within the bound")
	f.want("other", "unavailable", "outage, key never cached")
	if f.cache.StaleHits() != 0 {
		t.Errorf("stale hits %d before the entry needed a re-read", f.cache.StaleHits())
	}
	f.clock.Add(2 * time.Second)
	f.want("known", "unavailable", "outage past the bound")
	f.loader.setDown(false)
	f.want("known", "ok", "store back")
	f.want("other", "ok", "store back, new key")
}

// A complete read of the change log vouches for cached entries; an entry past
// its TTL is served stale while the store is down, within the bound.
func TestCacheStaleAfterTTL(t *testing.T) {
	f := newStaleFixture(t, time.Minute)
	f.warm("known", "ok")
	f.clock.Add(5*time.Minute + 30*time.Second)
	f.cache.BeginSync()() // the follower kept the log in sync until now
	f.loader.setDown(true)
	f.clock.Add(20 * time.Second)
	f.want("known", "ok", "outage, entry past its TTL but within the bound since the last sync")
	if f.cache.StaleHits() != 1 {
		t.Errorf("stale hits %d, want 1", f.cache.StaleHits())
	}
	f.clock.Add(41 * time.Second)
	f.want("known", "unavailable", "outage past the bound since the last sync")
}

// An invalidated entry is never served, however short the outage.
func TestCacheStaleNeverPastInvalidation(t *testing.T) {
	f := newStaleFixture(t, time.Minute)
	f.warm("known", "ok")
	f.loader.setDown(true)
	f.cache.Invalidate(keystore.EntityKey, "key_known")
	f.want("known", "unavailable", "outage after the key's invalidation")
	f.cache.Invalidate(keystore.EntitySite, "web")
	f.loader.setDown(false)
	f.warm("other", "ok")
	f.loader.setDown(true)
	f.cache.Invalidate(keystore.EntityAccount, "acme")
	f.want("other", "unavailable", "outage after the account's invalidation")
}

// A revocation's mark outlives every entry it concerns: pruning marks after
// a burst of other writes must not bring a revoked key back while the store
// is down (the entry itself lives ttl+stale in ristretto).
func TestCacheStaleNeverPastPrunedMark(t *testing.T) {
	f := newStaleFixture(t, time.Minute)
	f.warm("known", "ok")
	f.clock.Add(30 * time.Second)
	f.cache.Invalidate(keystore.EntityKey, "key_known")
	f.clock.Add(5*time.Minute + 31*time.Second)
	for i := range 1100 { // enough other writes to make Invalidate prune
		f.cache.Invalidate(keystore.EntityKey, fmt.Sprintf("key_%d", i))
	}
	f.cache.BeginSync()()
	f.loader.setDown(true)
	f.want("known", "unavailable", "outage after the revocation's mark was old")
}

// "No such key" is not a positive entry: past its short TTL an outage gives
// unavailable, never a stale "unknown".
func TestCacheStaleNegative(t *testing.T) {
	f := newStaleFixture(t, time.Minute)
	f.warm("missing", "unknown")
	f.loader.setDown(true)
	f.want("missing", "unknown", "outage within the negative TTL")
	f.clock.Add(6 * time.Second)
	f.want("missing", "unavailable", "outage past the negative TTL")
}

// Without a bound (StaleIfError 0) the cache behaves as before: entries live
// until their TTL whether or not the log is followed.
func TestCacheStaleOff(t *testing.T) {
	f := newStaleFixture(t, 0)
	f.warm("known", "ok")
	f.loader.setDown(true)
	f.clock.Add(4 * time.Minute)
	f.want("known", "ok", "outage without a bound, within TTL")
	f.want("other", "unavailable", "outage, key never cached")
}
