package keystore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/testclock"
	"github.com/keygate/keygate/keystore"
)

// backend opens stores on one fresh database; the same DSN opened twice is
// two processes sharing it.
type backend struct {
	name string
	dsn  func(t *testing.T) string
}

// backends is every store the suite runs against: SQLite always, PostgreSQL
// when KEYGATE_TEST_POSTGRES names a server (else that subtest skips).
var backends = []backend{
	{"sqlite", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "k.db") }},
	{"postgres", func(t *testing.T) string { return pgtest.NewDatabase(t, os.Getenv) }},
}

// clock is the settable clock every store of these tests reads.
type clock = testclock.Clock

type fixture struct {
	t     *testing.T
	dsn   string
	clock *clock
	store *keystore.Store
	dig   *keystore.Digester
}

func open(t *testing.T, dsn string, c *clock, peppers ...string) (*keystore.Store, *keystore.Digester) {
	t.Helper()
	var ps [][]byte
	for _, p := range peppers {
		ps = append(ps, []byte(p))
	}
	d, err := keystore.NewDigester(ps...)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := keystore.NewFormat("kg")
	s, err := keystore.Open(context.Background(), dsn, keystore.Options{Format: f, Digester: d, Now: c.Now})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, d
}

// eachStore runs fn once per backend on a fresh database.
func eachStore(t *testing.T, fn func(t *testing.T, fx *fixture)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			dsn := b.dsn(t)
			c := testclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
			s, d := open(t, dsn, c, "pepper-one-0123456789")
			fn(t, &fixture{t: t, dsn: dsn, clock: c, store: s, dig: d})
		})
	}
}

var ctx = context.Background()

// site creates account, unless it exists, and its active sites.
func (fx *fixture) site(account string, sites ...string) {
	fx.t.Helper()
	if _, err := fx.store.CreateAccount(ctx, keystore.Account{ID: account, Plan: "pro"}); err != nil && !errors.Is(err, keystore.ErrConflict) {
		fx.t.Fatal(err)
	}
	for _, site := range sites {
		if _, err := fx.store.CreateSite(ctx, keystore.Site{ID: site, AccountID: account, Active: true}); err != nil {
			fx.t.Fatal(err)
		}
	}
}

func (fx *fixture) key(site string, mode keystore.Mode) (keystore.Key, string) {
	fx.t.Helper()
	k, secret, err := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: site, Mode: mode})
	if err != nil {
		fx.t.Fatal(err)
	}
	return k, secret.Reveal()
}

// wantRead fails the test when a read failed or returned other than want;
// what names the read and the sides of its diff.
func wantRead[T any](t *testing.T, what string, want, got T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s:\n%s", what, diff)
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

func TestStoreAccounts(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		a, err := fx.store.CreateAccount(ctx, keystore.Account{ID: "acme", Plan: "pro"})
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != keystore.StatusActive {
			t.Errorf("default status %q, want active", a.Status)
		}
		got, err := fx.store.Account(ctx, "acme")
		wantRead(t, "read back (-created +read)", a, got, err)

		for _, tc := range []struct {
			name string
			a    keystore.Account
			want error
		}{
			{"duplicate", keystore.Account{ID: "acme", Plan: "pro"}, keystore.ErrConflict},
			{"empty id", keystore.Account{Plan: "pro"}, keystore.ErrInvalid},
			{"bad id", keystore.Account{ID: "a b", Plan: "pro"}, keystore.ErrInvalid},
			{"long id", keystore.Account{ID: string(make([]byte, 65)), Plan: "pro"}, keystore.ErrInvalid},
			{"no plan", keystore.Account{ID: "x"}, keystore.ErrInvalid},
			{"bad status", keystore.Account{ID: "x", Plan: "pro", Status: "gone"}, keystore.ErrInvalid},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := fx.store.CreateAccount(ctx, tc.a)
				wantErr(t, err, tc.want)
			})
		}

		fx.clock.Add(time.Second)
		plan, status := "max", keystore.StatusTrialExpired
		u, err := fx.store.UpdateAccount(ctx, "acme", keystore.AccountUpdate{Plan: &plan, Status: &status})
		if err != nil {
			t.Fatal(err)
		}
		if u.Plan != "max" || u.Status != status || !u.UpdatedAt.Equal(a.CreatedAt.Add(time.Second)) || !u.CreatedAt.Equal(a.CreatedAt) {
			t.Errorf("updated account %+v", u)
		}
		_, err = fx.store.UpdateAccount(ctx, "nobody", keystore.AccountUpdate{Plan: &plan})
		wantErr(t, err, keystore.ErrNotFound)
		bad := keystore.AccountStatus("gone")
		_, err = fx.store.UpdateAccount(ctx, "acme", keystore.AccountUpdate{Status: &bad})
		wantErr(t, err, keystore.ErrInvalid)
		_, err = fx.store.Account(ctx, "nobody")
		wantErr(t, err, keystore.ErrNotFound)
	})
}

