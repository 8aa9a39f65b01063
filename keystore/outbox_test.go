package keystore_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

type sentEvent struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// drain plays a worker that always succeeds: it returns every event due
// for the endpoints, in the order the store hands them out.
func drain(t *testing.T, fx *fixture) []sentEvent {
	t.Helper()
	var out []sentEvent
	for {
		due, err := fx.store.DueDeliveries(ctx, fx.clock.Now(), 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(due) == 0 {
			return out
		}
		for _, d := range due {
			var e sentEvent
			if err := json.Unmarshal(d.Payload, &e); err != nil {
				t.Fatal(err)
			}
			if e.Type != d.Type {
				t.Fatalf("payload type %q, row type %q", e.Type, d.Type)
			}
			out = append(out, e)
			if err := fx.store.RecordAttempt(ctx, d.ID, keystore.Attempt{At: fx.clock.Now(), Status: 204, Outcome: keystore.DeliveryDelivered}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func types(events []sentEvent) string {
	var s []string
	for _, e := range events {
		s = append(s, e.Type)
	}
	return strings.Join(s, " ")
}

func TestOutboxEventsFromWrites(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acct", "site1")
		// Nothing is stored for events nobody subscribes to.
		fx.key("site1", keystore.ModeLive)
		ep, err := fx.store.CreateWebhook(ctx, keystore.WebhookEndpoint{URL: "https://hooks.example.com/k", Events: keystore.EventTypes}, "whsec_x")
		if err != nil {
			t.Fatal(err)
		}
		if got := drain(t, fx); len(got) != 0 {
			t.Fatalf("events before the endpoint existed: %s", types(got))
		}

		k1, secret := fx.key("site1", keystore.ModeLive)
		if _, err := fx.store.RevokeKey(keystore.WithRevokeReason(ctx, keystore.ReasonLeaked), k1.ID); err != nil {
			t.Fatal(err)
		}
		fx.clock.Add(time.Millisecond)
		if _, err := fx.store.RevokeKey(ctx, k1.ID); err != nil { // already revoked: no event
			t.Fatal(err)
		}
		k2, _ := fx.key("site1", keystore.ModeTest)
		fx.clock.Add(time.Second)
		newKey, _, revoked, err := fx.store.RotateSiteKeyGrace(ctx, keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		plan := "max"
		if _, err := fx.store.UpdateAccount(ctx, "acct", keystore.AccountUpdate{Plan: &plan}); err != nil {
			t.Fatal(err)
		}
		if _, err := fx.store.UpdateSite(ctx, "site1", keystore.SiteUpdate{}); err != nil { // no event type for sites
			t.Fatal(err)
		}

		got := drain(t, fx)
		want := "key.created key.revoked key.created key.revoked key.revoked key.created site.keys_rotated account.updated"
		if types(got) != want {
			t.Fatalf("events:\n got %s\nwant %s", types(got), want)
		}
		var created keystore.KeyEvent
		if err := json.Unmarshal(got[0].Data, &created); err != nil {
			t.Fatal(err)
		}
		if created.ID != k1.ID || created.Site != "site1" || created.Account != "acct" || created.Mode != keystore.ModeLive || created.Prefix != k1.Prefix {
			t.Fatalf("key.created data = %+v", created)
		}
		var leaked keystore.KeyEvent
		_ = json.Unmarshal(got[1].Data, &leaked)
		if leaked.ID != k1.ID || leaked.Reason != keystore.ReasonLeaked || leaked.RevokedAt == nil {
			t.Fatalf("key.revoked data = %+v", leaked)
		}
		for _, e := range got {
			wantNoSecret(t, e.Type, e.Data, secret, secret[len(secret)-12:])
		}
		var rotated keystore.SiteKeysRotatedEvent
		_ = json.Unmarshal(got[6].Data, &rotated)
		if rotated.NewKeyID != newKey.ID || len(rotated.RevokedKeyIDs) != len(revoked) || !rotated.RevokedAt.Equal(fx.clock.Now().Add(time.Hour)) {
			t.Fatalf("site.keys_rotated = %+v, revoked %v", rotated, revoked)
		}
		for _, i := range []int{3, 4} {
			var r keystore.KeyEvent
			_ = json.Unmarshal(got[i].Data, &r)
			if r.Reason != keystore.ReasonRotated {
				t.Fatalf("rotation revoked %s with reason %q", r.ID, r.Reason)
			}
		}
		if !strings.Contains(string(got[7].Data), `"plan":"max"`) {
			t.Fatalf("account.updated = %s", got[7].Data)
		}
		_ = k2

		ds, err := fx.store.WebhookDeliveries(ctx, ep.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != len(got) || ds[0].Status != keystore.DeliveryDelivered || ds[0].DeliveredAt == nil || ds[0].Attempts != 1 {
			t.Fatalf("deliveries = %+v", ds)
		}
		// Pruning keeps what ended after the cut-off and pending ones.
		fx.key("site1", keystore.ModeLive) // pending
		if n, err := fx.store.PruneDeliveries(ctx, fx.clock.Now().Add(-time.Minute), 100); err != nil || n != 0 {
			t.Fatalf("prune before anything ended: %d, %v", n, err)
		}
		if n, err := fx.store.PruneDeliveries(ctx, fx.clock.Now().Add(time.Minute), 100); err != nil || n != int64(len(got)) {
			t.Fatalf("prune: %d, %v; want %d", n, err, len(got))
		}
		ds, _ = fx.store.WebhookDeliveries(ctx, ep.ID, 0)
		var events int
		_ = fx.store.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM webhook_events`).Scan(&events)
		if len(ds) != 1 || ds[0].Status != keystore.DeliveryPending || events != 1 {
			t.Fatalf("after pruning: %d deliveries (%+v), %d events", len(ds), ds, events)
		}
	})
}

// A failed change leaves no event: the outbox row is in the change's
// transaction.
func TestOutboxRollsBackWithTheChange(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acct", "site1")
		fx.subscribe(keystore.EventKeyCreated)
		if _, _, err := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: "nosuchsite", Mode: keystore.ModeLive}); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("create key on a missing site: %v", err)
		}
		if got := drain(t, fx); len(got) != 0 {
			t.Fatalf("events of a failed write: %s", types(got))
		}
	})
}

// An endpoint receives its events one at a time in commit order: while the
// oldest is waiting for a retry, the newer ones wait behind it; a failed
// one no longer blocks; a retried one goes first again.
func TestDeliveriesInOrderPerEndpoint(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		fx.site("acct", "site1")
		a, err := fx.store.CreateWebhook(ctx, keystore.WebhookEndpoint{URL: "https://a.example.com", Events: []string{keystore.EventKeyCreated}}, "whsec_a")
		if err != nil {
			t.Fatal(err)
		}
		b, err := fx.store.CreateWebhook(ctx, keystore.WebhookEndpoint{URL: "https://b.example.com", Events: []string{keystore.EventKeyCreated, keystore.EventKeyRevoked}}, "whsec_b")
		if err != nil {
			t.Fatal(err)
		}
		k, _ := fx.key("site1", keystore.ModeLive)
		if _, err := fx.store.RevokeKey(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		due, err := fx.store.DueDeliveries(ctx, fx.clock.Now(), 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(due) != 2 || due[0].Type != keystore.EventKeyCreated || due[1].Type != keystore.EventKeyCreated || due[0].EventID != due[1].EventID {
			t.Fatalf("first due = %+v", due)
		}
		var bHead keystore.DueDelivery
		for _, d := range due {
			if d.Endpoint == b.ID {
				bHead = d
			}
			if len(d.Secrets) != 1 {
				t.Fatalf("secrets = %d", len(d.Secrets))
			}
		}
		// b's receiver is down: retry in a minute. Its key.revoked waits.
		if err := fx.store.RecordAttempt(ctx, bHead.ID, keystore.Attempt{At: fx.clock.Now(), Status: 503, Error: "503", Outcome: keystore.DeliveryPending, Next: fx.clock.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		due, _ = fx.store.DueDeliveries(ctx, fx.clock.Now(), 100)
		if len(due) != 1 || due[0].Endpoint != a.ID {
			t.Fatalf("due while b waits = %+v", due)
		}
		fx.clock.Add(time.Minute)
		due, _ = fx.store.DueDeliveries(ctx, fx.clock.Now(), 100)
		if len(due) != 2 {
			t.Fatalf("due after the wait = %+v", due)
		}
		// Give up on b's head: the next one goes.
		_ = fx.store.RecordAttempt(ctx, bHead.ID, keystore.Attempt{At: fx.clock.Now(), Status: 503, Outcome: keystore.DeliveryFailed})
		due, _ = fx.store.DueDeliveries(ctx, fx.clock.Now(), 100)
		var bTypes []string
		for _, d := range due {
			if d.Endpoint == b.ID {
				bTypes = append(bTypes, d.Type)
			}
		}
		if strings.Join(bTypes, " ") != keystore.EventKeyRevoked {
			t.Fatalf("b after giving up: %v", bTypes)
		}
		// Retry the failed one: it is first again.
		d, err := fx.store.RetryDelivery(ctx, b.ID, bHead.ID)
		if err != nil || d.Status != keystore.DeliveryPending {
			t.Fatalf("retry = %+v, %v", d, err)
		}
		due, _ = fx.store.DueDeliveries(ctx, fx.clock.Now(), 100)
		for _, d := range due {
			if d.Endpoint == b.ID && d.ID != bHead.ID {
				t.Fatalf("b sends %s before the retried %s", d.Type, bHead.Type)
			}
		}
		if _, err := fx.store.RetryDelivery(ctx, a.ID, bHead.ID); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("retry through another endpoint: %v", err)
		}
		// Deleting an endpoint removes its deliveries.
		if err := fx.store.DeleteWebhook(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := fx.store.WebhookDeliveries(ctx, b.ID, 0); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("deliveries of a deleted endpoint: %v", err)
		}
		if err := fx.store.DeleteWebhook(ctx, b.ID); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
	})
}

func TestWebhookEndpoints(t *testing.T) {
	eachStore(t, func(t *testing.T, fx *fixture) {
		for _, bad := range []keystore.WebhookEndpoint{
			{URL: "https://x.example.com", Events: nil},
			{URL: "https://x.example.com", Events: []string{"key.nope"}},
			{URL: "", Events: []string{keystore.EventKeyCreated}},
			{URL: "https://x.example.com", Events: []string{keystore.EventKeyCreated}, Description: strings.Repeat("d", 501)},
		} {
			if _, err := fx.store.CreateWebhook(ctx, bad, "whsec_x"); !errors.Is(err, keystore.ErrInvalid) {
				t.Errorf("CreateWebhook(%+v) = %v, want ErrInvalid", bad, err)
			}
		}
		ep, err := fx.store.CreateWebhook(ctx, keystore.WebhookEndpoint{URL: "https://x.example.com", Events: []string{keystore.EventKeyRevoked, keystore.EventKeyCreated, keystore.EventKeyCreated}, Description: "ops"}, "whsec_one")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(ep.Events, ",") != "key.created,key.revoked" || ep.Description != "ops" || ep.PreviousSecretUntil != nil {
			t.Fatalf("created = %+v", ep)
		}
		// Sealed under the pepper: the database alone cannot sign.
		var stored string
		if err := fx.store.DB().QueryRowContext(ctx, `SELECT secret FROM webhook_endpoints WHERE id = $1`, ep.ID).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(stored, "sealed:") || strings.Contains(stored, "whsec_one") {
			t.Fatalf("stored secret %q", stored)
		}
		other, _ := open(t, fx.dsn, fx.clock, "another-pepper-0123456789")
		fx.site("acct0", "site0")
		fx.key("site0", keystore.ModeLive)
		due, err := other.DueDeliveries(ctx, fx.clock.Now(), 10)
		if err != nil || len(due) != 1 || due[0].SecretErr == nil || len(due[0].Secrets) != 0 {
			t.Fatalf("due with the wrong pepper = %+v, %v", due, err)
		}
		_ = fx.store.RecordAttempt(ctx, due[0].ID, keystore.Attempt{At: fx.clock.Now(), Outcome: keystore.DeliveryDelivered})
		list, err := fx.store.Webhooks(ctx)
		if err != nil || len(list) != 1 || list[0].ID != ep.ID {
			t.Fatalf("list = %+v, %v", list, err)
		}
		// Rotating the secret: both sign for the overlap, then only the new one.
		secret := "whsec_two"
		ep, err = fx.store.UpdateWebhook(ctx, ep.ID, keystore.WebhookUpdate{Secret: &secret}, 24*time.Hour)
		if err != nil || ep.PreviousSecretUntil == nil || !ep.PreviousSecretUntil.Equal(fx.clock.Now().Add(24*time.Hour)) {
			t.Fatalf("rotate = %+v, %v", ep, err)
		}
		fx.site("acct", "site1")
		fx.key("site1", keystore.ModeLive)
		due, _ = fx.store.DueDeliveries(ctx, fx.clock.Now(), 10)
		if len(due) != 1 || strings.Join(due[0].Secrets, " ") != "whsec_two whsec_one" {
			t.Fatalf("secrets during overlap = %+v", due)
		}
		fx.clock.Add(24 * time.Hour)
		due, _ = fx.store.DueDeliveries(ctx, fx.clock.Now(), 10)
		if len(due) != 1 || strings.Join(due[0].Secrets, " ") != "whsec_two" {
			t.Fatalf("secrets after overlap = %+v", due)
		}
		// A disabled endpoint gets no new events and sends none.
		yes := true
		if _, err := fx.store.UpdateWebhook(ctx, ep.ID, keystore.WebhookUpdate{Disabled: &yes}, 0); err != nil {
			t.Fatal(err)
		}
		if due, _ := fx.store.DueDeliveries(ctx, fx.clock.Now(), 10); len(due) != 0 {
			t.Fatalf("disabled endpoint has due deliveries: %+v", due)
		}
		bad := []string{"nope"}
		if _, err := fx.store.UpdateWebhook(ctx, ep.ID, keystore.WebhookUpdate{Events: &bad}, 0); !errors.Is(err, keystore.ErrInvalid) {
			t.Fatalf("update with a bad event: %v", err)
		}
		if _, err := fx.store.UpdateWebhook(ctx, "wh_nope", keystore.WebhookUpdate{}, 0); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("update missing: %v", err)
		}
	})
}
