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
	return s.reportLeak(ctx, keyID, leakReport{
		Leak:       l,
		credential: CredentialKey,
		revokesKey: true,
		insert: func(tx *sql.Tx, source string, at int64) (sql.Result, error) {
			return tx.ExecContext(ctx, `INSERT INTO leak_reports (key_id, source, reported_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
				keyID, source, at)
		},
		act: func(log txLog, k KeyEvent) (string, error) {
			switch {
			case k.RevokedAt != nil && k.RevokedAt.UnixMilli() <= log.at:
				return LeakAlreadyRevoked, nil
			case l.Revoke:
				return LeakRevoked, nil
			}
			return LeakNotified, nil
		},
	})
}

// leakReport is what one kind of leak report adds to the transaction that
// reportLeak runs for every kind.
type leakReport struct {
	Leak
	credential string // CredentialKey, CredentialAccessToken, …
	// revokesKey: action LeakRevoked revokes the key itself (after
	// key.leaked, so that receivers hear why first).
	revokesKey bool
	// insert records the report, inserting no row when the same report was
	// seen before (ON CONFLICT DO NOTHING).
	insert func(tx *sql.Tx, source string, at int64) (sql.Result, error)
	// act decides the action and does what it needs beyond revoking the key.
	act func(log txLog, k KeyEvent) (string, error)
	// event wraps key.leaked's data when the credential adds fields; nil
	// sends k.
	event func(k KeyEvent) any
}

// reportLeak records a leak report and acts on it in one transaction: a
// report seen before changes nothing and returns first = false.
func (s *Store) reportLeak(ctx context.Context, keyID string, r leakReport) (action string, first bool, err error) {
	if len(r.Source) > 2048 {
		r.Source = r.Source[:2048]
	}
	err = s.write(ctx, "report leak", func(tx *sql.Tx, log txLog) error {
		k, err := keyEvent(ctx, tx, keyID)
		if err != nil {
			return err
		}
		res, err := r.insert(tx, r.Source, log.at)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		first = true
		if action, err = r.act(log, k); err != nil {
			return err
		}
		k.Source, k.Action, k.Credential = r.Source, action, r.credential
		var ev any = k
		if r.event != nil {
			ev = r.event(k)
		}
		log.note(EntityKey, keyID, leakAuditAction(r.credential, action, r.Source))
		if err := log.events.emit(ctx, log, EventKeyLeaked, ev); err != nil {
			return err
		}
		if !r.revokesKey || action != LeakRevoked {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET revoked_at = $1 WHERE id = $2`, log.at, keyID); err != nil {
			return err
		}
		return log.add(WithRevokeReason(ctx, ReasonLeaked), EntityKey, keyID)
	})
	if err != nil {
		return "", false, err
	}
	return action, first, nil
}