func TestStoreSites(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		_, err := fx.store.CreateSite(ctx, keystore.Site{ID: "web", AccountID: "nobody"})
		wantErr(t, err, keystore.ErrNotFound)
		if _, err := fx.store.CreateAccount(ctx, keystore.Account{ID: "acme", Plan: "pro"}); err != nil {
			t.Fatal(err)
		}
		s, err := fx.store.CreateSite(ctx, keystore.Site{ID: "web", AccountID: "acme", Domains: []string{"Acme.COM", "*.acme.com:8443"}, Active: true})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"acme.com", "*.acme.com:8443"}, s.Domains); diff != "" {
			t.Errorf("domains (-want +got):\n%s", diff)
		}
		_, err = fx.store.CreateSite(ctx, keystore.Site{ID: "web", AccountID: "acme"})
		wantErr(t, err, keystore.ErrConflict)
		_, err = fx.store.CreateSite(ctx, keystore.Site{ID: "other", AccountID: "acme", Domains: []string{"http://x"}})
		wantErr(t, err, keystore.ErrInvalid)

		got, err := fx.store.LookupSite(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(s, got.Site); diff != "" || got.Account.ID != "acme" {
			t.Errorf("LookupSite (-want +got):\n%s account %q", diff, got.Account.ID)
		}
		_, err = fx.store.LookupSite(ctx, "nope")
		wantErr(t, err, keystore.ErrNotFound)

		off, none := false, []string{}
		u, err := fx.store.UpdateSite(ctx, "web", keystore.SiteUpdate{Active: &off, Domains: &none})
		if err != nil {
			t.Fatal(err)
		}
		if u.Active || len(u.Domains) != 0 {
			t.Errorf("updated site %+v", u)
		}
		back, err := fx.store.Site(ctx, "web")
		wantRead(t, "read back (-updated +read)", u, back, err)
		_, err = fx.store.UpdateSite(ctx, "nope", keystore.SiteUpdate{Active: &off})
		wantErr(t, err, keystore.ErrNotFound)
	})
}

func TestStoreKeys(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		past := fx.clock.Now().Add(-time.Hour)
		for _, tc := range []struct {
			name string
			spec keystore.KeySpec
			want error
		}{
			{"unknown site", keystore.KeySpec{SiteID: "nope", Mode: keystore.ModeLive}, keystore.ErrNotFound},
			{"bad mode", keystore.KeySpec{SiteID: "web", Mode: "prod"}, keystore.ErrInvalid},
			{"expired", keystore.KeySpec{SiteID: "web", Mode: keystore.ModeLive, ExpiresAt: &past}, keystore.ErrInvalid},
			{"long name", keystore.KeySpec{SiteID: "web", Mode: keystore.ModeLive, Name: string(make([]byte, 201))}, keystore.ErrInvalid},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, _, err := fx.store.CreateKey(ctx, tc.spec)
				wantErr(t, err, tc.want)
			})
		}

		expires := fx.clock.Now().Add(24 * time.Hour)
		k, secret, err := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: "web", Mode: keystore.ModeTest, Name: "ci", ExpiresAt: &expires})
		if err != nil {
			t.Fatal(err)
		}
		raw := secret.Reveal()
		if k.Prefix != raw[:16] || k.Mode != keystore.ModeTest || k.ExpiresAt == nil || !k.ExpiresAt.Equal(expires) {
			t.Errorf("created key %+v", k)
		}
		f, err := fx.store.LookupKey(ctx, fx.dig.All(raw))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(k, f.Key); diff != "" || f.Site.ID != "web" || f.Account.ID != "acme" {
			t.Errorf("LookupKey (-created +found):\n%s", diff)
		}
		byID, err := fx.store.LookupKeyID(ctx, k.ID)
		wantRead(t, "LookupKeyID (-digest +id)", f, byID, err)
		_, err = fx.store.LookupKey(ctx, fx.dig.All(raw+"x"))
		wantErr(t, err, keystore.ErrNotFound)
		_, err = fx.store.LookupKey(ctx, nil)
		wantErr(t, err, keystore.ErrNotFound)
		_, err = fx.store.LookupKeyID(ctx, "key_nope")
		wantErr(t, err, keystore.ErrNotFound)

		// Revoking is idempotent and keeps the first time.
		fx.clock.Add(time.Minute)
		r1, err := fx.store.RevokeKey(ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		fx.clock.Add(time.Minute)
		r2, err := fx.store.RevokeKey(ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r1.RevokedAt == nil || r2.RevokedAt == nil || !r1.RevokedAt.Equal(*r2.RevokedAt) {
			t.Errorf("revoked at %v then %v, want the first time kept", r1.RevokedAt, r2.RevokedAt)
		}
		if !r2.Revoked(fx.clock.Now()) {
			t.Error("revoked key does not report Revoked")
		}
		_, err = fx.store.RevokeKey(ctx, "key_nope")
		wantErr(t, err, keystore.ErrNotFound)
	})
}

