package keystore

import (
	"context"
	"database/sql"
)

// Leak is a report that a key was found in public.
type Leak struct {
	// Source is where it was found (a URL); at most 2048 bytes are kept.
	Source string
	// Revoke revokes the key now; otherwise its owners are only told.
	Revoke bool
}

// Leak actions, as key.leaked events give them.
const (
	LeakRevoked        = "revoked"
	LeakNotified       = "notified"
	LeakAlreadyRevoked = "already_revoked"
)

// ReportLeak records that a key leaked, in one transaction: the report,
// the revocation when asked (with its key.revoked event, reason leaked) and
// a key.leaked event. The same key reported again from the same source
// changes nothing and reports first = false.
func (s *Store) ReportLeak(ctx context.Context, keyID string, l Leak) (action string, first bool, err error) {
	if len(l.Source) > 2048 {
		l.Source = l.Source[:2048]
	}
	err = s.write(ctx, "report leak", func(tx *sql.Tx, log txLog) error {
		k, err := keyEvent(ctx, tx, keyID)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO leak_reports (key_id, source, reported_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			keyID, l.Source, log.at)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		first = true
		switch {
		case k.RevokedAt != nil && k.RevokedAt.UnixMilli() <= log.at:
			action = LeakAlreadyRevoked
		case l.Revoke:
			action = LeakRevoked
		default:
			action = LeakNotified
		}
		k.Source, k.Action, k.Credential = l.Source, action, CredentialKey
		log.note(EntityKey, keyID, leakAuditAction(CredentialKey, action, l.Source))
		if err := log.events.emit(ctx, log, EventKeyLeaked, k); err != nil {
			return err
		}
		if action != LeakRevoked {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET revoked_at = $1 WHERE id = $2`, log.at, keyID); err != nil {
			return err
		}
		return log.add(WithRevokeReason(ctx, ReasonLeaked), EntityKey, keyID)
	})
	return action, first, err
}
