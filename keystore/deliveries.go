package keystore

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

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
	return collect(rows, err, "deliveries", scanDelivery)
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
