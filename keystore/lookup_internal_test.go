package keystore

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestSQLiteLookup: a key read on SQLite decodes the empty JSON columns
// nearly every key has without allocating, and skips database/sql (a
// lookup made 168 allocations before, 118 after).
func TestSQLiteLookup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, _ := NewFormat("kg")
	d, err := NewDigester([]byte("pepper-one-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "k.db"), Options{Format: f, Digester: d})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateAccount(ctx, Account{ID: "acme", Plan: "pro"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSite(ctx, Site{ID: "web", AccountID: "acme", Active: true}); err != nil {
		t.Fatal(err)
	}
	_, secret, err := s.CreateKey(ctx, KeySpec{SiteID: "web", Mode: ModeLive})
	if err != nil {
		t.Fatal(err)
	}
	digests := d.All(secret.Reveal())
	got, err := s.LookupKey(ctx, digests)
	if err != nil || got.Site.ID != "web" || got.Account.ID != "acme" || got.Account.Plan != "pro" || !got.Site.Active ||
		got.Site.Domains == nil || got.Site.Limits != nil {
		t.Fatalf("%+v, %v", got, err)
	}
	if raceEnabled {
		return // allocation counts differ under the race detector
	}
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := s.LookupKey(ctx, digests); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 140 { // 118 when written: room for a driver update
		t.Fatalf("%v allocations a lookup, want at most 140", allocs)
	}
}
