package keystore_test

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keygate/keygate/keystore"
)

func i64(v int64) *int64 { return &v }

func TestEntitlementsValidate(t *testing.T) {
	many := func(n int, f func(i int) string) []string {
		var out []string
		for i := range n {
			out = append(out, f(i))
		}
		return out
	}
	meta17 := map[string]string{}
	for i := range 17 {
		meta17[string(rune('a'+i))] = "v"
	}
	for _, tc := range []struct {
		name  string
		e     keystore.Entitlements
		field string // "" means valid
	}{
		{"zero", keystore.Entitlements{}, ""},
		{"scopes", keystore.Entitlements{Scopes: []string{"videos:read", "videos:*", "*:read", "a.b-c_d:x.y"}}, ""},
		{"scope star", keystore.Entitlements{Scopes: []string{"*"}}, ""},
		{"scope no colon", keystore.Entitlements{Scopes: []string{"videos"}}, "scopes"},
		{"scope double star", keystore.Entitlements{Scopes: []string{"**"}}, "scopes"},
		{"scope upper", keystore.Entitlements{Scopes: []string{"Videos:read"}}, "scopes"},
		{"scope star in resource", keystore.Entitlements{Scopes: []string{"vid*:read"}}, "scopes"},
		{"scope empty action", keystore.Entitlements{Scopes: []string{"videos:"}}, "scopes"},
		{"scope long", keystore.Entitlements{Scopes: []string{strings.Repeat("a", 33) + ":read"}}, "scopes"},
		{"scope newline", keystore.Entitlements{Scopes: []string{"videos:read\n"}}, "scopes"},
		{"33 scopes", keystore.Entitlements{Scopes: many(33, func(i int) string { return "r" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ":read" })}, "scopes"},
		{"cidrs", keystore.Entitlements{AllowedCIDRs: []string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7"}}, ""},
		{"cidr garbage", keystore.Entitlements{AllowedCIDRs: []string{"10.0.0.0/33"}}, "allowed_cidrs"},
		{"cidr host name", keystore.Entitlements{AllowedCIDRs: []string{"example.com"}}, "allowed_cidrs"},
		{"cidr zone", keystore.Entitlements{AllowedCIDRs: []string{"fe80::1%eth0/64"}}, "allowed_cidrs"},
		{"33 cidrs", keystore.Entitlements{AllowedCIDRs: many(33, func(i int) string { return "10.0.0." + string(rune('0'+i%10)) + "/32" })}, "allowed_cidrs"},
		{"meta", keystore.Entitlements{Meta: map[string]string{"tier": "gold", "billing-ref": "cus_123"}}, ""},
		{"meta upper name", keystore.Entitlements{Meta: map[string]string{"Tier": "gold"}}, "meta"},
		{"meta underscore", keystore.Entitlements{Meta: map[string]string{"a_b": "x"}}, "meta"},
		{"meta space", keystore.Entitlements{Meta: map[string]string{"tier": "go ld"}}, "meta"},
		{"meta control", keystore.Entitlements{Meta: map[string]string{"tier": "go\r\nld"}}, "meta"},
		{"meta non-ascii", keystore.Entitlements{Meta: map[string]string{"tier": "gölD"}}, "meta"},
		{"meta long", keystore.Entitlements{Meta: map[string]string{"tier": strings.Repeat("x", 257)}}, "meta"},
		{"meta 17", keystore.Entitlements{Meta: meta17}, "meta"},
		{"limits", keystore.Entitlements{Limits: keystore.Limits{"rate": 5, "burst": 10, "quota": 1000}}, ""},
		{"limit negative", keystore.Entitlements{Limits: keystore.Limits{"rate": -1}}, "limits"},
		{"remaining", keystore.Entitlements{Remaining: i64(3), Refill: &keystore.Refill{Interval: "monthly", Amount: 3}}, ""},
		{"remaining negative", keystore.Entitlements{Remaining: i64(-1)}, "remaining"},
		{"refill alone", keystore.Entitlements{Refill: &keystore.Refill{Interval: "daily", Amount: 3}}, "refill"},
		{"refill weekly", keystore.Entitlements{Remaining: i64(1), Refill: &keystore.Refill{Interval: "weekly", Amount: 3}}, "refill"},
		{"refill zero", keystore.Entitlements{Remaining: i64(1), Refill: &keystore.Refill{Interval: "daily", Amount: 0}}, "refill"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.e.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("valid entitlements refused: %v", err)
				}
				return
			}
			if !errors.Is(err, keystore.ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want ErrInvalid naming %s", err, tc.field)
			}
		})
	}
}

