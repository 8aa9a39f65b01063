package keystore

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestSQLiteChargeQuotaAllocs: a quota charge on SQLite runs on its pinned
// connection, not through database/sql (37 allocations a charge before).
func TestSQLiteChargeQuotaAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "q.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Date(2026, 11, 3, 4, 5, 6, 0, time.UTC)
	allocs := testing.AllocsPerRun(50, func() {
		if _, ok, err := s.ChargeQuota(ctx, "site:s1:live", "2026-11", 1, 1<<40, at); err != nil || !ok {
			t.Fatal(ok, err)
		}
	})
	if allocs > 24 {
		t.Fatalf("%v allocations a charge, want at most 24", allocs)
	}
}
