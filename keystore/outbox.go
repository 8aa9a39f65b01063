package keystore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// Event types a webhook endpoint can subscribe to (DESIGN.md, "Events").
const (
	EventKeyCreated      = "key.created"
	EventKeyRevoked      = "key.revoked"
	EventKeyRolled       = "key.rolled"
	EventKeyExpiring     = "key.expiring"
	EventKeyExpired      = "key.expired"
	EventKeyLeaked       = "key.leaked"
	EventSiteKeysRotated = "site.keys_rotated"
	EventAccountUpdated  = "account.updated"
	EventQuotaThreshold  = "quota.threshold"
)

// EventTypes lists every event type, in catalogue order.
var EventTypes = []string{EventKeyCreated, EventKeyRevoked, EventKeyRolled, EventKeyExpiring, EventKeyExpired,
	EventKeyLeaked, EventSiteKeysRotated, EventAccountUpdated, EventQuotaThreshold}

// Reasons a key.revoked event gives.
const (
	ReasonRevoked = "revoked"
	ReasonRotated = "rotated"
	ReasonLeaked  = "leaked"
	ReasonReuse   = "reuse"
)

type revokeReasonKey struct{}

// WithRevokeReason tells RevokeKey why a key is revoked, for its key.revoked
// event (the default is ReasonRevoked). Like the actor of the audit log, it
// travels in the context so that store call sites stay as they are.
func WithRevokeReason(ctx context.Context, reason string) context.Context {
	return context.WithValue(ctx, revokeReasonKey{}, reason)
}

func revokeReason(ctx context.Context) string {
	return ctxString(ctx, revokeReasonKey{}, ReasonRevoked)
}

// txEvents turns one write transaction's change-log rows into outbox
// events, inside that transaction: an event exists if and only if its change
// committed (no dual write, nothing lost by a crash in between).
type txEvents struct {
	op string
	// rotated collects the keys a rotation revoked, for site.keys_rotated.
	rotated []string
	// subscribers is read once per transaction, on the first event.
	subscribers []subscriber
	loaded      bool
}

