package keystore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// WebhookEndpoint is a receiver of events. Its secrets never leave the
// store except to sign (WebhookSecrets) and once, at creation, to the admin.
type WebhookEndpoint struct {
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	Events      []string  `json:"events"`
	Description string    `json:"description"`
	Disabled    bool      `json:"disabled"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	// PreviousSecretUntil is when a rotated-away secret stops signing.
	PreviousSecretUntil *time.Time `json:"previous_secret_until,omitempty"`
}

// WebhookUpdate lists the fields to change; nil leaves a field as it is. A
// new Secret keeps the current one signing beside it for overlap.
type WebhookUpdate struct {
	URL         *string
	Events      *[]string
	Description *string
	Disabled    *bool
	Secret      *string
}

func validEvents(events []string) error {
	if len(events) == 0 || len(events) > len(EventTypes) {
		return fmt.Errorf("%w: events: want 1 to %d of %v", ErrInvalid, len(EventTypes), EventTypes)
	}
	for _, e := range events {
		if !slices.Contains(EventTypes, e) {
			return fmt.Errorf("%w: events: unknown event type %q (known: %v)", ErrInvalid, e, EventTypes)
		}
	}
	return nil
}

func readWebhook(ctx context.Context, q rowQuerier, id string) (WebhookEndpoint, error) {
	return scanWebhook(q.QueryRowContext(ctx, webhookColumns+` WHERE id = $1`, id))
}

func validWebhookText(ep WebhookEndpoint) error {
	if ep.URL == "" || len(ep.URL) > 2048 {
		return fmt.Errorf("%w: url: want 1 to 2048 bytes", ErrInvalid)
	}
	if len(ep.Description) > 500 {
		return fmt.Errorf("%w: description longer than 500 characters", ErrInvalid)
	}
	return validEvents(ep.Events)
}

func eventsJSON(events []string) string {
	b, _ := json.Marshal(slices.Compact(slices.Sorted(slices.Values(events)))) // a []string always marshals
	return string(b)
}

// CreateWebhook stores an endpoint with its signing secret, sealed under the
// pepper like the token signing keys (a copy of the database cannot sign).
// The caller checks the URL against its destination rules and makes the
// secret.
func (s *Store) CreateWebhook(ctx context.Context, ep WebhookEndpoint, secret string) (WebhookEndpoint, error) {
	if err := validWebhookText(ep); err != nil {
		return WebhookEndpoint{}, fmt.Errorf("keystore: create webhook: %w", err)
	}
	id, err := randomID("wh_", 20)
	if err != nil {
		return WebhookEndpoint{}, err
	}
	ep.ID = id
	sealed, err := s.digester.seal([]byte(secret), ep.ID)
	if err != nil {
		return WebhookEndpoint{}, fmt.Errorf("keystore: create webhook: %w", err)
	}
	err = s.write(ctx, "create webhook", func(tx *sql.Tx, log txLog) error {
		ep.CreatedAt, ep.UpdatedAt = fromMillis(log.at), fromMillis(log.at)
		_, err := tx.ExecContext(ctx, `INSERT INTO webhook_endpoints (id, url, events, description, secret, disabled, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $7)`, ep.ID, ep.URL, eventsJSON(ep.Events), ep.Description, sealed, ep.Disabled, log.at)
		return err
	})
	if err != nil {
		return WebhookEndpoint{}, err
	}
	return s.Webhook(ctx, ep.ID)
}

const webhookColumns = `SELECT id, url, events, description, disabled, created_at, updated_at, old_secret_until FROM webhook_endpoints`

func scanWebhook(r rowScanner) (WebhookEndpoint, error) {
	var ep WebhookEndpoint
	var events string
	var created, updated, oldUntil int64
	if err := r.Scan(&ep.ID, &ep.URL, &events, &ep.Description, &ep.Disabled, &created, &updated, &oldUntil); err != nil {
		return WebhookEndpoint{}, notFound(err)
	}
	var err error
	if ep.Events, err = decodeEvents(ep.ID, events); err != nil {
		return WebhookEndpoint{}, err
	}
	ep.CreatedAt, ep.UpdatedAt = fromMillis(created), fromMillis(updated)
	if oldUntil > 0 {
		t := fromMillis(oldUntil)
		ep.PreviousSecretUntil = &t
	}
	return ep, nil
}

// Webhook reads one endpoint (without its secrets).
func (s *Store) Webhook(ctx context.Context, id string) (WebhookEndpoint, error) {
	ep, err := readWebhook(ctx, s.db, id)
	if err != nil {
		return WebhookEndpoint{}, fmt.Errorf("keystore: webhook %q: %w", id, err)
	}
	return ep, nil
}

// Webhooks lists every endpoint, oldest first (there are few).
func (s *Store) Webhooks(ctx context.Context) ([]WebhookEndpoint, error) {
	rows, err := s.db.QueryContext(ctx, webhookColumns+` ORDER BY created_at, id LIMIT 1000`)
	return collect(rows, err, "webhooks", scanWebhook)
}

// UpdateWebhook changes an endpoint. A new secret demotes the current one
// to "previous", which keeps signing until overlap has passed.
func (s *Store) UpdateWebhook(ctx context.Context, id string, u WebhookUpdate, overlap time.Duration) (WebhookEndpoint, error) {
	_, err := update(ctx, s, "update webhook", id, readWebhook, func(tx *sql.Tx, log txLog, ep *WebhookEndpoint) error {
		patch(&ep.URL, u.URL)
		patch(&ep.Events, u.Events)
		patch(&ep.Description, u.Description)
		patch(&ep.Disabled, u.Disabled)
		if err := validWebhookText(*ep); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_endpoints SET url = $1, events = $2, description = $3, disabled = $4, updated_at = $5 WHERE id = $6`,
			ep.URL, eventsJSON(ep.Events), ep.Description, ep.Disabled, log.at, id); err != nil {
			return err
		}
		if u.Secret == nil {
			return nil
		}
		sealed, err := s.digester.seal([]byte(*u.Secret), id)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE webhook_endpoints SET old_secret = secret, old_secret_until = $1, secret = $2 WHERE id = $3`,
			log.at+overlap.Milliseconds(), sealed, id)
		return err
	})
	if err != nil {
		return WebhookEndpoint{}, err
	}
	// Read again, as Webhook answers: updated_at and the secrets changed.
	return s.Webhook(ctx, id)
}

// DeleteWebhook removes an endpoint and its deliveries.
func (s *Store) DeleteWebhook(ctx context.Context, id string) error {
	return s.write(ctx, "delete webhook", func(tx *sql.Tx, _ txLog) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM webhook_endpoints WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: webhook %q", ErrNotFound, id)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE endpoint_id = $1`, id)
		return err
	})
}

// decodeEvents reads an endpoint's events column (a JSON array of types).
func decodeEvents(id, column string) ([]string, error) {
	var events []string
	if err := json.Unmarshal([]byte(column), &events); err != nil {
		return nil, fmt.Errorf("webhook %q: events: %w", id, err)
	}
	return events, nil
}

// subscriber is an enabled endpoint as the outbox sees it: the event types
// it wants.
type subscriber struct {
	id     string
	events []string
}

func (s subscriber) subscribes(typ string) bool { return slices.Contains(s.events, typ) }

// subscribers reads the enabled endpoints, for the outbox to address an
// event to.
func subscribers(ctx context.Context, tx *sql.Tx) ([]subscriber, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, events FROM webhook_endpoints WHERE disabled = FALSE ORDER BY id`)
	return collect(rows, err, "subscribers", func(r rowScanner) (subscriber, error) {
		var s subscriber
		var events string
		err := r.Scan(&s.id, &events)
		if err == nil {
			s.events, err = decodeEvents(s.id, events)
		}
		return s, err
	})
}
