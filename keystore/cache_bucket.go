package keystore

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// The cache admits keys to ristretto in groups. ristretto's bookkeeping per
// entry (a storeItem in one of its maps, a key and cost in its policy's map:
// ~180 B a key as measured) would otherwise cost more than the cached key
// itself. Every cache key hashes (two seeded 64-bit hashes, as ristretto
// itself tells keys apart) to one of a power-of-two number of buckets, sized
// so that a full cache holds about keysPerBucket keys a bucket; a bucket is
// one ristretto entry, and its cost is the number of keys in it. ristretto
// still decides what stays: every lookup counts as a read of its bucket,
// and a bucket that grows goes through admission and makes room by
// evicting other buckets, whole.
//
// A published bucket's keys never change: adding or removing a key makes
// a new bucket under the bucket's lock (adding reuses the array when it has
// room), publishes it in dir, and hands it to ristretto as a new entry (Del
// of the old one, then Set of the new), because ristretto updates an
// entry's cost without evicting anything, which would let a full cache grow
// without bound. A key read again only has its slot swapped in place: same
// keys, same cost, nothing for ristretto to decide. Each bucket has a
// ristretto key of its own (its place in dir, and above bit 32 a sequence
// number): a Del and Set of one key could cross a Set of it still queued
// inside ristretto and lose the new bucket. ristretto's admission sketch
// counts by the key's low bits only, so every bucket of a place inherits
// the reads its place collected (its doorkeeper bloom filter hashes every
// bit, so it credits no bucket: comparisons stay even). ristretto applies
// a Set later, on its own goroutine, so lookups read dir, not ristretto:
// dir holds the buckets ristretto holds or is about to, and a bucket leaves
// it when ristretto lets go of it (exit), unless a newer bucket took its
// place. A bucket enters dir and is handed to ristretto under its place's
// lock, so the Del of a change that replaces it follows its Set through
// ristretto's buffer (one channel, applied in order).
//
// A slot, not the bucket, carries what invalidation needs (generation and
// read time, cache_marks.go), so a bucket copies slot pointers around
// freely: whichever bucket a lookup finds, the slot says whether it may
// answer.
type buckets struct {
	seed1, seed2 maphash.Seed
	dir          []atomic.Pointer[bucket]
	mask         uint64
	locks        [bucketLocks]sync.Mutex
	seq          atomic.Uint32
	// keys counts the keys in dir; from full on, once ristretto has let
	// go of a bucket it was not asked to (pressed), a new key passes the
	// door first (cache_door.go).
	keys    atomic.Int64
	full    int64
	pressed atomic.Bool
	door    *door
}

// bucket is the keys in it (by hash, in no order) and their slots; key
// is its ristretto key. A bucket's entries past its length may belong to
// a newer bucket (see change). Its first cached entries were cached in
// the bucket it replaced (all but a key it added), so that ristretto
// refusing it keeps them (refused); retries counts such fallbacks in a row.
type bucket struct {
	key     uint64
	e       []bucketEntry
	cached  uint32
	retries uint8
}

type bucketEntry struct {
	h cacheHash
	// slot is replaced in place when the key is read again.
	slot atomic.Pointer[slotHead]
}

// cacheHash identifies a cache key: 128 bits, as ristretto's pair of
// hashes did. The seeds are the process's own, so no one can make two keys
// collide on purpose.
type cacheHash struct{ h1, h2 uint64 }

// keysPerBucket is how many keys a bucket holds when the cache is full:
// enough that ristretto's per-entry cost is small per key, few enough that
// a bucket is cheap to copy on a fill and evicts few keys at a time.
const keysPerBucket = 32

// bucketLocks stripes the locks writers of a bucket take.
const bucketLocks = 64

// countersPerBucket is how many admission counters ristretto keeps per
// bucket (what it suggests per entry).
const countersPerBucket = 10

// maxBuckets bounds the bucket count: a bucket's place must fit below bit
// 32 of its ristretto key, and ristretto's sketch (10 counters a bucket,
// rounded up to a power of two) must not reach those bits.
const maxBuckets = 1 << 26

// minBuckets: a small cache (tests) still has buckets of a few keys, so
// that ristretto refusing one (its cost past MaxCost) drops a few keys,
// not the whole cache.
const minBuckets = 64

func newBuckets(maxEntries int64) *buckets {
	n := uint64(1)
	for n < maxBuckets && (int64(n)*keysPerBucket < maxEntries || n < minBuckets && int64(n) < maxEntries) {
		n <<= 1
	}
	return &buckets{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed(), dir: make([]atomic.Pointer[bucket], n), mask: n - 1,
		full: maxEntries - maxEntries/16, door: newDoor(maxEntries)}
}

