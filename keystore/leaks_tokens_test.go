package keystore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// ReportTokenLeak on both stores: a refresh token's family is revoked and
// not its key; a live access token revokes its key (key.leaked first,
// then key.revoked); an expired one and notify revoke nothing; a report
// seen before acts once.
func TestReportTokenLeak(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		if _, err := fx.store.CreateWebhook(ctx, keystore.WebhookEndpoint{URL: "https://hooks.example.com/k", Events: []string{keystore.EventKeyLeaked, keystore.EventKeyRevoked}}, "whsec_x"); err != nil {
			t.Fatal(err)
		}
		exp := fx.clock.Now().Add(time.Hour)
		d := fx.dig.All
		report := func(keyID string, l keystore.TokenLeak, wantAction string, wantFirst bool) {
			t.Helper()
			action, first, err := fx.store.ReportTokenLeak(ctx, keyID, l)
			if err != nil || action != wantAction && wantFirst || first != wantFirst {
				t.Fatalf("report %s of %s: %q first=%v %v; want %q first=%v", l.Credential, keyID, action, first, err, wantAction, wantFirst)
			}
		}

		// Refresh token.
		kr, _ := fx.key("web", keystore.ModeLive)
		if err := fx.store.IssueRefreshToken(ctx, kr.ID, d("r1")[0], exp); err != nil {
			t.Fatal(err)
		}
		g, live, err := fx.store.PeekRefreshToken(ctx, d("r1"), fx.clock.Now())
		if err != nil || !live {
			t.Fatal(live, err)
		}
		refresh := keystore.TokenLeak{Leak: keystore.Leak{Source: "https://github.com/o/r", Revoke: true},
			Credential: keystore.CredentialRefreshToken, Digest: d("r1")[0], Family: g.Family}
		report(kr.ID, refresh, keystore.LeakRevoked, true)
		report(kr.ID, refresh, "", false) // the same token, same source
		refresh.Source = "https://gist.github.com/x"
		report(kr.ID, refresh, keystore.LeakAlreadyRevoked, true)
		if _, err := fx.store.RedeemRefreshToken(ctx, d("r1"), d("r2")[0], exp); !errors.Is(err, keystore.ErrRefreshReused) {
			t.Fatalf("redeeming a leaked refresh token: %v", err)
		}
		if k, err := fx.store.Key(ctx, kr.ID); err != nil || k.RevokedAt != nil {
			t.Fatalf("a refresh token leak revoked its key: %+v %v", k, err)
		}

		// Access tokens.
		ka, _ := fx.key("web", keystore.ModeLive)
		access := func(dg string, expires time.Time, revoke bool) keystore.TokenLeak {
			return keystore.TokenLeak{Leak: keystore.Leak{Source: "https://github.com/o/r", Revoke: revoke},
				Credential: keystore.CredentialAccessToken, Digest: d(dg)[0], ExpiresAt: expires}
		}
		report(ka.ID, access("a0", fx.clock.Now().Add(-time.Second), true), keystore.LeakExpired, true)
		report(ka.ID, access("a1", exp, false), keystore.LeakNotified, true)
		if k, _ := fx.store.Key(ctx, ka.ID); k.RevokedAt != nil {
			t.Fatal("an expired or notify-only access token leak revoked its key")
		}
		report(ka.ID, access("a2", exp, true), keystore.LeakRevoked, true)
		if k, _ := fx.store.Key(ctx, ka.ID); k.RevokedAt == nil {
			t.Fatal("a live access token leak left its key live")
		}
		fx.clock.Add(time.Millisecond)
		report(ka.ID, access("a3", exp, true), keystore.LeakAlreadyRevoked, true)

		if got := types(drain(t, fx)); got != "key.leaked key.leaked key.leaked key.leaked key.leaked key.revoked key.leaked" {
			t.Fatalf("events %q", got)
		}
		if _, _, err := fx.store.ReportTokenLeak(ctx, ka.ID, keystore.TokenLeak{Credential: "key"}); !errors.Is(err, keystore.ErrInvalid) {
			t.Fatalf("credential key: %v", err)
		}
		if _, _, err := fx.store.ReportTokenLeak(ctx, "key_nope", access("a4", exp, true)); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("unknown key: %v", err)
		}
	})
}
