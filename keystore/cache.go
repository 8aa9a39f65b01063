package keystore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/dgraph-io/ristretto/v2"
)

// Loader is what the cache reads through to on a miss.
type Loader interface {
	LookupKey(ctx context.Context, digests []Digest) (KeyFacts, error)
	LookupKeyID(ctx context.Context, id string) (KeyFacts, error)
	LookupSite(ctx context.Context, id string) (SiteFacts, error)
}

// CacheConfig sizes the cache and bounds how long entries live.
type CacheConfig struct {
	// MaxEntries bounds the number of cached entries (default 1,000,000:
	// one per key read by digest, which its access tokens find by id
	// through an index; a key read only by id takes one of its own).
	// ristretto admits and evicts them in buckets of ~32 (cache_bucket.go).
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
	// items decides which buckets (cache_bucket.go) stay; lookups read
	// them in buckets.dir.
	items   *ristretto.Cache[uint64, *bucket]
	buckets *buckets
	// epoch is when the cache was made (Unix nanoseconds): slots keep
	// their read time relative to it (see seal).
	epoch int64
	byID  *idIndex
	fills fills

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

	// closing is held for reading while a fill stores what it read, and
	// for writing by Close: a fill that outlives its request (it runs
	// detached, see fill) never hands ristretto a Set while, or after,
	// Close closes it.
	closing sync.RWMutex
	closed  bool

	// shared holds, by site id, the site and account facts that cached
	// entries point to; weak, so a site no entry needs any more is dropped.
	sharedMu sync.Mutex
	shared   map[string]weak.Pointer[SiteFacts]
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
	c := &Cache{loader: loader, now: cfg.Now, ttl: cfg.TTL, negTTL: cfg.NegativeTTL, stale: max(cfg.StaleIfError, 0),
		marks: map[entityRef]mark{}, pruneAt: minPruneAt, shared: map[string]weak.Pointer[SiteFacts]{}}
	c.byID = newIDIndex(c.slotKeyID)
	c.buckets = newBuckets(cfg.MaxEntries)
	c.epoch = cfg.Now().UnixNano()
	items, err := ristretto.NewCache(&ristretto.Config[uint64, *bucket]{
		// The admission sketch counts reads of buckets, not keys.
		NumCounters: int64(len(c.buckets.dir)) * countersPerBucket,
		// A bucket costs the entries in it, so MaxEntries counts entries.
		// Without IgnoreInternalCost ristretto would add its own per-item
		// size to each cost and the cache would fill at a fraction of
		// MaxEntries.
		MaxCost:            cfg.MaxEntries,
		IgnoreInternalCost: true,
		BufferItems:        64,
		// A bucket ristretto lets go of leaves dir and the by-id index;
		// one it refuses leaves the keys it held before its last.
		OnReject: func(it *ristretto.Item[*bucket]) { c.refused(it.Value) },
		OnExit:   c.exit,
	})
	if err != nil {
		return nil, fmt.Errorf("keystore: cache: %w", err)
	}
	c.items = items
	c.gen.Store(1)
	c.lastSync.Store(cfg.Now().UnixNano())
	return c, nil
}

// Close stops ristretto's goroutines.
func (c *Cache) Close() {
	c.closing.Lock()
	defer c.closing.Unlock()
	if !c.closed {
		c.closed = true
		c.items.Close()
		c.fills.close()
	}
}

// storeFilled is store for a fill: nothing once the cache is closed.
func (c *Cache) storeFilled(ck string, h *slotHead, byDigest bool) {
	c.closing.RLock()
	defer c.closing.RUnlock()
	if !c.closed {
		c.store(ck, h, byDigest)
	}
}

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
// A hit allocates nothing: the answer points into the cached slot.
func (c *Cache) Key(ctx context.Context, digests []Digest) (KeyFacts, error) {
	if len(digests) == 0 {
		return KeyFacts{}, ErrNotFound
	}
	ck := digestKey(digests[0])
	l, hit := c.look(ck)
	if hit {
		return keyFactsOf(l.old)
	}
	// A load keeps the digests (the fill, the store's read, the key
	// filter, the entry's key): copies, so that none keeps the memory of
	// the request they came in (see Digester.AppendAllIn).
	own := make([]Digest, len(digests))
	for i, d := range digests {
		own[i] = Digest(strings.Clone(string(d)))
	}
	return c.loadKey(ctx, digestKey(own[0]), l, own, "")
}

// KeyID returns the facts of the key with this id.
func (c *Cache) KeyID(ctx context.Context, id string) (KeyFacts, error) {
	ck := "k:" + id // on the stack: a hit allocates nothing
	l, hit := c.look(ck)
	if hit {
		return keyFactsOf(l.old)
	}
	return c.loadKey(ctx, strings.Clone(ck), l, nil, id) // the load keeps it
}

