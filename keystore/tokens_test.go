package keystore

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// tokenClock is an injected clock tests move by hand.
type tokenClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *tokenClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *tokenClock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func openTokenStore(t *testing.T, file string, c *tokenClock, peppers ...[]byte) *Store {
	t.Helper()
	d, err := NewDigester(peppers...)
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenSQLite(context.Background(), file, Options{Format: Format{Prefix: "kg"}, Digester: d, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var testSchedule = SigningSchedule{RotateEvery: 24 * time.Hour, Activation: time.Minute, RetireAfter: 2 * time.Hour}

func signingKeyIDs(keys []SigningKey) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	return strings.Join(ids, ",")
}

func TestSigningKeySchedule(t *testing.T) {
	ctx := context.Background()
	c := &tokenClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := openTokenStore(t, filepath.Join(t.TempDir(), "k.db"), c)

	first, err := s.SigningKeys(ctx, testSchedule)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 1 || !first[0].NotBefore.Equal(c.Now()) || len(first[0].Secret) != 32 {
		t.Fatalf("first start: want one key that signs at once, got %+v", first)
	}
	again, _ := s.SigningKeys(ctx, testSchedule)
	if signingKeyIDs(again) != signingKeyIDs(first) || !bytes.Equal(again[0].Secret, first[0].Secret) {
		t.Fatalf("a second call (another replica) must see the same key: %s vs %s", signingKeyIDs(again), signingKeyIDs(first))
	}

	c.Advance(24 * time.Hour)
	rotated, err := s.SigningKeys(ctx, testSchedule)
	if err != nil {
		t.Fatal(err)
	}
	if len(rotated) != 2 || rotated[1].ID != first[0].ID || !rotated[0].NotBefore.Equal(c.Now().Add(time.Minute)) {
		t.Fatalf("after RotateEvery: want a successor published a minute ahead, then the old key; got %+v", rotated)
	}

	// The old key verifies until its successor has signed for RetireAfter.
	c.Advance(time.Minute + 2*time.Hour - time.Millisecond)
	if keys, _ := s.SigningKeys(ctx, testSchedule); len(keys) != 2 {
		t.Fatalf("old key retired too early: %s", signingKeyIDs(keys))
	}
	c.Advance(time.Millisecond)
	retired, err := s.SigningKeys(ctx, testSchedule)
	if err != nil {
		t.Fatal(err)
	}
	if signingKeyIDs(retired) != rotated[0].ID {
		t.Fatalf("after RetireAfter: want only %s, got %s", rotated[0].ID, signingKeyIDs(retired))
	}
}

func TestSigningKeySealing(t *testing.T) {
	ctx := context.Background()
	c := &tokenClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	file := filepath.Join(t.TempDir(), "k.db")
	oldPepper := []byte("old-pepper-0123456789")
	newPepper := []byte("new-pepper-0123456789")
	s := openTokenStore(t, file, c, oldPepper)
	keys, err := s.SigningKeys(ctx, testSchedule)
	if err != nil {
		t.Fatal(err)
	}
	var stored string
	if err := s.DB().QueryRow(`SELECT secret FROM signing_keys`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, sealedPrefix) || strings.Contains(stored, base64.StdEncoding.EncodeToString(keys[0].Secret)) {
		t.Fatalf("with a pepper the secret must be sealed, stored %q", stored)
	}

	rotatedPepper := openTokenStore(t, file, c, newPepper, oldPepper)
	if got, err := rotatedPepper.SigningKeys(ctx, testSchedule); err != nil || !bytes.Equal(got[0].Secret, keys[0].Secret) {
		t.Fatalf("an older pepper still configured must open the key: %v", err)
	}
	for name, peppers := range map[string][][]byte{"other pepper": {newPepper}, "no pepper": nil} {
		if _, err := openTokenStore(t, file, c, peppers...).SigningKeys(ctx, testSchedule); err == nil {
			t.Errorf("%s: a key sealed under another pepper was opened", name)
		}
	}
	// Swapping sealed rows between ids fails: the id is authenticated.
	if _, err := s.digester.open(stored, "sk_other"); err == nil {
		t.Error("a sealed secret opened under another key id")
	}
}

// refreshFixture is a store in file with one key to mint refresh tokens for.
func refreshFixture(t *testing.T, file string, peppers ...[]byte) (*Store, *tokenClock, Key) {
	t.Helper()
	ctx := context.Background()
	c := &tokenClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := openTokenStore(t, file, c, peppers...)
	if _, err := s.CreateAccount(ctx, Account{ID: "acme", Plan: "pro"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSite(ctx, Site{ID: "web", AccountID: "acme", Active: true}); err != nil {
		t.Fatal(err)
	}
	k, _, err := s.CreateKey(ctx, KeySpec{SiteID: "web", Mode: ModeTest})
	if err != nil {
		t.Fatal(err)
	}
	return s, c, k
}

func TestRefreshTokens(t *testing.T) {
	ctx := context.Background()
	s, c, key := refreshFixture(t, filepath.Join(t.TempDir(), "k.db"))
	exp := func() time.Time { return c.Now().Add(time.Hour) }
	d := func(raw string) []Digest { return s.digester.All(raw) }

	if err := s.IssueRefreshToken(ctx, key.ID, d("r1")[0], exp()); err != nil {
		t.Fatal(err)
	}
	g, err := s.RedeemRefreshToken(ctx, d("r1"), d("r2")[0], exp())
	if err != nil || g.KeyID != key.ID || g.Mode != ModeTest {
		t.Fatalf("redeem r1: %+v, %v", g, err)
	}
	// A script of presentations: issue = mint with the API key, otherwise
	// redeem token for next.
	steps := []struct {
		what        string
		issue       bool
		token, next string
		advance     time.Duration
		want        error
	}{
		{what: "unknown token", token: "nope", next: "x", want: ErrNotFound},
		{what: "r1 again: reuse, which kills r2", token: "r1", next: "r3", want: ErrRefreshReused},
		{what: "r2 after its family was revoked", token: "r2", next: "r3", want: ErrRefreshReused},
		{what: "mint", issue: true, token: "m1"},
		{what: "mint again, ending m1", issue: true, token: "m2"},
		{what: "m1 after a new mint: reuse, which kills m2", token: "m1", next: "m3", want: ErrRefreshReused},
		{what: "m2 after reuse of m1", token: "m2", next: "m3", want: ErrRefreshReused},
		{what: "mint", issue: true, token: "e1"},
		{what: "e1 an hour later", token: "e1", next: "e2", advance: time.Hour, want: ErrRefreshExpired},
	}
	for _, st := range steps {
		c.Advance(st.advance)
		var err error
		if st.issue {
			err = s.IssueRefreshToken(ctx, key.ID, d(st.token)[0], exp())
		} else {
			_, err = s.RedeemRefreshToken(ctx, d(st.token), d(st.next)[0], exp())
		}
		if !errors.Is(err, st.want) {
			t.Fatalf("%s: got %v, want %v", st.what, err, st.want)
		}
	}
}

func TestRefreshTokenPepperRotation(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "k.db")
	old := []byte("old-pepper-0123456789")
	s, c, k := refreshFixture(t, file, old)
	if err := s.IssueRefreshToken(ctx, k.ID, s.digester.Primary("r1"), c.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	s2 := openTokenStore(t, file, c, []byte("new-pepper-0123456789"), old)
	if _, err := s2.RedeemRefreshToken(ctx, s2.digester.All("r1"), s2.digester.Primary("r2"), c.Now().Add(time.Hour)); err != nil {
		t.Fatalf("a token stored under the old pepper: %v", err)
	}
}
