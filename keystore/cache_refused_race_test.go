package keystore

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// TestRefusedRaces: refused (ristretto's OnReject, which runs on ristretto's
// goroutine) is called on real buckets of a few places while readers fill,
// grow and replace keys there by digest and by id, keys are revoked and
// invalidated, and buckets leave ristretto (Del, as an eviction: exit). Under
// -race ristretto itself refuses almost nothing (it counts few reads), so
// this is how the detector sees refused interleave with change, replace and
// exit. A revoked key is never served as live after its invalidation
// returned, and once ristretto has applied everything: ristretto holds
// exactly the buckets in dir (no "ghost" bucket it holds that lookups cannot
// find), every slot found by id is in a bucket in dir, every bucket holds
// keys of its own place once each, and the key count is the keys in dir.
func TestRefusedRaces(t *testing.T) {
	const places, keys, readers, refusers, revokers = 8, 400, 3, 2, 2
	l := &revocableLoader{storeLikeLoader: storeLikeLoader{sites: 10}}
	// 64 places (minBuckets); 400 keys on 8 of them, more than MaxCost: the
	// buckets there grow, are replaced and evicted all the time.
	c := newTestCache(t, l, CacheConfig{MaxEntries: 256})
	x := c.buckets
	nums := keysAtPlaces(x, places, keys)
	ctx := context.Background()
	var stop atomic.Bool
	var churn sync.WaitGroup
	for w := range readers {
		churn.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 2))
			for !stop.Load() {
				n := nums[r.IntN(len(nums))]
				if r.IntN(2) == 0 {
					c.Key(ctx, []Digest{testDigest(n)})
				} else {
					c.KeyID(ctx, "key_"+strconv.Itoa(n))
				}
			}
		})
	}
	for w := range refusers {
		churn.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 3))
			for !stop.Load() {
				refuseOrEvict(c, uint64(r.IntN(places)), r.IntN(4) == 0)
			}
		})
	}
	errs := revokeEach(ctx, c, l, nums, revokers)
	stop.Store(true)
	churn.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	settle(c)
	checkBuckets(t, c)
}

// keysAtPlaces returns count key numbers whose digest's bucket and id's
// bucket both lie in the first places places.
func keysAtPlaces(x *buckets, places uint64, count int) []int {
	var nums []int
	for n := 0; len(nums) < count; n++ {
		if x.hash(digestKey(testDigest(n))).h1&x.mask < places && x.hash("k:key_"+strconv.Itoa(n)).h1&x.mask < places {
			nums = append(nums, n)
		}
	}
	return nums
}

// refuseOrEvict has ristretto refuse place p's bucket, as its OnReject and
// OnExit do (refused, then exit; the Del takes it out of ristretto, where
// a refused bucket never was), or evict it (Del: OnExit). The bucket is
// read under its place's lock: its Set was issued, as ristretto only ever
// refuses or evicts a bucket it was handed.
func refuseOrEvict(c *Cache, p uint64, evict bool) {
	x := c.buckets
	mu := &x.locks[p%bucketLocks]
	mu.Lock()
	b := x.dir[p].Load()
	mu.Unlock()
	if b == nil {
		return
	}
	if !evict {
		c.refused(b)
	}
	c.items.Del(b.key)
	c.exit(b)
}

// settle waits until ristretto has applied every Set, including those of
// buckets refused meanwhile (at most maxRetries in a row).
func settle(c *Cache) {
	for range maxRetries + 3 {
		c.Wait()
	}
}

// checkBuckets fails t unless ristretto holds exactly the buckets in dir,
// the by-id index only slots in them, each bucket its place's keys once
// each, and the key count is the keys in dir.
func checkBuckets(t *testing.T, c *Cache) {
	t.Helper()
	x := c.buckets
	inDir := map[*slotHead]bool{}
	for p := range x.dir {
		b := x.dir[p].Load()
		if b == nil {
			continue
		}
		if v, ok := c.items.Get(b.key); !ok || v != b {
			t.Errorf("place %d: its bucket (%d keys) is not in ristretto", p, len(b.e))
		}
		if b.key&x.mask != uint64(p) || int(b.cached) > len(b.e) {
			t.Errorf("place %d: bucket key %#x, %d cached of %d", p, b.key, b.cached, len(b.e))
		}
		seen := map[cacheHash]bool{}
		for i := range b.e {
			e := &b.e[i]
			if e.h.h1&x.mask != uint64(p) || seen[e.h] {
				t.Errorf("place %d: entry %d is another place's or repeated", p, i)
			}
			seen[e.h] = true
			inDir[e.slot.Load()] = true
		}
	}
	c.items.IterValues(func(b *bucket) bool {
		if x.dir[b.key&x.mask].Load() != b {
			t.Errorf("ristretto holds a bucket (key %#x, %d keys, %d retries) that is not in dir", b.key, len(b.e), b.retries)
		}
		return false
	})
	indexed := 0
	for _, h := range c.byID.slots {
		if h == nil {
			continue
		}
		indexed++
		if !inDir[h] {
			t.Errorf("the by-id index holds a slot of %s that no bucket in dir holds", c.slotKeyID(h))
		}
	}
	if indexed != c.byID.len() {
		t.Errorf("by-id index counts %d slots, holds %d", c.byID.len(), indexed)
	}
	if n, want := x.keys.Load(), int64(c.cachedKeys()); n != want {
		t.Errorf("key count %d, dir holds %d keys", n, want)
	}
}
