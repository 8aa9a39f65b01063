package keystore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
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

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// Delivery is one event on its way to one endpoint.
type Delivery struct {
	ID            string     `json:"id"`
	Endpoint      string     `json:"endpoint"`
	EventID       string     `json:"event_id"`
	Type          string     `json:"type"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	LastAttemptAt *time.Time `json:"last_attempt_at"`
	LastStatus    int        `json:"last_status,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	DeliveredAt   *time.Time `json:"delivered_at"`
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
	if err := json.Unmarshal([]byte(events), &ep.Events); err != nil {
		return WebhookEndpoint{}, fmt.Errorf("webhook %q: events: %w", ep.ID, err)
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
	ep, err := scanWebhook(s.db.QueryRowContext(ctx, webhookColumns+` WHERE id = $1`, id))
	if err != nil {
		return WebhookEndpoint{}, fmt.Errorf("keystore: webhook %q: %w", id, err)
	}
	return ep, nil
}

// Webhooks lists every endpoint, oldest first (there are few).
func (s *Store) Webhooks(ctx context.Context) ([]WebhookEndpoint, error) {
	rows, err := s.db.QueryContext(ctx, webhookColumns+` ORDER BY created_at, id LIMIT 1000`)
	if err != nil {
		return nil, fmt.Errorf("keystore: webhooks: %w: %w", ErrUnavailable, err)
	}
	defer rows.Close()
	out := []WebhookEndpoint{}
	for rows.Next() {
		ep, err := scanWebhook(rows)
		if err != nil {
			return nil, fmt.Errorf("keystore: webhooks: %w", err)
		}
		out = append(out, ep)
	}
	return out, rows.Err()
}

// UpdateWebhook changes an endpoint. A new secret demotes the current one
// to "previous", which keeps signing until overlap has passed.
func (s *Store) UpdateWebhook(ctx context.Context, id string, u WebhookUpdate, overlap time.Duration) (WebhookEndpoint, error) {
	err := s.write(ctx, "update webhook", func(tx *sql.Tx, log txLog) error {
		ep, err := scanWebhook(tx.QueryRowContext(ctx, webhookColumns+` WHERE id = $1`, id))
		if err != nil {
			return err
		}
		if u.URL != nil {
			ep.URL = *u.URL
		}
		if u.Events != nil {
			ep.Events = *u.Events
		}
		if u.Description != nil {
			ep.Description = *u.Description
		}
		if u.Disabled != nil {
			ep.Disabled = *u.Disabled
		}
		if err := validWebhookText(ep); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_endpoints SET url = $1, events = $2, description = $3, disabled = $4, updated_at = $5 WHERE id = $6`,
			ep.URL, eventsJSON(ep.Events), ep.Description, ep.Disabled, log.at, id); err != nil {
			return err
		}
		if u.Secret != nil {
			sealed, err := s.digester.seal([]byte(*u.Secret), id)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `UPDATE webhook_endpoints SET old_secret = secret, old_secret_until = $1, secret = $2 WHERE id = $3`,
				log.at+overlap.Milliseconds(), sealed, id)
			return err
		}
		return err
	})
	if err != nil {
		return WebhookEndpoint{}, err
	}
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

const deliveryColumns = `SELECT d.id, d.endpoint_id, e.id, e.type, d.status, d.attempts, d.next_attempt_at, d.last_attempt_at,
	d.last_status, d.last_error, d.created_at, d.delivered_at
	FROM webhook_deliveries d JOIN webhook_events e ON e.seq = d.event_seq`

func scanDelivery(r rowScanner) (Delivery, error) {
	var d Delivery
	var next int64
	var created int64
	var last, delivered sql.NullInt64
	if err := r.Scan(&d.ID, &d.Endpoint, &d.EventID, &d.Type, &d.Status, &d.Attempts, &next, &last,
		&d.LastStatus, &d.LastError, &created, &delivered); err != nil {
		return Delivery{}, notFound(err)
	}
	if d.Status == DeliveryPending {
		t := fromMillis(next)
		d.NextAttemptAt = &t
	}
	d.LastAttemptAt, d.CreatedAt, d.DeliveredAt = fromOptMillis(last), fromMillis(created), fromOptMillis(delivered)
	return d, nil
}

// WebhookDeliveries lists an endpoint's deliveries, newest first, at most
// limit (≤ 1000).
func (s *Store) WebhookDeliveries(ctx context.Context, endpoint string, limit int) ([]Delivery, error) {
	if _, err := s.Webhook(ctx, endpoint); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	rows, err := s.db.QueryContext(ctx, deliveryColumns+` WHERE d.endpoint_id = $1 ORDER BY d.event_seq DESC LIMIT $2`, endpoint, limit)
	if err != nil {
		return nil, fmt.Errorf("keystore: deliveries: %w: %w", ErrUnavailable, err)
	}
	defer rows.Close()
	out := []Delivery{}
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("keystore: deliveries: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// RetryDelivery makes a delivery pending again, due now, with a fresh retry
// window. Deliveries of an endpoint go out in event order, so a retried old
// one is sent before newer pending ones.
func (s *Store) RetryDelivery(ctx context.Context, endpoint, id string) (Delivery, error) {
	var d Delivery
	err := s.write(ctx, "retry delivery", func(tx *sql.Tx, log txLog) error {
		res, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = 'pending', retry_from = $1, next_attempt_at = $1 WHERE id = $2 AND endpoint_id = $3`,
			log.at, id, endpoint)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: delivery %q of webhook %q", ErrNotFound, id, endpoint)
		}
		d, err = scanDelivery(tx.QueryRowContext(ctx, deliveryColumns+` WHERE d.id = $1`, id))
		return err
	})
	return d, err
}