func TestEntitlementsNormalize(t *testing.T) {
	e := keystore.Entitlements{Scopes: []string{"b:read", "a:write", "b:read"},
		AllowedCIDRs: []string{"10.1.2.3/8", "::ffff:192.0.2.0/120", "2001:DB8::1/32", "192.0.2.7"}, Meta: map[string]string{}}
	if err := e.Normalize(); err != nil {
		t.Fatal(err)
	}
	want := keystore.Entitlements{Scopes: []string{"a:write", "b:read"},
		AllowedCIDRs: []string{"10.0.0.0/8", "192.0.2.0/24", "192.0.2.7/32", "2001:db8::/32"}}
	if diff := cmp.Diff(want, e); diff != "" {
		t.Errorf("normalized (-want +got):\n%s", diff)
	}
}

func TestStoreKeyEntitlements(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acct", "site1")
		spec := keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive, Entitlements: keystore.Entitlements{
			Scopes: []string{"videos:read"}, AllowedCIDRs: []string{"10.9.9.9/8", "2001:db8::/48"},
			Meta: map[string]string{"tier": "gold"}, Limits: keystore.Limits{"rate": 5}, Remaining: i64(3),
			Refill: &keystore.Refill{Interval: "daily", Amount: 3}}}
		k, secret, err := fx.store.CreateKey(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		want := keystore.Entitlements{Scopes: []string{"videos:read"}, AllowedCIDRs: []string{"10.0.0.0/8", "2001:db8::/48"},
			Meta: map[string]string{"tier": "gold"}, Limits: keystore.Limits{"rate": 5}, Remaining: i64(3),
			Refill: &keystore.Refill{Interval: "daily", Amount: 3}}
		if diff := cmp.Diff(want, k.Entitlements); diff != "" {
			t.Errorf("created (-want +got):\n%s", diff)
		}
		got, err := fx.store.Key(ctx, k.ID)
		wantRead(t, "Key (-created +read)", k, got, err)
		list, err := fx.store.Keys(ctx, "site1", "", 10)
		if err != nil || len(list) != 1 {
			t.Fatalf("list %v %v", list, err)
		}
		if diff := cmp.Diff(k, list[0]); diff != "" {
			t.Errorf("Keys (-created +listed):\n%s", diff)
		}
		facts, err := fx.store.LookupKey(ctx, fx.dig.All(secret.Reveal()))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, facts.Key.Entitlements); diff != "" {
			t.Errorf("LookupKey (-want +got):\n%s", diff)
		}
		byID, err := fx.store.LookupKeyID(ctx, k.ID)
		if err != nil || !cmp.Equal(want, byID.Key.Entitlements) {
			t.Errorf("LookupKeyID %+v %v", byID.Key.Entitlements, err)
		}

		_, _, err = fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive,
			Entitlements: keystore.Entitlements{AllowedCIDRs: []string{"nope"}}})
		wantErr(t, err, keystore.ErrInvalid)

		imp, err := fx.store.ImportKey(ctx, keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive,
			Entitlements: keystore.Entitlements{Scopes: []string{"audio:*"}}}, "legacy-0123456789abcdef")
		if err != nil || !cmp.Equal([]string{"audio:*"}, imp.Scopes) {
			t.Errorf("imported key %+v %v", imp, err)
		}
		if f, err := fx.store.LookupKey(ctx, fx.dig.All("legacy-0123456789abcdef")); err != nil || !cmp.Equal([]string{"audio:*"}, f.Key.Scopes) {
			t.Errorf("imported key facts %+v %v", f.Key, err)
		}

		// Existing keys (no entitlements) read back as the zero value.
		plain, _ := fx.key("site1", keystore.ModeTest)
		if got, _ := fx.store.Key(ctx, plain.ID); !cmp.Equal(keystore.Entitlements{}, got.Entitlements) {
			t.Errorf("plain key entitlements %+v", got.Entitlements)
		}
	})
}