// A second pepper, listed first, still finds keys digested under the old one.
func TestStorePepperVersions(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		k, raw := fx.key("web", keystore.ModeLive)
		rotated, dig := open(t, fx.dsn, fx.clock, "pepper-two-0123456789", "pepper-one-0123456789")
		f, err := rotated.LookupKey(ctx, dig.All(raw))
		if err != nil || f.Key.ID != k.ID {
			t.Fatalf("lookup with rotated peppers: %v, %+v", err, f.Key)
		}
		_, onlyNew := open(t, fx.dsn, fx.clock, "pepper-two-0123456789")
		_, err = rotated.LookupKey(ctx, onlyNew.All(raw))
		wantErr(t, err, keystore.ErrNotFound)
	})
}

func TestStoreRotate(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web", "other")
		a, _ := fx.key("web", keystore.ModeLive)
		b, _ := fx.key("web", keystore.ModeTest)
		keep, _ := fx.key("other", keystore.ModeLive)
		before, err := fx.store.LastChange(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fx.clock.Add(time.Second)
		nk, secret, revoked, err := fx.store.RotateSiteKey(ctx, keystore.KeySpec{SiteID: "web", Mode: keystore.ModeLive, Name: "rotated"})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{a.ID, b.ID}, revoked, sortStrings); diff != "" {
			t.Errorf("revoked (-want +got):\n%s", diff)
		}
		now := fx.clock.Now()
		for _, id := range []string{a.ID, b.ID} {
			k, _ := fx.store.Key(ctx, id)
			if !k.Revoked(now) {
				t.Errorf("key %s not revoked by rotation", id)
			}
		}
		if k, _ := fx.store.Key(ctx, keep.ID); k.RevokedAt != nil {
			t.Error("rotation revoked another site's key")
		}
		if f, err := fx.store.LookupKey(ctx, fx.dig.All(secret.Reveal())); err != nil || f.Key.ID != nk.ID || f.Key.Revoked(now) {
			t.Errorf("new key: %v %+v", err, f.Key)
		}
		// One transaction: every row of the rotation carries one time.
		changes, err := fx.store.Changes(ctx, before, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(changes) != 3 {
			t.Fatalf("rotation logged %d changes, want 3 (two revoked, one new)", len(changes))
		}
		for _, c := range changes {
			if !c.At.Equal(now) || c.Entity != keystore.EntityKey {
				t.Errorf("change %+v, want a key change at %v", c, now)
			}
		}
		_, _, _, err = fx.store.RotateSiteKey(ctx, keystore.KeySpec{SiteID: "nope", Mode: keystore.ModeLive})
		wantErr(t, err, keystore.ErrNotFound)
		_, _, _, err = fx.store.RotateSiteKey(ctx, keystore.KeySpec{SiteID: "web", Mode: "x"})
		wantErr(t, err, keystore.ErrInvalid)
	})
}

