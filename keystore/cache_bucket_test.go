package keystore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// revocableLoader is a store of keys "key_N" (digest "digest-N") that
// a test revokes one by one, as a store write does before its change-log
// event reaches the cache.
type revocableLoader struct {
	storeLikeLoader
	revoked sync.Map // key id -> time.Time
}

func (l *revocableLoader) LookupKey(ctx context.Context, digests []Digest) (KeyFacts, error) {
	return l.revocable(l.storeLikeLoader.LookupKey(ctx, digests))
}

func (l *revocableLoader) LookupKeyID(ctx context.Context, id string) (KeyFacts, error) {
	return l.revocable(l.storeLikeLoader.LookupKeyID(ctx, id))
}

func (l *revocableLoader) revocable(f KeyFacts, err error) (KeyFacts, error) {
	if at, ok := l.revoked.Load(f.Key.ID); ok && err == nil {
		t := at.(time.Time)
		f.Key.RevokedAt = &t
	}
	return f, err
}

// TestCacheRevocationUnderChurn: while buckets are filled, grown, replaced
// and evicted by concurrent readers (a cache far smaller than the keys read),
// a key revoked in the store and then invalidated is never served as live by
// a read that starts after the invalidation returned: not by digest, not by
// id (an access token's path).
func TestCacheRevocationUnderChurn(t *testing.T) {
	const keys, revokers, churners = 3000, 4, 4
	l := &revocableLoader{storeLikeLoader: storeLikeLoader{sites: 50}}
	c := newTestCache(t, l, CacheConfig{MaxEntries: 400})
	ctx := context.Background()
	digest := func(n int) []Digest { return []Digest{Digest("digest-" + strconv.Itoa(n))} }
	var stop atomic.Bool
	var churn sync.WaitGroup
	for w := range churners {
		churn.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for !stop.Load() {
				n := r.IntN(keys)
				if n%2 == 0 {
					c.Key(ctx, digest(n))
				} else {
					c.KeyID(ctx, "key_"+strconv.Itoa(n))
				}
			}
		})
	}
	nums := make([]int, keys)
	for n := range nums {
		nums[n] = n
	}
	errs := revokeEach(ctx, c, l, nums, revokers)
	stop.Store(true)
	churn.Wait()
	for _, err := range errs {
		t.Fatal(err)
	}
}

