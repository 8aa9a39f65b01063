package keystore_test

import (
	"time"

	"github.com/keygate/keygate/keystore"
)

// subscribe registers one webhook endpoint for events, so that the writes a
// test makes leave those events in the outbox for drain to read.
func (fx *fixture) subscribe(events ...string) {
	fx.t.Helper()
	if _, err := fx.store.CreateWebhook(ctx, keystore.WebhookEndpoint{URL: "https://hooks.example.com/k", Events: events}, "whsec_x"); err != nil {
		fx.t.Fatal(err)
	}
}

// refreshKey creates a key on site holding one refresh token, "r1", that
// expires in an hour.
func (fx *fixture) refreshKey(site string, mode keystore.Mode) (keystore.Key, string) {
	fx.t.Helper()
	key, secret := fx.key(site, mode)
	if err := fx.store.IssueRefreshToken(ctx, key.ID, fx.dig.Primary("r1"), fx.clock.Now().Add(time.Hour)); err != nil {
		fx.t.Fatal(err)
	}
	return key, secret
}