// nextSeq numbers a new bucket: every bucket of a place has a ristretto
// key of its own, so a Del of one never crosses a queued Set of the next
// (an odd-only sequence gave two buckets in a row the same key), and
// never 0, so no bucket's key is the bare place lookups count reads on.
func (x *buckets) nextSeq() uint64 {
	for {
		if s := uint64(uint32(x.seq.Add(1))); s != 0 {
			return s
		}
	}
}

func (x *buckets) hash(ck string) cacheHash {
	return cacheHash{maphash.String(x.seed1, ck), maphash.String(x.seed2, ck)}
}

// find returns h's entry in b.
func (b *bucket) find(h cacheHash) *bucketEntry {
	for i := range b.e {
		if e := &b.e[i]; e.h == h {
			return e
		}
	}
	return nil
}

// lookup returns the slot cached under ck.
func (c *Cache) lookup(ck string) (*slotHead, bool) {
	x := c.buckets
	h := x.hash(ck)
	p := h.h1 & x.mask
	// The Get only counts the read (no bucket is stored under the bare
	// place): ristretto admits and evicts by reads.
	c.items.Get(p)
	b := x.dir[p].Load()
	if b == nil {
		return nil, false
	}
	if e := b.find(h); e != nil {
		return e.slot.Load(), true
	}
	return nil, false
}

// store caches s under ck, replacing what ck had; an indexed slot (a key
// read by digest) is also found by id.
func (c *Cache) store(ck string, s *slotHead, indexed bool) {
	c.change(c.buckets.hash(ck), s, indexed)
}

// remove forgets what is cached under ck.
func (c *Cache) remove(ck string) { c.change(c.buckets.hash(ck), nil, false) }

// change sets h's slot to s (nil: removes it). A new key makes a new
// bucket (which ristretto admits or not); a key read again has its slot
// replaced in place.
func (c *Cache) change(h cacheHash, s *slotHead, indexed bool) {
	x := c.buckets
	p := h.h1 & x.mask
	mu := &x.locks[p%bucketLocks]
	mu.Lock()
	defer mu.Unlock()
	for {
		old := x.dir[p].Load()
		var e *bucketEntry
		if old != nil {
			e = old.find(h)
		}
		switch {
		case e != nil && s != nil:
			c.replace(p, old, e, s, indexed)
			return
		case e == nil && s == nil:
			return
		case e == nil && x.pressed.Load() && x.keys.Load() >= x.full && !x.door.seen(h):
			return // a nearly full cache takes a key filled once more
		}
		var nb *bucket
		if s != nil {
			nb = appended(old, h, s)
		} else {
			nb = without(old, e)
		}
		if nb != nil {
			nb.key = p | x.nextSeq()<<32
		}
		// ristretto may let go of old meanwhile (exit clears dir): then
		// its keys are gone and the new bucket starts from nothing.
		if !x.dir[p].CompareAndSwap(old, nb) {
			continue
		}
		x.keys.Add(int64(bucketLen(nb) - bucketLen(old)))
		c.publish(old, nb, s, e, indexed)
		return
	}
}

// publish hands nb, which took old's place in dir, to ristretto; s is the
// slot it added, e the entry of old it left out.
func (c *Cache) publish(old, nb *bucket, s *slotHead, e *bucketEntry, indexed bool) {
	// Indexed before the Set, so that a rejection of the bucket, which
	// may come at once, finds the slot there to drop.
	if indexed {
		c.byID.put(s)
	}
	if e != nil {
		c.byID.drop(e.slot.Load())
	}
	if old != nil {
		c.items.Del(old.key)
	}
	if nb != nil && !c.items.Set(nb.key, nb, int64(len(nb.e))) {
		c.keepCached(nb) // refused, with the lock already held
		c.exit(nb)
	}
}

// maxRetries bounds the times in a row a refused bucket's keys are handed
// to ristretto again.
const maxRetries = 2

// refused is ristretto's OnReject: b was not admitted. It runs on
// ristretto's goroutine, which must never wait for a bucket's lock (its
// holder may be waiting in Del for that goroutine to drain ristretto's
// buffer) nor call Del itself (whose send into that buffer blocks while it
// is full): when the lock is taken, b's keys all go, as exit, which
// ristretto calls next, drops them.
func (c *Cache) refused(b *bucket) {
	x := c.buckets
	mu := &x.locks[(b.key&x.mask)%bucketLocks]
	if !mu.TryLock() {
		return
	}
	defer mu.Unlock()
	c.keepCached(b)
}

