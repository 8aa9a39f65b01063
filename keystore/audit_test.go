package keystore_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// TestStoreAudit: writes record their actor, action, target and the
// target's state before and after, in the write's transaction; nothing
// secret is in it.
func TestStoreAudit(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		cli := keystore.WithActor(ctx, "cli:ops@host1")
		admin := keystore.WithActor(ctx, "admin:deploy-bot")
		if _, err := fx.store.CreateAccount(cli, keystore.Account{ID: "acme", Plan: "pro"}); err != nil {
			t.Fatal(err)
		}
		if _, err := fx.store.CreateSite(cli, keystore.Site{ID: "acme-web", AccountID: "acme", Active: true}); err != nil {
			t.Fatal(err)
		}
		key, secret, err := fx.store.CreateKey(cli, keystore.KeySpec{SiteID: "acme-web", Mode: keystore.ModeLive, Name: "prod"})
		if err != nil {
			t.Fatal(err)
		}
		fx.clock.Add(time.Second)
		if _, err := fx.store.RevokeKey(cli, key.ID); err != nil {
			t.Fatal(err)
		}
		next, nextSecret, _, err := fx.store.RotateSiteKey(admin, keystore.KeySpec{SiteID: "acme-web", Mode: keystore.ModeLive})
		if err != nil {
			t.Fatal(err)
		}
		// A failed write leaves no audit row.
		if _, err := fx.store.CreateAccount(cli, keystore.Account{ID: "acme", Plan: "pro"}); !errors.Is(err, keystore.ErrConflict) {
			t.Fatalf("duplicate account: %v", err)
		}

		entries, err := fx.store.Audit(ctx, key.ID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 2 {
			t.Fatalf("entries for %s: %+v", key.ID, entries)
		}
		create, revoke := entries[0], entries[1]
		if create.Actor != "cli:ops@host1" || create.Action != "create key" || string(create.Before) != "null" {
			t.Errorf("create: %+v", create)
		}
		if revoke.Actor != "cli:ops@host1" || revoke.Action != "revoke key" || revoke.Entity != keystore.EntityKey {
			t.Errorf("revoke: %+v", revoke)
		}
		var before, after map[string]any
		if err := json.Unmarshal(revoke.Before, &before); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(revoke.After, &after); err != nil {
			t.Fatal(err)
		}
		if before["revoked_at"] != nil || after["revoked_at"] == nil || after["name"] != "prod" || after["site"] != "acme-web" {
			t.Errorf("revoke before %v after %v", before, after)
		}

		all, err := fx.store.Audit(ctx, "", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		// account, site, key, revoke, rotate (the new key; the old one was
		// revoked already, so the rotation revoked nothing).
		if len(all) != 5 || all[4].Target != next.ID || all[4].Actor != "admin:deploy-bot" || all[4].Action != "rotate key" {
			t.Fatalf("trail: %+v", all)
		}
		page, err := fx.store.Audit(ctx, "", all[2].Seq, 2)
		if err != nil || len(page) != 2 || page[0].Seq != all[3].Seq {
			t.Errorf("page after %d: %+v, %v", all[2].Seq, page, err)
		}
		raw, _ := json.Marshal(all)
		wantNoSecret(t, "the audit trail", raw, secret.Reveal(), nextSecret.Reveal(), "pepper-one")
		if _, err := fx.store.Audit(ctx, "", 0, keystore.MaxAuditPage+1); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("oversized page: %v", err)
		}
	})
}

// A lazy actor is made when a write first asks for it, once, and is then
// recorded as WithActor's would be; an empty one is keygate's.
func TestLazyActor(t *testing.T) {
	made := 0
	lazy := keystore.WithLazyActor(ctx, func() string { made++; return "cli:ops@host1" })
	if made != 0 {
		t.Fatalf("actor made %d times before any write, want 0", made)
	}
	for range 2 {
		if got := keystore.ActorFrom(lazy); got != "cli:ops@host1" {
			t.Fatalf("ActorFrom = %q", got)
		}
	}
	if made != 1 {
		t.Fatalf("actor made %d times, want 1", made)
	}
	if got := keystore.ActorFrom(keystore.WithLazyActor(ctx, func() string { return "" })); got != "keygate" {
		t.Fatalf("empty lazy actor: ActorFrom = %q, want keygate", got)
	}
	if got := keystore.ActorFrom(keystore.WithActor(lazy, "admin:deploy-bot")); got != "admin:deploy-bot" {
		t.Fatalf("WithActor over a lazy actor: %q", got)
	}
}
