package keystore

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Refresh tokens: issued with a pair, redeemed once, a reused one revokes
// its key's live family (RFC 9700 §4.14.2). Only digests are stored.

// RefreshGrant is what redeeming a refresh token yields: the key it was
// minted for.
type RefreshGrant struct {
	KeyID  string
	Mode   Mode
	Family string
}

// IssueRefreshToken stores a new refresh token (its digest) for a key,
// starting a new family, and revokes every live refresh token of the key:
// minting with the API key again ends the previous family.
func (s *Store) IssueRefreshToken(ctx context.Context, keyID string, d Digest, expires time.Time) error {
	family, err := randomID("rf_", 16)
	if err != nil {
		return fmt.Errorf("keystore: issue refresh token: %w", err)
	}
	return s.write(ctx, "issue refresh token", func(tx *sql.Tx, log txLog) error {
		if err := revokeLiveRefresh(ctx, tx, keyID, log.at); err != nil {
			return err
		}
		if err := pruneRefresh(ctx, tx, keyID, log.at); err != nil {
			return err
		}
		return insertRefresh(ctx, tx, d, keyID, family, log.at, expires)
	})
}

// PeekRefreshToken finds the key a refresh token was issued for without
// using it up, and reports whether RedeemRefreshToken would accept it at
// now. The token exchange decides on the new pair first and redeems only
// what it will hand out, so a failure in between never turns the client's
// retry into reuse.
func (s *Store) PeekRefreshToken(ctx context.Context, digests []Digest, now time.Time) (RefreshGrant, bool, error) {
	if len(digests) == 0 {
		return RefreshGrant{}, false, ErrNotFound
	}
	in, args := digestIn("r.digest", digests)
	var g RefreshGrant
	var mode string
	var exp int64
	var used, revoked sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT r.key_id, k.mode, r.family, r.expires_at, r.used_at, r.revoked_at
		FROM refresh_tokens r JOIN keys k ON k.id = r.key_id WHERE `+in, args...).
		Scan(&g.KeyID, &mode, &g.Family, &exp, &used, &revoked)
	if err != nil {
		return RefreshGrant{}, false, fmt.Errorf("keystore: peek refresh token: %w", notFound(err))
	}
	g.Mode = Mode(mode)
	return g, !used.Valid && !revoked.Valid && millis(now) < exp, nil
}

// RedeemRefreshToken uses a refresh token once: the token found under any
// of digests dies and next (a new token's digest, same family) replaces
// it. A token already used or revoked is reuse: every live token of its
// key is revoked (with a key.revoked event, reason reuse: reuse_event.go)
// and ErrRefreshReused returned. An unused token past its
// expiry is ErrRefreshExpired; an unknown one ErrNotFound.
func (s *Store) RedeemRefreshToken(ctx context.Context, digests []Digest, next Digest, expires time.Time) (RefreshGrant, error) {
	if len(digests) == 0 {
		return RefreshGrant{}, ErrNotFound
	}
	var g RefreshGrant
	var outcome error
	in, args := digestIn("r.digest", digests)
	err := s.write(ctx, "redeem refresh token", func(tx *sql.Tx, log txLog) error {
		var digest, mode string
		var exp int64
		var used, revoked sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT r.digest, r.key_id, k.mode, r.family, r.expires_at, r.used_at, r.revoked_at
			FROM refresh_tokens r JOIN keys k ON k.id = r.key_id WHERE `+in, args...).
			Scan(&digest, &g.KeyID, &mode, &g.Family, &exp, &used, &revoked)
		if err != nil {
			return notFound(err)
		}
		g.Mode = Mode(mode)
		switch {
		case used.Valid || revoked.Valid:
			// Reuse: kill whatever family the key has now. The revocation
			// must commit, so the outcome is reported after the commit.
			outcome = ErrRefreshReused
			return reuseDetected(ctx, log, g.KeyID, g.Family)
		case log.at >= exp:
			outcome = ErrRefreshExpired
			return nil
		}
		res, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET used_at = $1 WHERE digest = $2 AND used_at IS NULL AND revoked_at IS NULL`, log.at, digest)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n != 1 {
			// Another request redeemed it between our read and this update
			// (PostgreSQL, READ COMMITTED): the same token presented twice
			// at once is reuse too.
			outcome = ErrRefreshReused
			return reuseDetected(ctx, log, g.KeyID, g.Family)
		}
		if err := pruneRefresh(ctx, tx, g.KeyID, log.at); err != nil {
			return err
		}
		return insertRefresh(ctx, tx, next, g.KeyID, g.Family, log.at, expires)
	})
	if err != nil {
		return RefreshGrant{}, err
	}
	if outcome != nil {
		return g, fmt.Errorf("keystore: redeem refresh token: %w", outcome)
	}
	return g, nil
}

// reuseAction is the audit trail's name for a family revoked on reuse.
const reuseAction = "revoke refresh tokens (reuse detected)"

func revokeLiveRefresh(ctx context.Context, tx *sql.Tx, keyID string, at int64) error {
	_, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $1 WHERE key_id = $2 AND used_at IS NULL AND revoked_at IS NULL`, at, keyID)
	return err
}

// pruneRefresh deletes a key's expired rows. Rows of dead tokens are kept
// until then, so that reuse is recognised for as long as the token could
// have been used.
func pruneRefresh(ctx context.Context, tx *sql.Tx, keyID string, at int64) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE key_id = $1 AND expires_at < $2`, keyID, at)
	return err
}

func insertRefresh(ctx context.Context, tx *sql.Tx, d Digest, keyID, family string, at int64, expires time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO refresh_tokens (digest, key_id, family, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
		string(d), keyID, family, at, millis(expires))
	if err != nil && isUnique(err) {
		return fmt.Errorf("%w: refresh token", ErrConflict)
	}
	return err
}
