package keystore

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// storeLikeLoader answers every digest with a key of its own, spread over
// sites and accounts the way a platform's keys are, and builds each answer
// from fresh strings, as rows scanned from SQL are: nothing is shared
// between two answers unless the cache shares it.
type storeLikeLoader struct {
	sites int
	reads atomic.Int64
}

func (l *storeLikeLoader) LookupKey(_ context.Context, digests []Digest) (KeyFacts, error) {
	return l.read(string(digests[0]), "digest-", 1)
}

func (l *storeLikeLoader) LookupKeyID(_ context.Context, id string) (KeyFacts, error) {
	return l.read(id, "key_", 1)
}

func (l *storeLikeLoader) LookupSite(_ context.Context, id string) (SiteFacts, error) {
	f, err := l.read(id, "site-", l.sites)
	return SiteFacts{Site: f.Site, Account: f.Account}, err
}

// read counts one store read and answers for key number n*scale, n being
// the number after prefix in s (a digest or id this loader handed out).
func (l *storeLikeLoader) read(s, prefix string, scale int) (KeyFacts, error) {
	l.reads.Add(1)
	n, err := strconv.Atoi(strings.TrimPrefix(s, prefix))
	if err != nil {
		return KeyFacts{}, ErrNotFound
	}
	return l.facts(n * scale), nil
}

var benchT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func (l *storeLikeLoader) facts(n int) KeyFacts {
	site := n % l.sites
	created := benchT0.Add(time.Duration(n) * time.Second)
	return KeyFacts{
		Key: Key{ID: fmt.Sprintf("key_%d", n), SiteID: fmt.Sprintf("site-%d", site), Mode: ModeLive,
			Name: fmt.Sprintf("production %d", n), Prefix: fmt.Sprintf("%08d", n), CreatedAt: created},
		Site: Site{ID: fmt.Sprintf("site-%d", site), AccountID: fmt.Sprintf("acct-%d", site/2),
			Domains: []string{fmt.Sprintf("site%d.example.com", site), fmt.Sprintf("*.site%d.example.com", site)},
			Active:  true, CreatedAt: benchT0, UpdatedAt: benchT0},
		Account: Account{ID: fmt.Sprintf("acct-%d", site/2), Plan: "pro", Status: StatusActive, CreatedAt: benchT0, UpdatedAt: benchT0},
	}
}

// BenchmarkCacheMillionKeys loads 1,000,000 keys (over 10,000 sites) into a
// cache built with the production configuration, then reads them all again:
// it reports the heap and RSS each cached key costs and the second pass's
// hit ratio (1 when every key stayed cached). KEYGATE_BENCH_KEYS changes the
// count. Run it alone: -run XXX -bench CacheMillionKeys -benchtime 1x.
func BenchmarkCacheMillionKeys(b *testing.B) {
	keys := 1_000_000
	if s := os.Getenv("KEYGATE_BENCH_KEYS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("KEYGATE_BENCH_KEYS=%q: want a positive count", s)
		}
		keys = n
	}
	ctx := context.Background()
	// Digests are made as they are asked for, as requests bring them: a
	// slice of a million would add ~56 MB of the benchmark's own to RSS.
	digest := func(i int) []Digest { return []Digest{Digest("digest-" + strconv.Itoa(i))} }
	for b.Loop() {
		l := &storeLikeLoader{sites: 10_000}
		heap0, rss0 := heapAndRSS(b)
		c, err := NewCache(l, CacheConfig{})
		if err != nil {
			b.Fatal(err)
		}
		for i := range keys {
			if _, err := c.Key(ctx, digest(i)); err != nil {
				b.Fatal(err)
			}
			if i%1024 == 0 {
				c.Wait() // ristretto drops Sets when its buffers are full
			}
		}
		c.Wait()
		heap1, rss1 := heapAndRSS(b)
		before := l.reads.Load()
		for i := range keys {
			if _, err := c.Key(ctx, digest(i)); err != nil {
				b.Fatal(err)
			}
		}
		misses := l.reads.Load() - before
		b.ReportMetric(float64(heap1-heap0)/float64(keys), "heap-B/key")
		b.ReportMetric(float64(rss1)/(1<<20), "RSS-MB")
		b.ReportMetric(float64(rss1-rss0)/(1<<20), "RSS-growth-MB")
		b.ReportMetric(float64(rss1-rss0)/float64(keys), "RSS-B/key")
		b.ReportMetric(float64(int64(keys)-misses)/float64(keys), "hit-ratio")
		runtime.KeepAlive(c)
		c.Close()
	}
}

// heapAndRSS is the live heap after a full collection, and the process's
// resident set as the kernel counts it.
func heapAndRSS(b *testing.B) (heap, rss uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status: RSS is not measurable here")
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			rss = kb << 10
		}
	}
	return ms.HeapAlloc, rss
}

