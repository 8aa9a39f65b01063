package keystore

import (
	"context"
	"testing"
)

// TestDoorKeepsFloodOut: in a nearly full cache that has evicted, a key
// filled once is not cached (its next read goes to the store again) and one
// filled twice is; with room, a key is cached at its first fill.
func TestDoorKeepsFloodOut(t *testing.T) {
	l := &storeLikeLoader{sites: 10}
	c := newTestCache(t, l, CacheConfig{MaxEntries: 1000})
	ctx := context.Background()
	reads := func(n int) int64 {
		t.Helper()
		before := l.reads.Load()
		if _, err := c.Key(ctx, []Digest{testDigest(n)}); err != nil {
			t.Fatal(err)
		}
		c.Wait()
		return l.reads.Load() - before
	}
	if r := reads(0) + reads(0); r != 1 {
		t.Fatalf("a cache with room: %d store reads for two reads of a key, want 1", r)
	}
	for n := 1; !c.buckets.pressed.Load() || c.buckets.keys.Load() < c.buckets.full; n++ {
		reads(n)
	}
	if got := int64(c.cachedKeys()); got != c.buckets.keys.Load() {
		t.Fatalf("the count says %d keys, the buckets hold %d", c.buckets.keys.Load(), got)
	}
	const cold = 1_000_000
	if r := reads(cold) + reads(cold) + reads(cold); r != 2 {
		t.Fatalf("a nearly full cache: %d store reads for three reads of a new key, want 2 (cached at its second fill)", r)
	}
}

// TestHotKeysSurviveFlood: hot keys read in turn while keys seen once
// flood a full cache mostly stay cached (BenchmarkCacheHotUnderFlood:
// 34% of hot reads went to the store before the door, 3% with it).
func TestHotKeysSurviveFlood(t *testing.T) {
	const size, hot = 2_000, 1_200
	l := &storeLikeLoader{sites: 100}
	c := newTestCache(t, l, CacheConfig{MaxEntries: size})
	ctx := context.Background()
	read := func(n int) int64 {
		before := l.reads.Load()
		if _, err := c.Key(ctx, []Digest{testDigest(n)}); err != nil {
			t.Fatal(err)
		}
		return l.reads.Load() - before
	}
	fillThenHeat(c, func(n int) { read(n) }, size, hot, 256)
	var hotReads, hotMisses int64
	i := 0
	for cold := size; cold < size+20_000; cold++ {
		for range 4 {
			i = (i + 7919) % hot
			hotMisses += read(i)
			hotReads++
		}
		read(cold)
	}
	ratio := float64(hotMisses) / float64(hotReads)
	t.Logf("%.1f%% of hot reads went to the store", 100*ratio)
	if ratio > 0.12 {
		t.Fatalf("%.1f%% of hot reads went to the store during the flood; want at most 12%%", 100*ratio)
	}
}
