package keystore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

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
	// MaxEntries bounds the number of cached entries (default 2,000,000:
	// a key read by its digest takes two, by digest and by id, which
	// share one record; a million keys fit).
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
	items  *ristretto.Cache[string, *entry]
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

	// shared holds, by site id, the site and account facts that cached
	// entries point to; weak, so a site no entry needs any more is dropped.
	sharedMu sync.Mutex
	shared   map[string]weak.Pointer[SiteFacts]
}

// counterRatio is how many admission counters ristretto keeps per entry
// (it suggests 10; its sketch and bloom filter cost about a byte per
// counter whether the cache is full or not, so fewer keep a large cache
// within its memory budget at a small loss in admission accuracy).
const counterRatio = 2

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

// entry is one cached answer, one allocation per cached key. A key entry
// holds the key and a pointer to its site and account, which every cached
// key of that site shares (see share): a million keys over a few thousand
// sites cost a million Keys, not a million copies of their site and account.
type entry struct {
	gen   uint64
	at    time.Time // when the store read began
	key   Key       // key entries only (ID "" otherwise)
	facts *SiteFacts
	err   error // ErrNotFound for negative entries
}

// NewCache builds the cache in front of loader.
func NewCache(loader Loader, cfg CacheConfig) (*Cache, error) {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 2_000_000
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
	items, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
		NumCounters: cfg.MaxEntries * counterRatio,
		// Every entry costs 1, so MaxEntries counts entries. Without
		// IgnoreInternalCost ristretto would add its own per-item size to
		// each cost and the cache would fill at a small fraction of
		// MaxEntries.
		MaxCost:            cfg.MaxEntries,
		IgnoreInternalCost: true,
		BufferItems:        64,
	})
	if err != nil {
		return nil, fmt.Errorf("keystore: cache: %w", err)
	}
	c := &Cache{loader: loader, now: cfg.Now, ttl: cfg.TTL, negTTL: cfg.NegativeTTL, stale: max(cfg.StaleIfError, 0),
		items: items, marks: map[entityRef]mark{}, pruneAt: minPruneAt, shared: map[string]weak.Pointer[SiteFacts]{}}
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
		e := entry{key: f.Key, facts: c.share(SiteFacts{Site: f.Site, Account: f.Account})}
		// The key's own copies of strings the shared facts hold already.
		if e.key.SiteID == e.facts.Site.ID {
			e.key.SiteID = e.facts.Site.ID
		}
		switch e.key.Mode {
		case ModeLive:
			e.key.Mode = ModeLive
		case ModeTest:
			e.key.Mode = ModeTest
		}
		return e, nil
	})
	if err != nil {
		return KeyFacts{}, err
	}
	return KeyFacts{Key: e.key, Site: e.facts.Site, Account: e.facts.Account}, nil
}

// Site returns a site's facts.
func (c *Cache) Site(ctx context.Context, id string) (SiteFacts, error) {
	e, err := c.get(ctx, "s:"+id, func(ctx context.Context) (entry, error) {
		f, err := c.loader.LookupSite(ctx, id)
		if err != nil {
			return entry{err: err}, err
		}
		return entry{facts: c.share(f)}, nil
	})
	if err != nil {
		return SiteFacts{}, err
	}
	return *e.facts, nil
}

// get answers from the cache when the entry is current, else from the store;
// when the store is unreachable, a positive entry still within the
// stale-if-error bound answers instead (never one an invalidation marked).
func (c *Cache) get(ctx context.Context, ck string, load func(context.Context) (entry, error)) (entry, error) {
	var old entry
	p, cached := c.items.Get(ck)
	if cached {
		old = *p
	}
	cached = cached && c.fresh(old)
	now := c.now()
	if cached && c.current(old, now) {
		c.hits.Add(1)
		return old, old.err
	}
	e, err := c.fill(ctx, ck, load)
	// now.Sub(old.at) bounds the entry's life as ristretto's TTL used to.
	if err != nil && cached && old.err == nil && c.stale > 0 && errors.Is(err, ErrUnavailable) &&
		c.staleness(old, now) <= c.stale && now.Sub(old.at) <= c.ttl+c.stale {
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
//
// Entries carry no ristretto TTL (its expiration map would cost every key
// another map slot): age is checked here, and an entry past it stays until
// a fill replaces it or eviction needs its room.
func (c *Cache) current(e entry, now time.Time) bool {
	if c.stale <= 0 {
		if e.err != nil {
			return now.Sub(e.at) <= c.negTTL
		}
		return now.Sub(e.at) <= c.ttl
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
			// No ristretto TTL: current() decides when it needs a re-read,
			// and an outage still finds it within the stale-if-error bound.
			// ristretto holds a pointer, so its per-item record (and the
			// map slot holding it) stays small.
			c.items.Set(ck, &e, 1)
			// A key found by digest is also cached by id: its access
			// tokens (which name the id) then cost no store read either.
			// Both entries point to one record.
			if e.key.ID != "" && strings.HasPrefix(ck, "d:") {
				c.items.Set("k:"+e.key.ID, &e, 1)
			}
		case errors.Is(err, ErrNotFound):
			c.items.Set(ck, &e, 1)
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
	if e.facts == nil {
		return e.gen >= c.negMark.Load()
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.marks) == 0 {
		return true
	}
	if e.key.ID != "" && c.marked(EntityKey, e.key.ID, e.gen) {
		return false
	}
	return !c.marked(EntitySite, e.facts.Site.ID, e.gen) && !c.marked(EntityAccount, e.facts.Account.ID, e.gen)
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

// share returns the one copy of f that cached entries hold: the copy already
// shared for its site if it is equal in every field, else f itself, which
// becomes the shared copy. Entries never change what they point to, so a
// site write simply leaves the old copy to the entries it made stale.
func (c *Cache) share(f SiteFacts) *SiteFacts {
	id := f.Site.ID
	c.sharedMu.Lock()
	defer c.sharedMu.Unlock()
	if p := c.shared[id].Value(); p != nil && reflect.DeepEqual(*p, f) {
		return p
	}
	p := &f
	c.shared[id] = weak.Make(p)
	runtime.AddCleanup(p, c.unshare, id)
	return p
}

// unshare forgets a site once its shared copy is gone (unless a newer copy
// took its place).
func (c *Cache) unshare(id string) {
	c.sharedMu.Lock()
	defer c.sharedMu.Unlock()
	if c.shared[id].Value() == nil {
		delete(c.shared, id)
	}
}
