package keystore_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// A reused refresh token revokes the key's live refresh tokens and emits
// key.revoked (reason reuse) in that transaction; the key stays valid and
// says so (revoked_at null, revoked: refresh_tokens). Replaying the dead
// token again revokes nothing more and emits nothing.
func TestRefreshReuseEvent(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acme", "web")
		key, secret := fx.key("web", keystore.ModeLive)
		if _, err := fx.store.CreateWebhook(ctx, keystore.WebhookEndpoint{URL: "https://hooks.example.com/k", Events: []string{keystore.EventKeyRevoked}}, "whsec_x"); err != nil {
			t.Fatal(err)
		}
		exp := func() time.Time { return fx.clock.Now().Add(time.Hour) }
		d := fx.dig.All
		if err := fx.store.IssueRefreshToken(ctx, key.ID, d("r1")[0], exp()); err != nil {
			t.Fatal(err)
		}
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
