package keystore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"
)

// Loader is what the cache reads through to on a miss.
type Loader interface {
	LookupKey(ctx context.Context, digests []Digest) (KeyFacts, error)
	LookupKeyID(ctx context.Context, id string) (KeyFacts, error)
	LookupSite(ctx context.Context, id string) (SiteFacts, error)
}

// CacheConfig sizes the cache and bounds how long entries live.
type CacheConfig struct {
	// MaxEntries bounds the number of cached facts (default 1,000,000).
	MaxEntries int64
	// TTL bounds how long positive facts live even without a change-log
	// event (default 5 minutes): a safety net, not the invalidation path.
	TTL time.Duration
	// NegativeTTL is how long "no such key" is remembered (default 5 s).
	NegativeTTL time.Duration
	// StaleIfError bounds how stale a positive entry may be while the store
	// is unreachable (0 turns the bound off). An entry's staleness is the
	// time since it was read or since the change log was last read to its
	// end (BeginSync), whichever is later: past the bound it is re-read, and
	// if the store does not answer, the caller gets ErrUnavailable.
	StaleIfError time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Cache keeps key and site facts in ristretto, keyed by digest (never by the
// raw key), key id and site id.
//
// Invalidation must never be undone by a fill that was already in flight
// (ristretto's Set is asynchronous, and a store read may finish after the
// write it raced with). Every fill therefore records the generation current
// when its store read began, every invalidation bumps the generation and
// marks the entities it names, and a Get ignores an entry filled before the
// last mark of its key, site or account.
type Cache struct {
	loader Loader
	now    func() time.Time
	ttl    time.Duration
	negTTL time.Duration
	stale  time.Duration
	items  *ristretto.Cache[string, entry]
	flight singleflight.Group

	gen   atomic.Uint64
	mu    sync.RWMutex
	marks map[entityRef]mark
	// pruneAt is the marks count at which Invalidate next prunes.
	pruneAt int
	// negMark is the generation of the last key or site write: negative
	// entries older than it may hide a key or site that now exists.
	negMark atomic.Uint64

	// lastSync is when (unix nanoseconds) the newest complete read of the
	// change log began: every invalidation before it has been applied.
	lastSync atomic.Int64

	hits, misses, staleHits atomic.Uint64
}

// minPruneAt is the smallest marks count worth a pruning scan.
const minPruneAt = 1024

type entityRef struct {
	entity Entity
	id     string
}

type mark struct {
	gen uint64
	at  time.Time
}

type entry struct {
	gen  uint64
	at   time.Time // when the store read began
	key  *KeyFacts
	site *SiteFacts
	err  error // ErrNotFound for negative entries
}

// NewCache builds the cache in front of loader.
func NewCache(loader Loader, cfg CacheConfig) (*Cache, error) {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 1_000_000
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 5 * time.Minute
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	items, err := ristretto.NewCache(&ristretto.Config[string, entry]{
		NumCounters: cfg.MaxEntries * 10,
		MaxCost:     cfg.MaxEntries,
		BufferItems: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("keystore: cache: %w", err)
	}
	c := &Cache{loader: loader, now: cfg.Now, ttl: cfg.TTL, negTTL: cfg.NegativeTTL, stale: max(cfg.StaleIfError, 0),
		items: items, marks: map[entityRef]mark{}, pruneAt: minPruneAt}
	c.gen.Store(1)
	c.lastSync.Store(cfg.Now().UnixNano())
	return c, nil
}

// Close stops ristretto's goroutines.
func (c *Cache) Close() { c.items.Close() }

// Stats reports cache hits and store reads (misses that reached the
// loader; concurrent misses of one entry share a read) since start.
func (c *Cache) Stats() (hits, misses uint64) { return c.hits.Load(), c.misses.Load() }

// StaleHits counts answers served from stale entries because the store was
// unreachable.
func (c *Cache) StaleHits() uint64 { return c.staleHits.Load() }

// BeginSync is called by the Follower as it starts reading the change log;
// calling the returned func once it has applied everything to the end
// vouches for every entry up to the moment the read began.
func (c *Cache) BeginSync() (done func()) {
	began := c.now().UnixNano()
	return func() {
		for {
			last := c.lastSync.Load()
			if last >= began || c.lastSync.CompareAndSwap(last, began) {
				return
			}
		}
	}
}

// Wait blocks until pending Sets are applied; tests use it to make "cached"
// deterministic.
func (c *Cache) Wait() { c.items.Wait() }

// Key returns the facts of the key with these digests (primary first).
func (c *Cache) Key(ctx context.Context, digests []Digest) (KeyFacts, error) {
	if len(digests) == 0 {
		return KeyFacts{}, ErrNotFound
	}
	return c.keyFacts(ctx, "d:"+string(digests[0]), func(ctx context.Context) (KeyFacts, error) {
		return c.loader.LookupKey(ctx, digests)
	})
}

// KeyID returns the facts of the key with this id.
func (c *Cache) KeyID(ctx context.Context, id string) (KeyFacts, error) {
	return c.keyFacts(ctx, "k:"+id, func(ctx context.Context) (KeyFacts, error) {
		return c.loader.LookupKeyID(ctx, id)
	})
}

func (c *Cache) keyFacts(ctx context.Context, ck string, load func(context.Context) (KeyFacts, error)) (KeyFacts, error) {
	e, err := c.get(ctx, ck, func(ctx context.Context) (entry, error) {
		f, err := load(ctx)
		if err != nil {
			return entry{err: err}, err
		}
		return entry{key: &f}, nil
	})
	if err != nil {
		return KeyFacts{}, err
	}
	return *e.key, nil
}

// Site returns a site's facts.
func (c *Cache) Site(ctx context.Context, id string) (SiteFacts, error) {
	e, err := c.get(ctx, "s:"+id, func(ctx context.Context) (entry, error) {
		f, err := c.loader.LookupSite(ctx, id)
		if err != nil {
			return entry{err: err}, err
		}
		return entry{site: &f}, nil
	})
	if err != nil {
		return SiteFacts{}, err
	}
	return *e.site, nil
}

// get answers from the cache when the entry is current, else from the store;
// when the store is unreachable, a positive entry still within the
// stale-if-error bound answers instead (never one an invalidation marked).
func (c *Cache) get(ctx context.Context, ck string, load func(context.Context) (entry, error)) (entry, error) {
	old, cached := c.items.Get(ck)
	cached = cached && c.fresh(old)
	now := c.now()
	if cached && c.current(old, now) {
		c.hits.Add(1)
		return old, old.err
	}
	e, err := c.fill(ctx, ck, load)
	if err != nil && cached && old.err == nil && c.stale > 0 && errors.Is(err, ErrUnavailable) &&
		c.staleness(old, now) <= c.stale {
		c.staleHits.Add(1)
		return old, nil
	}
	return e, err
}

// staleness is how long ago the entry was last known to be right: since its
// read, or since the last complete read of the change log, whichever is later.
func (c *Cache) staleness(e entry, now time.Time) time.Duration {
	known := e.at
	if s := time.Unix(0, c.lastSync.Load()); s.After(known) {
		known = s
	}
	return now.Sub(known)
}

// current reports whether an unmarked entry may answer without a store read.
func (c *Cache) current(e entry, now time.Time) bool {
	if c.stale <= 0 {
		return true // ristretto's TTL alone bounds entries
	}
	if e.err != nil {
		return c.staleness(e, now) <= c.negTTL
	}
	return now.Sub(e.at) <= c.ttl && c.staleness(e, now) <= c.stale
}

// fill loads once per cache key at a time and caches the answer unless it is
// an outage (an outage is never remembered as "no such key").
//
// The read belongs to no one caller: it runs detached from the first
// caller's context (bounded by fillTimeout), and each caller waits only as
// long as its own context allows, so one request's deadline never fails
// the others waiting on the same entry.
func (c *Cache) fill(ctx context.Context, ck string, load func(context.Context) (entry, error)) (entry, error) {
	// The flight is per generation: a request that arrives after an
	// invalidation never joins a read that began before it.
	gen := c.gen.Load()
	ch := c.flight.DoChan(flightKey(ck, gen), func() (_ any, err error) {
		// singleflight re-panics on a goroutine of its own, which would end
		// the process: a panicking read is an unavailable store instead.
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("keystore: lookup: %w: panic: %v", ErrUnavailable, p)
			}
		}()
		c.misses.Add(1)
		at := c.now()
		loadCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fillTimeout)
		defer cancel()
		e, err := load(loadCtx)
		e.gen, e.at = gen, at
		switch {
		case err == nil:
			// Kept past its TTL by the stale-if-error bound, so that an
			// outage finds it; current() decides when it needs a re-read.
			c.items.SetWithTTL(ck, e, 1, c.ttl+c.stale)
			// A key found by digest is also cached by id: its access
			// tokens (which name the id) then cost no store read either.
			if e.key != nil && strings.HasPrefix(ck, "d:") {
				c.items.SetWithTTL("k:"+e.key.Key.ID, e, 1, c.ttl+c.stale)
			}
		case errors.Is(err, ErrNotFound):
			c.items.SetWithTTL(ck, e, 1, c.negTTL)
		}
		return e, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return entry{}, r.Err
		}
		return r.Val.(entry), nil
	case <-ctx.Done():
		return entry{}, fmt.Errorf("keystore: lookup: %w: %w", ErrUnavailable, ctx.Err())
	}
}

