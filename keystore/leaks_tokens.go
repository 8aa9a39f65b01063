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
	refresh := l.Credential == CredentialRefreshToken
	return s.reportLeak(ctx, keyID, leakReport{
		Leak:       l.Leak,
		credential: l.Credential,
		// A refresh token's leak revokes its family, never the key.
		revokesKey: !refresh,
		insert: func(tx *sql.Tx, source string, at int64) (sql.Result, error) {
			return tx.ExecContext(ctx, `INSERT INTO token_leak_reports (digest, key_id, source, reported_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
				string(l.Digest), keyID, source, at)
		},
		act: func(log txLog, k KeyEvent) (string, error) {
			if refresh {
				return refreshLeak(ctx, log, keyID, l)
			}
			return accessLeak(k, l, log.at), nil
		},
		event: func(k KeyEvent) any {
			ev := TokenLeakEvent{KeyEvent: k}
			if refresh {
				ev.RefreshFamily = l.Family
			} else {
				exp := l.ExpiresAt.UTC()
				ev.TokenExpiresAt = &exp
			}
			return ev
		},
	})
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