// DueDelivery is what the delivery worker needs to send one delivery.
type DueDelivery struct {
	ID, Endpoint, URL string
	EventID, Type     string
	Payload           []byte
	// Secrets sign the delivery: the current one first, then one still in
	// its rotation overlap. SecretErr says why they could not be unsealed
	// (a pepper missing from this replica, say); the delivery then waits.
	Secrets   []string
	SecretErr error
	Attempts  int
	RetryFrom time.Time
}

// DueDeliveries returns, for each enabled endpoint, its oldest pending
// delivery if that one is due at now: an endpoint receives its events one at
// a time, in the order they were committed, so events about one key arrive
// in order even across retries.
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]DueDelivery, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT d.id, d.endpoint_id, w.url, e.id, e.type, e.payload, w.secret, w.old_secret, w.old_secret_until, d.attempts, d.retry_from
		FROM webhook_deliveries d
		JOIN webhook_events e ON e.seq = d.event_seq
		JOIN webhook_endpoints w ON w.id = d.endpoint_id
		WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND w.disabled = FALSE
		AND d.event_seq = (SELECT MIN(h.event_seq) FROM webhook_deliveries h WHERE h.endpoint_id = d.endpoint_id AND h.status = 'pending')
		ORDER BY d.event_seq LIMIT $2`, millis(now), limit)
	if err != nil {
		return nil, fmt.Errorf("keystore: due deliveries: %w: %w", ErrUnavailable, err)
	}
	defer rows.Close()
	var out []DueDelivery
	for rows.Next() {
		var d DueDelivery
		var payload, secret, old string
		var oldUntil, retryFrom int64
		if err := rows.Scan(&d.ID, &d.Endpoint, &d.URL, &d.EventID, &d.Type, &payload, &secret, &old, &oldUntil, &d.Attempts, &retryFrom); err != nil {
			return nil, fmt.Errorf("keystore: due deliveries: %w", err)
		}
		d.Payload, d.RetryFrom = []byte(payload), fromMillis(retryFrom)
		sealed := []string{secret}
		if old != "" && oldUntil > millis(now) {
			sealed = append(sealed, old)
		}
		for _, sl := range sealed {
			plain, err := s.digester.open(sl, d.Endpoint)
			if err != nil {
				d.Secrets, d.SecretErr = nil, fmt.Errorf("webhook %s: secret: %w", d.Endpoint, err)
				break
			}
			d.Secrets = append(d.Secrets, string(plain))
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Attempt is the outcome of sending a delivery once.
type Attempt struct {
	At     time.Time
	Status int    // HTTP status, 0 when none came back
	Error  string // why it failed, "" on success
	// Outcome is DeliveryDelivered, DeliveryFailed (given up) or
	// DeliveryPending (retry at Next).
	Outcome string
	Next    time.Time
}

// RecordAttempt stores the outcome of one attempt. A delivery already
// delivered (by a worker that lost its lock mid-send) stays delivered.
func (s *Store) RecordAttempt(ctx context.Context, id string, a Attempt) error {
	var delivered sql.NullInt64
	if a.Outcome == DeliveryDelivered {
		delivered = sql.NullInt64{Int64: millis(a.At), Valid: true}
	}
	if len(a.Error) > 500 {
		a.Error = a.Error[:500]
	}
	_, err := s.db.ExecContext(ctx, `UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_attempt_at = $2, last_status = $3,
		last_error = $4, next_attempt_at = $5, delivered_at = $6 WHERE id = $7 AND status <> 'delivered'`,
		a.Outcome, millis(a.At), a.Status, a.Error, millis(a.Next), delivered, id)
	if err != nil {
		return fmt.Errorf("keystore: record attempt: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// exclusiveLockBase is added to a small job number to make an advisory
// lock id of its own (see postgres.go for the others).
const exclusiveLockBase = 0x6b6579676100 // "keyga\0"

// Exclusive runs fn while this process is the only one across replicas
// running job: on PostgreSQL it holds a session advisory lock on a
// connection of its own, checked every check interval; fn's context ends
// as soon as the lock may be lost, and Exclusive tries again until ctx ends.
// On SQLite, whose file several processes may share, a lease row does the
// same (worker_lease.go).
func (s *Store) Exclusive(ctx context.Context, job int, check time.Duration, fn func(context.Context) error) error {
	if _, pg := s.db.Driver().(*stdlib.Driver); !pg {
		return s.exclusiveLease(ctx, job, check, fn)
	}
	for ctx.Err() == nil {
		err := s.holdLock(ctx, exclusiveLockBase+int64(job), check, fn)
		if err != nil && ctx.Err() == nil {
			// The lock connection failed, or fn did: wait, then contend again.
			select {
			case <-ctx.Done():
			case <-time.After(check):
			}
		}
	}
	return ctx.Err()
}

func (s *Store) holdLock(ctx context.Context, id int64, check time.Duration, fn func(context.Context) error) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for {
		var got bool
		if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, id).Scan(&got); err != nil {
			return err
		}
		if got {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(check):
		}
	}
	defer func() {
		unlockCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		// If this fails the connection is broken and the lock went with it.
		_, _ = conn.ExecContext(unlockCtx, `SELECT pg_advisory_unlock($1)`, id)
	}()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn(runCtx) }()
	for {
		select {
		case err := <-done:
			return err
		case <-time.After(check):
			pingCtx, cancelPing := context.WithTimeout(ctx, check)
			err := conn.PingContext(pingCtx)
			cancelPing()
			if err != nil {
				cancel()
				<-done
				return fmt.Errorf("keystore: exclusive: lock connection: %w", err)
			}
		}
	}
}

// PruneDeliveries deletes deliveries that ended (delivered or failed)
// before `before`, and the events no delivery refers to any more, at most
// limit deliveries per call, so the outbox does not grow for ever.
func (s *Store) PruneDeliveries(ctx context.Context, before time.Time, limit int) (int64, error) {
	var n int64
	err := s.write(ctx, "prune deliveries", func(tx *sql.Tx, _ txLog) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries
			WHERE status <> 'pending' AND COALESCE(delivered_at, last_attempt_at, created_at) < $1 ORDER BY event_seq LIMIT $2)`, millis(before), limit)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		_, err = tx.ExecContext(ctx, `DELETE FROM webhook_events WHERE created_at < $1
			AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = webhook_events.seq)`, millis(before))
		return err
	})
	return n, err
}
