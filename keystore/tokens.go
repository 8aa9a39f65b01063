package keystore

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors of the token exchange's store methods.
var (
	// ErrRefreshReused is a refresh token that was already used or revoked:
	// a sign that it leaked. The key's live refresh tokens are revoked.
	ErrRefreshReused = errors.New("keystore: refresh token reused")
	// ErrRefreshExpired is an unused refresh token past its expiry.
	ErrRefreshExpired = errors.New("keystore: refresh token expired")
)

// SigningKey is an HMAC secret that signs access tokens. Every replica
// reads the same keys from the store; the newest one past NotBefore signs.
type SigningKey struct {
	ID        string
	Secret    []byte
	CreatedAt time.Time
	NotBefore time.Time
}

// SigningSchedule says when signing keys are created and retired.
type SigningSchedule struct {
	// RotateEvery is the age at which the newest key gets a successor.
	RotateEvery time.Duration
	// Activation is how long a new key is published before it signs, so
	// that every replica holds it before the first token it signs arrives.
	// The first key of an empty store signs at once.
	Activation time.Duration
	// RetireAfter is how long a superseded key keeps verifying after its
	// successor started signing: at least the access-token lifetime.
	RetireAfter time.Duration
}

const signingSecretBytes = 32

// SigningKeys returns the signing keys every replica must hold, creating
// the first key, a successor when the newest is RotateEvery old, and
// deleting keys retired under the schedule. It writes only when something
// is due, so replicas may call it often.
func (s *Store) SigningKeys(ctx context.Context, sch SigningSchedule) ([]SigningKey, error) {
	keys, err := s.readSigningKeys(ctx, s.db)
	if err != nil {
		return nil, err
	}
	if !signingWorkDue(keys, s.now(), sch) && !(hasPlain(keys) && len(s.digester.sealKeys()) > 0) {
		return s.openSigningKeys(keys)
	}
	err = s.write(ctx, "signing keys", func(tx *sql.Tx, _ txLog) error {
		// Re-read inside the transaction: another replica may have done
		// the work since.
		keys, err = s.readSigningKeys(ctx, tx)
		if err != nil {
			return err
		}
		if dropped, err := s.dropPlainRows(ctx, tx, keys); err != nil {
			return err
		} else if dropped > 0 {
			if keys, err = s.readSigningKeys(ctx, tx); err != nil {
				return err
			}
		}
		now := s.now()
		for _, id := range retiredSigningKeys(keys, now, sch) {
			if _, err := tx.ExecContext(ctx, `DELETE FROM signing_keys WHERE id = $1`, id); err != nil {
				return err
			}
		}
		if needsSigningKey(keys, now, sch) {
			notBefore := now.Add(sch.Activation)
			if len(keys) == 0 {
				notBefore = now
			}
			if err := s.insertSigningKey(ctx, tx, now, notBefore); err != nil {
				return err
			}
		}
		keys, err = s.readSigningKeys(ctx, tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.openSigningKeys(keys)
}

// CurrentSigningKeys reads the signing keys without creating or retiring
// any: for tools (keygate check) that verify tokens but do not run the
// schedule.
func (s *Store) CurrentSigningKeys(ctx context.Context) ([]SigningKey, error) {
	keys, err := s.readSigningKeys(ctx, s.db)
	if err != nil {
		return nil, err
	}
	return s.openSigningKeys(keys)
}

// storedSigningKey is a row, secret still sealed.
type storedSigningKey struct {
	id                   string
	secret               string
	createdAt, notBefore time.Time
}

type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

func (s *Store) readSigningKeys(ctx context.Context, q querier) ([]storedSigningKey, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, secret, created_at, not_before FROM signing_keys ORDER BY created_at DESC, id`)
	return collect(rows, err, "signing keys", func(r rowScanner) (storedSigningKey, error) {
		var k storedSigningKey
		var created, notBefore int64
		err := r.Scan(&k.id, &k.secret, &created, &notBefore)
		k.createdAt, k.notBefore = fromMillis(created), fromMillis(notBefore)
		return k, err
	})
}

// signingWorkDue reports whether a key must be created or deleted.
func signingWorkDue(keys []storedSigningKey, now time.Time, sch SigningSchedule) bool {
	return needsSigningKey(keys, now, sch) || len(retiredSigningKeys(keys, now, sch)) > 0
}

// needsSigningKey: none at all, or the newest (keys are newest first) is
// due for a successor.
func needsSigningKey(keys []storedSigningKey, now time.Time, sch SigningSchedule) bool {
	return len(keys) == 0 || now.Sub(keys[0].createdAt) >= sch.RotateEvery
}

// retiredSigningKeys lists keys superseded for longer than RetireAfter: a
// newer key has been signing since then, so every token they signed has
// expired.
func retiredSigningKeys(keys []storedSigningKey, now time.Time, sch SigningSchedule) []string {
	var signingSince *time.Time // NotBefore of the newest active key seen so far
	var out []string
	for i := range keys {
		k := &keys[i]
		if signingSince != nil && now.Sub(*signingSince) >= sch.RetireAfter {
			out = append(out, k.id)
			continue
		}
		if !now.Before(k.notBefore) && signingSince == nil {
			signingSince = &k.notBefore
		}
	}
	return out
}

func (s *Store) insertSigningKey(ctx context.Context, tx *sql.Tx, now, notBefore time.Time) error {
	id, err := randomID("sk_", 12)
	if err != nil {
		return err
	}
	secret := make([]byte, signingSecretBytes)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	sealed, err := s.digester.seal(secret, id)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO signing_keys (id, secret, created_at, not_before) VALUES ($1, $2, $3, $4)`,
		id, sealed, millis(now), millis(notBefore))
	return err
}

// openSigningKeys unseals the secrets. A key sealed under a pepper this
// process does not have is an error: signing with a subset of the keys
// other replicas use would reject their tokens. So is a key stored
// unencrypted when there is nothing to seal it with: tokens it signs could
// be forged by anyone who reads the database.
func (s *Store) openSigningKeys(keys []storedSigningKey) ([]SigningKey, error) {
	out := make([]SigningKey, 0, len(keys))
	for _, k := range keys {
		if isPlain(k.secret) {
			if len(s.digester.sealKeys()) == 0 {
				return nil, ErrNoSealSecret
			}
			continue // exposed: never signs or verifies (dropPlainRows)
		}
		secret, err := s.digester.open(k.secret, k.id)
		if err != nil {
			return nil, fmt.Errorf("keystore: signing key %s: %w", k.id, err)
		}
		out = append(out, SigningKey{ID: k.id, Secret: secret, CreatedAt: k.createdAt, NotBefore: k.notBefore})
	}
	return out, nil
}

// Sealing: signing-key secrets are encrypted with AES-256-GCM under a key
// derived from a secret that never enters the database (the seal secret,
// else the pepper), with the signing key's id as additional data so rows
// cannot be swapped. Rows stored "plain:" by older versions are refused,
// and deleted (replaced by a fresh sealed key) on the next start that has a
// secret: their secrets may be in any older copy of the database.
const (
	sealedPrefix = "sealed:"
	plainPrefix  = "plain:"
	sealLabel    = "keygate signing-key seal v1"
)

func (d *Digester) peppered() bool { return string(d.peppers[0]) != noPepper }

func isPlain(stored string) bool { return strings.HasPrefix(stored, plainPrefix) }

func sealAEAD(key []byte) (cipher.AEAD, error) {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sealLabel))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func (d *Digester) seal(secret []byte, id string) (string, error) {
	keys := d.sealKeys()
	if len(keys) == 0 {
		return "", ErrNoSealSecret
	}
	aead, err := sealAEAD(keys[0])
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return sealedPrefix + base64.StdEncoding.EncodeToString(aead.Seal(nonce, nonce, secret, []byte(id))), nil
}

func (d *Digester) open(stored, id string) ([]byte, error) {
	if b, ok := strings.CutPrefix(stored, plainPrefix); ok {
		return base64.StdEncoding.DecodeString(b)
	}
	b, ok := strings.CutPrefix(stored, sealedPrefix)
	if !ok {
		return nil, errors.New("unknown secret encoding")
	}
	raw, err := base64.StdEncoding.DecodeString(b)
	if err != nil {
		return nil, err
	}
	keys := d.sealKeys()
	if len(keys) == 0 {
		return nil, errors.New("sealed under a secret, and neither KEYGATE_TOKEN_SECRET nor KEYGATE_PEPPER is set")
	}
	// Any of them may have sealed it: the seal secret first, then peppers
	// (older rows, or a pepper rotation).
	for _, k := range keys {
		aead, err := sealAEAD(k)
		if err != nil {
			return nil, err
		}
		if len(raw) < aead.NonceSize() {
			return nil, errors.New("sealed secret too short")
		}
		if secret, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(id)); err == nil {
			return secret, nil
		}
	}
	return nil, errors.New("sealed under a secret that is not configured")
}

// tokenShaped reports whether raw starts like one of the deployment's
// tokens ("<prefix>_at_" access, "<prefix>_rt_" refresh; package tokens
// defines them). Check reads such a credential as a token, so an imported
// key of that shape could never work.
func (f Format) tokenShaped(raw string) bool {
	return strings.HasPrefix(raw, f.Prefix+"_at_") || strings.HasPrefix(raw, f.Prefix+"_rt_")
}