// fillTimeout bounds one store read for the cache, whoever is waiting.
const fillTimeout = 2 * time.Second

// fresh reports whether no invalidation touched the entry's key, site or
// account since its store read began.
func (c *Cache) fresh(e entry) bool {
	if e.key == nil && e.site == nil {
		return e.gen >= c.negMark.Load()
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.marks) == 0 {
		return true
	}
	var site *Site
	var account *Account
	if e.key != nil {
		if c.marked(EntityKey, e.key.Key.ID, e.gen) {
			return false
		}
		site, account = &e.key.Site, &e.key.Account
	} else {
		site, account = &e.site.Site, &e.site.Account
	}
	return !c.marked(EntitySite, site.ID, e.gen) && !c.marked(EntityAccount, account.ID, e.gen)
}

func (c *Cache) marked(entity Entity, id string, gen uint64) bool {
	m, ok := c.marks[entityRef{entity, id}]
	return ok && m.gen > gen
}

// Invalidate makes every cached fact about the entity stale at once.
func (c *Cache) Invalidate(entity Entity, id string) {
	gen := c.gen.Add(1)
	now := c.now()
	c.mu.Lock()
	// Concurrent invalidations may get here out of order: a mark only rises.
	if old := c.marks[entityRef{entity, id}]; old.gen < gen {
		c.marks[entityRef{entity, id}] = mark{gen: gen, at: now}
	}
	// A mark can be dropped once no entry it concerns can still exist: an
	// entry filled before the mark lives at most ttl+stale from its Set,
	// which may come a store read after the mark; one more ttl covers that
	// read with room to spare. Pruning only when the map has doubled keeps
	// bulk invalidations linear.
	if len(c.marks) > c.pruneAt {
		keep := 2*c.ttl + c.stale
		for ref, m := range c.marks {
			if now.Sub(m.at) > keep {
				delete(c.marks, ref)
			}
		}
		c.pruneAt = max(minPruneAt, 2*len(c.marks))
	}
	c.mu.Unlock()
	switch entity {
	case EntityKey:
		c.raiseNegMark(gen)
		c.items.Del("k:" + id)
	case EntitySite:
		// A negative "no such site" fill may be in flight while the site is
		// created; like a key write, a site write retires negative entries.
		c.raiseNegMark(gen)
		c.items.Del("s:" + id)
	}
}

// raiseNegMark moves negMark up to gen, never down, whatever order
// concurrent invalidations arrive in.
func (c *Cache) raiseNegMark(gen uint64) {
	for {
		old := c.negMark.Load()
		if old >= gen || c.negMark.CompareAndSwap(old, gen) {
			return
		}
	}
}