func TestStoreUpdateKey(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acct", "site1")
		k, _, err := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive, Entitlements: keystore.Entitlements{
			Scopes: []string{"videos:read"}, Meta: map[string]string{"tier": "gold", "ref": "x"}, Limits: keystore.Limits{"rate": 5}}})
		if err != nil {
			t.Fatal(err)
		}
		seq, _ := fx.store.LastChange(ctx)
		scopes := []string{"videos:write", "videos:read"}
		silver := "silver"
		name := "renamed"
		u, err := fx.store.UpdateKey(ctx, k.ID, keystore.KeyPatch{Name: &name, Scopes: &scopes,
			Meta: map[string]*string{"tier": &silver, "ref": nil}, Limits: map[string]*int64{"quota": i64(100)},
			Remaining: i64(2), Refill: &keystore.Refill{Interval: "monthly", Amount: 10}})
		if err != nil {
			t.Fatal(err)
		}
		want := keystore.Entitlements{Scopes: []string{"videos:read", "videos:write"}, Meta: map[string]string{"tier": "silver"},
			Limits: keystore.Limits{"rate": 5, "quota": 100}, Remaining: i64(2), Refill: &keystore.Refill{Interval: "monthly", Amount: 10}}
		if diff := cmp.Diff(want, u.Entitlements); diff != "" || u.Name != "renamed" {
			t.Errorf("updated (-want +got):\n%s name %q", diff, u.Name)
		}
		changes, _ := fx.store.Changes(ctx, seq, 10)
		if len(changes) != 1 || changes[0].Entity != keystore.EntityKey || changes[0].ID != k.ID {
			t.Errorf("changes after update %+v", changes)
		}
		audit, err := fx.store.Audit(ctx, k.ID, 0, 10)
		if err != nil || len(audit) != 2 || audit[1].Action != "update key" || !strings.Contains(string(audit[1].After), `"silver"`) ||
			!strings.Contains(string(audit[1].Before), `"gold"`) {
			t.Errorf("audit %+v %v", audit, err)
		}

		empty := []string{}
		u, err = fx.store.UpdateKey(ctx, k.ID, keystore.KeyPatch{Scopes: &empty, ClearMeta: true, ClearLimits: true, ClearRemaining: true})
		if err != nil {
			t.Fatal(err)
		}
		if !cmp.Equal(keystore.Entitlements{}, u.Entitlements) {
			t.Errorf("after unsetting everything %+v", u.Entitlements)
		}

		bad := []string{"10.0.0.0/40"}
		_, err = fx.store.UpdateKey(ctx, k.ID, keystore.KeyPatch{AllowedCIDRs: &bad})
		wantErr(t, err, keystore.ErrInvalid)
		_, err = fx.store.UpdateKey(ctx, k.ID, keystore.KeyPatch{Refill: &keystore.Refill{Interval: "daily", Amount: 1}})
		wantErr(t, err, keystore.ErrInvalid) // a refill needs remaining uses
		_, err = fx.store.UpdateKey(ctx, "key_missing", keystore.KeyPatch{Name: &name})
		wantErr(t, err, keystore.ErrNotFound)
	})
}

