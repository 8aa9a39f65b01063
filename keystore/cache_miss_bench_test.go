package keystore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// BenchmarkCacheMissRead is a cache miss read through to SQLite: every
// lookup is of a key the cache has not seen (a fresh cache every 200),
// under a context with a deadline as a Check's is.
func BenchmarkCacheMissRead(b *testing.B) {
	s := benchQuotaStore(b)
	ctx := context.Background()
	if _, err := s.CreateAccount(ctx, keystore.Account{ID: "acme", Plan: "pro"}); err != nil {
		b.Fatal(err)
	}
	if _, err := s.CreateSite(ctx, keystore.Site{ID: "site_1", AccountID: "acme", Active: true}); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, 200)
	for i := range ids {
		k, _, err := s.CreateKey(ctx, keystore.KeySpec{SiteID: "site_1", Mode: keystore.ModeLive, Name: fmt.Sprint(i)})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = k.ID
	}
	var c *keystore.Cache
	b.Cleanup(func() { c.Close() })
	reqCtx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%len(ids) == 0 {
			b.StopTimer()
			if c != nil {
				c.Close()
			}
			var err error
			if c, err = keystore.NewCache(s, keystore.CacheConfig{}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if _, err := c.KeyID(reqCtx, ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