// keepCached (under the lock of b's place) re-publishes the keys of the
// refused b that were cached before it (the Del of their bucket freed
// their room, so a Set of them alone finds it, unless other Sets took it
// meanwhile: then they get maxRetries more tries): they take b's place in
// dir in a bucket of their own; only a key b added is dropped. exit, which
// ristretto calls next, then finds dir moved on and drops nothing more.
//
// The lock keeps the Set of that bucket before the Del of a change that
// replaces it: a Del queued first left the bucket in ristretto for good,
// costing room and keeping its slots, though not in dir.
func (c *Cache) keepCached(b *bucket) {
	n := int(b.cached)
	if n == 0 || b.retries >= maxRetries {
		return
	}
	x := c.buckets
	p := b.key & x.mask
	// The same entries (a slot replaced in either is replaced in both);
	// its full capacity makes a key added to it copy them.
	rb := &bucket{key: p | x.nextSeq()<<32, e: b.e[:n:n], cached: uint32(n), retries: b.retries + 1}
	if !x.dir[p].CompareAndSwap(b, rb) {
		return // a newer bucket holds b's keys
	}
	x.keys.Add(int64(n - len(b.e)))
	x.pressed.Store(true)
	for i := n; i < len(b.e); i++ {
		c.byID.drop(b.e[i].slot.Load())
	}
	if !c.items.Set(rb.key, rb, int64(n)) {
		c.exit(rb)
	}
}

// replace puts s in place of the slot e holds in b, the bucket at p: the
// same keys at the same cost, nothing for ristretto to decide.
func (c *Cache) replace(p uint64, b *bucket, e *bucketEntry, s *slotHead, indexed bool) {
	had := e.slot.Swap(s)
	if indexed {
		c.byID.put(s)
	}
	c.byID.drop(had)
	// ristretto let go of b meanwhile: exit may have dropped the slot it
	// read before the swap, so s must not stay indexed (unless b's keys
	// but its last took its place, e among them: see keepCached).
	if cur := c.buckets.dir[p].Load(); cur != b && (cur == nil || cur.find(e.h) != e) {
		c.byID.drop(s)
	}
}

// appended returns a bucket of b's entries and (h, s): in b's array when
// it has room, else in a larger copy. The entries of an array past a
// bucket's length are only ever a newer bucket's: only the bucket in dir
// grows, and a bucket made by removal has an array of its own.
func appended(b *bucket, h cacheHash, s *slotHead) *bucket {
	var e []bucketEntry
	if b != nil {
		e = b.e
	}
	n := len(e)
	if n == cap(e) {
		// A quarter more room: few copies as a bucket fills, little slack
		// when it is full.
		e = copyEntries(make([]bucketEntry, n, n+n/4+2), e)
	}
	e = e[:n+1]
	e[n].h = h
	e[n].slot.Store(s)
	return &bucket{e: e, cached: uint32(n)}
}

// without returns a copy of b's entries but e, nil when none is left.
func without(b *bucket, e *bucketEntry) *bucket {
	if len(b.e) == 1 {
		return nil
	}
	i := 0
	for &b.e[i] != e {
		i++
	}
	ne := make([]bucketEntry, len(b.e)-1)
	copyEntries(ne[:i], b.e[:i])
	copyEntries(ne[i:], b.e[i+1:])
	return &bucket{e: ne, cached: uint32(len(ne))}
}

// copyEntries copies src's entries to dst (as long) and returns dst.
func copyEntries(dst, src []bucketEntry) []bucketEntry {
	for i := range src {
		dst[i].h = src[i].h
		dst[i].slot.Store(src[i].slot.Load())
	}
	return dst
}

// exit is ristretto's OnExit: a bucket it evicted, rejected, dropped or
// deleted leaves dir (and its slots the by-id index) unless a newer bucket
// already took its place (which then holds the slots still cached).
func (c *Cache) exit(b *bucket) {
	if b == nil {
		return
	}
	x := c.buckets
	if !x.dir[b.key&x.mask].CompareAndSwap(b, nil) {
		return
	}
	x.keys.Add(-int64(len(b.e)))
	x.pressed.Store(true)
	for i := range b.e {
		c.byID.drop(b.e[i].slot.Load())
	}
}

func bucketLen(b *bucket) int {
	if b == nil {
		return 0
	}
	return len(b.e)
}

// cachedKeys counts the keys (and sites and negative answers) in dir; tests
// use it.
func (c *Cache) cachedKeys() int {
	n := 0
	for i := range c.buckets.dir {
		if b := c.buckets.dir[i].Load(); b != nil {
			n += len(b.e)
		}
	}
	return n
}