// TestCacheHoldsMaxEntries: every entry costs one unit of MaxEntries, so a
// cache sized for 10,000 entries keeps 4,000 keys, one entry each (by
// digest; ristretto's own per-item bookkeeping once made it hold about a
// hundred).
func TestCacheHoldsMaxEntries(t *testing.T) {
	l := &storeLikeLoader{sites: 100}
	c := newTestCache(t, l, CacheConfig{MaxEntries: 10_000})
	ctx := context.Background()
	const keys = 4000
	for i := range keys {
		if _, err := c.Key(ctx, []Digest{Digest("digest-" + strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
		if i%256 == 0 {
			c.Wait()
		}
	}
	c.Wait()
	before := l.reads.Load()
	for i := range keys {
		if _, err := c.Key(ctx, []Digest{Digest("digest-" + strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if reads := l.reads.Load() - before; reads != 0 {
		t.Fatalf("second pass read the store %d times; want every one of %d keys cached", reads, keys)
	}
}

// TestCacheSharesSiteFacts: keys of one site point to one copy of its site
// and account, and a changed site gets a copy of its own.
func TestCacheSharesSiteFacts(t *testing.T) {
	l := &storeLikeLoader{sites: 10}
	c := newTestCache(t, l, CacheConfig{})
	ctx := context.Background()
	get := func(n int) KeyFacts {
		t.Helper()
		f, err := c.Key(ctx, []Digest{Digest("digest-" + strconv.Itoa(n))})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	a, b, other := get(3), get(13), get(4) // keys 3 and 13 belong to site-3
	if a.Site.ID != "site-3" || b.Site.ID != "site-3" || other.Site.ID != "site-4" {
		t.Fatalf("sites = %s, %s, %s", a.Site.ID, b.Site.ID, other.Site.ID)
	}
	if &a.Site.Domains[0] != &b.Site.Domains[0] {
		t.Error("two keys of one site hold two copies of its facts")
	}
	if &a.Site.Domains[0] == &other.Site.Domains[0] {
		t.Error("keys of different sites share facts")
	}
	if a.Key.ID != "key_3" || b.Key.ID != "key_13" || a.Key.SiteID != "site-3" {
		t.Fatalf("keys = %+v, %+v", a.Key, b.Key)
	}
	// Facts that differ in any field (a plan change, say) get a copy of
	// their own, which later fills of the same facts then share.
	changed := SiteFacts{Site: a.Site, Account: a.Account}
	changed.Account.Plan = "max"
	p1, p2 := c.share(changed), c.share(changed)
	if p1 != p2 || p1.Account.Plan != "max" {
		t.Fatalf("changed facts: %p %p %+v", p1, p2, p1.Account)
	}
	if old := get(33); old.Account.Plan != "pro" { // site-3 as the store still has it
		t.Fatalf("key 33: plan %q", old.Account.Plan)
	}
}

// BenchmarkCacheHit: a cache hit on a key with last_used_at set (the
// common case). No allocation: the digest is the cache key, the miss
// path's closures are not built, and the key's strings and optional times
// point into its cache slot.
func BenchmarkCacheHit(b *testing.B) {
	f := *sampleFacts()
	used := benchT0.Add(time.Hour)
	f.Key.CreatedAt, f.Key.LastUsedAt, f.Key.Name, f.Key.Prefix = benchT0, &used, "production", "kg_live_ab"
	c, err := NewCache(&fakeLoader{key: &f}, CacheConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Key(ctx, digests); err != nil {
		b.Fatal(err)
	}
	c.Wait()
	b.ReportAllocs()
	for b.Loop() {
		got, err := c.Key(ctx, digests)
		if err != nil || got.Key.LastUsedAt == nil || !got.Key.LastUsedAt.Equal(used) {
			b.Fatalf("%+v, %v", got.Key, err)
		}
	}
}

// BenchmarkCacheHitFull: hits on keys spread over a full cache (32,768
// keys in as many entries), so each lookup finds its key among a full
// bucket's and the cache's memory is not all in the CPU's caches.
func BenchmarkCacheHitFull(b *testing.B) {
	const keys = 32_768
	l := &storeLikeLoader{sites: 1000}
	c, err := NewCache(l, CacheConfig{MaxEntries: keys})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	ds := make([][]Digest, keys)
	for i := range ds {
		ds[i] = []Digest{Digest("digest-" + strconv.Itoa(i))}
		if _, err := c.Key(ctx, ds[i]); err != nil {
			b.Fatal(err)
		}
		if i%1024 == 0 {
			c.Wait()
		}
	}
	c.Wait()
	before := l.reads.Load()
	b.ReportAllocs()
	hitLoop(b, c, ds)
	if reads := l.reads.Load() - before; reads > int64(b.N)/100 {
		b.Fatalf("%d of %d reads missed", reads, b.N)
	}
}

// hitLoop is BenchmarkCacheHitFull's timed loop, apart so that callgrind
// can count it alone (--toggle-collect='*hitLoop*').
//
//go:noinline
func hitLoop(b *testing.B, c *Cache, ds [][]Digest) {
	ctx := context.Background()
	i := 0
	for b.Loop() {
		// A stride coprime with the count visits every key in turn.
		i = (i + 7919) % len(ds)
		if _, err := c.Key(ctx, ds[i]); err != nil {
			b.Fatal(err)
		}
	}
}
