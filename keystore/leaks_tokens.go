package keystore

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Credentials a key.leaked event names.
const (
	CredentialKey          = "key"
	CredentialAccessToken  = "access_token"
	CredentialRefreshToken = "refresh_token"
)

// LeakExpired is the action on a leaked access token that had already
// expired: there was nothing to revoke.
const LeakExpired = "expired"

// TokenLeak is a report that an access or refresh token of a key was found
// in public.
type TokenLeak struct {
	Leak
	// Credential is CredentialAccessToken or CredentialRefreshToken.
	Credential string
	// Digest identifies the token (Digester.Primary): the same token
	// reported again from the same source acts once.
	Digest Digest
	// Family is a refresh token's family (from PeekRefreshToken).
	Family string
	// ExpiresAt is an access token's expiry (from its verified claims).
	ExpiresAt time.Time
}

// TokenLeakEvent is the data of key.leaked for a token.
type TokenLeakEvent struct {
	KeyEvent
	RefreshFamily  string     `json:"refresh_family,omitempty"`
	TokenExpiresAt *time.Time `json:"token_expires_at,omitempty"`
}

// ReportTokenLeak records that a token of key keyID leaked, in one
// transaction, and acts on it with Revoke:
//   - a refresh token: its family's live tokens are revoked (action
//     revoked; already_revoked when none was live). The key is not: the
//     token cannot mint without it, and its holder mints a new family.
//   - an access token: it cannot be revoked alone, so the key is revoked
//     (key.revoked, reason leaked), unless the token had expired (action
//     expired) or the key was revoked already.
//
// Without Revoke the action is notified. key.leaked is emitted first, with
// the credential; a report seen before (same token, same source) changes
// nothing and reports first = false.
func (s *Store) ReportTokenLeak(ctx context.Context, keyID string, l TokenLeak) (action string, first bool, err error) {
	if l.Credential != CredentialAccessToken && l.Credential != CredentialRefreshToken {
		return "", false, fmt.Errorf("keystore: report token leak: %w: credential %q", ErrInvalid, l.Credential)
	}
	if len(l.Source) > 2048 {
		l.Source = l.Source[:2048]
	}
	err = s.write(ctx, "report leak", func(tx *sql.Tx, log txLog) error {
		k, err := keyEvent(ctx, tx, keyID)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO token_leak_reports (digest, key_id, source, reported_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
			string(l.Digest), keyID, l.Source, log.at)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		first = true
		k.Credential = l.Credential
		ev := TokenLeakEvent{KeyEvent: k}
		if l.Credential == CredentialRefreshToken {
			ev.RefreshFamily = l.Family
			action, err = refreshLeak(ctx, log, keyID, l)
			if err != nil {
				return err
			}
		} else {
			exp := l.ExpiresAt.UTC()
			ev.TokenExpiresAt = &exp
			action = accessLeak(k, l, log.at)
		}
		ev.Source, ev.Action = l.Source, action
		log.note(EntityKey, keyID, leakAuditAction(l.Credential, action, l.Source))
		if err := log.events.emit(ctx, log, EventKeyLeaked, ev); err != nil {
			return err
		}
		if l.Credential == CredentialRefreshToken || action != LeakRevoked {
			return nil
		}
		// After key.leaked, so that receivers hear why first.
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

// refreshLeak revokes the leaked token's family when asked.
func refreshLeak(ctx context.Context, log txLog, keyID string, l TokenLeak) (string, error) {
	if !l.Revoke {
		return LeakNotified, nil
	}
	res, err := log.tx.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $1 WHERE key_id = $2 AND family = $3 AND used_at IS NULL AND revoked_at IS NULL`,
		log.at, keyID, l.Family)
	if err != nil {
		return "", err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return LeakAlreadyRevoked, err
	}
	log.note(EntityRefreshTokens, keyID, "revoke refresh tokens (leaked)")
	return LeakRevoked, nil
}

// accessLeak decides on a leaked access token: revoking its key is the
// only way to end it before it expires.
func accessLeak(k KeyEvent, l TokenLeak, at int64) string {
	switch {
	case k.RevokedAt != nil && k.RevokedAt.UnixMilli() <= at:
		return LeakAlreadyRevoked
	case !l.ExpiresAt.After(fromMillis(at)):
		return LeakExpired
	case !l.Revoke:
		return LeakNotified
	}
	return LeakRevoked
}

// leakAuditAction is the audit trail's action for a leak report.
func leakAuditAction(credential, action, source string) string {
	return fmt.Sprintf("leak reported (%s, %s) at %s", credential, action, source)
}
