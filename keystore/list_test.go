package keystore_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// Accounts and sites page by id on both databases, sites filtered by account.
func TestStoreListAccountsAndSites(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		for i := range 5 {
			fx.site(fmt.Sprintf("acct-%d", i), fmt.Sprintf("site-%d", i))
		}
		fx.site("acct-1", "site-1b")
		var got []string
		after := ""
		for {
			page, err := fx.store.Accounts(ctx, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range page {
				got = append(got, a.ID)
			}
			if len(page) < 2 {
				break
			}
			after = page[len(page)-1].ID
		}
		if strings.Join(got, ",") != "acct-0,acct-1,acct-2,acct-3,acct-4" {
			t.Errorf("accounts: %v", got)
		}
		sites, err := fx.store.Sites(ctx, "acct-1", "", 10)
		if err != nil || len(sites) != 2 || sites[0].ID != "site-1" || sites[1].ID != "site-1b" {
			t.Errorf("sites of acct-1: %v %v", sites, err)
		}
		all, err := fx.store.Sites(ctx, "", "site-3", 10)
		if err != nil || len(all) != 1 || all[0].ID != "site-4" {
			t.Errorf("sites after site-3: %v %v", all, err)
		}
		_, err = fx.store.Sites(ctx, "nope", "", 10)
		wantErr(t, err, keystore.ErrNotFound)
		if empty, err := fx.store.Accounts(ctx, "zzz", 10); err != nil || len(empty) != 0 || empty == nil {
			t.Errorf("past the end: %#v %v (want an empty, non-nil list)", empty, err)
		}
	})
}

// Rotating one mode revokes only that mode's keys; "" revokes every mode.
func TestStoreRotateByMode(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		live, _ := fx.key("web", keystore.ModeLive)
		test, _ := fx.key("web", keystore.ModeTest)
		k, _, revoked, err := fx.store.RotateSiteKeys(ctx, keystore.KeySpec{SiteID: "web", Mode: keystore.ModeLive}, keystore.ModeLive, 0)
		if err != nil || len(revoked) != 1 || revoked[0] != live.ID {
			t.Fatalf("live rotation: %v %v", revoked, err)
		}
		if got, _ := fx.store.Key(ctx, test.ID); got.RevokedAt != nil {
			t.Errorf("live rotation revoked the test key")
		}
		_, _, revoked, err = fx.store.RotateSiteKeys(ctx, keystore.KeySpec{SiteID: "web", Mode: keystore.ModeLive}, "", 0)
		if err != nil || len(revoked) != 2 || !strings.Contains(strings.Join(revoked, ","), test.ID) || !strings.Contains(strings.Join(revoked, ","), k.ID) {
			t.Errorf("rotation of every mode: %v %v", revoked, err)
		}
	})
}
