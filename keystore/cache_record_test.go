package keystore

import (
	"context"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPackKeyRoundTrip: a packed key decodes to exactly the Key it was
// made from, whatever optional fields it has.
func TestPackKeyRoundTrip(t *testing.T) {
	t0 := time.UnixMilli(1767225600123).UTC()
	used, exp, rev := t0.Add(time.Hour), t0.Add(-time.Hour), time.Unix(-62135596800, 999_999_999).UTC()
	cases := map[string]Key{
		"plain":        {ID: "key_1", SiteID: "web", Mode: ModeLive, Name: "prod", Prefix: "kg_live_ab", CreatedAt: t0},
		"all times":    {ID: "key_2", SiteID: "web", Mode: ModeTest, Name: "", Prefix: "p", CreatedAt: t0, LastUsedAt: &used, ExpiresAt: &exp, RevokedAt: &rev},
		"revoked only": {ID: "key_3", SiteID: "web", Mode: "other", CreatedAt: t0, RevokedAt: &used},
		"own site id":  {ID: "key_4", SiteID: "elsewhere", Mode: ModeLive, Name: strings.Repeat("n", 300), CreatedAt: t0},
		"zero time":    {ID: "key_5", SiteID: "web"},
	}
	for name, k := range cases {
		rec, opt, ok := packKey(k, "web")
		if !ok {
			t.Fatalf("%s: not packable", name)
		}
		got, ok := unpackKey(rec, "web", opt)
		if !ok || !reflect.DeepEqual(got, k) {
			t.Errorf("%s: unpack = %+v, %v; want %+v", name, got, ok, k)
		}
		if id := recordID(rec); id != k.ID {
			t.Errorf("%s: recordID = %q", name, id)
		}
	}
	// A time with a zone or a monotonic reading would not survive packing.
	for _, ct := range []time.Time{time.Now(), t0.In(time.FixedZone("x", 3600))} {
		if _, _, ok := packKey(Key{ID: "k", CreatedAt: ct}, "web"); ok {
			t.Errorf("packKey(%v) = ok; want refused", ct)
		}
		if _, _, ok := packKey(Key{ID: "k", LastUsedAt: &ct}, "web"); ok {
			t.Errorf("packKey(last used %v) = ok; want refused", ct)
		}
	}
	// A damaged record is refused, not a panic.
	rec, opt, _ := packKey(cases["all times"], "web")
	for i := range len(rec) {
		if _, ok := unpackKey(rec[:i], "web", opt); ok {
			t.Errorf("truncated record of %d bytes decoded", i)
		}
	}
	if _, ok := unpackKey(rec, "web", opt[1:]); ok {
		t.Error("record decoded with a time missing")
	}
}

// TestCacheKeepsWholeKeys: keys with entitlements, optional times, or with
// times packing cannot keep, come back from the cache exactly as the store
// gave them.
func TestCacheKeepsWholeKeys(t *testing.T) {
	f := *sampleFacts()
	rem := int64(7)
	f.Key.Entitlements = Entitlements{Scopes: []string{"videos:read"}, Meta: map[string]string{"tier": "gold"}, Remaining: &rem}
	local := time.Now()
	g := f
	g.Key.Entitlements, g.Key.CreatedAt = Entitlements{}, local
	// Optional times (kept in the slot) and a name too long for one.
	h, used, exp := f, benchT0.Add(time.Hour), benchT0.Add(24*time.Hour)
	h.Key.Entitlements, h.Key.CreatedAt, h.Key.LastUsedAt, h.Key.ExpiresAt = Entitlements{}, benchT0, &used, &exp
	long := h
	long.Key.Name = strings.Repeat("n", 250)
	e := f
	e.Key.CreatedAt, e.Key.RevokedAt = benchT0, &used
	for name, want := range map[string]KeyFacts{"entitlements": f, "local time": g, "times": h, "long name": long, "entitlements and times": e} {
		c := newTestCache(t, &fakeLoader{key: &want}, CacheConfig{})
		for i := range 2 {
			got, err := c.Key(context.Background(), digests)
			c.Wait()
			if err != nil || !reflect.DeepEqual(got.Key, want.Key) {
				t.Fatalf("%s, read %d: %+v, %v; want %+v", name, i, got.Key, err, want.Key)
			}
		}
		if hits, _ := c.Stats(); hits != 1 {
			t.Fatalf("%s: hits = %d, want 1", name, hits)
		}
	}
}

// TestCacheByIDIndexFollowsRistretto: the by-id index holds only entries
// ristretto holds (evicted and rejected ones leave it), and an invalidated
// key is not answered from it.
func TestCacheByIDIndexFollowsRistretto(t *testing.T) {
	l := &storeLikeLoader{sites: 10}
	c := newTestCache(t, l, CacheConfig{MaxEntries: 100})
	ctx := context.Background()
	for i := range 2000 {
		if _, err := c.Key(ctx, []Digest{Digest("digest-" + strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
		if i%64 == 0 {
			c.Wait()
		}
	}
	c.Wait()
	if n := c.byID.len(); n > 100 {
		t.Fatalf("index holds %d entries; the cache holds at most 100", n)
	}
	// A key still cached by digest is found by id without a store read,
	// until it is invalidated.
	var id string
	for i := range 2000 {
		if e, ok := c.byID.get("key_" + strconv.Itoa(i)); ok {
			id = c.slotKeyID(e)
			break
		}
	}
	if id == "" {
		t.Fatal("no key is indexed")
	}
	before := l.reads.Load()
	if f, err := c.KeyID(ctx, id); err != nil || f.Key.ID != id {
		t.Fatalf("KeyID(%s) = %+v, %v", id, f.Key, err)
	}
	if l.reads.Load() != before {
		t.Fatal("an indexed key was read from the store")
	}
	c.Invalidate(EntityKey, id)
	if f, err := c.KeyID(ctx, id); err != nil || f.Key.ID != id || l.reads.Load() != before+1 {
		t.Fatalf("after invalidation: %+v, %v, %d reads", f.Key, err, l.reads.Load()-before)
	}
}