func TestStoreSpendUse(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acct", "site1")
		plain, _ := fx.key("site1", keystore.ModeLive)
		if left, ok, err := fx.store.SpendUse(ctx, plain.ID, fx.clock.Now()); err != nil || !ok || left != -1 {
			t.Errorf("unmetered key: %d %v %v", left, ok, err)
		}
		if _, _, err := fx.store.SpendUse(ctx, "key_missing", fx.clock.Now()); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("missing key: %v", err)
		}
		k, _, err := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive,
			Entitlements: keystore.Entitlements{Remaining: i64(2), Refill: &keystore.Refill{Interval: "daily", Amount: 5}}})
		if err != nil {
			t.Fatal(err)
		}
		now := fx.clock.Now()
		for i, want := range []struct {
			left int64
			ok   bool
		}{{1, true}, {0, true}, {0, false}, {0, false}} {
			left, ok, err := fx.store.SpendUse(ctx, k.ID, now)
			if err != nil || left != want.left || ok != want.ok {
				t.Fatalf("spend %d: %d %v %v, want %d %v", i, left, ok, err, want.left, want.ok)
			}
		}
		// The next UTC day refills to 5, and that first spend takes one.
		next := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
		fx.clock.Add(next.Sub(now))
		if got, _ := fx.store.Key(ctx, k.ID); got.Remaining == nil || *got.Remaining != 5 {
			t.Errorf("remaining shown on the new day %v, want 5", got.Remaining)
		}
		if left, ok, err := fx.store.SpendUse(ctx, k.ID, next); err != nil || !ok || left != 4 {
			t.Errorf("first spend of the new day: %d %v %v", left, ok, err)
		}
		if left, ok, err := fx.store.SpendUse(ctx, k.ID, next.Add(time.Hour)); err != nil || !ok || left != 3 {
			t.Errorf("second spend of the new day: %d %v %v", left, ok, err)
		}
		// A monthly refill happens once per month.
		m, _, err := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive,
			Entitlements: keystore.Entitlements{Remaining: i64(0), Refill: &keystore.Refill{Interval: "monthly", Amount: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := fx.store.SpendUse(ctx, m.ID, next); ok {
			t.Error("spent a use of an exhausted key in the month it was created")
		}
		nextMonth := time.Date(next.Year(), next.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		if left, ok, err := fx.store.SpendUse(ctx, m.ID, nextMonth); err != nil || !ok || left != 0 {
			t.Errorf("first spend of next month: %d %v %v", left, ok, err)
		}
		if _, ok, _ := fx.store.SpendUse(ctx, m.ID, nextMonth.Add(24*time.Hour)); ok {
			t.Error("two refills in one month")
		}
	})
}

// TestStoreSpendUseRace spends from two Store instances (two replicas) on
// one database at once: exactly N uses are granted.
func TestStoreSpendUseRace(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acct", "site1")
		const uses = 25
		k, _, err := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive,
			Entitlements: keystore.Entitlements{Remaining: i64(uses), Refill: &keystore.Refill{Interval: "monthly", Amount: uses}}})
		if err != nil {
			t.Fatal(err)
		}
		other, _ := open(t, fx.dsn, fx.clock, "pepper-one-0123456789")
		stores := []*keystore.Store{fx.store, other}
		var granted, refused atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					_, ok, err := stores[g%2].SpendUse(ctx, k.ID, fx.clock.Now())
					if err != nil {
						errs <- err
						return
					}
					if ok {
						granted.Add(1)
					} else {
						refused.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if granted.Load() != uses || refused.Load() != 80-uses {
			t.Errorf("granted %d refused %d, want %d and %d", granted.Load(), refused.Load(), uses, 80-uses)
		}
	})
}

