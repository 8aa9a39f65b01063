package keystore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testclock"
	"github.com/keygate/keygate/keystore"
)

func TestStoreChargeQuota(t *testing.T) { eachStore(t, testChargeQuota) }

func testChargeQuota(t *testing.T, fx *fixture) {
	s := fx.store
	const limit = 10
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 25 {
		wg.Go(func() {
			_, charged, err := s.ChargeQuota(ctx, "site:s1:live", "2026-11", 1, limit, time.Now())
			if err != nil {
				t.Error(err)
			}
			if charged {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != limit {
		t.Fatalf("%d charges succeeded, want %d", ok.Load(), limit)
	}
	used, charged, err := s.ChargeQuota(ctx, "site:s1:live", "2026-11", 1, limit, time.Now())
	if err != nil || charged || used != limit {
		t.Fatalf("over the limit: used %d charged %t err %v", used, charged, err)
	}
	// Another month, another mode and a raised limit each count afresh.
	for _, c := range []struct {
		counter, period string
		limit, want     int64
	}{
		{"site:s1:live", "2026-12", limit, 1},
		{"site:s1:test", "2026-11", limit, 1},
		{"site:s1:live", "2026-11", limit + 5, limit + 1},
	} {
		used, charged, err := s.ChargeQuota(ctx, c.counter, c.period, 1, c.limit, time.Now())
		if err != nil || !charged || used != c.want {
			t.Errorf("%s %s limit %d: used %d charged %t err %v; want %d", c.counter, c.period, c.limit, used, charged, err, c.want)
		}
	}
	// A cost larger than the whole limit never writes.
	if _, charged, _ := s.ChargeQuota(ctx, "site:s2:live", "2026-11", 5, 4, time.Now()); charged {
		t.Error("a cost above the limit was charged")
	}
	got, err := s.QuotaUsage(ctx, "2026-11", "site:s1:live", "site:s2:live")
	if err != nil || len(got) != 1 || got[0].Used != limit+1 || got[0].Quota != limit+5 {
		t.Fatalf("usage: %+v, %v", got, err)
	}
}

func TestStoreLimitOverrides(t *testing.T) { eachStore(t, testLimitOverrides) }

func testLimitOverrides(t *testing.T, fx *fixture) {
	s := fx.store
	if _, err := s.CreateAccount(ctx, keystore.Account{ID: "a1", Plan: "plus"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSite(ctx, keystore.Site{ID: "s1", AccountID: "a1", Active: true}); err != nil {
		t.Fatal(err)
	}
	key, _, err := s.CreateKey(ctx, keystore.KeySpec{SiteID: "s1", Mode: keystore.ModeLive})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := s.LastChange(ctx)
	if err := s.SetLimits(ctx, keystore.EntitySite, "s1", keystore.Limits{"rate": 600, "quota": 0}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLimits(ctx, keystore.EntityAccount, "a1", keystore.Limits{"quota": 5000}); err != nil {
		t.Fatal(err)
	}
	f, err := s.LookupKeyID(ctx, key.ID)
	if err != nil {
		t.Fatal(err)
	}
	if f.Site.Limits["rate"] != 600 || len(f.Site.Limits) != 2 || f.Account.Limits["quota"] != 5000 {
		t.Fatalf("facts carry site %v account %v", f.Site.Limits, f.Account.Limits)
	}
	// Every override write is in the change log, so caches drop the facts.
	changes, err := s.Changes(ctx, before, 10)
	if err != nil || len(changes) != 2 || changes[0].Entity != keystore.EntitySite || changes[1].Entity != keystore.EntityAccount {
		t.Fatalf("changes: %+v, %v", changes, err)
	}
	if err := s.SetLimits(ctx, keystore.EntitySite, "s1", nil); err != nil {
		t.Fatal(err)
	}
	if f, _ = s.LookupKeyID(ctx, key.ID); f.Site.Limits != nil {
		t.Fatalf("cleared overrides still read as %v", f.Site.Limits)
	}
	for _, bad := range []keystore.Limits{{"Rate": 1}, {"rate": -1}, {"rate": 2e12}, {"": 1}} {
		if err := s.SetLimits(ctx, keystore.EntitySite, "s1", bad); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("SetLimits(%v): want keystore.ErrInvalid, got %v", bad, err)
		}
	}
	if err := s.SetLimits(ctx, keystore.EntitySite, "nope", keystore.Limits{"rate": 1}); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("unknown site: want keystore.ErrNotFound, got %v", err)
	}
}

// TestStoreChargeQuotaReplicas: two stores on one database (two replicas,
// or a server and the CLI) charging one counter at once never take it past
// its limit, and the usage read back is exactly what they were told was
// charged.
func TestStoreChargeQuotaReplicas(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		other, _ := open(t, fx.dsn, fx.clock, "pepper-one-0123456789")
		const limit = 15
		var ok atomic.Int64
		var wg sync.WaitGroup
		for i := range 40 {
			s := fx.store
			if i%2 == 1 {
				s = other
			}
			wg.Go(func() {
				_, charged, err := s.ChargeQuota(ctx, "site:s1:live", "2026-11", 1, limit, time.Now())
				if err != nil {
					t.Error(err)
				}
				if charged {
					ok.Add(1)
				}
			})
		}
		wg.Wait()
		got, err := other.QuotaUsage(ctx, "2026-11", "site:s1:live")
		if ok.Load() != limit || err != nil || len(got) != 1 || got[0].Used != limit {
			t.Fatalf("%d charges allowed; usage %+v, %v; want %d", ok.Load(), got, err, limit)
		}
	})
}

// TestSQLiteChargeQuotaWaitsForLock: a charge that finds another process
// writing waits for it, within its context: when the context ends first the
// charge fails (and counts nothing), and once the lock is free it goes
// through.
func TestSQLiteChargeQuotaWaitsForLock(t *testing.T) {
	dsn := backends[0].dsn(t)
	c := testclock.New(time.Date(2026, 11, 3, 4, 5, 6, 0, time.UTC))
	s, _ := open(t, dsn, c, "pepper-one-0123456789")
	other, _ := open(t, dsn, c, "pepper-one-0123456789")
	if _, _, err := s.ChargeQuota(ctx, "site:s1:live", "2026-11", 1, 10, c.Now()); err != nil {
		t.Fatal(err) // the pinned connection exists before the lock is taken
	}
	tx, err := other.DB().BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, _, err := s.ChargeQuota(short, "site:s1:live", "2026-11", 1, 10, c.Now()); !errors.Is(err, keystore.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("charge against a held lock past its deadline: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		used, charged, err := s.ChargeQuota(ctx, "site:s1:live", "2026-11", 1, 10, c.Now())
		if err == nil && (!charged || used != 2) {
			err = fmt.Errorf("used %d charged %t, want 2 true", used, charged)
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it find the lock taken (it passes either way)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
