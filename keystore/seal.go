package keystore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrNoSealSecret means no secret outside the database is configured to
// encrypt token signing keys with. Token exchange must then stay off: a
// signing secret readable from the database would let anyone with a copy
// of it mint access tokens for any key.
var ErrNoSealSecret = errors.New("keystore: no secret outside the database to encrypt token signing keys (set KEYGATE_TOKEN_SECRET or KEYGATE_PEPPER)")

// minSealSecret is the shortest seal secret accepted (as for peppers).
const minSealSecret = 16

// WithSealSecret returns a Digester like d that encrypts token signing
// secrets under secret; d's peppers still open secrets sealed under them
// before. The secret must never be stored in the database.
func (d *Digester) WithSealSecret(secret []byte) (*Digester, error) {
	if len(secret) < minSealSecret {
		return nil, fmt.Errorf("keystore: a token secret needs at least %d bytes", minSealSecret)
	}
	out, err := NewDigester(d.peppers...)
	if err != nil {
		return nil, err
	}
	out.seals = [][]byte{secret}
	return out, nil
}

// sealKeys are the secrets that seal signing keys, the sealing one first:
// the configured seal secret, then the peppers (which sealed them before
// seal secrets existed). The built-in no-pepper key is not one: it is public.
func (d *Digester) sealKeys() [][]byte {
	out := append([][]byte(nil), d.seals...)
	if d.peppered() {
		out = append(out, d.peppers...)
	}
	return out
}

// hasPlain reports whether any row still holds its secret unencrypted
// (written by a keygate that had no seal secret).
func hasPlain(keys []storedSigningKey) bool {
	for _, k := range keys {
		if isPlain(k.secret) {
			return true
		}
	}
	return false
}

// sealPlainRows encrypts the rows written unencrypted, in place. The
// update is conditional on the old value so two replicas migrating at once
// do not seal twice.
func (s *Store) sealPlainRows(ctx context.Context, tx *sql.Tx, keys []storedSigningKey) error {
	for _, k := range keys {
		if !isPlain(k.secret) {
			continue
		}
		secret, err := s.digester.open(k.secret, k.id)
		if err != nil {
			return fmt.Errorf("keystore: signing key %s: %w", k.id, err)
		}
		sealed, err := s.digester.seal(secret, k.id)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE signing_keys SET secret = $1 WHERE id = $2 AND secret = $3`, sealed, k.id, k.secret); err != nil {
			return err
		}
	}
	return nil
}
