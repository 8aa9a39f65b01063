package keystore

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSQLiteChargeQuotaAllocs: a quota charge on SQLite runs on a pinned
// connection (pinnedConns), not through database/sql (37 allocations a charge before).
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

// TestSQLiteChargesCheckpoint: quota charges alone keep the write-ahead log
// at SQLite's checkpoint size (1,000 pages). Each charge used to commit in
// its statement's reset, which skips the WAL hook, so none ever
// checkpointed: between key-usage flushes the log grew by a page a charge,
// and so did the probe of its index that every commit makes.
func TestSQLiteChargesCheckpoint(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "q.db")
	s, err := OpenSQLite(ctx, file, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Date(2026, 11, 3, 4, 5, 6, 0, time.UTC)
	for range 2500 {
		if _, ok, err := s.ChargeQuota(ctx, "site:s1:live", "2026-11", 1, 1<<40, at); err != nil || !ok {
			t.Fatal(ok, err)
		}
	}
	st, err := os.Stat(file + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	// A WAL frame is a 24-byte header and a 4 KiB page.
	if frames := st.Size() / (24 + 4096); frames > 1100 {
		t.Fatalf("the log holds %d pages after 2,500 charges, want at most 1,100", frames)
	}
}
