package keystore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

func fmtAll(s Secret) string {
	return fmt.Sprintf("%v %s %q %#v %+v %x", s, s, s, s, s, s)
}

func TestDigester(t *testing.T) {
	oldPepper := []byte("old-pepper-0123456789")
	newPepper := []byte("new-pepper-0123456789")
	none, err := NewDigester()
	if err != nil {
		t.Fatal(err)
	}
	old, _ := NewDigester(oldPepper)
	rotated, _ := NewDigester(newPepper, oldPepper)
	const raw = "kg_live_0123456789"

	if none.Primary(raw) == old.Primary(raw) {
		t.Error("the pepper does not change the digest")
	}
	if none.Primary(raw) == none.Primary(raw+"x") {
		t.Error("different keys share a digest")
	}
	if got := none.Primary(raw); len(got) != 64 {
		t.Errorf("digest %q: want 64 hex characters", got)
	}
	all := rotated.All(raw)
	if len(all) != 2 || all[0] != rotated.Primary(raw) || all[1] != old.Primary(raw) {
		t.Errorf("All = %v, want [new primary, old primary]", all)
	}
	if _, err := NewDigester([]byte("short")); err == nil {
		t.Error("a 5-byte pepper was accepted")
	}
	if got := Digest("0123456789abcdef").Short(); got != "0123456789ab" {
		t.Errorf("Short = %q", got)
	}
}

// TestPepperRotation: a key created under the old pepper is still found
// after the new pepper goes first, because lookups try every digest.
func TestPepperRotation(t *testing.T) {
	ctx := context.Background()
	oldPepper := []byte("old-pepper-0123456789")
	old, _ := NewDigester(oldPepper)
	st := openTestStore(t, filepath.Join(t.TempDir(), "k.db"), old)
	seedSite(t, st)
	key, secret, err := st.CreateKey(ctx, KeySpec{SiteID: "web", Mode: ModeLive})
	if err != nil {
		t.Fatal(err)
	}
	rotated, _ := NewDigester([]byte("new-pepper-0123456789"), oldPepper)
	got, err := st.LookupKey(ctx, rotated.All(secret.Reveal()))
	if err != nil {
		t.Fatalf("lookup under rotated peppers: %v", err)
	}
	if got.Key.ID != key.ID {
		t.Fatalf("found key %s, want %s", got.Key.ID, key.ID)
	}
	fresh, _ := NewDigester([]byte("new-pepper-0123456789"))
	if _, err := st.LookupKey(ctx, fresh.All(secret.Reveal())); err == nil {
		t.Fatal("found the key without its pepper")
	}
}

func seedSite(t *testing.T, st *Store) {
	t.Helper()
	ctx := context.Background()
	if _, err := st.CreateAccount(ctx, Account{ID: "acme", Plan: "pro"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateSite(ctx, Site{ID: "web", AccountID: "acme", Active: true}); err != nil {
		t.Fatal(err)
	}
}

// openTestStore opens a SQLite store at path, closed when the test ends.
func openTestStore(t *testing.T, path string, d *Digester) *Store {
	t.Helper()
	format, _ := NewFormat("kg")
	st, err := OpenSQLite(context.Background(), path, Options{Format: format, Digester: d})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
