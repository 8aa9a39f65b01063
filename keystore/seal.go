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

// dropPlainRows deletes the rows written unencrypted. Their secrets were
// readable by anyone with a copy of the database from before sealing, so
// they are never sealed in place and used again: a fresh sealed key takes
// over (SigningKeys creates one when none is left to sign), and tokens the
// plain keys signed stop verifying (clients mint or refresh again). The
// delete is conditional on the old value so two replicas migrating at once
// agree. It reports how many rows it deleted.
func (s *Store) dropPlainRows(ctx context.Context, tx *sql.Tx, keys []storedSigningKey) (int, error) {
	n := 0
	for _, k := range keys {
		if !isPlain(k.secret) {
			continue
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM signing_keys WHERE id = $1 AND secret = $2`, k.id, k.secret)
		if err != nil {
			return n, err
		}
		if d, _ := res.RowsAffected(); d > 0 {
			n++
		}
	}
	return n, nil
}
