package keystore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// BenchmarkLookupAfterCharge is a quota charge and then a key read by
// digest, as a server under the realistic load does them: a connection
// other than the one the charge committed on finds the database changed
// and reads every page again (pinnedConns gives the read the charge's
// connection). 2,000 keys over 20 sites, read in turn, so the read is not
// of a page SQLite just read for the same key.
func BenchmarkLookupAfterCharge(b *testing.B) {
	s := benchQuotaStore(b)
	ctx := context.Background()
	d, err := keystore.NewDigester([]byte("pepper-one-0123456789"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.CreateAccount(ctx, keystore.Account{ID: "acme", Plan: "pro"}); err != nil {
		b.Fatal(err)
	}
	const sites, keys = 20, 2000
	for i := range sites {
		if _, err := s.CreateSite(ctx, keystore.Site{ID: fmt.Sprintf("site_%03d", i), AccountID: "acme", Active: true}); err != nil {
			b.Fatal(err)
		}
	}
	digests := make([][]keystore.Digest, keys)
	for i := range digests {
		_, secret, err := s.CreateKey(ctx, keystore.KeySpec{SiteID: fmt.Sprintf("site_%03d", i%sites), Mode: keystore.ModeLive, Name: fmt.Sprint(i)})
		if err != nil {
			b.Fatal(err)
		}
		digests[i] = d.All(secret.Reveal())
	}
	counters := quotaCounters(sites)
	at := time.Date(2026, 11, 3, 4, 5, 6, 0, time.UTC)
	reqCtx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok, err := s.ChargeQuota(reqCtx, counters[i%sites], "2026-11", 1, 1<<40, at); err != nil || !ok {
			b.Fatal(ok, err)
		}
		if _, err := s.LookupKey(reqCtx, digests[i%keys]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
