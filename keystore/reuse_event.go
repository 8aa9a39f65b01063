package keystore

import (
	"context"
	"time"
)

// RefreshReuseEvent is the data of key.revoked with reason reuse: a used or
// revoked refresh token came back, so the key's live refresh tokens were
// revoked (RFC 9700 §4.14.2). The key itself is not revoked: its revoked_at
// is the key's own (null while it works), Revoked says what was.
type RefreshReuseEvent struct {
	KeyEvent
	// Revoked is what the reuse revoked: always "refresh_tokens".
	Revoked string `json:"revoked"`
	// RefreshFamily is the family of the token presented again.
	RefreshFamily string `json:"refresh_family"`
	// TokensRevokedAt is when the refresh tokens were revoked.
	TokensRevokedAt time.Time `json:"tokens_revoked_at"`
}

// RevokedRefreshTokens is RefreshReuseEvent.Revoked.
const RevokedRefreshTokens = "refresh_tokens"

// reuseDetected revokes the key's live refresh tokens after a reuse, notes
// it in the audit trail and, when it revoked any, emits key.revoked (reason
// reuse) in the same transaction. A dead token replayed again after its
// family is gone revokes nothing and emits nothing more.
func reuseDetected(ctx context.Context, log txLog, keyID, family string) error {
	log.note(EntityRefreshTokens, keyID, reuseAction)
	res, err := log.tx.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $1 WHERE key_id = $2 AND used_at IS NULL AND revoked_at IS NULL`, log.at, keyID)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err
	}
	k, err := keyEvent(ctx, log.tx, keyID)
	if err != nil {
		return err
	}
	k.Reason = ReasonReuse
	return log.events.emit(ctx, log, EventKeyRevoked, RefreshReuseEvent{KeyEvent: k, Revoked: RevokedRefreshTokens,
		RefreshFamily: family, TokensRevokedAt: fromMillis(log.at)})
}