// KeyEvent is the data of key.* events: ids and the display prefix, never
// the key or its digest.
type KeyEvent struct {
	ID        string     `json:"id"`
	Site      string     `json:"site"`
	Account   string     `json:"account"`
	Mode      Mode       `json:"mode"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	Reason    string     `json:"reason,omitempty"`
	// Source is where a leaked key was found (key.leaked).
	Source string `json:"source,omitempty"`
	// Action is what keygate did about a leak: revoked or notified.
	Action string `json:"action,omitempty"`
	// Credential is what leaked (key.leaked): key, access_token or
	// refresh_token.
	Credential string `json:"credential,omitempty"`
}

// SiteKeysRotatedEvent is the data of site.keys_rotated.
type SiteKeysRotatedEvent struct {
	Site          string    `json:"site"`
	Account       string    `json:"account"`
	NewKeyID      string    `json:"new_key_id"`
	RevokedKeyIDs []string  `json:"revoked_key_ids"`
	RevokedAt     time.Time `json:"revoked_at"`
}

// AccountUpdatedEvent is the data of account.updated.
type AccountUpdatedEvent struct {
	ID     string        `json:"id"`
	Plan   string        `json:"plan"`
	Status AccountStatus `json:"status"`
}

// add is called by txLog.add for every change-log row; it is nil-safe so a
// txLog built elsewhere emits nothing.
func (t *txEvents) add(ctx context.Context, l txLog, e Entity, id string) error {
	if t == nil {
		return nil
	}
	switch {
	case e == EntityKey:
		return t.keyChanged(ctx, l, id)
	case e == EntityAccount && t.op == "update account":
		a, err := scanAccount(l.tx.QueryRowContext(ctx, `SELECT id, plan, status, created_at, updated_at FROM accounts WHERE id = $1`, id))
		if err != nil {
			return err
		}
		return t.emit(ctx, l, EventAccountUpdated, AccountUpdatedEvent{ID: a.ID, Plan: a.Plan, Status: a.Status})
	}
	return nil
}

func (t *txEvents) keyChanged(ctx context.Context, l txLog, id string) error {
	switch t.op {
	case "create key", "import key", "revoke key", "rotate key", "report leak":
	default:
		return nil
	}
	k, err := keyEvent(ctx, l.tx, id)
	if err != nil {
		return err
	}
	switch t.op {
	case "create key", "import key":
		return t.emit(ctx, l, EventKeyCreated, k)
	case "revoke key", "report leak":
		// Revoking a revoked key changes nothing: no second event (unless
		// both revocations fall in one millisecond: at least once).
		if k.RevokedAt == nil || k.RevokedAt.UnixMilli() != l.at {
			return nil
		}
		k.Reason = revokeReason(ctx)
		return t.emit(ctx, l, EventKeyRevoked, k)
	}
	// A rotation appends its revoked keys first, then the new key.
	if k.RevokedAt != nil {
		t.rotated = append(t.rotated, k.ID)
		k.Reason = ReasonRotated
		return t.emit(ctx, l, EventKeyRevoked, k)
	}
	if err := t.emit(ctx, l, EventKeyCreated, k); err != nil {
		return err
	}
	rotated := SiteKeysRotatedEvent{Site: k.Site, Account: k.Account, NewKeyID: k.ID, RevokedKeyIDs: t.rotated, RevokedAt: k.CreatedAt}
	if rotated.RevokedKeyIDs == nil {
		rotated.RevokedKeyIDs = []string{}
	}
	if len(t.rotated) > 0 {
		var at sql.NullInt64
		if err := l.tx.QueryRowContext(ctx, `SELECT revoked_at FROM keys WHERE id = $1`, t.rotated[0]).Scan(&at); err != nil {
			return err
		}
		if at.Valid {
			rotated.RevokedAt = fromMillis(at.Int64)
		}
	}
	return t.emit(ctx, l, EventSiteKeysRotated, rotated)
}

// keyEvent reads a key with its site's account inside the transaction.
func keyEvent(ctx context.Context, tx *sql.Tx, id string) (KeyEvent, error) {
	var k KeyEvent
	var mode string
	var created int64
	var expires, revoked sql.NullInt64
	err := tx.QueryRowContext(ctx, `SELECT k.id, k.site_id, s.account_id, k.mode, k.name, k.prefix, k.created_at, k.expires_at, k.revoked_at
		FROM keys k JOIN sites s ON s.id = k.site_id WHERE k.id = $1`, id).
		Scan(&k.ID, &k.Site, &k.Account, &mode, &k.Name, &k.Prefix, &created, &expires, &revoked)
	if err != nil {
		return KeyEvent{}, notFound(err)
	}
	k.Mode, k.CreatedAt, k.ExpiresAt, k.RevokedAt = Mode(mode), fromMillis(created), fromOptMillis(expires), fromOptMillis(revoked)
	return k, nil
}

// emit writes one event to the outbox with a pending delivery for every
// enabled endpoint subscribed to its type. An event nobody subscribes to is
// not stored.
func (t *txEvents) emit(ctx context.Context, l txLog, typ string, data any) error {
	if !t.loaded {
		subs, err := subscribers(ctx, l.tx)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		t.subscribers, t.loaded = subs, true
	}
	var to []string
	for _, s := range t.subscribers {
		if s.subscribes(typ) {
			to = append(to, s.id)
		}
	}
	if len(to) == 0 {
		return nil
	}
	return insertEvent(ctx, l.tx, l.at, typ, data, to)
}

// eventBody is the Standard Webhooks payload shape.
type eventBody struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      any       `json:"data"`
}

func insertEvent(ctx context.Context, tx *sql.Tx, at int64, typ string, data any, endpoints []string) error {
	id, err := randomID("msg_", 24)
	if err != nil {
		return err
	}
	body, err := json.Marshal(eventBody{Type: typ, Timestamp: fromMillis(at), Data: data})
	if err != nil {
		return fmt.Errorf("outbox: %s: %w", typ, err)
	}
	var seq int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO webhook_events (id, type, payload, created_at) VALUES ($1, $2, $3, $4) RETURNING seq`,
		id, typ, string(body), at).Scan(&seq); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	for _, ep := range endpoints {
		did, err := randomID("dlv_", 24)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_deliveries (id, endpoint_id, event_seq, status, retry_from, next_attempt_at, created_at)
			VALUES ($1, $2, $3, 'pending', $4, $4, $4)`, did, ep, seq, at); err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
	}
	return nil
}
