package keystore_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// wantLeakReport reports l against keyID and wants the action taken and
// whether the report was the first of its token from that source.
func wantLeakReport(fx *fixture, keyID string, l keystore.TokenLeak, wantAction string, wantFirst bool) {
	fx.t.Helper()
	action, first, err := fx.store.ReportTokenLeak(ctx, keyID, l)
	if err != nil || action != wantAction && wantFirst || first != wantFirst {
		fx.t.Fatalf("report %s of %s: %q first=%v %v; want %q first=%v", l.Credential, keyID, action, first, err, wantAction, wantFirst)
	}
}

// ReportTokenLeak on both stores: a refresh token's family is revoked and
// not its key; a live access token revokes its key (key.leaked first,
// then key.revoked); an expired one and notify revoke nothing; a report
// seen before acts once.
func TestReportTokenLeak(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		fx.subscribe(keystore.EventKeyLeaked, keystore.EventKeyRevoked)
		exp := fx.clock.Now().Add(time.Hour)
		d := fx.dig.All

		// Refresh token.
		kr, _ := fx.refreshKey("web", keystore.ModeLive)
		g, live, err := fx.store.PeekRefreshToken(ctx, d("r1"), fx.clock.Now())
		if err != nil || !live {
			t.Fatal(live, err)
		}
		refresh := keystore.TokenLeak{Leak: keystore.Leak{Source: "https://github.com/o/r", Revoke: true},
			Credential: keystore.CredentialRefreshToken, Digest: d("r1")[0], Family: g.Family}
		wantLeakReport(fx, kr.ID, refresh, keystore.LeakRevoked, true)
		wantLeakReport(fx, kr.ID, refresh, "", false) // the same token, same source
		refresh.Source = "https://gist.github.com/x"
		wantLeakReport(fx, kr.ID, refresh, keystore.LeakAlreadyRevoked, true)
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
		wantLeakReport(fx, ka.ID, access("a0", fx.clock.Now().Add(-time.Second), true), keystore.LeakExpired, true)
		wantLeakReport(fx, ka.ID, access("a1", exp, false), keystore.LeakNotified, true)
		if k, _ := fx.store.Key(ctx, ka.ID); k.RevokedAt != nil {
			t.Fatal("an expired or notify-only access token leak revoked its key")
		}
		wantLeakReport(fx, ka.ID, access("a2", exp, true), keystore.LeakRevoked, true)
		if k, _ := fx.store.Key(ctx, ka.ID); k.RevokedAt == nil {
			t.Fatal("a live access token leak left its key live")
		}
		fx.clock.Add(time.Millisecond)
		wantLeakReport(fx, ka.ID, access("a3", exp, true), keystore.LeakAlreadyRevoked, true)

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

// A reused refresh token revokes the key's live refresh tokens and emits
// key.revoked (reason reuse) in that transaction; the key stays valid and
// says so (revoked_at null, revoked: refresh_tokens). Replaying the dead
// token again revokes nothing more and emits nothing.
func TestRefreshReuseEvent(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		key, secret := fx.refreshKey("web", keystore.ModeLive)
		fx.subscribe(keystore.EventKeyRevoked)
		exp := func() time.Time { return fx.clock.Now().Add(time.Hour) }
		d := fx.dig.All
		grant, err := fx.store.RedeemRefreshToken(ctx, d("r1"), d("r2")[0], exp())
		if err != nil {
			t.Fatal(err)
		}
		if got := drain(t, fx); len(got) != 0 {
			t.Fatalf("events from a plain refresh: %s", types(got))
		}
		fx.clock.Add(time.Second)
		if _, err := fx.store.RedeemRefreshToken(ctx, d("r1"), d("r3")[0], exp()); !errors.Is(err, keystore.ErrRefreshReused) {
			t.Fatalf("reuse: %v", err)
		}
		got := drain(t, fx)
		if types(got) != keystore.EventKeyRevoked {
			t.Fatalf("events after reuse: %q", types(got))
		}
		var data struct {
			ID, Reason, Revoked string
			Family              string     `json:"refresh_family"`
			RevokedAt           *time.Time `json:"revoked_at"`
			TokensRevokedAt     time.Time  `json:"tokens_revoked_at"`
		}
		if err := json.Unmarshal(got[0].Data, &data); err != nil {
			t.Fatal(err)
		}
		if data.ID != key.ID || data.Reason != keystore.ReasonReuse || data.Revoked != keystore.RevokedRefreshTokens ||
			data.Family != grant.Family || data.RevokedAt != nil || !data.TokensRevokedAt.Equal(fx.clock.Now().Truncate(time.Millisecond)) {
			t.Fatalf("key.revoked after reuse: %s", got[0].Data)
		}
		// The family is dead (r2 was revoked), the key is not.
		if _, err := fx.store.RedeemRefreshToken(ctx, d("r2"), d("r4")[0], exp()); !errors.Is(err, keystore.ErrRefreshReused) {
			t.Fatalf("r2 after reuse: %v", err)
		}
		if got := drain(t, fx); len(got) != 0 {
			t.Fatalf("a replay that revoked nothing emitted %s", types(got))
		}
		if facts, err := fx.store.LookupKey(ctx, fx.dig.All(secret)); err != nil || facts.Key.RevokedAt != nil {
			t.Fatalf("key after reuse: %+v, %v", facts.Key, err)
		}
	})
}