func TestStoreRollKey(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acct", "site1")
		fx.subscribe(keystore.EventKeyRolled)
		exp := fx.clock.Now().Add(48 * time.Hour).Truncate(time.Millisecond)
		old, oldSecret, err := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive, Name: "ci", ExpiresAt: &exp,
			Entitlements: keystore.Entitlements{Scopes: []string{"videos:read"}, Meta: map[string]string{"tier": "gold"}, Remaining: i64(7)}})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := fx.store.SpendUse(ctx, old.ID, fx.clock.Now()); err != nil {
			t.Fatal(err)
		}
		seq, _ := fx.store.LastChange(ctx)
		nu, secret, oldAfter, err := fx.store.RollKey(ctx, old.ID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if secret.Reveal() == oldSecret.Reveal() || nu.ID == old.ID || nu.SiteID != "site1" || nu.Mode != keystore.ModeLive || nu.Name != "ci" {
			t.Errorf("new key %+v", nu)
		}
		if nu.ExpiresAt == nil || !nu.ExpiresAt.Equal(exp) {
			t.Errorf("new key expires %v, want the old key's %v", nu.ExpiresAt, exp)
		}
		wantEnt := keystore.Entitlements{Scopes: []string{"videos:read"}, Meta: map[string]string{"tier": "gold"}, Remaining: i64(6)}
		if diff := cmp.Diff(wantEnt, nu.Entitlements); diff != "" {
			t.Errorf("new key entitlements (-want +got):\n%s", diff)
		}
		graceEnd := fx.clock.Now().Add(time.Hour).Truncate(time.Millisecond)
		if oldAfter.ExpiresAt == nil || !oldAfter.ExpiresAt.Equal(graceEnd) || oldAfter.RevokedAt != nil {
			t.Errorf("old key after roll %+v", oldAfter)
		}
		if oldAfter.Remaining == nil || *oldAfter.Remaining != 0 {
			t.Errorf("old key kept %v uses", oldAfter.Remaining)
		}
		if f, err := fx.store.LookupKey(ctx, fx.dig.All(secret.Reveal())); err != nil || f.Key.ID != nu.ID {
			t.Errorf("new key lookup %v %v", f.Key.ID, err)
		}
		changes, _ := fx.store.Changes(ctx, seq, 10)
		ids := map[string]bool{}
		for _, c := range changes {
			ids[c.ID] = true
		}
		if !ids[old.ID] || !ids[nu.ID] {
			t.Errorf("change log after roll %+v", changes)
		}
		events := drain(t, fx)
		if types(events) != "key.rolled" {
			t.Fatalf("events %s", types(events))
		}
		var data keystore.KeyRolledEvent
		if err := json.Unmarshal(events[0].Data, &data); err != nil {
			t.Fatal(err)
		}
		wantData := keystore.KeyRolledEvent{OldKeyID: old.ID, NewKeyID: nu.ID, Site: "site1", Account: "acct", Mode: keystore.ModeLive,
			Name: "ci", OldPrefix: old.Prefix, NewPrefix: nu.Prefix, OldExpiresAt: &graceEnd}
		if diff := cmp.Diff(wantData, data); diff != "" {
			t.Errorf("key.rolled (-want +got):\n%s", diff)
		}
		wantNoSecret(t, "key.rolled", events[0].Data, secret.Reveal(), oldSecret.Reveal())
		audit, _ := fx.store.Audit(ctx, nu.ID, 0, 10)
		if len(audit) != 1 || audit[0].Action != "roll key" {
			t.Errorf("audit of the new key %+v", audit)
		}

		// A grace longer than the key's life keeps its earlier expires_at.
		_, _, nuAfter, err := fx.store.RollKey(ctx, nu.ID, 30*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if !nuAfter.ExpiresAt.Equal(exp) {
			t.Errorf("a long grace moved expires_at to %v, want %v", nuAfter.ExpiresAt, exp)
		}

		_, _, _, err = fx.store.RollKey(ctx, old.ID, -time.Second)
		wantErr(t, err, keystore.ErrInvalid)
		_, _, _, err = fx.store.RollKey(ctx, "key_missing", time.Hour)
		wantErr(t, err, keystore.ErrNotFound)
		if _, err := fx.store.RevokeKey(ctx, old.ID); err != nil {
			t.Fatal(err)
		}
		_, _, _, err = fx.store.RollKey(ctx, old.ID, time.Hour)
		wantErr(t, err, keystore.ErrInvalid)
	})
}
