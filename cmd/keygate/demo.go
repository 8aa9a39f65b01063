package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/keygate/keygate/keystore"
)

// Demo data names, used by the README's quick start.
const (
	demoAccount = "demo"
	demoSite    = "demo-site"
)

// seedDemo makes sure the demo account and site exist, then rotates the
// site's keys so that a fresh live and test key can be printed: keys are
// only ever shown at creation.
func (e *environment) seedDemo(ctx context.Context, st *keystore.Store) error {
	if _, err := st.CreateAccount(ctx, keystore.Account{ID: demoAccount, Plan: "pro", Status: keystore.StatusActive}); err != nil && !errors.Is(err, keystore.ErrConflict) {
		return err
	}
	site := keystore.Site{ID: demoSite, AccountID: demoAccount, Domains: []string{"localhost:3000", "example.com", "*.example.com"}, Active: true}
	if _, err := st.CreateSite(ctx, site); err != nil && !errors.Is(err, keystore.ErrConflict) {
		return err
	}
	live, liveSecret, _, err := st.RotateSiteKey(ctx, keystore.KeySpec{SiteID: demoSite, Mode: keystore.ModeLive, Name: "demo live"})
	if err != nil {
		return err
	}
	test, testSecret, err := st.CreateKey(ctx, keystore.KeySpec{SiteID: demoSite, Mode: keystore.ModeTest, Name: "demo test"})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, `
Demo data: account %q (plan pro), site %q (domains localhost:3000, example.com, *.example.com).
Fresh demo keys (shown once; previous demo keys are revoked):
  live  %s  (%s)
  test  %s  (%s)

`, demoAccount, demoSite, liveSecret.Reveal(), live.ID, testSecret.Reveal(), test.ID)
	return nil
}