func TestStoreRotateGrace(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		old, _ := fx.key("web", keystore.ModeLive)
		_, _, _, err := fx.store.RotateSiteKeyGrace(ctx, keystore.KeySpec{SiteID: "web", Mode: keystore.ModeLive}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		k, _ := fx.store.Key(ctx, old.ID)
		now := fx.clock.Now()
		if k.Revoked(now) || !k.Revoked(now.Add(time.Hour)) {
			t.Errorf("grace: revoked_at %v, want %v", k.RevokedAt, now.Add(time.Hour))
		}
		// A second rotation without grace cuts the window; it revokes both
		// the old key in grace and the first rotation's key.
		fx.clock.Add(time.Minute)
		_, _, revoked, err := fx.store.RotateSiteKey(ctx, keystore.KeySpec{SiteID: "web", Mode: keystore.ModeLive})
		if err != nil {
			t.Fatal(err)
		}
		if len(revoked) != 2 {
			t.Errorf("second rotation revoked %v, want the graced key and the first rotation's", revoked)
		}
		if k, _ := fx.store.Key(ctx, old.ID); !k.Revoked(fx.clock.Now()) {
			t.Errorf("graced key still valid after a rotation without grace: %v", k.RevokedAt)
		}
		// Revoke ends a grace window at once.
		_, _, _, err = fx.store.RotateSiteKeyGrace(ctx, keystore.KeySpec{SiteID: "web", Mode: keystore.ModeLive}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		list, _ := fx.store.Keys(ctx, "web", "", 10)
		var graced keystore.Key
		for _, k := range list {
			if k.RevokedAt != nil && k.RevokedAt.After(fx.clock.Now()) {
				graced = k
			}
		}
		if graced.ID == "" {
			t.Fatal("no key in grace after a graced rotation")
		}
		r, err := fx.store.RevokeKey(ctx, graced.ID)
		if err != nil || !r.Revoked(fx.clock.Now()) {
			t.Errorf("revoke during grace: %v, revoked_at %v", err, r.RevokedAt)
		}
		_, _, _, err = fx.store.RotateSiteKeyGrace(ctx, keystore.KeySpec{SiteID: "web", Mode: keystore.ModeLive}, -time.Second)
		wantErr(t, err, keystore.ErrInvalid)
	})
}

var sortStrings = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func TestStoreKeysPagination(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web", "other")
		fx.key("other", keystore.ModeLive)
		var want []string
		for range 5 {
			k, _ := fx.key("web", keystore.ModeLive)
			want = append([]string{k.ID}, want...) // newest first
			fx.clock.Add(time.Millisecond)
		}
		// Two keys in the same millisecond still page in a stable order.
		k1, _ := fx.key("web", keystore.ModeLive)
		k2, _ := fx.key("web", keystore.ModeLive)
		same := []string{k1.ID, k2.ID}
		if k1.ID < k2.ID {
			same = []string{k2.ID, k1.ID}
		}
		want = append(same, want...)

		keys := func(ctx context.Context, after string, limit int) ([]keystore.Key, error) {
			return fx.store.Keys(ctx, "web", after, limit)
		}
		got := pageIDs(t, keys, func(k keystore.Key) string { return k.ID })
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("paged keys (-want +got):\n%s", diff)
		}
		_, err := fx.store.Keys(ctx, "nope", "", 10)
		wantErr(t, err, keystore.ErrNotFound)
		none, err := fx.store.Keys(ctx, "web", "key_unknown", 10)
		if err != nil || len(none) != 0 {
			t.Errorf("unknown cursor: %v, %d keys", err, len(none))
		}
	})
}

func TestStoreChanges(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		last, err := fx.store.LastChange(ctx)
		if err != nil || last != 0 {
			t.Fatalf("empty log: last %d, %v", last, err)
		}
		fx.site("acme", "web")
		k, _ := fx.key("web", keystore.ModeLive)
		if _, err := fx.store.RevokeKey(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		all, err := fx.store.Changes(ctx, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		type row struct {
			Entity keystore.Entity
			ID     string
		}
		var got []row
		for i, c := range all {
			got = append(got, row{c.Entity, c.ID})
			if i > 0 && c.Seq <= all[i-1].Seq {
				t.Errorf("seq not increasing: %d after %d", c.Seq, all[i-1].Seq)
			}
		}
		want := []row{{keystore.EntityAccount, "acme"}, {keystore.EntitySite, "web"}, {keystore.EntityKey, k.ID}, {keystore.EntityKey, k.ID}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("change log (-want +got):\n%s", diff)
		}
		last, _ = fx.store.LastChange(ctx)
		if last != all[len(all)-1].Seq {
			t.Errorf("LastChange %d, want %d", last, all[len(all)-1].Seq)
		}
		page, _ := fx.store.Changes(ctx, all[0].Seq, 2)
		if len(page) != 2 || page[0].Seq != all[1].Seq {
			t.Errorf("Changes(after, 2) = %+v", page)
		}
		// A failed write leaves no row behind.
		if _, err := fx.store.CreateAccount(ctx, keystore.Account{ID: "acme", Plan: "pro"}); err == nil {
			t.Fatal("duplicate account accepted")
		}
		if after, _ := fx.store.LastChange(ctx); after != last {
			t.Errorf("a failed write moved the log from %d to %d", last, after)
		}
	})
}

