package keystore_test

import (
	"bytes"
	"testing"
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

// wantNoSecret fails the test when data, which is written where secrets
// must never be (the audit trail, webhook events), holds any of secrets. It
// does not print data, which would put the secret in the test's log.
func wantNoSecret(t *testing.T, what string, data []byte, secrets ...string) {
	t.Helper()
	for i, s := range secrets {
		if bytes.Contains(data, []byte(s)) {
			t.Fatalf("%s holds secret %d", what, i)
		}
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
