package keystore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeLoader serves facts from fields a test changes; hold, when set, makes
// every load wait for the test (to put an invalidation inside a fill).
type fakeLoader struct {
	mu    sync.Mutex
	key   *KeyFacts
	site  *SiteFacts
	err   error
	loads atomic.Int64
	// started receives once per load, before it reads the fields; release
	// lets it continue. Both nil: loads never block.
	started chan struct{}
	release chan struct{}
}

func (l *fakeLoader) snapshot(ctx context.Context) (*KeyFacts, *SiteFacts, error) {
	l.loads.Add(1)
	if l.started != nil {
		// The "store read" happens first, then the test hears of it and
		// changes the facts while the load is still in flight.
		l.mu.Lock()
		k, s, err := l.key, l.site, l.err
		l.mu.Unlock()
		l.started <- struct{}{}
		select {
		case <-l.release:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		return k, s, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.key, l.site, l.err
}

func (l *fakeLoader) LookupKey(ctx context.Context, _ []Digest) (KeyFacts, error) {
	k, _, err := l.snapshot(ctx)
	return found(k, err)
}

func (l *fakeLoader) LookupKeyID(ctx context.Context, _ string) (KeyFacts, error) {
	return l.LookupKey(ctx, nil)
}

func (l *fakeLoader) LookupSite(ctx context.Context, _ string) (SiteFacts, error) {
	_, s, err := l.snapshot(ctx)
	return found(s, err)
}

// found answers as a store does for a row read: ErrNotFound when there is
// none.
func found[T any](row *T, err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	if row == nil {
		return zero, ErrNotFound
	}
	return *row, nil
}

func (l *fakeLoader) set(fn func(l *fakeLoader)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fn(l)
}

func sampleFacts() *KeyFacts {
	return &KeyFacts{
		Key:     Key{ID: "key_1", SiteID: "web", Mode: ModeLive},
		Site:    Site{ID: "web", AccountID: "acme", Active: true},
		Account: Account{ID: "acme", Plan: "pro", Status: StatusActive},
	}
}

func newTestCache(t *testing.T, l Loader, cfg CacheConfig) *Cache {
	t.Helper()
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 1000
	}
	c, err := NewCache(l, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

var digests = []Digest{"d1"}

// getKey reads through the cache and waits for ristretto to apply the fill,
// so the next read deterministically sees it.
func getKey(t *testing.T, c *Cache) (KeyFacts, error) {
	t.Helper()
	f, err := c.Key(context.Background(), digests)
	c.Wait()
	return f, err
}

func TestCacheHit(t *testing.T) {
	l := &fakeLoader{key: sampleFacts()}
	c := newTestCache(t, l, CacheConfig{})
	for range 3 {
		f, err := getKey(t, c)
		if err != nil || f.Key.ID != "key_1" {
			t.Fatalf("Key = %v, %v", f, err)
		}
	}
	if n := l.loads.Load(); n != 1 {
		t.Fatalf("loads = %d, want 1", n)
	}
	if hits, misses := c.Stats(); hits != 2 || misses != 1 {
		t.Fatalf("Stats = %d hits, %d misses; want 2, 1", hits, misses)
	}
	// Found by digest, the key is cached by id too.
	if _, err := c.KeyID(context.Background(), "key_1"); err != nil {
		t.Fatal(err)
	}
	if n := l.loads.Load(); n != 1 {
		t.Fatalf("loads = %d, want 1", n)
	}
}

func TestCacheNegativeEntries(t *testing.T) {
	l := &fakeLoader{}
	c := newTestCache(t, l, CacheConfig{NegativeTTL: 20 * time.Millisecond, TTL: time.Hour})
	if _, err := getKey(t, c); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if _, err := getKey(t, c); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if n := l.loads.Load(); n != 1 {
		t.Fatalf("a negative answer was not cached: loads = %d", n)
	}
	// ristretto's TTL runs on the wall clock: wait (bounded) for the
	// negative entry to expire; the key now exists.
	l.set(func(l *fakeLoader) { l.key = sampleFacts() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, err := getKey(t, c)
		if err == nil && f.Key.ID == "key_1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("negative entry outlived its TTL: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCacheNegativeEntryDiesWithAnyKeyWrite(t *testing.T) {
	l := &fakeLoader{}
	c := newTestCache(t, l, CacheConfig{NegativeTTL: time.Hour})
	if _, err := getKey(t, c); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	// A key is created (or imported): its id is unknown to the negative
	// entry, so every negative entry must go.
	l.set(func(l *fakeLoader) { l.key = sampleFacts() })
	c.Invalidate(EntityKey, "key_new")
	if f, err := getKey(t, c); err != nil || f.Key.ID != "key_1" {
		t.Fatalf("Key = %v, %v; want the new key", f, err)
	}
}

func TestCacheOutageIsNotCached(t *testing.T) {
	l := &fakeLoader{err: ErrUnavailable}
	c := newTestCache(t, l, CacheConfig{})
	if _, err := getKey(t, c); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	l.set(func(l *fakeLoader) { l.err, l.key = nil, sampleFacts() })
	if _, err := getKey(t, c); err != nil {
		t.Fatalf("an outage was remembered: %v", err)
	}
}

func TestCacheInvalidation(t *testing.T) {
	tests := []struct {
		entity Entity
		id     string
		stale  bool
	}{
		{EntityKey, "key_1", true},
		{EntitySite, "web", true},
		{EntityAccount, "acme", true},
		{EntityKey, "key_other", false},
		{EntitySite, "other", false},
		{EntityAccount, "other", false},
	}
	for _, tt := range tests {
		t.Run(string(tt.entity)+"/"+tt.id, func(t *testing.T) {
			l := &fakeLoader{key: sampleFacts()}
			c := newTestCache(t, l, CacheConfig{})
			if _, err := getKey(t, c); err != nil {
				t.Fatal(err)
			}
			l.set(func(l *fakeLoader) { l.key.Key.RevokedAt = &time.Time{} })
			c.Invalidate(tt.entity, tt.id)
			f, err := getKey(t, c)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Key.RevokedAt != nil; got != tt.stale {
				t.Fatalf("after invalidating %s %s: reloaded = %t, want %t", tt.entity, tt.id, got, tt.stale)
			}
		})
	}
}

func TestCacheSiteInvalidation(t *testing.T) {
	site := &SiteFacts{Site: Site{ID: "web", AccountID: "acme", Active: true}, Account: Account{ID: "acme", Plan: "pro"}}
	for _, inv := range []struct {
		entity Entity
		id     string
	}{{EntitySite, "web"}, {EntityAccount, "acme"}} {
		t.Run(string(inv.entity), func(t *testing.T) {
			l := &fakeLoader{site: site}
			c := newTestCache(t, l, CacheConfig{})
			if _, err := c.Site(context.Background(), "web"); err != nil {
				t.Fatal(err)
			}
			c.Wait()
			inactive := *site
			inactive.Site.Active = false
			l.set(func(l *fakeLoader) { l.site = &inactive })
			c.Invalidate(inv.entity, inv.id)
			got, err := c.Site(context.Background(), "web")
			if err != nil || got.Site.Active {
				t.Fatalf("Site = %+v, %v; want the inactive site", got, err)
			}
		})
	}
}

// TestCacheFillRace is the revocation race: a fill whose store read began
// before a revocation must never be served after the revocation was applied,
// even though ristretto stores it afterwards.
func TestCacheFillRace(t *testing.T) {
	for _, entity := range []Entity{EntityKey, EntitySite, EntityAccount} {
		t.Run(string(entity), func(t *testing.T) {
			l := &fakeLoader{key: sampleFacts(), started: make(chan struct{}), release: make(chan struct{})}
			c := newTestCache(t, l, CacheConfig{})
			done := make(chan KeyFacts)
			go func() {
				f, _ := c.Key(context.Background(), digests)
				done <- f
			}()
			<-l.started // the fill has read the un-revoked facts
			revoked := sampleFacts()
			now := time.Now()
			revoked.Key.RevokedAt = &now
			l.set(func(l *fakeLoader) { l.key = revoked })
			id := map[Entity]string{EntityKey: "key_1", EntitySite: "web", EntityAccount: "acme"}[entity]
			c.Invalidate(entity, id)
			close(l.release)
			if f := <-done; f.Key.RevokedAt != nil {
				t.Fatal("the in-flight read saw facts it never read")
			}
			c.Wait() // the stale fill is now in ristretto

			l.started, l.release = nil, nil
			f, err := getKey(t, c)
			if err != nil {
				t.Fatal(err)
			}
			if f.Key.RevokedAt == nil {
				t.Fatal("a fill that raced with the revocation was served after it")
			}
			if n := l.loads.Load(); n != 2 {
				t.Fatalf("loads = %d, want 2 (the stale entry must be reloaded)", n)
			}
		})
	}
}

// TestCacheNegativeFillRace: a "no such site" read that began before the site
// was created must not hide the site afterwards.
func TestCacheNegativeFillRace(t *testing.T) {
	l := &fakeLoader{started: make(chan struct{}), release: make(chan struct{})}
	c := newTestCache(t, l, CacheConfig{NegativeTTL: time.Hour})
	done := make(chan error)
	go func() {
		_, err := c.Site(context.Background(), "web")
		done <- err
	}()
	<-l.started
	l.set(func(l *fakeLoader) {
		l.site = &SiteFacts{Site: Site{ID: "web", AccountID: "acme", Active: true}, Account: Account{ID: "acme"}}
	})
	c.Invalidate(EntitySite, "web")
	close(l.release)
	if err := <-done; !errors.Is(err, ErrNotFound) {
		t.Fatalf("in-flight read: %v", err)
	}
	c.Wait()
	l.started, l.release = nil, nil
	if _, err := c.Site(context.Background(), "web"); err != nil {
		t.Fatalf("a negative fill that raced with the site's creation hid it: %v", err)
	}
}

func TestCacheMarksStayBounded(t *testing.T) {
	now := time.Unix(0, 0)
	c := newTestCache(t, &fakeLoader{}, CacheConfig{TTL: time.Minute, Now: func() time.Time { return now }})
	for i := range 5000 {
		now = now.Add(time.Second)
		c.Invalidate(EntityKey, "key_"+string(rune('a'+i%26))+time.Duration(i).String())
	}
	c.mu.RLock()
	n := len(c.marks)
	c.mu.RUnlock()
	if n > 1100 {
		t.Fatalf("%d invalidation marks kept; old ones must be pruned", n)
	}
}

// One caller's deadline does not fail the others waiting on the same miss:
// the shared store read runs on its own, and each caller waits as long as
// its own context allows.
func TestCacheFillOutlivesFirstCaller(t *testing.T) {
	l := &fakeLoader{key: sampleFacts(), started: make(chan struct{}), release: make(chan struct{})}
	c := newTestCache(t, l, CacheConfig{})
	first, cancel := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, err := c.Key(first, digests)
		firstErr <- err
	}()
	<-l.started // the first caller's read is under way
	second := make(chan error, 1)
	go func() {
		_, err := c.Key(context.Background(), digests)
		second <- err
	}()
	cancel()
	if err := <-firstErr; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("first caller, cancelled: %v, want ErrUnavailable", err)
	}
	close(l.release)
	// Should the second caller come after the shared read ended, its own
	// read must not block on the test.
	go func() {
		for range l.started {
		}
	}()
	if err := <-second; err != nil {
		t.Fatalf("second caller failed with the first caller's context: %v", err)
	}
}