// loadKey is Key (digests set) or KeyID past a miss; apart, so that a hit
// builds no closure.
func (c *Cache) loadKey(ctx context.Context, ck string, l looked, digests []Digest, id string) (KeyFacts, error) {
	e, err := c.get(ctx, ck, l, func(ctx context.Context) (entry, error) {
		var f KeyFacts
		var err error
		if digests != nil {
			f, err = c.loader.LookupKey(ctx, digests)
		} else {
			f, err = c.loader.LookupKeyID(ctx, id)
		}
		if err != nil {
			return entry{}, err
		}
		return c.newKeyEntry(f)
	})
	if err != nil {
		return KeyFacts{}, err
	}
	return keyFactsOf(e)
}

// Site returns a site's facts.
func (c *Cache) Site(ctx context.Context, id string) (SiteFacts, error) {
	ck := "s:" + id
	l, hit := c.look(ck)
	e := l.old
	if !hit {
		var err error
		e, err = c.get(ctx, ck, l, func(ctx context.Context) (entry, error) {
			f, err := c.loader.LookupSite(ctx, id)
			if err != nil {
				return entry{}, err
			}
			return entry{facts: c.share(f)}, nil
		})
		if err != nil {
			return SiteFacts{}, err
		}
	}
	if e.facts == nil {
		return SiteFacts{}, errCachedNotFound
	}
	return *e.facts, nil
}

// looked is what look found: the cached entry, if any that no invalidation
// touched, and when.
type looked struct {
	old    entry
	cached bool
	now    time.Time
}

// look finds ck's entry; hit reports (and counts) that it may answer
// without a store read.
func (c *Cache) look(ck string) (l looked, hit bool) {
	p, cached := c.lookup(ck)
	if id, byID := strings.CutPrefix(ck, "k:"); !cached && byID {
		p, cached = c.byID.get(id)
	}
	if cached {
		l.old, cached = c.open(p)
	}
	l.cached = cached && c.fresh(l.old)
	l.now = c.now()
	if l.cached && c.current(l.old, l.now) {
		c.hits.Add(1)
		return l, true
	}
	return l, false
}

// get answers a miss from the store; when the store is unreachable, a
// positive entry still within the stale-if-error bound answers instead
// (never one an invalidation marked).
func (c *Cache) get(ctx context.Context, ck string, l looked, load func(context.Context) (entry, error)) (entry, error) {
	old, now := l.old, l.now
	e, err := c.fill(ctx, ck, load)
	// The entry's age bounds its life as ristretto's TTL used to.
	if err != nil && l.cached && old.facts != nil && c.stale > 0 && errors.Is(err, ErrUnavailable) &&
		c.staleness(old, now) <= c.stale && now.Sub(time.Unix(0, old.at)) <= c.ttl+c.stale {
		c.staleHits.Add(1)
		return old, nil
	}
	return e, err
}

// staleness is how long ago the entry was last known to be right: since its
// read, or since the last complete read of the change log, whichever is later.
func (c *Cache) staleness(e entry, now time.Time) time.Duration {
	return now.Sub(time.Unix(0, max(e.at, c.lastSync.Load())))
}

// current reports whether an unmarked entry may answer without a store read.
//
// Entries carry no ristretto TTL (its expiration map would cost every key
// another map slot): age is checked here, and an entry past it stays until
// a fill replaces it or eviction needs its room.
func (c *Cache) current(e entry, now time.Time) bool {
	age := now.Sub(time.Unix(0, e.at))
	if c.stale <= 0 {
		if e.facts == nil {
			return age <= c.negTTL
		}
		return age <= c.ttl
	}
	if e.facts == nil {
		return c.staleness(e, now) <= c.negTTL
	}
	return age <= c.ttl && c.staleness(e, now) <= c.stale
}

// fill loads once per cache key at a time and caches the answer unless it is
// an outage (an outage is never remembered as "no such key").
//
// The read belongs to no one caller: it runs detached from the first
// caller's context (bounded by fillTimeout), and each caller waits only as
// long as its own context allows, so one request's deadline never fails
// the others waiting on the same entry.
func (c *Cache) fill(ctx context.Context, ck string, load func(context.Context) (entry, error)) (entry, error) {
	// The flight is per generation (fillKey).
	gen := c.gen.Load()
	call := c.fills.do(fillKey{ck, gen}, func() (_ entry, err error) {
		// A panicking read is an unavailable store, and its callers are
		// never left waiting.
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
		e.gen, e.at = gen, at.UnixNano()
		switch {
		case err == nil:
			// No ristretto TTL: current() decides when it needs a re-read,
			// and an outage still finds it within the stale-if-error bound.
			// A key read by digest is also found by id, through the index.
			h, ok := c.seal(e)
			if !ok {
				break
			}
			byDigest := isDigestKey(ck) && e.facts != nil
			c.storeFilled(ck, h, byDigest)
		case errors.Is(err, ErrNotFound):
			e.facts, e.rec, e.extra = nil, "", nil
			if h, ok := c.seal(e); ok {
				c.storeFilled(ck, h, false)
			}
		}
		return e, err
	})
	select {
	case <-call.done:
		if call.err != nil {
			return entry{}, call.err
		}
		return call.e, nil
	case <-ctx.Done():
		return entry{}, fmt.Errorf("keystore: lookup: %w: %w", ErrUnavailable, ctx.Err())
	}
}

// fillTimeout bounds one store read for the cache, whoever is waiting.
const fillTimeout = 2 * time.Second
