package keystore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// KeyRolledEvent is the data of key.rolled: ids, the site, display
// prefixes and when the old key stops working; never a key or digest.
type KeyRolledEvent struct {
	OldKeyID     string     `json:"old_key_id"`
	NewKeyID     string     `json:"new_key_id"`
	Site         string     `json:"site"`
	Account      string     `json:"account"`
	Mode         Mode       `json:"mode"`
	Name         string     `json:"name"`
	OldPrefix    string     `json:"old_prefix"`
	NewPrefix    string     `json:"new_prefix"`
	OldExpiresAt *time.Time `json:"old_expires_at"`
}

// RollKey replaces one key with a new one of the same site, mode, name,
// expiry and entitlements, shown once: the old key keeps working for grace
// (its expires_at becomes now+grace, or stays if it was earlier), then
// answers API_KEY_EXPIRED. Remaining uses move to the new key (the old one
// keeps none, so a roll never doubles them). One transaction writes both
// keys, the change log, the audit trail and the key.rolled event (no
// key.created: key.rolled names the new key). A revoked, expired or rotating key cannot be rolled.
func (s *Store) RollKey(ctx context.Context, id string, grace time.Duration) (Key, Secret, Key, error) {
	if grace < 0 || grace > MaxGrace {
		return Key{}, "", Key{}, fmt.Errorf("keystore: roll key: %w: grace: want 0 to %s", ErrInvalid, MaxGrace)
	}
	var newKey, oldKey Key
	var secret Secret
	err := s.write(ctx, "roll key", func(tx *sql.Tx, log txLog) error {
		now := fromMillis(log.at)
		// A no-op write first locks the row (PostgreSQL) or the database
		// (SQLite): no SpendUse on the old key lands between the copy of
		// its remaining uses and their removal.
		res, err := tx.ExecContext(ctx, `UPDATE keys SET remaining = remaining WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return fmt.Errorf("%w: key %q", ErrNotFound, id)
		}
		old, err := scanKey(tx.QueryRowContext(ctx, keyColumns+` WHERE id = $1`, id), now)
		if err != nil {
			return err
		}
		if old.RevokedAt != nil || old.Expired(now) {
			return fmt.Errorf("%w: key %q is revoked, expired or being rotated out", ErrInvalid, id)
		}
		if newKey, secret, err = s.rollInsert(ctx, tx, log, old); err != nil {
			return err
		}
		expires := log.at + grace.Milliseconds()
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET expires_at = $1 WHERE id = $2 AND (expires_at IS NULL OR expires_at > $1)`,
			expires, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET remaining = CASE WHEN remaining IS NULL THEN NULL ELSE 0 END,
			refill_interval = '', refill_amount = 0 WHERE id = $1`, id); err != nil {
			return err
		}
		if oldKey, err = scanKey(tx.QueryRowContext(ctx, keyColumns+` WHERE id = $1`, id), now); err != nil {
			return err
		}
		if newKey, err = scanKey(tx.QueryRowContext(ctx, keyColumns+` WHERE id = $1`, newKey.ID), now); err != nil {
			return err
		}
		if err := log.add(ctx, EntityKey, id); err != nil {
			return err
		}
		return s.emitRolled(ctx, log, oldKey, newKey)
	})
	if err != nil {
		return Key{}, "", Key{}, err
	}
	return newKey, secret, oldKey, nil
}

// rollInsert creates the new key of a roll and copies the old key's
// remaining uses and refill to it as stored (a refill not yet applied
// stays due).
func (s *Store) rollInsert(ctx context.Context, tx *sql.Tx, log txLog, old Key) (Key, Secret, error) {
	ent := old.Entitlements.clone()
	ent.Remaining, ent.Refill = nil, nil
	key, secret, err := s.insertKey(ctx, tx, log, KeySpec{SiteID: old.SiteID, Mode: old.Mode, Name: old.Name,
		ExpiresAt: old.ExpiresAt, Entitlements: ent})
	if err != nil {
		return Key{}, "", err
	}
	var remaining sql.NullInt64
	var interval, period string
	var amount int64
	if err := tx.QueryRowContext(ctx, `SELECT remaining, refill_interval, refill_amount, refill_period FROM keys WHERE id = $1`, old.ID).
		Scan(&remaining, &interval, &amount, &period); err != nil {
		return Key{}, "", err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE keys SET remaining = $1, refill_interval = $2, refill_amount = $3, refill_period = $4 WHERE id = $5`,
		remaining, interval, amount, period, key.ID); err != nil {
		return Key{}, "", err
	}
	return key, secret, nil
}

// emitRolled writes key.rolled to the outbox for subscribed endpoints.
func (s *Store) emitRolled(ctx context.Context, log txLog, old, nu Key) error {
	var account string
	if err := log.tx.QueryRowContext(ctx, `SELECT account_id FROM sites WHERE id = $1`, old.SiteID).Scan(&account); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: site %q", ErrNotFound, old.SiteID)
		}
		return err
	}
	return log.events.emit(ctx, log, EventKeyRolled, KeyRolledEvent{OldKeyID: old.ID, NewKeyID: nu.ID, Site: old.SiteID,
		Account: account, Mode: old.Mode, Name: old.Name, OldPrefix: old.Prefix, NewPrefix: nu.Prefix, OldExpiresAt: old.ExpiresAt})
}
