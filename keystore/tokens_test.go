package keystore_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testclock"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/tokens"
)

var testSchedule = keystore.SigningSchedule{RotateEvery: 24 * time.Hour, Activation: time.Minute, RetireAfter: 2 * time.Hour}

func signingKeyIDs(keys []keystore.SigningKey) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	return strings.Join(ids, ",")
}

func TestSigningKeySchedule(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		first, err := fx.store.SigningKeys(ctx, testSchedule)
		if err != nil {
			t.Fatal(err)
		}
		if len(first) != 1 || !first[0].NotBefore.Equal(fx.clock.Now()) || len(first[0].Secret) != 32 {
			t.Fatalf("first start: want one key that signs at once, got %+v", first)
		}
		// Another replica on the same database sees the same key.
		replica, _ := open(t, fx.dsn, fx.clock, "pepper-one-0123456789")
		again, err := replica.SigningKeys(ctx, testSchedule)
		if err != nil || signingKeyIDs(again) != signingKeyIDs(first) || !bytes.Equal(again[0].Secret, first[0].Secret) {
			t.Fatalf("a second replica must see the same key: %s vs %s (%v)", signingKeyIDs(again), signingKeyIDs(first), err)
		}

		fx.clock.Add(24 * time.Hour)
		rotated, err := fx.store.SigningKeys(ctx, testSchedule)
		if err != nil {
			t.Fatal(err)
		}
		if len(rotated) != 2 || rotated[1].ID != first[0].ID || !rotated[0].NotBefore.Equal(fx.clock.Now().Add(time.Minute)) {
			t.Fatalf("after RotateEvery: want a successor published a minute ahead, then the old key; got %+v", rotated)
		}
		if keys, _ := replica.CurrentSigningKeys(ctx); signingKeyIDs(keys) != signingKeyIDs(rotated) {
			t.Fatalf("CurrentSigningKeys on the replica: %s, want %s", signingKeyIDs(keys), signingKeyIDs(rotated))
		}

		// The old key verifies until its successor has signed for RetireAfter.
		fx.clock.Add(time.Minute + 2*time.Hour - time.Millisecond)
		if keys, _ := fx.store.SigningKeys(ctx, testSchedule); len(keys) != 2 {
			t.Fatalf("old key retired too early: %s", signingKeyIDs(keys))
		}
		fx.clock.Add(time.Millisecond)
		retired, err := replica.SigningKeys(ctx, testSchedule)
		if err != nil {
			t.Fatal(err)
		}
		if signingKeyIDs(retired) != rotated[0].ID {
			t.Fatalf("after RetireAfter: want only %s, got %s", rotated[0].ID, signingKeyIDs(retired))
		}
	})
}

func TestSigningKeySealing(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		keys, err := fx.store.SigningKeys(ctx, testSchedule) // sealed under "pepper-one-…"
		if err != nil {
			t.Fatal(err)
		}
		var stored string
		if err := fx.store.DB().QueryRow(`SELECT secret FROM signing_keys`).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(stored, "sealed:") || strings.Contains(stored, base64.StdEncoding.EncodeToString(keys[0].Secret)) {
			t.Fatalf("with a pepper the secret must be sealed, stored %q", stored)
		}

		rotatedPepper, _ := open(t, fx.dsn, fx.clock, "pepper-two-0123456789", "pepper-one-0123456789")
		if got, err := rotatedPepper.CurrentSigningKeys(ctx); err != nil || !bytes.Equal(got[0].Secret, keys[0].Secret) {
			t.Fatalf("an older pepper still configured must open the key: %v", err)
		}
		for name, peppers := range map[string][]string{"other pepper": {"pepper-two-0123456789"}, "no pepper": nil} {
			s, _ := open(t, fx.dsn, fx.clock, peppers...)
			if _, err := s.CurrentSigningKeys(ctx); err == nil {
				t.Errorf("%s: a key sealed under another pepper was opened", name)
			}
		}
		// The key id is authenticated: a sealed secret moved to another id
		// does not open.
		if _, err := fx.store.DB().Exec(`UPDATE signing_keys SET id = 'sk_moved'`); err != nil {
			t.Fatal(err)
		}
		if _, err := fx.store.CurrentSigningKeys(ctx); err == nil {
			t.Error("a sealed secret opened under another key id")
		}
	})
}