// revokeEach revokes and reads each key of nums (revokeAndRead) on
// revokers goroutines, and returns what went wrong (a goroutine stops at
// its first error).
func revokeEach(ctx context.Context, c *Cache, l *revocableLoader, nums []int, revokers int) []error {
	var work sync.WaitGroup
	errs := make(chan error, revokers)
	for w := range revokers {
		work.Go(func() {
			for i := w; i < len(nums); i += revokers {
				if err := revokeAndRead(ctx, c, l, nums[i]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	work.Wait()
	close(errs)
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}

// revokeAndRead caches key n (by digest, so it is found by id too), revokes
// it as the Follower does (store first, then Invalidate) and reads it again.
func revokeAndRead(ctx context.Context, c *Cache, l *revocableLoader, n int) error {
	d, id := []Digest{Digest("digest-" + strconv.Itoa(n))}, "key_"+strconv.Itoa(n)
	for range 3 {
		if f, err := c.Key(ctx, d); err != nil || f.Key.RevokedAt != nil {
			return fmt.Errorf("%s before revocation: %+v, %v", id, f.Key, err)
		}
	}
	if _, err := c.KeyID(ctx, id); err != nil {
		return err
	}
	l.revoked.Store(id, benchT0)
	c.Invalidate(EntityKey, id)
	for range 2 {
		if f, err := c.Key(ctx, d); err != nil || f.Key.RevokedAt == nil {
			return fmt.Errorf("%s by digest after its invalidation returned: %+v, %v", id, f.Key, err)
		}
		if f, err := c.KeyID(ctx, id); err != nil || f.Key.RevokedAt == nil {
			return fmt.Errorf("%s by id after its invalidation returned: %+v, %v", id, f.Key, err)
		}
	}
	return nil
}

// TestCacheStaysWithinMaxEntries: keys far beyond MaxEntries (every one read
// twice, so that buckets grow and compete) leave the cache, its buckets and
// its by-id index within MaxEntries once ristretto has applied every Set.
func TestCacheStaysWithinMaxEntries(t *testing.T) {
	l := &storeLikeLoader{sites: 10}
	c := newTestCache(t, l, CacheConfig{MaxEntries: 1000})
	ctx := context.Background()
	for i := range 20_000 {
		for range 2 {
			if _, err := c.Key(ctx, []Digest{Digest("digest-" + strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
		if i%64 == 0 {
			c.Wait()
		}
	}
	c.Wait()
	if n := c.cachedKeys(); n > 1000 || n < 500 {
		t.Fatalf("buckets hold %d keys; want at most MaxEntries (1000), and most of it used", n)
	}
	if n := c.byID.len(); n > c.cachedKeys() {
		t.Fatalf("by-id index holds %d keys, the buckets %d", n, c.cachedKeys())
	}
}

// TestSmallCacheKeepsItsKeys: a cache of a few keys is many buckets of a
// few, so one more key than it holds costs a key or two, not the cache (one
// bucket of all the keys, refused once it outgrew MaxCost, emptied it).
func TestSmallCacheKeepsItsKeys(t *testing.T) {
	c := newTestCache(t, &storeLikeLoader{sites: 3}, CacheConfig{MaxEntries: 20})
	ctx := context.Background()
	for i := range 21 {
		if _, err := c.Key(ctx, []Digest{Digest("digest-" + strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
		c.Wait()
	}
	if n := c.cachedKeys(); n < 15 || n > 20 {
		t.Fatalf("a 20-key cache holds %d keys after 21 were read; want most of 20", n)
	}
}

// TestBucketSeqUnique: buckets made one after another at a place have
// ristretto keys of their own, none of them the bare place.
func TestBucketSeqUnique(t *testing.T) {
	x := newBuckets(1000)
	seen := map[uint64]bool{}
	for range 1000 {
		s := x.nextSeq()
		if s == 0 || seen[s] {
			t.Fatalf("sequence %d repeated or zero", s)
		}
		seen[s] = true
	}
	x.seq.Store(^uint32(0) - 1)
	for range 3 {
		if s := x.nextSeq(); s == 0 {
			t.Fatal("sequence wrapped to 0")
		}
	}
}

// TestCacheHeapPerKey: a cache full of keys (100,000) costs well under
// ristretto's ~180 B of bookkeeping per entry plus keygate's ~85 B per key:
// ristretto keeps one entry per bucket of keys.
func TestCacheHeapPerKey(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("heap sizes differ under the race detector; -short")
	}
	const keys = 100_000
	l := &storeLikeLoader{sites: 1000}
	c := newTestCache(t, l, CacheConfig{MaxEntries: keys})
	ctx := context.Background()
	before := liveHeap()
	for i := range keys {
		if _, err := c.Key(ctx, []Digest{Digest("digest-" + strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
		if i%1024 == 0 {
			c.Wait()
		}
	}
	c.Wait()
	perKey := float64(liveHeap()-before) / keys
	if n := c.cachedKeys(); n != keys {
		t.Fatalf("%d keys cached, want %d", n, keys)
	}
	t.Logf("%.0f B of heap per cached key", perKey)
	if perKey > 160 {
		t.Fatalf("%.0f B of heap per cached key; want at most 160", perKey)
	}
	runtime.KeepAlive(c)
}

func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestCacheHitAllocatesNothing: a hit by digest and by id (through the
// index) allocates nothing.
func TestCacheHitAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	f := *sampleFacts()
	used := benchT0.Add(time.Hour)
	f.Key.CreatedAt, f.Key.LastUsedAt = benchT0, &used
	c := newTestCache(t, &fakeLoader{key: &f}, CacheConfig{})
	ctx := context.Background()
	if _, err := getKey(t, c); err != nil {
		t.Fatal(err)
	}
	byDigest := testing.AllocsPerRun(100, func() {
		if _, err := c.Key(ctx, digests); err != nil {
			t.Fatal(err)
		}
	})
	byID := testing.AllocsPerRun(100, func() {
		if _, err := c.KeyID(ctx, "key_1"); err != nil {
			t.Fatal(err)
		}
	})
	if hits, misses := c.Stats(); byDigest != 0 || byID != 0 || misses != 1 || hits < 200 {
		t.Fatalf("allocs by digest %v, by id %v; hits %d, misses %d", byDigest, byID, hits, misses)
	}
}
