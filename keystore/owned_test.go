package keystore_test

import (
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestAccountOwns: an account owns its keys and sites; another account's
// and missing ones are the same ErrNotFound, on SQLite and PostgreSQL.
func TestAccountOwns(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acc_a", "site_a")
		fx.site("acc_b", "site_b")
		mine, _ := fx.key("site_a", keystore.ModeLive)
		theirs, _ := fx.key("site_b", keystore.ModeLive)
		if err := fx.store.AccountOwnsKey(ctx, "acc_a", mine.ID); err != nil {
			t.Fatalf("own key: %v", err)
		}
		if err := fx.store.AccountOwnsSite(ctx, "acc_a", "site_a"); err != nil {
			t.Fatalf("own site: %v", err)
		}
		if _, err := fx.store.RevokeKey(ctx, mine.ID); err != nil {
			t.Fatal(err)
		}
		if err := fx.store.AccountOwnsKey(ctx, "acc_a", mine.ID); err != nil {
			t.Fatalf("own revoked key: %v", err)
		}
		wantErr(t, fx.store.AccountOwnsKey(ctx, "acc_a", theirs.ID), keystore.ErrNotFound)
		wantErr(t, fx.store.AccountOwnsKey(ctx, "acc_a", "key_missing"), keystore.ErrNotFound)
		wantErr(t, fx.store.AccountOwnsKey(ctx, "acc_zz", mine.ID), keystore.ErrNotFound)
		wantErr(t, fx.store.AccountOwnsSite(ctx, "acc_a", "site_b"), keystore.ErrNotFound)
		wantErr(t, fx.store.AccountOwnsSite(ctx, "acc_a", "site_missing"), keystore.ErrNotFound)
		wantErr(t, fx.store.AccountOwnsSite(ctx, "", "site_a"), keystore.ErrNotFound)
	})
}