// TestSigningKeyWithoutSecret: with neither a seal secret nor a pepper no
// signing key is written or read, since the database alone would then be
// enough to mint tokens.
func TestSigningKeyWithoutSecret(t *testing.T) {
	dsn := backends[0].dsn(t)
	c := testclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	s, _ := open(t, dsn, c)
	if _, err := s.SigningKeys(ctx, testSchedule); !errors.Is(err, keystore.ErrNoSealSecret) {
		t.Fatalf("SigningKeys without a secret: %v, want ErrNoSealSecret", err)
	}
	var n int
	if err := s.DB().QueryRow(`SELECT count(*) FROM signing_keys`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d signing keys written without a secret (%v)", n, err)
	}
}

// TestSigningKeyPlainRowsMigrated: a row an older keygate stored "plain:"
// is refused while no secret is configured, and on the first start that
// has one it is deleted and a fresh sealed key signs instead: the plain
// secret may be in any older copy of the database, so it must never sign
// or verify again.
func TestSigningKeyPlainRowsMigrated(t *testing.T) {
	dsn := backends[0].dsn(t)
	c := testclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	s, d := open(t, dsn, c)
	old := bytes.Repeat([]byte{7}, 32)
	if _, err := s.DB().Exec(`INSERT INTO signing_keys (id, secret, created_at, not_before) VALUES ('sk_old', $1, $2, $2)`,
		"plain:"+base64.StdEncoding.EncodeToString(old), c.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CurrentSigningKeys(ctx); !errors.Is(err, keystore.ErrNoSealSecret) {
		t.Fatalf("a plain row without a secret: %v, want ErrNoSealSecret", err)
	}
	sealed, err := d.WithSealSecret([]byte("token-secret-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := keystore.NewFormat("kg")
	s2, err := keystore.Open(ctx, dsn, keystore.Options{Format: f, Digester: sealed, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	keys, err := s2.SigningKeys(ctx, testSchedule)
	if err != nil || len(keys) != 1 || keys[0].ID == "sk_old" || bytes.Equal(keys[0].Secret, old) || keys[0].NotBefore.After(c.Now()) {
		t.Fatalf("after migration: %+v, %v; want one fresh key that signs now", keys, err)
	}
	var n int
	if err := s2.DB().QueryRow(`SELECT count(*) FROM signing_keys WHERE id = 'sk_old' OR secret LIKE 'plain:%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d plain or old rows left (%v)", n, err)
	}
	var stored string
	if err := s2.DB().QueryRow(`SELECT secret FROM signing_keys`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "sealed:") {
		t.Fatalf("new key not sealed: %q", stored[:8])
	}
	// A plain row that shows up later (an old replica still writing) is
	// never used to verify either.
	if _, err := s2.DB().Exec(`INSERT INTO signing_keys (id, secret, created_at, not_before) VALUES ('sk_late', $1, $2, $2)`,
		"plain:"+base64.StdEncoding.EncodeToString(old), c.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	cur, err := s2.CurrentSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range cur {
		if k.ID == "sk_late" {
			t.Fatal("a plain signing key was handed out")
		}
	}
}

// TestForgedTokenFromDatabaseRefused reads signing_keys as an attacker with
// a copy of the database would and mints a token with what it finds (the
// stored value, decoded or not): every one is refused.
func TestForgedTokenFromDatabaseRefused(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		keys, err := fx.store.SigningKeys(ctx, testSchedule)
		if err != nil {
			t.Fatal(err)
		}
		real := tokens.NewKeyring(tokens.NewFormat("kg"))
		if err := real.Set([]tokens.SigningKey{{ID: keys[0].ID, Secret: keys[0].Secret, NotBefore: keys[0].NotBefore}}); err != nil {
			t.Fatal(err)
		}
		var id, stored string
		if err := fx.store.DB().QueryRow(`SELECT id, secret FROM signing_keys`).Scan(&id, &stored); err != nil {
			t.Fatal(err)
		}
		_, b64, _ := strings.Cut(stored, ":")
		raw, _ := base64.StdEncoding.DecodeString(b64)
		candidates := [][]byte{[]byte(stored), []byte(b64), raw}
		if len(raw) > 12+32 {
			candidates = append(candidates, raw[12:12+32]) // past the GCM nonce
		}
		now := fx.clock.Now()
		for i, secret := range candidates {
			forger := tokens.NewKeyring(tokens.NewFormat("kg"))
			if len(secret) < 32 {
				secret = append(secret, bytes.Repeat([]byte{0}, 32-len(secret))...)
			}
			if err := forger.Set([]tokens.SigningKey{{ID: id, Secret: secret, NotBefore: now.Add(-time.Minute)}}); err != nil {
				t.Fatal(err)
			}
			forged, _, err := forger.Mint("key_victim", "live", now, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := real.Verify(forged, now); !errors.Is(err, tokens.ErrInvalid) {
				t.Errorf("candidate %d: a token forged from the database row verified (err %v)", i, err)
			}
		}
	})
}

func TestRefreshTokens(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		key, _ := fx.refreshKey("web", keystore.ModeTest)
		exp := func() time.Time { return fx.clock.Now().Add(time.Hour) }
		d := fx.dig.All
		g, err := fx.store.RedeemRefreshToken(ctx, d("r1"), d("r2")[0], exp())
		if err != nil || g.KeyID != key.ID || g.Mode != keystore.ModeTest {
			t.Fatalf("redeem r1: %+v, %v", g, err)
		}
		// A script of presentations: issue = mint with the API key,
		// otherwise redeem token for next.
		steps := []struct {
			what        string
			issue       bool
			token, next string
			advance     time.Duration
			want        error
		}{
			{what: "unknown token", token: "nope", next: "x", want: keystore.ErrNotFound},
			{what: "r1 again: reuse, which kills r2", token: "r1", next: "r3", want: keystore.ErrRefreshReused},
			{what: "r2 after its family was revoked", token: "r2", next: "r3", want: keystore.ErrRefreshReused},
			{what: "mint", issue: true, token: "m1"},
			{what: "mint again, ending m1", issue: true, token: "m2"},
			{what: "m1 after a new mint: reuse, which kills m2", token: "m1", next: "m3", want: keystore.ErrRefreshReused},
			{what: "m2 after reuse of m1", token: "m2", next: "m3", want: keystore.ErrRefreshReused},
			{what: "mint", issue: true, token: "e1"},
			{what: "e1 an hour later", token: "e1", next: "e2", advance: time.Hour, want: keystore.ErrRefreshExpired},
			{what: "mint after expiry", issue: true, token: "f1"},
			{what: "redeem", token: "f1", next: "f2"},
			{what: "redeem the successor", token: "f2", next: "f3"},
		}
		for _, st := range steps {
			fx.clock.Add(st.advance)
			var err error
			if st.issue {
				err = fx.store.IssueRefreshToken(ctx, key.ID, d(st.token)[0], exp())
			} else {
				_, err = fx.store.RedeemRefreshToken(ctx, d(st.token), d(st.next)[0], exp())
			}
			wantErrIs(t, st.what, err, st.want)
		}
	})
}

func wantErrIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) { // errors.Is(err, nil) holds only for a nil err
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

// TestRefreshTokenConcurrentRedeem: the same token presented twice at once
// yields one pair at most; the other presentation is reuse.
func TestRefreshTokenConcurrentRedeem(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		fx.refreshKey("web", keystore.ModeLive)
		exp := fx.clock.Now().Add(time.Hour)
		errs := make(chan error, 8)
		for i := range 8 {
			go func() {
				_, err := fx.store.RedeemRefreshToken(ctx, fx.dig.All("r1"), fx.dig.Primary("next"+string(rune('a'+i))), exp)
				errs <- err
			}()
		}
		ok := 0
		for range 8 {
			err := <-errs
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, keystore.ErrRefreshReused):
				t.Errorf("concurrent redeem: %v", err)
			}
		}
		if ok > 1 {
			t.Fatalf("%d concurrent redeems of one token succeeded", ok)
		}
	})
}

func TestRefreshTokenPepperRotation(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		fx.refreshKey("web", keystore.ModeLive)
		s2, d2 := open(t, fx.dsn, fx.clock, "pepper-two-0123456789", "pepper-one-0123456789")
		if _, err := s2.RedeemRefreshToken(ctx, d2.All("r1"), d2.Primary("r2"), fx.clock.Now().Add(time.Hour)); err != nil {
			t.Fatalf("a token stored under the old pepper: %v", err)
		}
	})
}

// TestStoreAuditRefreshReuse: revoking a key's refresh tokens on reuse is
// in the trail; ordinary token traffic is not.
func TestStoreAuditRefreshReuse(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "acme-web")
		key, _ := fx.refreshKey("acme-web", keystore.ModeLive)
		exp := fx.clock.Now().Add(time.Hour)
		if _, err := fx.store.RedeemRefreshToken(ctx, fx.dig.All("r1"), fx.dig.Primary("r2"), exp); err != nil {
			t.Fatal(err)
		}
		if _, err := fx.store.RedeemRefreshToken(ctx, fx.dig.All("r1"), fx.dig.Primary("r3"), exp); !errors.Is(err, keystore.ErrRefreshReused) {
			t.Fatalf("reuse: %v", err)
		}
		entries, err := fx.store.Audit(ctx, key.ID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 2 || entries[1].Entity != keystore.EntityRefreshTokens || entries[1].Actor != "keygate" ||
			!strings.Contains(entries[1].Action, "reuse") {
			t.Errorf("entries: %+v", entries)
		}
	})
}

// TestImportTokenShaped: an imported key shaped like a token would be read
// as a token on Check and never work, so it is refused.
func TestImportTokenShaped(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		spec := keystore.KeySpec{SiteID: "web", Mode: keystore.ModeLive}
		for _, raw := range []string{"kg_at_legacy-0123456789", "kg_rt_legacy-0123456789"} {
			_, err := fx.store.ImportKey(ctx, spec, raw)
			wantErrIs(t, raw[:6], err, keystore.ErrInvalid)
		}
		if _, err := fx.store.ImportKey(ctx, spec, "xx_at_legacy-0123456789"); err != nil {
			t.Fatalf("another prefix's token shape is just a string: %v", err)
		}
	})
}

// TestCacheKeyByDigestFillsID: a key read by digest (a mint) is cached by
// id too, so the first Check with its access token needs no store read.
func TestCacheKeyByDigestFillsID(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		key, raw := fx.key("web", keystore.ModeLive)
		cache, err := keystore.NewCache(fx.store, keystore.CacheConfig{Now: fx.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		defer cache.Close()
		if _, err := cache.Key(ctx, fx.dig.All(raw)); err != nil {
			t.Fatal(err)
		}
		cache.Wait()
		_, before := cache.Stats()
		if f, err := cache.KeyID(ctx, key.ID); err != nil || f.Key.ID != key.ID {
			t.Fatalf("KeyID: %v %+v", err, f.Key)
		}
		if _, after := cache.Stats(); after != before {
			t.Fatalf("KeyID after Key read the store %d times", after-before)
		}
		// And an invalidation of the key reaches the by-id entry.
		if _, err := fx.store.RevokeKey(ctx, key.ID); err != nil {
			t.Fatal(err)
		}
		cache.Invalidate(keystore.EntityKey, key.ID)
		if f, err := cache.KeyID(ctx, key.ID); err != nil || f.Key.RevokedAt == nil {
			t.Fatalf("KeyID after revocation: %v, revoked_at %v", err, f.Key.RevokedAt)
		}
	})
}