func TestStoreTouchKeys(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		k, _ := fx.key("web", keystore.ModeLive)
		last, _ := fx.store.LastChange(ctx)
		t1 := fx.clock.Now().Add(time.Minute).Truncate(time.Millisecond)
		if err := fx.store.TouchKeys(ctx, map[string]time.Time{k.ID: t1, "key_unknown": t1}); err != nil {
			t.Fatal(err)
		}
		// An older time (a late batch) never moves last_used_at back.
		if err := fx.store.TouchKeys(ctx, map[string]time.Time{k.ID: t1.Add(-time.Second)}); err != nil {
			t.Fatal(err)
		}
		got, _ := fx.store.Key(ctx, k.ID)
		if got.LastUsedAt == nil || !got.LastUsedAt.Equal(t1) {
			t.Errorf("last_used_at %v, want %v", got.LastUsedAt, t1)
		}
		if after, _ := fx.store.LastChange(ctx); after != last {
			t.Error("TouchKeys appended to the change log; usage is not a change caches must see")
		}
		if err := fx.store.TouchKeys(ctx, nil); err != nil {
			t.Error(err)
		}
	})
}

func TestStoreImportKey(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		const legacy = "sk-legacy-4f9a2b7c1d0e8f3a"
		spec := keystore.KeySpec{SiteID: "web", Mode: keystore.ModeTest, Name: "from old system"}
		k, err := fx.store.ImportKey(ctx, spec, legacy)
		if err != nil {
			t.Fatal(err)
		}
		if k.Prefix != legacy[:min(8, len(legacy)/4)] || k.Mode != keystore.ModeTest {
			t.Errorf("imported key %+v", k)
		}
		f, err := fx.store.LookupKey(ctx, fx.dig.All(legacy))
		if err != nil || f.Key.ID != k.ID {
			t.Fatalf("lookup imported: %v %+v", err, f.Key)
		}
		var stored int
		if err := fx.store.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM keys WHERE digest = $1 OR name = $1 OR prefix = $1`, legacy).Scan(&stored); err != nil || stored != 0 {
			t.Errorf("raw key stored in %d rows (%v)", stored, err)
		}
		for _, tc := range []struct {
			name string
			spec keystore.KeySpec
			raw  string
			want error
		}{
			{"duplicate", spec, legacy, keystore.ErrConflict},
			{"short", spec, "short", keystore.ErrInvalid},
			{"space", spec, "has a space inside it", keystore.ErrInvalid},
			{"control", spec, "abcdefgh\x00ijklmnopq", keystore.ErrInvalid},
			{"comma", spec, "legacy-key,with-a-comma", keystore.ErrInvalid},
			{"colon", spec, "legacy-key:with-a-colon", keystore.ErrInvalid},
			{"keygate shape, bad checksum", spec, "kg_live_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", keystore.ErrInvalid},
			{"too long", spec, string(make([]byte, keystore.MaxKeyLen+1)), keystore.ErrInvalid},
			{"bad mode", keystore.KeySpec{SiteID: "web", Mode: "x"}, "another-legacy-key-123", keystore.ErrInvalid},
			{"unknown site", keystore.KeySpec{SiteID: "nope", Mode: keystore.ModeLive}, "another-legacy-key-123", keystore.ErrNotFound},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := fx.store.ImportKey(ctx, tc.spec, tc.raw)
				wantErr(t, err, tc.want)
			})
		}
	})
}

// Replicas starting at once all open the store; migrations run once.
func TestStoreConcurrentOpen(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			dsn := b.dsn(t)
			c := testclock.New(time.Now())
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					f, _ := keystore.NewFormat("kg")
					d, _ := keystore.NewDigester()
					s, err := keystore.Open(ctx, dsn, keystore.Options{Format: f, Digester: d, Now: c.Now})
					if err == nil {
						s.Close()
					}
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Errorf("concurrent open: %v", err)
				}
			}
			s, _ := open(t, dsn, c)
			var versions int
			if err := s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&versions); err != nil || versions == 0 {
				t.Errorf("schema_migrations: %d rows, %v", versions, err)
			}
		})
	}
}
