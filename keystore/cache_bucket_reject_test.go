package keystore

import (
	"context"
	"runtime"
	"strconv"
	"testing"
)

// TestRejectedGrowthKeepsBucket: in a full cache, a cold key whose bucket
// ristretto's admission rejects once it grew (its place read less than the
// buckets sampled for eviction) costs only the cold key: the keys the bucket
// already held stay cached (no store read for any of them, by digest or by
// id), and the cache stays within MaxEntries. A real ristretto decides;
// before the fix the rejection dropped the whole bucket. ristretto counts
// reads lossily, so a setup whose cold bucket it admitted anyway is tried
// again in a new cache (that is not the case under test).
func TestRejectedGrowthKeepsBucket(t *testing.T) {
	if raceEnabled {
		// sync.Pool drops a quarter of its Puts under the race detector:
		// ristretto's read buffers, pooled stripes of 64, then hardly ever
		// reach its counters, and no place is read more than another.
		t.Skip("ristretto counts no reads under the race detector")
	}
	for range 5 {
		if rejectedGrowth(t, 64, 4, 12) {
			return
		}
	}
	t.Fatal("ristretto admitted the cold key's bucket in every setup: no rejection was driven")
}

// TestOversizedGrowthKeepsBucket: a bucket that grows past the whole cache
// (ristretto refuses it whatever the reads) leaves the keys it held cached.
func TestOversizedGrowthKeepsBucket(t *testing.T) {
	if raceEnabled {
		// As above: under the race detector ristretto's buffers drop
		// what this setup needs it to count (1 run in ~20 then re-read
		// the warm keys, before this session's changes too). make test
		// runs both tests without it.
		t.Skip("ristretto's counts are unreliable under the race detector")
	}
	if !rejectedGrowth(t, 4, 0, 0) {
		t.Fatal("a bucket costing more than MaxCost was admitted")
	}
}

// rejectedGrowth fills a cache of places buckets exactly: perPlace keys at
// every place but place 0, which holds the warm keys (all the cache when
// perPlace is 0). The hot keys are read rounds times, then a cold key at
// place 0 grows its bucket. It reports whether that bucket was refused,
// and if so fails t unless the warm keys are all still cached.
func rejectedGrowth(t *testing.T, places, perPlace, rounds int) bool {
	t.Helper()
	l := &storeLikeLoader{sites: 10}
	warmCount := perPlace
	if perPlace == 0 {
		warmCount = places
	}
	c := newTestCache(t, l, CacheConfig{MaxEntries: int64(warmCount + (places-1)*perPlace)})
	x := c.buckets
	ctx := context.Background()
	if len(x.dir) != places {
		t.Fatalf("%d buckets, want %d", len(x.dir), places)
	}
	byPlace := make([][]int, places)
	filled := 0 // places holding all their keys
	if perPlace == 0 {
		filled = places - 1
	}
	for n := 0; filled < places; n++ {
		p := x.hash(digestKey(testDigest(n))).h1 & x.mask
		want := perPlace
		if p == 0 {
			want = warmCount + 1
		}
		if len(byPlace[p]) < want {
			if byPlace[p] = append(byPlace[p], n); len(byPlace[p]) == want {
				filled++
			}
		}
	}
	warm, cold := byPlace[0][:warmCount], byPlace[0][warmCount]
	read := func(n int) {
		t.Helper()
		if _, err := c.Key(ctx, []Digest{testDigest(n)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, keys := range byPlace {
		for _, n := range keys {
			if n != cold {
				read(n)
				c.Wait() // every growth admitted in turn: the cache fills exactly
			}
		}
	}
	full := c.cachedKeys()
	if full != warmCount+(places-1)*perPlace {
		t.Fatalf("%d keys cached after the fill, want %d", full, warmCount+(places-1)*perPlace)
	}
	// The hot places are read again and again, the warm one is not: its
	// count ages away while theirs stays.
	for range rounds {
		for _, keys := range byPlace[1:] {
			for _, n := range keys {
				read(n)
			}
		}
		runtime.Gosched() // ristretto drops the reads its goroutine has no time for
	}
	c.Wait()
	read(cold)
	c.Wait()
	if _, cached := c.lookup(digestKey(testDigest(cold))); cached {
		return false
	}
	before := l.reads.Load()
	for _, n := range warm {
		read(n)
		if _, err := c.KeyID(ctx, "key_"+strconv.Itoa(n)); err != nil {
			t.Fatal(err)
		}
	}
	if reads := l.reads.Load() - before; reads != 0 {
		t.Fatalf("%d store reads for the %d keys cached before the cold key's bucket was refused; want 0", reads, len(warm))
	}
	if _, ok := c.byID.get("key_" + strconv.Itoa(cold)); ok {
		t.Fatal("the refused cold key is still found by id")
	}
	if got := c.cachedKeys(); got > full {
		t.Fatalf("%d keys cached, want at most MaxEntries (%d)", got, full)
	}
	return true
}

func testDigest(n int) Digest { return Digest("digest-" + strconv.Itoa(n)) }

// fillThenHeat reads keys 0 to size-1 into c (letting ristretto catch up
// every step keys), then the first hot of them three times, so that
// ristretto counts them hot.
func fillThenHeat(c *Cache, read func(n int), size, hot, step int) {
	for n := range size {
		read(n)
		if n%step == 0 {
			c.Wait()
		}
	}
	for range 3 {
		for n := range hot {
			read(n)
		}
	}
	c.Wait()
}

// BenchmarkCacheHotUnderFlood: a full cache (10,000 keys) whose 6,000 hot
// keys are read in turn while cold keys, each read once, arrive one per four
// hot reads, as a flood of keys seen once does. It reports the share of hot
// reads that went to the store: a cold key's bucket that ristretto refused
// took the hot keys it shared a bucket with along before the fix.
func BenchmarkCacheHotUnderFlood(b *testing.B) {
	const size, hot = 10_000, 6_000
	l := &storeLikeLoader{sites: 100}
	c, err := NewCache(l, CacheConfig{MaxEntries: size})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	read := func(n int) {
		if _, err := c.Key(ctx, []Digest{testDigest(n)}); err != nil {
			b.Fatal(err)
		}
	}
	fillThenHeat(c, read, size, hot, 512)
	var hotReads, hotMisses int64
	i, cold := 0, size
	for b.Loop() {
		for range 4 {
			i = (i + 7919) % hot
			before := l.reads.Load()
			read(i)
			hotMisses += l.reads.Load() - before
			hotReads++
		}
		read(cold)
		cold++
	}
	b.ReportMetric(float64(hotMisses)/float64(hotReads), "hot-miss-ratio")
}
