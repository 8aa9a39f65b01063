package keystore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// pageIDs reads every page of a listing two at a time, each page after the
// last id of the one before, and returns the ids in the order read.
func pageIDs[T any](t *testing.T, list func(ctx context.Context, after string, limit int) ([]T, error), id func(T) string) []string {
	t.Helper()
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		page, err := list(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range page {
			got = append(got, id(v))
		}
		if len(page) < 2 {
			return got
		}
		after = id(page[len(page)-1])
	}
}

// Accounts and sites page by id on both databases, sites filtered by account.
func TestStoreListAccountsAndSites(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		for i := range 5 {
			fx.site(fmt.Sprintf("acct-%d", i), fmt.Sprintf("site-%d", i))
		}
		fx.site("acct-1", "site-1b")
		got := pageIDs(t, fx.store.Accounts, func(a keystore.Account) string { return a.ID })
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
