package keystore_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// drainedEvents drains the outbox and describes each event, its data decoded
// as T, in the order the store hands them out.
func drainedEvents[T any](t *testing.T, fx *fixture, describe func(typ string, data T) string) []string {
	t.Helper()
	var seen []string
	for _, e := range drain(t, fx) {
		var data T
		if err := json.Unmarshal(e.Data, &data); err != nil {
			t.Fatalf("%s data %s: %v", e.Type, e.Data, err)
		}
		seen = append(seen, describe(e.Type, data))
	}
	return seen
}

func TestNoticesKeyExpiry(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acct", "site1")
		fx.subscribe(keystore.EventKeyExpiring, keystore.EventKeyExpired)
		in := func(d time.Duration) *time.Time { x := fx.clock.Now().Add(d); return &x }
		soon, _, _ := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive, ExpiresAt: in(3 * 24 * time.Hour)})
		later, _, _ := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive, ExpiresAt: in(30 * 24 * time.Hour)})
		revoked, _, _ := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive, ExpiresAt: in(time.Hour)})
		fx.key("site1", keystore.ModeLive) // never expires
		if _, err := fx.store.RevokeKey(ctx, revoked.ID); err != nil {
			t.Fatal(err)
		}
		const week = 7 * 24 * time.Hour
		scan := func() int {
			n, err := fx.store.ScanNotices(ctx, fx.clock.Now(), week, "2030-01")
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n := scan(); n != 1 {
			t.Fatalf("first scan: %d events, want 1 (key.expiring for %s)", n, soon.ID)
		}
		if n := scan(); n != 0 {
			t.Fatalf("second scan: %d events, want none", n)
		}
		fx.clock.Add(4 * 24 * time.Hour) // soon has expired
		if n := scan(); n != 1 {
			t.Fatalf("after expiry: %d events", n)
		}
		fx.clock.Add(20 * 24 * time.Hour) // later is within a week
		scan()
		seen := drainedEvents(t, fx, func(typ string, k keystore.KeyEvent) string { return typ + " " + k.ID })
		want := []string{"key.expiring " + soon.ID, "key.expired " + soon.ID, "key.expiring " + later.ID}
		if strings.Join(seen, "\n") != strings.Join(want, "\n") {
			t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
		}
	})
}

// Two store handles (two replicas) charge one site's quota concurrently and
// both scan after every charge: quota.threshold fires once at 80% and once
// at 100%.
func TestNoticesQuotaThresholdAcrossReplicas(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acct", "site1")
		fx.subscribe(keystore.EventQuotaThreshold)
		other, _ := open(t, fx.dsn, fx.clock, "pepper-one-0123456789")
		const quota = 50
		period := "2030-01"
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for _, st := range []*keystore.Store{fx.store, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 40 { // 80 attempts for a quota of 50
					if _, _, err := st.ChargeQuota(ctx, "site:site1:live", period, 1, quota, fx.clock.Now()); err != nil {
						errs <- err
						return
					}
					if _, err := st.ScanNotices(ctx, fx.clock.Now(), time.Hour, period); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		seen := drainedEvents(t, fx, func(typ string, q keystore.QuotaThresholdEvent) string {
			if q.Site != "site1" || q.Account != "acct" || q.Mode != "live" || q.Period != period || q.Quota != quota {
				t.Fatalf("quota.threshold data %+v", q)
			}
			return fmt.Sprintf("%s %d", typ, q.Threshold)
		})
		if strings.Join(seen, ", ") != "quota.threshold 80, quota.threshold 100" {
			t.Fatalf("events %q, want one at 80%% then one at 100%%", seen)
		}
		// A new month starts over.
		if _, _, err := fx.store.ChargeQuota(ctx, "site:site1:live", "2030-02", 45, quota, fx.clock.Now()); err != nil {
			t.Fatal(err)
		}
		if n, _ := fx.store.ScanNotices(ctx, fx.clock.Now(), time.Hour, "2030-02"); n != 1 {
			t.Fatalf("next month at 90%%: %d events, want 1", n)
		}
	})
}
